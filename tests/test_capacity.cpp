// Contracts 5 and 6: exact capacity, and each full-queue policy.
#include <atomic>
#include <catch2/catch.hpp>
#include <memory>
#include <random>
#include <sluice/sluice.hpp>
#include <thread>
#include <vector>

#include "support.hpp"

namespace {
struct item {
  int n;
};
using sluice::full_policy;
using sluice::publish_result;
}  // namespace

TEST_CASE("capacity is exact per lane", "[capacity]") {
  for (std::size_t cap : {1u, 7u, 64u, 100u, 1000u}) {
    INFO("capacity " << cap);
    sluice::bus bus{sluice::bus_options{}.with_lanes(1).with_lane_capacity(cap).with_policy(
        full_policy::reject)};
    auto p = bus.make_producer();
    for (std::size_t i = 0; i < cap; ++i) REQUIRE(p.publish(item{1}) == publish_result::ok);
    CHECK(p.publish(item{1}) == publish_result::full);
    CHECK(p.try_publish(item{1}) == publish_result::full);
    CHECK(bus.lane(0).depth == cap);
    CHECK(bus.lane(0).high_water == cap);
    CHECK(bus.lane(0).capacity == cap);
    CHECK(bus.poll(1) == 1);
    CHECK(p.publish(item{1}) == publish_result::ok);
    CHECK(p.publish(item{1}) == publish_result::full);
  }
  sluice::bus bus{sluice::bus_options{}.with_lanes(3).with_lane_capacity(10)};
  CHECK(bus.capacity() == 30);
}

TEST_CASE("capacity holds with many producers racing", "[capacity]") {
  test::watchdog wd(std::chrono::seconds(60), "racing capacity");
  constexpr std::size_t cap = 500;
  sluice::bus bus{
      sluice::bus_options{}.with_lanes(1).with_lane_capacity(cap).with_policy(full_policy::reject)};
  std::atomic<long> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t)
    threads.emplace_back([&] {
      auto p = bus.make_producer();
      for (int i = 0; i < 400; ++i)
        if (p.publish(item{i}) == publish_result::ok) ++ok;
    });
  for (auto& t : threads) t.join();
  CHECK(ok.load() == static_cast<long>(cap));
  CHECK(bus.lane(0).depth == cap);
  CHECK(bus.lane(0).high_water == cap);
  CHECK(bus.stats<item>().rejected == 6 * 400 - cap);
}

TEST_CASE("drop_newest counts and reports drops", "[capacity]") {
  sluice::bus bus{sluice::bus_options{}.with_lanes(1).with_lane_capacity(100).with_policy(
      full_policy::drop_newest)};
  std::atomic<int> calls{0};
  auto sub = bus.subscribe<item>([&](const item&) { ++calls; });
  auto p = bus.make_producer();
  int ok = 0, dropped = 0;
  for (int i = 0; i < 150; ++i) {
    const auto r = p.publish(item{i});
    ok += r == publish_result::ok;
    dropped += r == publish_result::dropped;
  }
  CHECK(ok == 100);
  CHECK(dropped == 50);
  bus.stop();
  const auto st = bus.stats<item>();
  CHECK(st.published == 150);
  CHECK(st.dropped == 50);
  CHECK(st.delivered == 100);
  CHECK(calls.load() == 100);
  CHECK(st.balanced());
}

TEST_CASE("try_publish never blocks, whatever the policy", "[capacity]") {
  test::watchdog wd(std::chrono::seconds(20), "try_publish");
  sluice::bus bus{
      sluice::bus_options{}.with_lanes(1).with_lane_capacity(8).with_policy(full_policy::block)};
  auto p = bus.make_producer();
  for (int i = 0; i < 8; ++i) REQUIRE(p.try_publish(item{i}) == publish_result::ok);
  for (int i = 0; i < 1000; ++i) REQUIRE(p.try_publish(item{i}) == publish_result::full);
  CHECK(bus.try_publish(item{1}) == publish_result::full);
  bus.stop(sluice::stop_mode::discard);
}

