// Contract 4, reentrancy: a handler may publish, dispatch, subscribe and
// unsubscribe itself or others, in every run mode.
#include <atomic>
#include <catch2/catch.hpp>
#include <memory>
#include <optional>
#include <sluice/sluice.hpp>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

namespace {
struct start {
  int n;
};
struct follow_up {
  int n;
};
struct immediate {
  int n;
};
struct late {
  int n;
};

enum class mode { dispatch, poll, workers };

const char* name(mode m) {
  switch (m) {
    case mode::dispatch:
      return "dispatch";
    case mode::poll:
      return "poll";
    case mode::workers:
      return "workers";
  }
  return "?";
}

// Sends `n` start events in the given mode and finishes the bus.
void drive(sluice::bus& bus, mode m, int n) {
  if (m == mode::workers) REQUIRE(bus.run(2));
  for (int i = 0; i < n; ++i) {
    if (m == mode::dispatch) {
      bus.dispatch(start{i});
    } else {
      REQUIRE(bus.publish(start{i}, 1) == sluice::publish_result::ok);
    }
  }
  if (m == mode::poll) bus.poll();
  REQUIRE(bus.stop());
}
}  // namespace

TEST_CASE("handlers publish, dispatch, subscribe and unsubscribe", "[reentrancy]") {
  test::watchdog wd(std::chrono::seconds(60), "reentrancy");
  for (mode m : {mode::dispatch, mode::poll, mode::workers}) {
    INFO("mode " << name(m));
    sluice::bus bus{sluice::bus_options{}.with_lanes(2)};
    std::atomic<int> follow_ups{0}, immediates{0}, lates{0}, other_calls{0};
    std::atomic<int> starts{0};
    sluice::subscription late_sub;   // made by a handler
    sluice::subscription other_sub;  // reset by a handler
    sluice::subscription self_sub;   // resets itself after 3 calls
    std::atomic<int> self_calls{0};
    std::atomic<int> wrong{0};  // checked at the end: handlers may run on workers

    auto f = bus.subscribe<follow_up>([&](const follow_up&) { ++follow_ups; });
    auto im = bus.subscribe<immediate>([&](const immediate&) { ++immediates; });
    other_sub = bus.subscribe<start>([&](const start&) { ++other_calls; });
    self_sub = bus.subscribe<start>([&](const start&) {
      if (++self_calls == 3) self_sub.reset();
    });
    auto s = bus.subscribe<start>([&](const start& e) {
      ++starts;
      // publish (queued; delivered by the drain even while stopping)
      if (bus.publish(follow_up{e.n}, 2) != sluice::publish_result::ok) ++wrong;
      // dispatch (immediate, nested)
      if (bus.dispatch(immediate{e.n}) != 1) ++wrong;
      if (e.n == 0) {
        // subscribe: sees later events
        late_sub = bus.subscribe<late>([&](const late&) { ++lates; });
        // unsubscribe another handler of the same type, mid-delivery
        other_sub.reset();
      }
      bus.dispatch(late{e.n});
    });
    drive(bus, m, 10);
    CHECK(wrong.load() == 0);
    CHECK(starts.load() == 10);
    CHECK(follow_ups.load() == 10);
    CHECK(immediates.load() == 10);
    CHECK(lates.load() == 10);
    CHECK(self_calls.load() == 3);
    // other_sub runs after `s` in subscription order? No: it was subscribed
    // before, so it ran for event 0 before being reset, and never again.
    CHECK(other_calls.load() == 1);
    CHECK(bus.stats<follow_up>().balanced());
    CHECK(bus.stats<start>().balanced());
  }
}

TEST_CASE("a handler may poll the bus it is called from", "[reentrancy]") {
  test::watchdog wd(std::chrono::seconds(30), "nested poll");
  sluice::bus bus{sluice::bus_options{}.with_lanes(4)};
  std::atomic<int> follow_ups{0};
  auto f = bus.subscribe<follow_up>([&](const follow_up&) { ++follow_ups; });
  auto s = bus.subscribe<start>([&](const start& e) {
    bus.publish(follow_up{e.n}, 99);
    bus.poll();  // drains other lanes; its own lane is held by the outer poll
  });
  for (int i = 0; i < 20; ++i) bus.publish(start{i}, 5);
  bus.poll();
  CHECK(follow_ups.load() == 20);  // delivered by the nested polls (or the outer one)
  CHECK(bus.queued() == 0);
  bus.stop();
}

TEST_CASE("stop from a handler is refused", "[reentrancy]") {
  sluice::bus bus;
  std::optional<bool> result;
  auto s = bus.subscribe<start>([&](const start&) { result = bus.stop(); });
  bus.dispatch(start{1});
  REQUIRE(result.has_value());
  CHECK_FALSE(*result);
  CHECK_FALSE(bus.stopped());
}

