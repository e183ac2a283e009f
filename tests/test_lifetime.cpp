// Contract 3, lifetime: when reset() returns the handler is not running and
// never runs again; from inside the handler reset() does not block.
#include <atomic>
#include <catch2/catch.hpp>
#include <memory>
#include <random>
#include <sluice/sluice.hpp>
#include <thread>
#include <vector>

#include "support.hpp"

namespace {
struct job {
  int n;
};
struct resource {
  std::atomic<int> uses{0};
  int payload = 12345;
};
}  // namespace

TEST_CASE("reset waits for a handler running on another thread", "[lifetime]") {
  test::watchdog wd(std::chrono::seconds(60), "reset waits");
  sluice::bus bus;
  std::atomic<bool> entered{false}, finished{false};
  auto res = std::make_unique<resource>();
  resource* raw = res.get();
  auto sub = bus.subscribe<job>([&entered, &finished, raw](const job&) {
    entered = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    raw->uses += raw->payload == 12345 ? 1 : 1000;  // use after free would show under ASan
    finished = true;
  });
  REQUIRE(bus.run(1));
  bus.publish(job{1});
  REQUIRE(test::wait_until([&] { return entered.load(); }));
  sub.reset();
  CHECK(finished.load());  // reset returned only after the handler did
  res.reset();             // now safe to destroy what the handler captured
  bus.publish(job{2});
  bus.stop();
  CHECK(bus.stats<job>().unrouted == 1);
}

TEST_CASE("reset from inside the handler does not block and stops later calls", "[lifetime]") {
  test::watchdog wd(std::chrono::seconds(30), "self reset");
  for (int workers : {0, 2}) {
    sluice::bus bus;
    std::atomic<int> calls{0};
    sluice::subscription sub;
    sub = bus.subscribe<job>([&](const job&) {
      ++calls;
      sub.reset();
    });
    if (workers != 0) REQUIRE(bus.run(static_cast<std::size_t>(workers)));
    auto p = bus.make_producer();
    for (int i = 0; i < 100; ++i) p.publish(job{i}, 1);  // one lane: sequential
    bus.stop();
    CHECK(calls.load() == 1);
    CHECK(bus.stats<job>().unrouted == 99);
  }
  // and in immediate dispatch
  sluice::bus bus;
  int calls = 0;
  sluice::subscription sub;
  sub = bus.subscribe<job>([&](const job&) {
    ++calls;
    sub.reset();
  });
  bus.dispatch(job{1});
  bus.dispatch(job{2});
  CHECK(calls == 1);
}

TEST_CASE("a subscription may outlive its bus", "[lifetime]") {
  sluice::subscription sub;
  auto alive = std::make_shared<int>(1);
  {
    sluice::bus bus;
    sub = bus.subscribe<job>([keep = alive](const job&) {});
    CHECK(alive.use_count() == 2);
  }
  // the bus destroyed the handler (and what it captured)
  CHECK(alive.use_count() == 1);
  CHECK_FALSE(sub.active());
  sub.reset();  // harmless
}

TEST_CASE("unsubscribe under load never runs a handler after reset", "[lifetime]") {
  test::watchdog wd(std::chrono::seconds(90), "unsubscribe under load");
  sluice::bus bus{sluice::bus_options{}.with_lanes(4).with_lane_capacity(1024).with_policy(
      sluice::full_policy::drop_newest)};
  REQUIRE(bus.run(2));
  std::atomic<bool> stop{false};
  std::atomic<long> late_calls{0};
  std::thread producer([&] {
    auto p = bus.make_producer();
    std::uint64_t i = 0;
    while (!stop.load()) (void)p.publish(job{1}, ++i);
  });
  std::mt19937 rng(7);
  for (int round = 0; round < 300; ++round) {
    auto res = std::make_unique<resource>();
    auto closed = std::make_shared<std::atomic<bool>>(false);
    resource* raw = res.get();
    auto sub = bus.subscribe<job>([raw, closed, &late_calls](const job&) {
      if (closed->load()) ++late_calls;
      raw->uses.fetch_add(1, std::memory_order_relaxed);
    });
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 500));
    sub.reset();
    closed->store(true);
    res.reset();  // ASan reports any later call as use-after-free
  }
  stop = true;
  producer.join();
  bus.stop();
  CHECK(late_calls.load() == 0);
  CHECK(bus.stats<job>().balanced());
}

TEST_CASE("destroying the bus destroys handlers it still holds", "[lifetime]") {
  auto alive = std::make_shared<int>(1);
  sluice::subscription sub;  // outlives the bus: the bus holds the handler to the end
  {
    sluice::bus bus;
    sub = bus.subscribe<job>([keep = alive](const job&) {});
    bus.run(1);
    bus.publish(job{1});
    CHECK(alive.use_count() == 2);
  }
  CHECK(alive.use_count() == 1);
  CHECK_FALSE(sub.active());
}

TEST_CASE("a handler may own subscriptions of its own bus", "[lifetime]") {
  test::watchdog wd(std::chrono::seconds(30), "handler owning subscriptions");
  {
    // Resetting X destroys X's handler, which resets Y (same type): the
    // handler object is destroyed outside the registry lock.
    sluice::bus bus;
    int y_calls = 0;
    auto y = std::make_shared<sluice::subscription>(
        bus.subscribe<job>([&y_calls](const job&) { ++y_calls; }));
    auto x = bus.subscribe<job>([owned = y](const job&) {});
    y.reset();
    bus.dispatch(job{1});
    CHECK(y_calls == 1);
    x.reset();  // destroys the last owner of Y's subscription
    bus.dispatch(job{2});
    CHECK(y_calls == 1);
  }
  {
    // The one-shot pattern: a handler that holds its own subscription and
    // never fires, then the bus is destroyed.
    auto self = std::make_shared<sluice::subscription>();
    {
      sluice::bus bus;
      *self = bus.subscribe<job>([self](const job&) {});
      // the handler keeps `self` alive; the bus destroys the handler
    }
    CHECK(self.use_count() == 1);
  }
}
