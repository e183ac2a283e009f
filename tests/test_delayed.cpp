// Delayed delivery (publish_after): never before its time, in the order of
// due times, by polling and by workers (parked ones wake by themselves),
// counted like every other event, waited for by stop(drain) and wait_idle,
// discarded by stop(discard), refused when the timing wheel is full.
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <random>
#include <sluice/sluice.hpp>
#include <thread>
#include <vector>

#include "support.hpp"

namespace {
using sluice::publish_result;
using namespace std::chrono_literals;

struct tick {
  int n;
  std::int64_t due_ns;  // steady clock: when it may be delivered at the earliest
};

tick make_tick(int n, std::chrono::nanoseconds delay) {
  return tick{n, test::steady_ns() + delay.count()};
}

}  // namespace

TEST_CASE("publish_after delivers no earlier than its delay, in the order of due times",
          "[delayed]") {
  test::watchdog dog(60s);
  sluice::bus bus{sluice::bus_options{}.with_lanes(2)};
  std::vector<int> order;
  std::vector<std::int64_t> late_by;
  auto sub = bus.subscribe([&](const tick& t) {
    late_by.push_back(test::steady_ns() - t.due_ns);
    order.push_back(t.n);
  });
  auto p = bus.make_producer();
  // Same key: one lane, so the order seen is the order of due times.
  REQUIRE(p.publish_after(30ms, make_tick(3, 30ms), 7) == publish_result::ok);
  REQUIRE(p.publish_after(10ms, make_tick(1, 10ms), 7) == publish_result::ok);
  REQUIRE(p.publish_after(20ms, make_tick(2, 20ms), 7) == publish_result::ok);
  REQUIRE(p.publish_after(1h, make_tick(9, 1h), 7) == publish_result::ok);
  CHECK(bus.delayed() == 4);
  CHECK(bus.queued() == 4);
  CHECK(bus.lane(bus.lane_of(7)).delayed == 4);
  CHECK(bus.lane(bus.lane_of(7)).depth == 0);  // they take no place in the queue
  REQUIRE(test::poll_until(bus, [&] { return order.size() == 3; }));
  CHECK(order == std::vector<int>{1, 2, 3});
  for (std::int64_t late : late_by) CHECK(late >= 0);
  CHECK(bus.delayed() == 1);  // the hour-long one waits
  bus.poll();
  CHECK(order.size() == 3);
  REQUIRE(bus.stop(sluice::stop_mode::discard));
  const sluice::type_stats st = bus.stats<tick>();
  CHECK(st.published == 4);
  CHECK(st.delivered == 3);
  CHECK(st.discarded == 1);
  CHECK(st.balanced());
  CHECK(bus.delayed() == 0);
  CHECK(bus.queued() == 0);
}

TEST_CASE("publish_after with a zero or negative delay is delivered by the next drain",
          "[delayed]") {
  sluice::bus bus;
  int got = 0;
  auto sub = bus.subscribe([&](const tick&) { ++got; });
  REQUIRE(bus.publish_after(0ms, tick{1, 0}) == publish_result::ok);
  REQUIRE(bus.publish_after(-5s, tick{2, 0}) == publish_result::ok);
  CHECK(bus.poll() == 2);
  CHECK(got == 2);
}

TEST_CASE("a delayed event takes its turn with the lane's queued events", "[delayed]") {
  test::watchdog dog(60s);
  sluice::bus bus{sluice::bus_options{}.with_lanes(1)};
  std::vector<int> order;
  auto sub = bus.subscribe([&](const tick& t) { order.push_back(t.n); });
  auto p = bus.make_producer();
  REQUIRE(p.publish_after(5ms, tick{100, 0}) == publish_result::ok);
  std::this_thread::sleep_for(10ms);  // due now (a lower bound: nothing depends on more)
  REQUIRE(p.publish(tick{1, 0}) == publish_result::ok);
  REQUIRE(bus.poll() == 2);
  // The delayed event fell due before the other was published: it comes first.
  CHECK(order == std::vector<int>{100, 1});
}

