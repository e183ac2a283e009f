// The duration histogram: bucket layout, precision of percentiles against
// the exact order statistics of random samples, merging, clamping.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <sluice/metrics/histogram.hpp>
#include <vector>

using sluice::duration_histogram;

TEST_CASE("histogram: buckets tile the values, exact below 128, at most 1/64 wide above",
          "[histogram]") {
  REQUIRE(duration_histogram::lower_bound(0) == 0);
  for (std::size_t i = 0; i + 1 < duration_histogram::bucket_count; ++i) {
    INFO("bucket " << i);
    const std::uint64_t lo = duration_histogram::lower_bound(i);
    const std::uint64_t hi = duration_histogram::upper_bound(i);
    REQUIRE(duration_histogram::lower_bound(i + 1) == hi + 1);  // no gap, no overlap
    REQUIRE(duration_histogram::index_of(lo) == i);
    REQUIRE(duration_histogram::index_of(hi) == i);
    if (i < 128) {
      REQUIRE(lo == hi);
    } else {
      REQUIRE(static_cast<double>(hi - lo + 1) <= static_cast<double>(lo) / 64.0);
    }
  }
  // The last bucket starts below 2^40 and takes everything above.
  const std::size_t last = duration_histogram::bucket_count - 1;
  REQUIRE(duration_histogram::index_of((std::uint64_t{1} << 40) - 1) == last);
  REQUIRE(duration_histogram::upper_bound(last) == ~std::uint64_t{0});
}

TEST_CASE("histogram: percentiles are within 1/64 above the exact ones", "[histogram]") {
  std::mt19937_64 rng(Catch::rngSeed());
  for (int round = 0; round < 20; ++round) {
    // Log-uniform from 1 ns to about 100 s, and a few repeated values.
    std::uniform_real_distribution<double> exponent(0.0, 11.0);
    const std::size_t n = 1 + static_cast<std::size_t>(rng() % 5000);
    std::vector<std::uint64_t> v(n);
    auto h = std::make_unique<duration_histogram>();
    for (auto& x : v) {
      x = rng() % 7 == 0 ? 1000 : static_cast<std::uint64_t>(std::pow(10.0, exponent(rng)));
      h->record(x);
    }
    std::sort(v.begin(), v.end());
    REQUIRE(h->count() == n);
    REQUIRE(h->min() == v.front());
    REQUIRE(h->max() == v.back());
    std::uint64_t sum = 0;
    for (auto x : v) sum += x;
    REQUIRE(h->sum() == sum);
    REQUIRE(h->mean() == Approx(static_cast<double>(sum) / static_cast<double>(n)));
    for (double q : {0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0}) {
      const auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(n)));
      const std::uint64_t exact = v[std::max<std::size_t>(rank, 1) - 1];
      const std::uint64_t got = h->percentile(q);
      INFO("n " << n << " q " << q << " exact " << exact << " got " << got);
      REQUIRE(got >= exact);
      REQUIRE(static_cast<double>(got) <= static_cast<double>(exact) * (1.0 + 1.0 / 64.0));
      REQUIRE(got <= h->max());
    }
    REQUIRE(h->percentile(1.0) == v.back());
    // count_at_most: never more than the true count, and at least the
    // values 1/64 below the bound.
    for (std::uint64_t bound : {std::uint64_t{100}, std::uint64_t{1000}, std::uint64_t{123456},
                                std::uint64_t{1000000000}}) {
      const auto below = [&](double b) {
        return static_cast<std::uint64_t>(
            std::upper_bound(v.begin(), v.end(), static_cast<std::uint64_t>(b)) - v.begin());
      };
      const std::uint64_t c = h->count_at_most(bound);
      REQUIRE(c <= below(static_cast<double>(bound)));
      REQUIRE(c >= below(static_cast<double>(bound) * (1.0 - 1.0 / 64.0) - 1));
    }
  }
}

TEST_CASE("histogram: merging equals recording everything in one", "[histogram]") {
  std::mt19937_64 rng(Catch::rngSeed());
  auto a = std::make_unique<duration_histogram>();
  auto b = std::make_unique<duration_histogram>();
  auto all = std::make_unique<duration_histogram>();
  for (int i = 0; i < 10000; ++i) {
    const std::uint64_t x = rng() >> (rng() % 64);
    (i % 3 == 0 ? *a : *b).record(x);
    all->record(x);
  }
  a->merge(*b);
  a->merge(duration_histogram());  // an empty one changes nothing
  REQUIRE(a->count() == all->count());
  REQUIRE(a->sum() == all->sum());
  REQUIRE(a->min() == all->min());
  REQUIRE(a->max() == all->max());
  REQUIRE(a->clamped() == all->clamped());
  for (std::size_t i = 0; i < duration_histogram::bucket_count; ++i)
    REQUIRE(a->bucket(i) == all->bucket(i));
  auto empty = std::make_unique<duration_histogram>();
  empty->merge(*all);
  REQUIRE(empty->min() == all->min());
  REQUIRE(empty->percentile(0.5) == all->percentile(0.5));
}

TEST_CASE("histogram: empty, and values beyond 2^40 ns", "[histogram]") {
  auto h = std::make_unique<duration_histogram>();
  REQUIRE(h->count() == 0);
  REQUIRE(h->percentile(0.5) == 0);
  REQUIRE(h->mean() == 0.0);
  REQUIRE(h->min() == 0);
  h->record(5);
  h->record(std::uint64_t{1} << 50);
  REQUIRE(h->clamped() == 1);
  REQUIRE(h->max() == std::uint64_t{1} << 50);
  REQUIRE(h->percentile(0.5) == 5);
  REQUIRE(h->percentile(1.0) == std::uint64_t{1} << 50);
  REQUIRE(h->percentile(0.0) == 5);
  REQUIRE(h->count_at_most(std::uint64_t{1} << 45) == 1);
  // The sum stays at 2^64 - 1 instead of wrapping.
  h->record(~std::uint64_t{0});
  REQUIRE(h->sum() == ~std::uint64_t{0});
  auto other = std::make_unique<duration_histogram>();
  other->record(7);
  other->merge(*h);
  REQUIRE(other->sum() == ~std::uint64_t{0});
  REQUIRE(other->count() == 4);
  h->clear();
  REQUIRE(h->count() == 0);
  REQUIRE(h->clamped() == 0);
}
