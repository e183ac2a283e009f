// Contract 1, ordering: events one producer publishes with one key reach the
// subscribers in publication order, across event types; unkeyed events keep
// the producer's order.
#include <array>
#include <catch2/catch.hpp>
#include <random>
#include <sluice/sluice.hpp>
#include <thread>
#include <vector>

#include "support.hpp"

namespace {
constexpr int producers = 4;
constexpr int keys = 64;

struct stamp {
  int producer;
  int key;
  int n;  // per (producer, key), from 1
};
struct order_placed {
  stamp s;
};
struct order_paid {
  stamp s;
  double amount;
};
struct order_shipped {
  stamp s;
  char carrier[24];
};

struct checker {
  // Touched only by the thread draining the key's lane (lane lock gives the
  // happens-before between successive drainers).
  std::array<std::array<int, keys>, producers> last{};
  std::atomic<long> violations{0};
  std::atomic<long> seen{0};
  void see(const stamp& s) {
    int& l = last[static_cast<std::size_t>(s.producer)][static_cast<std::size_t>(s.key)];
    if (s.n != l + 1) ++violations;
    l = s.n;
    ++seen;
  }
};
}  // namespace

TEST_CASE("per-key order across types: 4 producers, 2 workers, random keys", "[ordering]") {
  test::watchdog wd(std::chrono::seconds(90), "ordering");
  sluice::bus bus{sluice::bus_options{}.with_lanes(8).with_lane_capacity(256)};
  checker c;
  auto s1 = bus.subscribe<order_placed>([&](const order_placed& e) { c.see(e.s); });
  auto s2 = bus.subscribe<order_paid>([&](const order_paid& e) { c.see(e.s); });
  auto s3 = bus.subscribe<order_shipped>([&](const order_shipped& e) { c.see(e.s); });
  REQUIRE(bus.run(2));

  constexpr int per_producer = 20000;
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&bus, p] {
      auto prod = bus.make_producer();
      std::mt19937 rng(static_cast<unsigned>(p) * 7919u + 1u);
      std::array<int, keys> next{};
      for (int i = 0; i < per_producer; ++i) {
        const int k = static_cast<int>(rng() % keys);
        const stamp s{p, k, ++next[static_cast<std::size_t>(k)]};
        const auto key = static_cast<sluice::key_type>(k);
        switch (rng() % 3) {
          case 0:
            prod.publish(order_placed{s}, key);
            break;
          case 1:
            prod.publish(order_paid{s, 1.5}, key);
            break;
          default:
            prod.publish(order_shipped{s, "post"}, key);
            break;
        }
        if (rng() % 512 == 0) std::this_thread::yield();
      }
    });
  }
  for (auto& t : threads) t.join();
  REQUIRE(bus.stop(sluice::stop_mode::drain));
  CHECK(c.violations.load() == 0);
  CHECK(c.seen.load() == producers * per_producer);
  const auto total = bus.stats<order_placed>().delivered + bus.stats<order_paid>().delivered +
                     bus.stats<order_shipped>().delivered;
  CHECK(total == static_cast<std::uint64_t>(producers * per_producer));
}

TEST_CASE("unkeyed events keep each producer's order", "[ordering]") {
  test::watchdog wd(std::chrono::seconds(60), "unkeyed ordering");
  sluice::bus bus{sluice::bus_options{}.with_lanes(3).with_lane_capacity(128)};
  std::array<int, producers> last{};
  std::atomic<long> violations{0};
  auto sub = bus.subscribe<order_placed>([&](const order_placed& e) {
    int& l = last[static_cast<std::size_t>(e.s.producer)];
    if (e.s.n != l + 1) ++violations;
    l = e.s.n;
  });
  REQUIRE(bus.run(2));
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p)
    threads.emplace_back([&bus, p] {
      auto prod = bus.make_producer();
      for (int i = 1; i <= 20000; ++i) prod.publish(order_placed{{p, 0, i}});
    });
  for (auto& t : threads) t.join();
  bus.stop();
  CHECK(violations.load() == 0);
  for (int v : last) CHECK(v == 20000);
}

TEST_CASE("a checker with a planted reordering finds it (positive control)", "[ordering]") {
  checker c;
  c.see({0, 1, 1});
  c.see({0, 1, 3});
  CHECK(c.violations.load() == 1);
}