TEST_CASE("workers deliver delayed events, and a parked worker wakes for them by itself",
          "[delayed]") {
  test::watchdog dog(60s);
  // No idle spin: the worker parks at once, and only a timed park wakes it.
  sluice::bus bus{sluice::bus_options{}.with_lanes(1)};
  std::atomic<int> got{0};
  std::atomic<std::int64_t> worst{0};
  auto sub = bus.subscribe([&](const tick& t) {
    const std::int64_t late = test::steady_ns() - t.due_ns;
    if (late < 0) worst.store(late);
    got.fetch_add(1);
  });
  REQUIRE(bus.run(1, 0us));
  REQUIRE(test::wait_until([&] { return bus.parked_workers() == 1; }));
  auto p = bus.make_producer();
  REQUIRE(p.publish_after(20ms, make_tick(1, 20ms)) == publish_result::ok);
  // Scheduled later than the first: it lowers no due time, so nobody wakes
  // the worker for it; it must wake after delivering the first.
  REQUIRE(p.publish_after(40ms, make_tick(2, 40ms)) == publish_result::ok);
  REQUIRE(test::wait_until([&] { return got.load() == 2; }, std::chrono::milliseconds(20000)));
  CHECK(worst.load() == 0);
  REQUIRE(bus.stop());
  CHECK(bus.stats<tick>().delivered == 2);
}

TEST_CASE("delayed events under several producers and workers: each delivered once, never early",
          "[delayed]") {
  test::watchdog dog(120s);
  sluice::bus bus{sluice::bus_options{}.with_lanes(4).with_delayed_capacity(4096)};
  constexpr int producers = 4;
  constexpr int per_producer = 300;
  std::mutex m;
  std::vector<int> seen(producers * per_producer, 0);
  std::atomic<int> early{0};
  auto sub = bus.subscribe([&](const tick& t) {
    if (test::steady_ns() < t.due_ns) early.fetch_add(1);
    std::lock_guard<std::mutex> lock(m);
    ++seen[static_cast<std::size_t>(t.n)];
  });
  REQUIRE(bus.run(2));
  std::vector<std::thread> threads;
  for (int k = 0; k < producers; ++k) {
    threads.emplace_back([&, k] {
      auto p = bus.make_producer();
      std::mt19937 rng(static_cast<unsigned>(k) * 7919u + 1);
      for (int i = 0; i < per_producer; ++i) {
        const int n = k * per_producer + i;
        const auto delay = std::chrono::microseconds(rng() % 20000);
        const publish_result r = (rng() % 4 == 0)
                                     ? p.publish(tick{n, 0}, rng() % 16)
                                     : p.publish_after(delay, make_tick(n, delay), rng() % 16);
        if (r != publish_result::ok) std::abort();
      }
    });
  }
  for (auto& t : threads) t.join();
  REQUIRE(bus.wait_idle(30s));
  CHECK(bus.delayed() == 0);
  REQUIRE(bus.stop());
  CHECK(early.load() == 0);
  for (int v : seen) CHECK(v == 1);
  const sluice::type_stats st = bus.stats<tick>();
  CHECK(st.published == producers * per_producer);
  CHECK(st.delivered == producers * per_producer);
  CHECK(st.balanced());
}

TEST_CASE("stop(drain) waits for delayed events, stop(discard) discards and destroys them",
          "[delayed]") {
  test::watchdog dog(60s);
  SECTION("drain") {
    sluice::bus bus;
    std::atomic<int> got{0};
    std::atomic<std::int64_t> late{-1};
    auto sub = bus.subscribe([&](const tick& t) {
      late.store(test::steady_ns() - t.due_ns);
      got.fetch_add(1);
    });
    REQUIRE(bus.run(2));
    REQUIRE(bus.publish_after(50ms, make_tick(1, 50ms)) == publish_result::ok);
    REQUIRE(bus.stop(sluice::stop_mode::drain));
    CHECK(got.load() == 1);
    CHECK(late.load() >= 0);
    CHECK(bus.stats<tick>().delivered == 1);
    CHECK(bus.stats<tick>().balanced());
  }
  SECTION("discard") {
    const long live = test::counted::live.load();
    {
      sluice::bus bus;
      int got = 0;
      auto sub = bus.subscribe([&](const test::counted&) { ++got; });
      for (int i = 0; i < 5; ++i)
        REQUIRE(bus.publish_after(1h, test::counted(i), static_cast<sluice::key_type>(i)) ==
                publish_result::ok);
      CHECK(test::counted::live.load() == live + 5);
      REQUIRE(bus.stop(sluice::stop_mode::discard));
      CHECK(got == 0);
      const sluice::type_stats st = bus.stats<test::counted>();
      CHECK(st.published == 5);
      CHECK(st.discarded == 5);
      CHECK(st.balanced());
      CHECK(test::counted::live.load() == live);
    }
    CHECK(test::counted::live.load() == live);
  }
}

