// sluice — latency histograms kept per lane (bus_options::latency_sample_every).
//
// A lane's events are delivered by one thread at a time (its drainer, under
// the lane's lock), so a histogram per lane has one writer at a time and
// needs no locked instruction: its words are relaxed atomics, written with a
// load and a store, and read by anyone. A reader merges the lanes' copies.
// Each histogram is made on the first value its lane records (about 17.5
// KiB, never on the path of an event that is not sampled); one that cannot
// be made leaves the value unrecorded, counted as lost.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>

#include "../config.hpp"
#include "../metrics/histogram.hpp"

namespace sluice {
inline namespace SLUICE_ABI {
namespace detail {

// A duration_histogram with one writer at a time and readers at any time.
// A read during writes sees each word on its own: a snapshot may count a
// value in `count` and not yet in its bucket (or the other way round).
class live_histogram {
 public:
  void record(std::uint64_t v) noexcept {
    std::size_t i = duration_histogram::bucket_count - 1;
    if (SLUICE_UNLIKELY(v >= (std::uint64_t{1} << duration_histogram::max_bit)))
      bump(clamped_, 1);
    else
      i = duration_histogram::index_of(v);
    bump(buckets_[i], 1);
    const std::uint64_t n = count_.load(std::memory_order_relaxed);
    if (n == 0 || v < min_.load(std::memory_order_relaxed))
      min_.store(v, std::memory_order_relaxed);
    if (v > max_.load(std::memory_order_relaxed)) max_.store(v, std::memory_order_relaxed);
    const std::uint64_t s = sum_.load(std::memory_order_relaxed);
    sum_.store(s > ~std::uint64_t{0} - v ? ~std::uint64_t{0} : s + v, std::memory_order_relaxed);
    count_.store(n + 1, std::memory_order_relaxed);
  }

  // Adds what this holds to `out`. Read during writes, the count is the
  // sum of the buckets read (so a Prometheus histogram made of it stays
  // consistent: no bucket above the count), and min and max are kept in
  // order; the sum may be a value ahead or behind.
  void add_to(duration_histogram& out) const noexcept {
    std::uint64_t n = 0;
    for (std::size_t i = 0; i < duration_histogram::bucket_count; ++i) {
      const std::uint64_t b = buckets_[i].load(std::memory_order_relaxed);
      out.buckets_[i] += b;
      n += b;
    }
    if (n == 0) return;
    std::uint64_t lo = min_.load(std::memory_order_relaxed);
    const std::uint64_t hi = max_.load(std::memory_order_relaxed);
    if (lo > hi) lo = hi;
    if (out.count_ == 0 || lo < out.min_) out.min_ = lo;
    if (hi > out.max_) out.max_ = hi;
    out.count_ += n;
    out.sum_ = duration_histogram::add_saturated(out.sum_, sum_.load(std::memory_order_relaxed));
    out.clamped_ += clamped_.load(std::memory_order_relaxed);
  }

 private:
  static void bump(std::atomic<std::uint64_t>& c, std::uint64_t n) noexcept {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }

  std::atomic<std::uint64_t> buckets_[duration_histogram::bucket_count] = {};
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::uint64_t> sum_{0};
  std::atomic<std::uint64_t> min_{0};
  std::atomic<std::uint64_t> max_{0};
  std::atomic<std::uint64_t> clamped_{0};
};

// One histogram per lane, made when its lane first records.
class lane_histograms {
 public:
  // nullptr when there is no memory for it.
  static lane_histograms* make(std::size_t lanes) noexcept {
    auto* h = new (std::nothrow) lane_histograms;
    if (h == nullptr) return nullptr;
    h->per_lane_ = new (std::nothrow) std::atomic<live_histogram*>[lanes];
    if (h->per_lane_ == nullptr) {
      delete h;
      return nullptr;
    }
    h->n_ = lanes;
    for (std::size_t i = 0; i < lanes; ++i)
      h->per_lane_[i].store(nullptr, std::memory_order_relaxed);
    return h;
  }
  lane_histograms(const lane_histograms&) = delete;
  lane_histograms& operator=(const lane_histograms&) = delete;
  ~lane_histograms() {
    for (std::size_t i = 0; i < n_; ++i) delete per_lane_[i].load(std::memory_order_relaxed);
    delete[] per_lane_;
  }

  // By lane `lane`'s drainer only. A histogram that cannot be made leaves
  // the value out, counted in `lost`. True when it made the histogram.
  bool record(std::size_t lane, std::uint64_t v, std::atomic<std::uint64_t>& lost) noexcept {
    live_histogram* h = per_lane_[lane].load(std::memory_order_relaxed);
    if (SLUICE_LIKELY(h != nullptr)) {
      h->record(v);
      return false;
    }
    h = new (std::nothrow) live_histogram;
    if (h == nullptr) {
      lost.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
    per_lane_[lane].store(h, std::memory_order_release);
    h->record(v);
    return true;
  }

  void add_to(duration_histogram& out) const noexcept {
    for (std::size_t i = 0; i < n_; ++i)
      if (const live_histogram* h = per_lane_[i].load(std::memory_order_acquire)) h->add_to(out);
  }

 private:
  lane_histograms() = default;

  std::size_t n_ = 0;
  std::atomic<live_histogram*>* per_lane_ = nullptr;
};

// The lane_histograms an owner (a registry, a subscription's node) points
// to, made on first use by whichever lane's drainer comes first; nullptr if
// it could not be made (the caller counts the value lost).
inline lane_histograms* histograms_of(std::atomic<lane_histograms*>& slot,
                                      std::size_t lanes) noexcept {
  lane_histograms* h = slot.load(std::memory_order_acquire);
  if (SLUICE_LIKELY(h != nullptr)) return h;
  lane_histograms* made = lane_histograms::make(lanes);
  if (made == nullptr) return nullptr;
  if (slot.compare_exchange_strong(h, made, std::memory_order_acq_rel)) return made;
  delete made;  // another lane's drainer made it first
  return h;
}

}  // namespace detail
}  // namespace SLUICE_ABI
}  // namespace sluice
