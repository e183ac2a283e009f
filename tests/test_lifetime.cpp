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

// Runs of one type: a drainer looks the type up once per run and a reader
// trusts the subscriber array until a close is counted. A reset in the middle
// of a run must still take effect from the next call on.
TEST_CASE("a reset during a run of one type stops the handler from the next call",
          "[lifetime][runs]") {
  sluice::bus bus{sluice::bus_options{}.with_lanes(1)};
  std::vector<int> second_saw;
  sluice::subscription second;
  auto first = bus.subscribe<job>([&](const job& p) {
    if (p.n == 5) second.reset();
  });
  second = bus.subscribe<job>([&](const job& p) { second_saw.push_back(p.n); });
  auto prod = bus.make_producer();
  for (int i = 1; i <= 10; ++i) REQUIRE(prod.publish(job{i}) == sluice::publish_result::ok);
  CHECK(bus.poll() == 10);
  CHECK(second_saw == std::vector<int>{1, 2, 3, 4});
  CHECK_FALSE(second.active());
}

TEST_CASE("runs of mixed types, with and without stages, reach their own handlers in order",
          "[lifetime][runs]") {
  struct staged {
    int n;
  };
  sluice::bus bus{sluice::bus_options{}.with_lanes(1)};
  bus.stages<staged>().filter([](const staged& s) { return s.n % 3 != 0; });
  std::vector<int> jobs, stageds;
  auto a = bus.subscribe<job>([&](const job& p) { jobs.push_back(p.n); });
  auto b = bus.subscribe<staged>([&](const staged& s) { stageds.push_back(s.n); });
  auto prod = bus.make_producer();
  std::vector<int> want_jobs, want_staged;
  std::uint64_t want_filtered = 0;
  std::mt19937 rng(7);
  for (int i = 0; i < 400; ++i) {
    // Runs of random length of each type.
    const int len = static_cast<int>(rng() % 5) + 1;
    const bool as_job = (rng() & 1) != 0;
    for (int k = 0; k < len; ++k, ++i) {
      if (as_job) {
        REQUIRE(prod.publish(job{i}) == sluice::publish_result::ok);
        want_jobs.push_back(i);
      } else {
        REQUIRE(prod.publish(staged{i}) == sluice::publish_result::ok);
        if (i % 3 != 0) {
          want_staged.push_back(i);
        } else {
          ++want_filtered;
        }
      }
    }
  }
  bus.poll();
  CHECK(jobs == want_jobs);
  CHECK(stageds == want_staged);
  CHECK(bus.stats<staged>().filtered == want_filtered);
  CHECK(bus.stats<staged>().delivered == want_staged.size());
}