TEST_CASE("a blocking publish from a handler into a full lane returns full", "[reentrancy]") {
  test::watchdog wd(std::chrono::seconds(30), "publish from handler into full lane");
  sluice::bus bus{sluice::bus_options{}.with_lanes(1).with_lane_capacity(4)};
  std::atomic<int> full{0};
  auto s = bus.subscribe<start>([&](const start&) {
    for (int i = 0; i < 10; ++i)
      if (bus.publish(follow_up{i}) == sluice::publish_result::full) ++full;
  });
  auto p = bus.make_producer();
  p.publish(start{1});
  bus.poll(1);
  // The start event's place was given back when it was taken off the lane:
  // 4 follow-ups fit, 6 are refused instead of waiting on ourselves.
  CHECK(full.load() == 6);
  bus.stop(sluice::stop_mode::discard);
  CHECK(bus.stats<follow_up>().rejected == 6);
}

TEST_CASE("dispatch nested beyond SLUICE_MAX_DEPTH is refused, not a stack overflow",
          "[reentrancy]") {
  int failures = 0;
  sluice::bus bus{sluice::bus_options{}.with_on_failure([&](const sluice::failure_info& f) {
    if (f.kind == sluice::failure_kind::too_deep) ++failures;
  })};
  int depth = 0;
  auto s = bus.subscribe<start>([&](const start& e) {
    ++depth;
    bus.dispatch(start{e.n + 1});  // unbounded recursion
  });
  bus.dispatch(start{0});
  CHECK(depth == SLUICE_MAX_DEPTH);
  CHECK(failures == 1);
  CHECK(bus.stats<start>().failed == 1);
}

TEST_CASE("bus.publish from a handler is not stuck behind a blocked outside thread",
          "[reentrancy]") {
  test::watchdog wd(std::chrono::seconds(60), "shared producer");
  // Every thread shares one of four shared producers; with one lane of four
  // places, outside threads block on the full lane while the worker's handler
  // publishes through the same shared producers.
  sluice::bus bus{sluice::bus_options{}.with_lanes(1).with_lane_capacity(4)};
  std::atomic<int> follow_ups{0}, full{0};
  auto f = bus.subscribe<follow_up>([&](const follow_up&) { ++follow_ups; });
  auto s = bus.subscribe<start>([&](const start& e) {
    if (bus.publish(follow_up{e.n}) == sluice::publish_result::full) ++full;
  });
  REQUIRE(bus.run(1));
  std::atomic<int> not_ok{0};  // Catch2 assertions are not thread-safe
  std::vector<std::thread> outside;
  for (int t = 0; t < 8; ++t)
    outside.emplace_back([&] {
      for (int i = 0; i < 200; ++i)
        if (bus.publish(start{i}) != sluice::publish_result::ok) ++not_ok;
    });
  for (auto& t : outside) t.join();
  bus.stop();
  CHECK(not_ok.load() == 0);
  CHECK(follow_ups.load() + full.load() == 8 * 200);
  CHECK(bus.stats<start>().delivered == 8 * 200);
  CHECK(bus.stats<follow_up>().balanced());
}

TEST_CASE("handlers of one bus may stop another, run from a handler is refused", "[reentrancy]") {
  test::watchdog wd(std::chrono::seconds(30), "two buses");
  sluice::bus a;
  auto b = std::make_unique<sluice::bus>();
  REQUIRE(b->run(1));
  std::optional<bool> stopped_other, ran_self;
  auto s = a.subscribe<start>([&](const start&) {
    stopped_other = b->stop();
    ran_self = a.run(1);
    b.reset();  // destroying another bus from a handler is allowed
  });
  a.dispatch(start{1});
  REQUIRE(stopped_other.has_value());
  CHECK(*stopped_other);
  REQUIRE(ran_self.has_value());
  CHECK_FALSE(*ran_self);
  CHECK(b == nullptr);
}

TEST_CASE("a poll nested too deep leaves events queued", "[reentrancy]") {
  sluice::bus bus{sluice::bus_options{}.with_lanes(1)};
  std::atomic<int> ticks{0};
  std::size_t polled_at_bottom = 99;
  auto t = bus.subscribe<follow_up>([&](const follow_up&) { ++ticks; });
  auto s = bus.subscribe<start>([&](const start& e) {
    if (e.n + 1 < SLUICE_MAX_DEPTH) {
      bus.dispatch(start{e.n + 1});
    } else {
      polled_at_bottom = bus.poll();  // at the deepest level: cannot deliver
    }
  });
  for (int i = 0; i < 5; ++i) bus.publish(follow_up{i});
  bus.dispatch(start{0});
  CHECK(polled_at_bottom == 0);
  CHECK(ticks.load() == 0);
  CHECK(bus.queued() == 5);  // not taken, not failed, not unrouted
  CHECK(bus.poll() == 5);
  CHECK(ticks.load() == 5);
  const auto st = bus.stats<follow_up>();
  CHECK(st.delivered == 5);
  CHECK(st.unrouted == 0);
  CHECK(st.failed == 0);
}

