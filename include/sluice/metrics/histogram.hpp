// sluice — a histogram of durations (or any non-negative integers) with
// log-linear buckets: exact below 128, then 64 buckets per power of two, so a
// value is known to within 1/64 (about 1.6 %: two significant digits), from
// 1 ns up to 2^40 ns (about 18 minutes); larger values go to the last bucket
// and are counted as `clamped`. Fixed size (about 17.5 KiB), no allocation;
// record() is a few instructions. One writer at a time: a histogram is kept
// per thread (or under its owner's lock) and copies are merged on read.
//
//   sluice::duration_histogram h;
//   h.record(1530);                  // ns
//   h.percentile(0.99);              // an upper bound of the 99th percentile
//   h.mean(); h.count(); h.max();
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "../config.hpp"

namespace sluice {
inline namespace SLUICE_ABI {
namespace detail {
class live_histogram;
}

class duration_histogram {
 public:
  static constexpr unsigned sub_bits = 6;  // 64 buckets per octave
  static constexpr std::uint64_t exact_below = std::uint64_t{2} << sub_bits;  // 128
  static constexpr unsigned max_bit = 40;  // values up to 2^40 - 1 have buckets of their own
  static constexpr std::size_t bucket_count =
      exact_below + (max_bit - (sub_bits + 1)) * (std::size_t{1} << sub_bits);  // 2240

  // Adds one value.
  void record(std::uint64_t v) noexcept {
    std::size_t i;
    if (SLUICE_UNLIKELY(v >= (std::uint64_t{1} << max_bit))) {
      ++clamped_;
      i = bucket_count - 1;
    } else {
      i = index_of(v);
    }
    ++buckets_[i];
    ++count_;
    sum_ = add_saturated(sum_, v);
    if (v > max_) max_ = v;
    if (count_ == 1 || v < min_) min_ = v;
  }

  // Adds every value of another histogram (a per-thread copy, say).
  void merge(const duration_histogram& o) noexcept {
    if (o.count_ == 0) return;
    for (std::size_t i = 0; i < bucket_count; ++i) buckets_[i] += o.buckets_[i];
    if (count_ == 0 || o.min_ < min_) min_ = o.min_;
    if (o.max_ > max_) max_ = o.max_;
    count_ += o.count_;
    sum_ = add_saturated(sum_, o.sum_);
    clamped_ += o.clamped_;
  }

  void clear() noexcept { *this = duration_histogram(); }

  [[nodiscard]] std::uint64_t count() const noexcept { return count_; }
  // The extremes of what was recorded, exact (clamped values included as
  // they were), and the sum, exact up to 2^64 - 1 (584 years of ns), where
  // it stays.
  [[nodiscard]] std::uint64_t sum() const noexcept { return sum_; }
  [[nodiscard]] std::uint64_t min() const noexcept { return count_ == 0 ? 0 : min_; }
  [[nodiscard]] std::uint64_t max() const noexcept { return max_; }
  [[nodiscard]] std::uint64_t clamped() const noexcept { return clamped_; }
  [[nodiscard]] double mean() const noexcept {
    return count_ == 0 ? 0.0 : static_cast<double>(sum_) / static_cast<double>(count_);
  }

  // The smallest bucket bound b such that at least a fraction q (0..1) of
  // the values are <= b: an upper bound of the q-quantile, at most 1/64
  // above the true one (exact below 128), and never above max(). 0 when
  // empty.
  [[nodiscard]] std::uint64_t percentile(double q) const noexcept {
    if (count_ == 0) return 0;
    if (!(q > 0.0)) return min();
    if (q > 1.0) q = 1.0;
    auto rank = static_cast<std::uint64_t>(q * static_cast<double>(count_) + 0.999999);
    if (rank == 0) rank = 1;
    if (rank > count_) rank = count_;
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < bucket_count; ++i) {
      seen += buckets_[i];
      if (seen >= rank) {
        const std::uint64_t hi = upper_bound(i);
        return hi < max_ ? hi : max_;
      }
    }
    return max_;
  }

  // Values recorded that are <= bound, counting whole buckets only: a bucket
  // that straddles `bound` is left out, so the answer may fall short by the
  // values within 1/64 below it. Exact when `bound` is a bucket's upper edge
  // (upper_bound(i)), as the Prometheus exporter's `le` bounds are.
  [[nodiscard]] std::uint64_t count_at_most(std::uint64_t bound) const noexcept {
    std::uint64_t n = 0;
    for (std::size_t i = 0; i < bucket_count && upper_bound(i) <= bound; ++i) n += buckets_[i];
    return n;
  }

  // Bucket i's range of values: [lower_bound(i), upper_bound(i)].
  [[nodiscard]] static constexpr std::uint64_t lower_bound(std::size_t i) noexcept {
    if (i < exact_below) return i;
    const std::size_t k = i - exact_below;
    const unsigned shift = static_cast<unsigned>(k >> sub_bits) + 1;
    const std::uint64_t top = (std::uint64_t{1} << sub_bits) + (k & ((1u << sub_bits) - 1));
    return top << shift;
  }
  [[nodiscard]] static constexpr std::uint64_t upper_bound(std::size_t i) noexcept {
    return i + 1 < bucket_count ? lower_bound(i + 1) - 1 : ~std::uint64_t{0};
  }
  [[nodiscard]] std::uint64_t bucket(std::size_t i) const noexcept { return buckets_[i]; }

  // The bucket a value below 2^max_bit falls in.
  // (Computed in 64 bits: every index is below bucket_count.)
  [[nodiscard]] static std::size_t index_of(std::uint64_t v) noexcept {
    std::uint64_t i = v;
    if (v >= exact_below) {
      const unsigned msb = top_bit(v);  // >= sub_bits + 1
      const unsigned shift = msb - sub_bits;
      const std::uint64_t top = v >> shift;  // in [64, 128)
      i = exact_below + (std::uint64_t{shift} - 1) * (std::uint64_t{1} << sub_bits) +
          (top - (std::uint64_t{1} << sub_bits));
    }
    return size_index(i);
  }

 private:
  static std::uint64_t add_saturated(std::uint64_t a, std::uint64_t b) noexcept {
    return a > ~std::uint64_t{0} - b ? ~std::uint64_t{0} : a + b;
  }
  // The index of v's highest set bit (v != 0).
  static unsigned top_bit(std::uint64_t v) noexcept {
#if defined(__GNUC__) || defined(__clang__)
    return 63u - static_cast<unsigned>(__builtin_clzll(v));
#else
    unsigned b = 0;
    while (v >>= 1) ++b;
    return b;
#endif
  }
  template <class T>
  static std::size_t size_index(T i) noexcept {
    if constexpr (std::is_same_v<T, std::size_t>) {
      return i;
    } else {
      return static_cast<std::size_t>(i);
    }
  }

 private:
  friend class detail::live_histogram;  // fills a copy from its own words

  std::uint64_t buckets_[bucket_count] = {};
  std::uint64_t count_ = 0;
  std::uint64_t sum_ = 0;
  std::uint64_t min_ = 0;
  std::uint64_t max_ = 0;
  std::uint64_t clamped_ = 0;
};

}  // namespace SLUICE_ABI
}  // namespace sluice
