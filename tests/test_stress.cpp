// Stress: many threads publishing keyed events while others subscribe,
// unsubscribe and poll at random; at the end the accounting equation and the
// per-key order must hold. Hidden tag: run with `sluice_tests "[stress]"`.
#include <array>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <random>
#include <sluice/sluice.hpp>
#include <thread>
#include <vector>

#include "support.hpp"

namespace {
constexpr int producers = 4;
constexpr int keys = 32;
struct ev_a {
  int producer, key, n;
};
struct ev_b {
  int producer, key, n;
  char pad[32];
};

void run_mix(std::chrono::milliseconds length, sluice::full_policy policy) {
  sluice::bus bus{sluice::bus_options{}.with_lanes(6).with_lane_capacity(128).with_policy(policy)};
  std::array<std::array<int, keys>, producers> last{};
  std::atomic<long> violations{0};
  auto check = [&](int p, int k, int n) {
    int& l = last[static_cast<std::size_t>(p)][static_cast<std::size_t>(k)];
    if (n <= l) ++violations;  // drops may leave gaps, never reorder
    l = n;
  };
  auto sa = bus.subscribe<ev_a>([&](const ev_a& e) { check(e.producer, e.key, e.n); });
  auto sb = bus.subscribe<ev_b>([&](const ev_b& e) { check(e.producer, e.key, e.n); });
  REQUIRE(bus.run(2));
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p)
    threads.emplace_back([&, p] {
      auto prod = bus.make_producer();
      std::mt19937 rng(static_cast<unsigned>(p) * 31u + 5u);
      std::array<int, keys> next{};
      while (!stop.load(std::memory_order_relaxed)) {
        const int k = static_cast<int>(rng() % keys);
        const int n = ++next[static_cast<std::size_t>(k)];
        const auto key = static_cast<sluice::key_type>(k);
        if (rng() % 2 != 0) {
          (void)prod.publish(ev_a{p, k, n}, key);
        } else {
          (void)prod.publish(ev_b{p, k, n, {}}, key);
        }
      }
    });
  // churn: subscribe and unsubscribe with captured heap state
  for (int c = 0; c < 2; ++c)
    threads.emplace_back([&, c] {
      std::mt19937 rng(static_cast<unsigned>(c) + 100u);
      while (!stop.load(std::memory_order_relaxed)) {
        auto state = std::make_unique<std::atomic<long>>(0);
        auto* raw = state.get();
        auto s = bus.subscribe<ev_a>([raw](const ev_a&) { raw->fetch_add(1); });
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 300));
        s.reset();
        state.reset();
      }
    });
  // a thread that polls too (competes with the workers for lanes)
  threads.emplace_back([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      bus.poll(100);
      std::this_thread::yield();
    }
  });
  std::this_thread::sleep_for(length);
  stop = true;
  for (auto& t : threads) t.join();
  REQUIRE(bus.stop());
  CHECK(violations.load() == 0);
  const auto a = bus.stats<ev_a>();
  const auto b = bus.stats<ev_b>();
  CHECK(a.published > 0);
  CHECK(a.balanced());
  CHECK(b.balanced());
}
}  // namespace

TEST_CASE("random mix, short", "[stress_short]") {
  test::watchdog wd(std::chrono::seconds(60), "stress short");
  run_mix(std::chrono::milliseconds(300), sluice::full_policy::drop_newest);
}

TEST_CASE("random mix with drops", "[.][stress]") {
  test::watchdog wd(std::chrono::seconds(120), "stress drops");
  run_mix(std::chrono::milliseconds(5000), sluice::full_policy::drop_newest);
}

TEST_CASE("random mix with blocking producers", "[.][stress]") {
  test::watchdog wd(std::chrono::seconds(120), "stress block");
  run_mix(std::chrono::milliseconds(5000), sluice::full_policy::block);
}