TEST_CASE("block waits for room and wakes when a drainer frees it", "[capacity]") {
  test::watchdog wd(std::chrono::seconds(30), "block");
  sluice::bus bus{
      sluice::bus_options{}.with_lanes(1).with_lane_capacity(4).with_policy(full_policy::block)};
  std::atomic<int> published{0}, not_ok{0};
  bus.poll();  // this thread drains the bus, so a blocked publish waits for it (no_drainer)
  std::thread t([&] {
    auto p = bus.make_producer();
    for (int i = 0; i < 10; ++i) {
      if (p.publish(item{i}) != publish_result::ok) ++not_ok;
      ++published;
    }
  });
  REQUIRE(test::wait_until([&] { return published.load() == 4; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(published.load() == 4);  // blocked on the full lane
  while (published.load() < 10) {
    bus.poll();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  t.join();
  bus.poll();
  CHECK(not_ok.load() == 0);
  CHECK(bus.stats<item>().published == 10);
}

TEST_CASE("a blocked producer is released by stop", "[capacity]") {
  test::watchdog wd(std::chrono::seconds(30), "block then stop");
  sluice::bus bus{sluice::bus_options{}.with_lanes(1).with_lane_capacity(2)};
  std::atomic<int> stopped{0};
  std::atomic<int> ok{0};
  bus.poll();  // this thread drains the bus, so a blocked publish waits for it (no_drainer)
  std::thread t([&] {
    auto p = bus.make_producer();
    for (int i = 0; i < 5; ++i) {
      const auto r = p.publish(item{i});
      if (r == publish_result::ok) ++ok;
      if (r == publish_result::stopped) ++stopped;
    }
  });
  REQUIRE(test::wait_until([&] { return ok.load() == 2; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  bus.stop(sluice::stop_mode::discard);
  t.join();
  CHECK(ok.load() == 2);
  CHECK(stopped.load() == 3);
  const auto st = bus.stats<item>();
  CHECK(st.discarded == 2);
  CHECK(st.balanced());
}

TEST_CASE("a producer may override the bus policy", "[capacity]") {
  sluice::bus bus{sluice::bus_options{}.with_lanes(1).with_lane_capacity(2)};
  auto p = bus.make_producer(sluice::producer_options::with_policy(full_policy::reject));
  CHECK(p.publish(item{1}) == publish_result::ok);
  CHECK(p.publish(item{2}) == publish_result::ok);
  CHECK(p.publish(item{3}) == publish_result::full);
  bus.stop(sluice::stop_mode::discard);
}

TEST_CASE("publish_bulk fills to capacity and accounts for the rest", "[capacity]") {
  std::vector<item> batch(250, item{7});
  {
    sluice::bus bus{sluice::bus_options{}.with_lanes(1).with_lane_capacity(100).with_policy(
        full_policy::reject)};
    auto p = bus.make_producer();
    CHECK(p.publish_bulk(batch.begin(), batch.end()) == 100);
    const auto st = bus.stats<item>();
    CHECK(st.published == 100);
    CHECK(st.rejected == 150);
    bus.stop(sluice::stop_mode::discard);
  }
  {
    sluice::bus bus{sluice::bus_options{}.with_lanes(1).with_lane_capacity(100).with_policy(
        full_policy::drop_newest)};
    std::vector<int> seen;
    auto sub = bus.subscribe<item>(
        [&](sluice::event_view<item> v) { seen.push_back(static_cast<int>(v.meta().sequence)); });
    auto p = bus.make_producer();
    CHECK(p.publish_bulk(batch.begin(), batch.end(), 5) == 100);
    bus.stop();
    const auto st = bus.stats<item>();
    CHECK(st.published == 250);
    CHECK(st.dropped == 150);
    CHECK(st.balanced());
    REQUIRE(seen.size() == 100);
    for (std::size_t i = 0; i < seen.size(); ++i) CHECK(seen[i] == static_cast<int>(i) + 1);
  }
  {
    // block: larger than the lane, drained by a worker while it goes
    test::watchdog wd(std::chrono::seconds(30), "bulk block");
    sluice::bus bus{sluice::bus_options{}.with_lanes(1).with_lane_capacity(16)};
    std::atomic<int> calls{0};
    auto sub = bus.subscribe<item>([&](const item&) { ++calls; });
    REQUIRE(bus.run(1));
    auto p = bus.make_producer();
    CHECK(p.publish_bulk(batch.begin(), batch.end()) == 250);
    bus.stop();
    CHECK(calls.load() == 250);
  }
}

// Places reserved in chunks (bus_options::reserve_chunk): a producer takes
// several places at once and publishes into them without touching the lane's
// shared count. "Exact" then means: a lane never holds more than its
// capacity, and a publish is refused only when the events queued plus the
// places other producers hold unused reach it.
TEST_CASE("credit: places another producer holds are the only shortfall, and come back",
          "[capacity][credit]") {
  constexpr std::size_t cap = 256, chunk = 16;
  sluice::bus bus{sluice::bus_options{}
                      .with_lanes(1)
                      .with_lane_capacity(cap)
                      .with_reserve_chunk(chunk)
                      .with_policy(full_policy::reject)};
  std::vector<int> seen;
  auto sub = bus.subscribe<item>([&](const item& i) { seen.push_back(i.n); });
  auto a = std::make_unique<sluice::producer>(bus.make_producer());
  REQUIRE(a->publish(item{-1}) == publish_result::ok);  // a holds chunk - 1 places
  auto b = bus.make_producer();
  std::size_t accepted = 0;
  while (b.publish(item{static_cast<int>(accepted)}) == publish_result::ok) ++accepted;
  CHECK(accepted == cap - chunk);
  CHECK(bus.lane(0).depth == cap - chunk + 1);
  CHECK(bus.lane(0).high_water <= cap);
  // a still publishes into its own places, up to the bound.
  for (std::size_t i = 1; i < chunk; ++i) REQUIRE(a->publish(item{-1}) == publish_result::ok);
  CHECK(a->publish(item{-1}) == publish_result::full);
  CHECK(bus.lane(0).depth == cap);
  // Polling one event frees one place; a producer that goes away gives its
  // unused places back.
  CHECK(bus.poll(1) == 1);
  REQUIRE(a->publish(item{-2}) == publish_result::ok);  // takes the freed place
  CHECK(b.publish(item{-3}) == publish_result::full);
  CHECK(bus.poll(chunk) == chunk);
  REQUIRE(a->publish(item{-4}) == publish_result::ok);  // a new chunk: 15 held again
  const std::size_t depth_before = bus.lane(0).depth;
  a.reset();
  std::size_t more = 0;
  while (b.publish(item{1000}) == publish_result::ok) ++more;
  CHECK(more == cap - depth_before);
  CHECK(bus.lane(0).depth == cap);
  bus.poll();
  CHECK(seen.size() == accepted + chunk + 1 + 1 + more);
  CHECK(bus.stats<item>().delivered == seen.size());
  CHECK(bus.lane(0).depth == 0);
}

TEST_CASE("credit: the automatic chunk keeps small lanes exact per publish", "[capacity][credit]") {
  // 64 places, 8 expected producers: an eighth of the lane is 8 places, one
  // each, so no producer holds credit and two producers share the lane
  // exactly.
  sluice::bus bus{
      sluice::bus_options{}.with_lanes(1).with_lane_capacity(64).with_policy(full_policy::reject)};
  auto a = bus.make_producer();
  auto b = bus.make_producer();
  REQUIRE(a.publish(item{0}) == publish_result::ok);
  std::size_t accepted = 0;
  while (b.publish(item{1}) == publish_result::ok) ++accepted;
  CHECK(accepted == 63);
  bus.stop(sluice::stop_mode::discard);
  CHECK(bus.stats<item>().discarded == 64);
  CHECK(sluice::bus_options{}.with_lane_capacity(64).with_reserve_chunk(65).validate() != nullptr);
}

TEST_CASE("credit: stop() during partly used chunks delivers every accepted event",
          "[capacity][credit][stress]") {
  test::watchdog wd(std::chrono::seconds(120), "credit stop");
  std::mt19937 rng(20261130);
  for (int round = 0; round < 16; ++round) {
    sluice::bus bus{sluice::bus_options{}.with_lanes(2).with_lane_capacity(1024).with_reserve_chunk(
        static_cast<std::size_t>(2 + round % 31))};
    std::atomic<std::uint64_t> delivered{0};
    auto sub = bus.subscribe<item>([&](const item&) { delivered.fetch_add(1); });
    REQUIRE(bus.run(1));
    std::atomic<std::uint64_t> accepted{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> producers;
    for (int t = 0; t < 3; ++t) {
      producers.emplace_back([&, t] {
        auto p = bus.make_producer();
        while (!go.load()) std::this_thread::yield();
        for (int i = 0;; ++i) {
          const publish_result r = (i + t) % 3 == 0
                                       ? p.publish(item{i}, static_cast<std::uint64_t>(i))
                                       : p.publish(item{i});
          if (r == publish_result::ok) accepted.fetch_add(1);
          if (r == publish_result::stopped) break;
        }
      });
    }
    go = true;
    // Let the producers get into their chunks, then stop at a random point.
    while (accepted.load() < 64) std::this_thread::yield();
    const auto spins = static_cast<unsigned>(rng() % 2000);
    for (unsigned i = 0; i < spins; ++i) std::this_thread::yield();
    REQUIRE(bus.stop());
    for (auto& p : producers) p.join();
    INFO("round " << round);
    CHECK(delivered.load() == accepted.load());
    CHECK(bus.stats<item>().delivered == accepted.load());
    CHECK(bus.lane(0).depth + bus.lane(1).depth == 0);
  }
}

TEST_CASE("credit: places a destroyed producer gives back wake a producer waiting for room",
          "[capacity][credit]") {
  test::watchdog wd(std::chrono::seconds(60), "credit returned to a waiting producer");
  constexpr std::size_t cap = 64, chunk = 16;
  sluice::bus bus{
      sluice::bus_options{}.with_lanes(1).with_lane_capacity(cap).with_reserve_chunk(chunk)};
  auto sub = bus.subscribe<item>([](const item&) {});
  // Another thread has polled: a full lane makes a blocking publish wait
  // (somebody may drain), but nobody drains here.
  std::thread([&bus] { (void)bus.poll(); }).join();
  auto a = std::make_unique<sluice::producer>(bus.make_producer());
  REQUIRE(a->publish(item{0}) == publish_result::ok);  // a holds chunk - 1 places
  std::atomic<std::size_t> published{0};
  std::atomic<std::size_t> not_ok{0};
  std::thread b([&] {
    auto p = bus.make_producer();
    for (std::size_t i = 0; i < cap - 1; ++i) {
      if (p.publish(item{static_cast<int>(i)}) == publish_result::ok) {
        published.fetch_add(1);
      } else {
        not_ok.fetch_add(1);
      }
    }
  });
  // b fills what a does not hold, then waits for room.
  while (published.load() < cap - chunk) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // (likely parked by now)
  CHECK(published.load() == cap - chunk);
  a.reset();  // its unused places go back and wake b
  b.join();
  CHECK(not_ok.load() == 0);
  CHECK(published.load() == cap - 1);
  CHECK(bus.lane(0).depth == cap);
  CHECK(bus.poll() == cap);
}

TEST_CASE("lane_of names the lane a key's events are queued in", "[capacity]") {
  sluice::bus bus(sluice::bus_options{}.with_lanes(8).with_lane_capacity(1024));
  std::vector<std::size_t> expected(bus.lane_count(), 0);
  auto p = bus.make_producer();
  for (sluice::key_type k = 0; k < 200; ++k) {
    const std::size_t l = bus.lane_of(k * 7919);
    REQUIRE(l < bus.lane_count());
    CHECK(bus.lane_of(k * 7919) == l);  // fixed for the bus
    ++expected[l];
    REQUIRE(p.publish(item{static_cast<int>(k)}, k * 7919) == publish_result::ok);
  }
  std::size_t used = 0;
  for (std::size_t l = 0; l < bus.lane_count(); ++l) {
    CHECK(bus.lane(l).depth == expected[l]);
    if (expected[l] != 0) ++used;
  }
  CHECK(used > 1);  // keys spread
}