// A drainer delivers a run of one type's events in one frame (delivery.hpp,
// run_frame): a subscriber added or removed by a handler in the middle of
// the run takes effect from the run's next event, as it would with one
// frame per event. Ten events of one type in one lane, drained by one poll.
// A subscribe at event 4 replaces (and retires) the array that event 4 is
// being delivered from: under ASan, a run that used an array it had not
// announced would read it after it was freed.
TEST_CASE("subscribers changed in the middle of a run of one type take effect at the next event",
          "[reentrancy]") {
  test::watchdog wd(std::chrono::seconds(30), "subscribers changed mid-run");
  sluice::bus bus{sluice::bus_options{}.with_lanes(1)};
  std::vector<int> added_saw, removed_saw, self_saw, late_saw;
  sluice::subscription added, removed, self, late;
  // Subscribed first, so it runs before the others for each event.
  auto changer = bus.subscribe<start>([&](const start& e) {
    if (e.n == 3) {
      added = bus.subscribe<start>([&](const start& x) { added_saw.push_back(x.n); });
      removed.reset();
    }
    if (e.n == 4) late = bus.subscribe<start>([&](const start& x) { late_saw.push_back(x.n); });
  });
  removed = bus.subscribe<start>([&](const start& e) { removed_saw.push_back(e.n); });
  self = bus.subscribe<start>([&](const start& e) {
    self_saw.push_back(e.n);
    if (e.n == 5) self.reset();
  });
  sluice::producer p = bus.make_producer();
  for (int i = 0; i < 10; ++i) REQUIRE(p.publish(start{i}) == sluice::publish_result::ok);
  REQUIRE(bus.poll() == 10);
  CHECK(added_saw == std::vector<int>{4, 5, 6, 7, 8, 9});
  CHECK(removed_saw == std::vector<int>{0, 1, 2});
  CHECK(self_saw == std::vector<int>{0, 1, 2, 3, 4, 5});
  CHECK(late_saw == std::vector<int>{5, 6, 7, 8, 9});
  const sluice::type_stats st = bus.stats<start>();
  CHECK(st.delivered == 10);
  CHECK(st.handler_calls == 10 + 6 + 3 + 6 + 5);
}

// An event's destructor runs outside any handler frame, as it did when each
// event had a frame of its own: a run's events are destroyed after the run's
// frame is closed (the bus would otherwise take code in a destructor for a
// handler: publishes accepted while draining, stop() and run() refused).
namespace {
struct owned {
  int n = 0;
  bool live = true;  // false once moved from
  static const sluice::detail::bus_core* watched;
  static int inside_frame;  // destructions of live events inside a frame of `watched`
  static int destroyed;
  explicit owned(int v) : n(v) {}
  owned(owned&& o) noexcept : n(o.n), live(o.live) { o.live = false; }
  owned& operator=(owned&&) = delete;
  owned(const owned&) = delete;
  ~owned() {
    if (!live || watched == nullptr) return;
    ++destroyed;
    if (sluice::detail::inside(watched)) ++inside_frame;
  }
};
const sluice::detail::bus_core* owned::watched = nullptr;
int owned::inside_frame = 0;
int owned::destroyed = 0;
}  // namespace

TEST_CASE("a run's events are destroyed outside the handler frame", "[reentrancy]") {
  sluice::bus bus{sluice::bus_options{}.with_lanes(1)};
  int calls = 0, inside_handler = 0;
  auto sub = bus.subscribe<owned>([&](const owned&) {
    ++calls;
    // The control: inside a handler, the frame is seen.
    if (sluice::detail::inside(&sluice::detail::bus_access::core(bus))) ++inside_handler;
  });
  sluice::producer p = bus.make_producer();
  for (int i = 0; i < 8; ++i) REQUIRE(p.publish(owned{i}) == sluice::publish_result::ok);
  owned::watched = &sluice::detail::bus_access::core(bus);
  owned::inside_frame = owned::destroyed = 0;
  REQUIRE(bus.poll() == 8);
  owned::watched = nullptr;
  CHECK(calls == 8);
  CHECK(inside_handler == 8);
  CHECK(owned::destroyed == 8);
  CHECK(owned::inside_frame == 0);
}
