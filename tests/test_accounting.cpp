// Contract 2, accounting: after stop(drain) every accepted event is exactly
// one of delivered, filtered, dropped, unrouted, dead-lettered, discarded.
#include <atomic>
#include <catch2/catch.hpp>
#include <random>
#include <sluice/sluice.hpp>
#include <stdexcept>
#include <thread>
#include <vector>

#include "support.hpp"

namespace {
struct alpha {
  int n;
};
struct beta {
  int n;
  char pad[40];
};
struct gamma_ev {  // never subscribed: unrouted
  int n;
};

struct results {
  std::atomic<long> ok{0}, dropped{0}, full{0}, stopped{0};
  void add(sluice::publish_result r) {
    switch (r) {
      case sluice::publish_result::ok:
        ++ok;
        break;
      case sluice::publish_result::dropped:
        ++dropped;
        break;
      case sluice::publish_result::full:
        ++full;
        break;
      case sluice::publish_result::stopped:
        ++stopped;
        break;
    }
  }
};
}  // namespace

TEST_CASE("accounting holds under load with random drops", "[accounting]") {
  test::watchdog wd(std::chrono::seconds(90), "accounting");
  sluice::bus bus{sluice::bus_options{}.with_lanes(4).with_lane_capacity(64).with_policy(
      sluice::full_policy::drop_newest)};
  std::atomic<long> alpha_calls{0}, beta_calls{0};
  auto sa = bus.subscribe<alpha>([&](const alpha& a) {
    ++alpha_calls;
    if (a.n % 97 == 0) throw std::runtime_error("failing alpha");  // still delivered
  });
  auto sb = bus.subscribe<beta>([&](const beta&) {
    ++beta_calls;
    if (beta_calls % 1000 == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
  });
  results ra, rb, rg;
  {
    // A burst before the workers start: the lanes fill and the policy drops.
    auto burst = bus.make_producer();
    for (int i = 0; i < 1000; ++i)
      rg.add(burst.publish(gamma_ev{i}, static_cast<sluice::key_type>(i)));
  }
  REQUIRE(bus.run(2));
  std::vector<std::thread> threads;
  for (int p = 0; p < 4; ++p) {
    threads.emplace_back([&, p] {
      auto prod = bus.make_producer();
      std::mt19937 rng(static_cast<unsigned>(p) + 11u);
      for (int i = 0; i < 30000; ++i) {
        const auto key = static_cast<sluice::key_type>(rng() % 16);
        switch (rng() % 3) {
          case 0:
            ra.add(prod.publish(alpha{i}, key));
            break;
          case 1:
            rb.add(prod.publish(beta{i, {}}, key));
            break;
          default:
            rg.add(prod.publish(gamma_ev{i}));
            break;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  REQUIRE(bus.stop(sluice::stop_mode::drain));

  const auto a = bus.stats<alpha>();
  const auto b = bus.stats<beta>();
  const auto g = bus.stats<gamma_ev>();
  CHECK(a.balanced());
  CHECK(b.balanced());
  CHECK(g.balanced());
  CHECK(a.published == static_cast<std::uint64_t>(ra.ok + ra.dropped));
  CHECK(a.dropped == static_cast<std::uint64_t>(ra.dropped.load()));
  CHECK(a.delivered == static_cast<std::uint64_t>(alpha_calls.load()));
  CHECK(a.failed > 0);
  CHECK(b.delivered == static_cast<std::uint64_t>(beta_calls.load()));
  CHECK(g.unrouted == static_cast<std::uint64_t>(rg.ok.load()));
  CHECK(g.delivered == 0);
  // the burst overflowed the lanes (4 x 64 places for 1000 events)
  CHECK(g.dropped >= 1000 - 4 * 64);
  CHECK(g.dropped == static_cast<std::uint64_t>(rg.dropped.load()));
  CHECK(ra.full == 0);
  CHECK(ra.stopped == 0);
}

TEST_CASE("stop(drain) delivers everything accepted, with and without workers", "[accounting]") {
  test::watchdog wd(std::chrono::seconds(60), "drain");
  for (int workers : {0, 1, 2}) {
    sluice::bus bus{sluice::bus_options{}.with_lanes(2).with_lane_capacity(100000)};
    std::atomic<long> calls{0};
    auto sub = bus.subscribe<alpha>([&](const alpha&) { ++calls; });
    auto p = bus.make_producer();
    for (int i = 0; i < 50000; ++i) REQUIRE(p.publish(alpha{i}) == sluice::publish_result::ok);
    if (workers != 0) REQUIRE(bus.run(static_cast<std::size_t>(workers)));
    REQUIRE(bus.stop(sluice::stop_mode::drain));
    CHECK(calls.load() == 50000);
    CHECK(bus.queued() == 0);
    const auto st = bus.stats<alpha>();
    CHECK(st.delivered == 50000);
    CHECK(st.balanced());
  }
}

TEST_CASE("stop(discard) counts what it discarded", "[accounting]") {
  sluice::bus bus{sluice::bus_options{}.with_lanes(3)};
  std::atomic<long> calls{0};
  auto sub = bus.subscribe<alpha>([&](const alpha&) { ++calls; });
  auto p = bus.make_producer();
  for (int i = 0; i < 3000; ++i) p.publish(alpha{i}, static_cast<sluice::key_type>(i));
  bus.poll(1000);
  REQUIRE(bus.stop(sluice::stop_mode::discard));
  const auto st = bus.stats<alpha>();
  CHECK(calls.load() == 1000);
  CHECK(st.delivered == 1000);
  CHECK(st.discarded == 2000);
  CHECK(st.balanced());
}

TEST_CASE("stop(discard) with running workers still balances", "[accounting]") {
  test::watchdog wd(std::chrono::seconds(60), "discard with workers");
  sluice::bus bus{sluice::bus_options{}.with_lanes(2).with_lane_capacity(1 << 16)};
  std::atomic<long> calls{0};
  auto sub = bus.subscribe<alpha>([&calls](const alpha&) {
    ++calls;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  auto p = bus.make_producer();
  for (int i = 0; i < 2000; ++i) p.publish(alpha{i}, static_cast<sluice::key_type>(i));
  REQUIRE(bus.run(2));
  // Stop once delivery has begun: the workers need about a second for all,
  // stop waits for at most one batch per lane (64 ms).
  REQUIRE(test::wait_until([&] { return calls.load() >= 10; }));
  REQUIRE(bus.stop(sluice::stop_mode::discard));
  const auto st = bus.stats<alpha>();
  CHECK(st.discarded > 0);
  CHECK(st.delivered > 0);
  CHECK(st.balanced());
}

TEST_CASE("no worker thread survives stop or the bus", "[accounting]") {
  std::thread([] {}).join();  // sanitizer runtimes start helper threads lazily
  const int before = test::thread_count();
  REQUIRE(before > 0);
  {
    sluice::bus bus;
    REQUIRE(bus.run(3));
    CHECK(test::thread_count() == before + 3);
    bus.stop();
    CHECK(test::thread_count() == before);
  }
  {
    sluice::bus bus;
    REQUIRE(bus.run(2));
    CHECK(test::thread_count() == before + 2);
  }  // the destructor stops and joins
  CHECK(test::thread_count() == before);
}

TEST_CASE("the equation detects an unbalanced count (positive control)", "[accounting]") {
  sluice::type_stats st;
  st.published = 10;
  st.delivered = 9;
  CHECK_FALSE(st.balanced());
  st.unrouted = 1;
  CHECK(st.balanced());
}

TEST_CASE("stop waits for a batch another thread is still delivering", "[accounting]") {
  test::watchdog wd(std::chrono::seconds(30), "stop during a poll");
  sluice::bus bus{sluice::bus_options{}.with_lanes(1)};
  std::atomic<bool> entered{false}, finished{false};
  auto sub = bus.subscribe<alpha>([&](const alpha&) {
    entered = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    finished = true;
  });
  bus.publish(alpha{1});
  std::thread poller([&] { bus.poll(); });
  REQUIRE(test::wait_until([&] { return entered.load(); }));
  REQUIRE(bus.stop());
  // The event was taken off the lane, but stop() waited for its delivery.
  CHECK(finished.load());
  const auto st = bus.stats<alpha>();
  CHECK(st.delivered == 1);
  CHECK(st.balanced());
  poller.join();
}