TEST_CASE("publish_after refuses when the timing wheel is full, turned off, or the bus stopped",
          "[delayed]") {
  SECTION("full") {
    sluice::bus bus{sluice::bus_options{}.with_lanes(1).with_delayed_capacity(3)};
    auto p = bus.make_producer();
    for (int i = 0; i < 3; ++i) REQUIRE(p.publish_after(1h, tick{i, 0}) == publish_result::ok);
    CHECK(p.publish_after(1h, tick{3, 0}) == publish_result::full);
    CHECK(bus.publish_after(1ms, tick{4, 0}) == publish_result::full);
    // The queue is not the wheel: an immediate publish still goes in.
    CHECK(p.publish(tick{5, 0}) == publish_result::ok);
    REQUIRE(bus.stop(sluice::stop_mode::discard));
    const sluice::type_stats st = bus.stats<tick>();
    CHECK(st.rejected == 2);
    CHECK(st.published == 4);
    CHECK(st.balanced());
  }
  SECTION("turned off") {
    sluice::bus bus{sluice::bus_options{}.with_delayed_capacity(0)};
    CHECK(bus.publish_after(1ms, tick{0, 0}) == publish_result::full);
    CHECK(bus.stats<tick>().rejected == 1);
    CHECK(bus.stats<tick>().published == 0);
  }
  SECTION("stopped") {
    sluice::bus bus;
    REQUIRE(bus.stop());
    CHECK(bus.publish_after(1ms, tick{0, 0}) == publish_result::stopped);
    CHECK(bus.stats<tick>().rejected == 1);
  }
  SECTION("an impossible capacity is refused with the options") {
    sluice::bus_options o;
    o.delayed_capacity = (std::size_t{1} << 30) + 1;
    REQUIRE(o.validate() != nullptr);
    CHECK_THROWS_AS(sluice::bus{o}, std::invalid_argument);
  }
}

TEST_CASE("a handler that re-arms itself with publish_after: wait_idle waits for every round",
          "[delayed][reentrancy]") {
  test::watchdog dog(60s);
  constexpr int rounds = 20;
  for (int workers : {0, 2}) {
    sluice::bus bus;
    std::atomic<int> got{0};
    sluice::subscription sub = bus.subscribe([&](const tick& t) {
      got.fetch_add(1);
      if (t.n + 1 < rounds) {
        // From inside the handler: the event re-arms the timer.
        if (bus.publish_after(1ms, tick{t.n + 1, 0}) != publish_result::ok) std::abort();
      }
    });
    if (workers != 0) REQUIRE(bus.run(static_cast<std::size_t>(workers)));
    REQUIRE(bus.publish_after(1ms, tick{0, 0}) == publish_result::ok);
    REQUIRE(bus.wait_idle(30s));
    CHECK(got.load() == rounds);
    REQUIRE(bus.stop());
    CHECK(bus.stats<tick>().published == rounds);
    CHECK(bus.stats<tick>().balanced());
  }
}

TEST_CASE("a key extractor keys delayed events too", "[delayed]") {
  sluice::bus bus{sluice::bus_options{}.with_lanes(8)};
  bus.key<tick>([](const tick& t) { return static_cast<sluice::key_type>(t.n); });
  std::vector<sluice::metadata> meta;
  auto sub = bus.subscribe([&](sluice::event_view<tick> v) { meta.push_back(v.meta()); });
  REQUIRE(bus.publish_after(0ms, tick{42, 0}) == publish_result::ok);
  CHECK(bus.lane(bus.lane_of(42)).delayed == 1);
  REQUIRE(bus.poll() == 1);
  REQUIRE(meta.size() == 1);
  CHECK(meta[0].has_key);
  CHECK(meta[0].key == 42);
}
