// The interleaving checker (model.hpp) over sluice's two hand-rolled
// protocols, with a positive control for each: the same search, run on a
// mutated protocol (one step switched off), must find the bug that step
// prevents.
//
//  - worker parking: a worker parks only when no lane has work it could take;
//    whoever leaves work in a lane (a producer, a drainer unlocking, even one
//    that took nothing because the queue came back empty early) wakes one. At
//    every moment when all threads are blocked, nothing is queued.
//  - handler tracking: when reset() returns, the handler is not running and
//    never runs again, while other threads dispatch and subscribe.
// clang-format off
#include "model.hpp"  // before sluice: it defines the checker's seams
// clang-format on

#include <catch2/catch.hpp>
#include <cstdint>
#include <memory>
#include <sluice/sluice.hpp>
#include <string>

#include "../support.hpp"

namespace {
using sluice::detail::bus_access;

struct ev {
  int n;
};

// How many schedules each search tries (fixed seeds: a failure replays).
constexpr std::uint64_t schedules = 300;

struct parking_result {
  std::uint64_t stranded = 0;  // schedules where an event waited with every drainer asleep
  std::uint64_t deadlocks = 0;
  std::uint64_t unbalanced = 0;
  std::uint64_t first_bad_seed = 0;
};

// One worker, a producer of `events` events, and a poller; the queue may come
// back empty early (as moodycamel says it can). At every quiescent moment
// nothing may be queued; at the end every event is delivered.
parking_result check_parking(unsigned mutations, std::size_t lanes, int producers, int events,
                             sluice_model::strategy how, std::uint64_t seeds = schedules) {
  parking_result res;
  for (std::uint64_t seed = 1; seed <= seeds; ++seed) {
    sluice::bus bus{
        sluice::bus_options{}.with_lanes(lanes).with_lane_capacity(4).with_expected_producers(2)};
    std::atomic<int> delivered{0};
    auto sub = bus.subscribe([&](const ev&) { delivered.fetch_add(1); });
    sluice::detail::bus_core& core = bus_access::core(bus);
    std::vector<sluice::producer> ps;
    for (int i = 0; i < producers; ++i) ps.push_back(bus.make_producer());
    bool stranded = false;
    std::vector<std::function<void()>> threads;
    core.worker_started();
    threads.emplace_back(
        [&core] { sluice::detail::worker_loop(core, 0, std::chrono::nanoseconds(0)); });
    for (int i = 0; i < producers; ++i) {
      threads.emplace_back([&ps, i, events] {
        for (int k = 0; k < events; ++k)
          ps[static_cast<std::size_t>(i)].publish(ev{k}, static_cast<sluice::key_type>(k));
      });
    }
    threads.emplace_back([&bus] { (void)bus.poll(); });
    sluice_model::options o;
    o.seed = seed;
    o.how = how;
    o.mutations = mutations;
    o.spurious_empty = true;
    bool ending = false;
    const sluice_model::outcome out = sluice_model::run(o, std::move(threads), [&](bool quiescent) {
      if (ending) return;
      // Every thread is blocked (the worker parked; the others are done or
      // waiting for room): nothing may be left queued.
      if (quiescent && core.queued() != 0) stranded = true;
      // Then end the run as stop() would: the worker drains and leaves.
      ending = true;
      core.set_state(sluice::detail::run_state::draining);
      core.wake_everyone();
    });
    ps.clear();
    bus.stop();
    const auto st = bus.stats<ev>();
    const bool bad = stranded || out.deadlock || !st.balanced() ||
                     st.delivered != static_cast<std::uint64_t>(producers * events);
    if (stranded) ++res.stranded;
    if (out.deadlock) ++res.deadlocks;
    if (!st.balanced()) ++res.unbalanced;
    if (bad && res.first_bad_seed == 0) res.first_bad_seed = seed;
  }
  return res;
}

struct tracking_result {
  std::uint64_t after_reset = 0;  // a handler call seen after its reset() returned
  std::uint64_t kept = 0;         // a handler reset from outside, not destroyed by reset()
  std::uint64_t first_bad_seed = 0;
};

// A dispatcher calls a handler twice; another thread resets its subscription
// and then marks it reset; a third subscribes and unsubscribes another
// handler (new arrays while the first is read). The handler must never see
// the mark, nor run after its captured state is gone. `queued`: the two
// events are published first and one poll delivers them, in one run of
// their type (one frame, the array announced once: run_frame).
tracking_result check_tracking(unsigned mutations, sluice_model::strategy how,
                               bool queued = false) {
  tracking_result res;
  for (std::uint64_t seed = 1; seed <= schedules; ++seed) {
    sluice::bus bus{sluice::bus_options{}.with_lanes(1)};
    std::atomic<bool> reset_returned{false};
    std::atomic<bool> bad_call{false};
    std::atomic<bool> entered{false};  // the handler was called once
    auto alive = std::make_shared<std::atomic<bool>>(true);
    struct guard {  // marks `alive` false when the handler object is destroyed
      std::shared_ptr<std::atomic<bool>> alive;
      explicit guard(std::shared_ptr<std::atomic<bool>> a) : alive(std::move(a)) {}
      guard(guard&&) noexcept = default;
      guard& operator=(guard&&) = delete;
      ~guard() {
        if (alive) alive->store(false);
      }
    };
    sluice::subscription sub =
        bus.subscribe<ev>([g = guard(alive), &reset_returned, &bad_call, &entered](const ev&) {
          entered = true;
          // Copies first: after the schedule point nothing of this handler
          // object is touched, so that the positive control (where reset()
          // destroys it while it runs) finds the bug without a use after free.
          std::atomic<bool>* returned = &reset_returned;
          std::atomic<bool>* bad = &bad_call;
          const std::shared_ptr<std::atomic<bool>> flag = g.alive;
          if (returned->load() || !flag->load()) *bad = true;
          SLUICE_SCHEDULE_POINT();  // the handler runs across steps of the others
          if (returned->load() || !flag->load()) *bad = true;
        });
    std::vector<std::function<void()>> threads;
    if (queued) {
      sluice::producer p = bus.make_producer();
      REQUIRE(p.publish(ev{1}) == sluice::publish_result::ok);
      REQUIRE(p.publish(ev{2}) == sluice::publish_result::ok);
      threads.emplace_back([&bus] { (void)bus.poll(); });
    } else {
      threads.emplace_back([&bus] {
        (void)bus.dispatch(ev{1});
        (void)bus.dispatch(ev{2});
      });
    }
    threads.emplace_back([&sub, &reset_returned, &entered, queued] {
      // Queued, the poll takes many steps before the first call: the reset
      // waits for it, so that schedules explore resets during the run.
      while (queued && !entered.load()) SLUICE_SCHEDULE_POINT();
      sub.reset();
      reset_returned = true;
    });
    threads.emplace_back([&bus] {
      auto other = bus.subscribe<ev>([](const ev&) {});
      other.reset();
    });
    sluice_model::options o;
    o.seed = seed;
    o.how = how;
    o.mutations = mutations;
    (void)sluice_model::run(o, std::move(threads), [](bool) {});
    // With mutation 2 reset() does not wait: the handler may still be in its
    // second half when the mark is set. It ran after reset() returned.
    if (bad_call.load()) {
      ++res.after_reset;
      if (res.first_bad_seed == 0) res.first_bad_seed = seed;
    }
    // reset() from outside destroys the handler before it returns.
    if (alive->load()) ++res.kept;
  }
  return res;
}

// A poller delivers ev{0}, whose handler publishes ev{1} (into the same lane,
// or with two lanes possibly another) and ends; meanwhile another thread asks
// the core whether the bus is idle. It may say so only when both were handled.
std::uint64_t check_idle(unsigned mutations, std::size_t lanes) {
  std::uint64_t wrong = 0;
  for (std::uint64_t seed = 1; seed <= schedules; ++seed) {
    sluice::bus bus{sluice::bus_options{}.with_lanes(lanes).with_lane_capacity(4)};
    sluice::detail::bus_core& core = bus_access::core(bus);
    sluice::producer inner = bus.make_producer();
    std::atomic<int> handled{0};
    auto sub = bus.subscribe([&](const ev& e) {
      if (e.n == 0) inner.publish(ev{1}, 7);
      handled.fetch_add(1);
    });
    auto outer = bus.make_producer();
    REQUIRE(outer.publish(ev{0}, 3) == sluice::publish_result::ok);
    bool said_idle_early = false;
    std::vector<std::function<void()>> threads;
    threads.emplace_back([&bus] {
      (void)bus.poll();
      (void)bus.poll();
    });
    threads.emplace_back([&] {
      for (int i = 0; i < 3; ++i)
        if (core.idle() && handled.load() != 2) said_idle_early = true;
    });
    sluice_model::options o;
    o.seed = seed;
    o.mutations = mutations;
    (void)sluice_model::run(o, std::move(threads), [](bool) {});
    if (said_idle_early) ++wrong;
    bus.poll();
  }
  return wrong;
}
}  // namespace

TEST_CASE("model: the bus is idle only when everything handlers published is handled",
          "[model][idle]") {
  test::watchdog wd(std::chrono::seconds(240), "model idle");
  CHECK(check_idle(0, 1) == 0);
  CHECK(check_idle(0, 2) == 0);
}

TEST_CASE("model (positive control): reading the lanes' counts alone says idle too early",
          "[model][idle][control]") {
  test::watchdog wd(std::chrono::seconds(240), "model idle control");
  CHECK(check_idle(1u << 3, 1) > 0);
}

TEST_CASE("model: no event is stranded with a worker asleep", "[model][parking]") {
  test::watchdog wd(std::chrono::seconds(240), "model parking");
  for (auto how : {sluice_model::strategy::every_point, sluice_model::strategy::sticky}) {
    const parking_result one = check_parking(0, 1, 1, 2, how);
    INFO("first bad seed " << one.first_bad_seed);
    CHECK(one.stranded == 0);
    CHECK(one.deadlocks == 0);
    CHECK(one.unbalanced == 0);
    const parking_result two = check_parking(0, 2, 2, 2, how);
    INFO("first bad seed " << two.first_bad_seed);
    CHECK(two.stranded == 0);
    CHECK(two.deadlocks == 0);
    CHECK(two.unbalanced == 0);
  }
}

TEST_CASE("model: a producer waiting for room is never forgotten", "[model][parking]") {
  // Lanes of 4 and 6 events from each of two producers: they block on full
  // lanes until the worker or the poller frees room.
  test::watchdog wd(std::chrono::seconds(240), "model blocking");
  const parking_result r = check_parking(0, 1, 2, 6, sluice_model::strategy::every_point);
  INFO("first bad seed " << r.first_bad_seed);
  CHECK(r.stranded == 0);
  CHECK(r.deadlocks == 0);
  CHECK(r.unbalanced == 0);
}

TEST_CASE("model (positive control): without the drainer's wake, events are stranded",
          "[model][parking][control]") {
  test::watchdog wd(std::chrono::seconds(240), "model parking control");
  // Mutation 1: a drainer that took nothing unlocks without waking a worker
  // (sluice before the fix). The checker must find the stranded event.
  // (The window is a few steps wide among many: more schedules than the
  // searches that must find nothing.)
  const parking_result r =
      check_parking(1u << 1, 1, 1, 2, sluice_model::strategy::every_point, 8 * schedules);
  INFO("first bad seed " << r.first_bad_seed << ", stranded in " << r.stranded << " schedules");
  CHECK(r.stranded > 0);
}

TEST_CASE("model: reset() never returns while its handler runs", "[model][tracking]") {
  test::watchdog wd(std::chrono::seconds(240), "model tracking");
  for (auto how : {sluice_model::strategy::every_point, sluice_model::strategy::sticky}) {
    const tracking_result r = check_tracking(0, how);
    INFO("first bad seed " << r.first_bad_seed);
    CHECK(r.after_reset == 0);
    CHECK(r.kept == 0);
  }
}

TEST_CASE("model: reset() never returns while its handler runs, events drained in one run",
          "[model][tracking]") {
  test::watchdog wd(std::chrono::seconds(240), "model tracking, queued");
  for (auto how : {sluice_model::strategy::every_point, sluice_model::strategy::sticky}) {
    const tracking_result r = check_tracking(0, how, true);
    INFO("first bad seed " << r.first_bad_seed);
    CHECK(r.after_reset == 0);
    CHECK(r.kept == 0);
  }
}

TEST_CASE(
    "model (positive control): a reset() that does not wait is caught, events drained in "
    "one run",
    "[model][tracking][control]") {
  test::watchdog wd(std::chrono::seconds(240), "model tracking control, queued");
  const tracking_result r = check_tracking(1u << 2, sluice_model::strategy::every_point, true);
  CHECK(r.after_reset > 0);
}

TEST_CASE("model (positive control): a reset() that does not wait is caught",
          "[model][tracking][control]") {
  test::watchdog wd(std::chrono::seconds(240), "model tracking control");
  // Mutation 2: reset() returns without waiting for running calls.
  const tracking_result r = check_tracking(1u << 2, sluice_model::strategy::every_point);
  CHECK(r.after_reset > 0);
}

// The close count (registry::closes): a dispatcher calls a handler twice
// while another thread resets it. The handler keeps its state in globals (a
// captureless lambda), so that a call after reset() returned, which the
// positive control provokes, touches no freed memory.
namespace {
std::atomic<bool> g_close_returned{false};
std::atomic<bool> g_close_bad{false};

std::uint64_t check_close_count(unsigned mutations, sluice_model::strategy how) {
  std::uint64_t bad = 0;
  for (std::uint64_t seed = 1; seed <= schedules; ++seed) {
    g_close_returned = false;
    g_close_bad = false;
    sluice::bus bus{sluice::bus_options{}.with_lanes(1)};
    sluice::subscription sub = bus.subscribe<ev>([](const ev&) {
      if (g_close_returned.load()) g_close_bad = true;
      SLUICE_SCHEDULE_POINT();
      if (g_close_returned.load()) g_close_bad = true;
    });
    std::vector<std::function<void()>> threads;
    threads.emplace_back([&bus] {
      (void)bus.dispatch(ev{1});
      (void)bus.dispatch(ev{2});
    });
    threads.emplace_back([&sub] {
      sub.reset();
      g_close_returned = true;
    });
    sluice_model::options o;
    o.seed = seed;
    o.how = how;
    o.mutations = mutations;
    (void)sluice_model::run(o, std::move(threads), [](bool) {});
    if (g_close_bad.load()) ++bad;
  }
  return bad;
}
}  // namespace

TEST_CASE("model: a handler whose close readers may skip is never called after reset()",
          "[model][tracking]") {
  test::watchdog wd(std::chrono::seconds(240), "model close count");
  for (auto how : {sluice_model::strategy::every_point, sluice_model::strategy::sticky})
    CHECK(check_close_count(0, how) == 0);
}

TEST_CASE("model (positive control): a close that readers cannot see is caught",
          "[model][tracking][control]") {
  test::watchdog wd(std::chrono::seconds(240), "model close-count control");
  // Mutation 4: close() sets the node's flag but does not count the close, so
  // a reader trusts the array (made before the close) and calls the handler
  // after reset() returned.
  CHECK(check_close_count(1u << 4, sluice_model::strategy::every_point) > 0);
}

// Credit (bus_options::reserve_chunk): a producer publishes into a place it
// reserved earlier, writing no shared atomic, while stop() turns the bus to
// draining and asks whether anything is queued. Either the publish is
// refused, or stop() sees its event: an accepted event is never missed.
namespace {
std::uint64_t check_credit_stop(unsigned mutations, sluice_model::strategy how,
                                std::uint64_t seeds) {
  std::uint64_t missed = 0;
  for (std::uint64_t seed = 1; seed <= seeds; ++seed) {
    sluice::bus bus{
        sluice::bus_options{}.with_lanes(1).with_lane_capacity(8).with_reserve_chunk(2)};
    sluice::detail::bus_core& core = bus_access::core(bus);
    auto sub = bus.subscribe([](const ev&) {});
    sluice::producer p = bus.make_producer();
    REQUIRE(p.publish(ev{1}) == sluice::publish_result::ok);  // takes 2 places: 1 held
    REQUIRE(bus.poll() == 1);
    sluice::publish_result result = sluice::publish_result::full;
    std::size_t seen = 0;
    std::vector<std::function<void()>> threads;
    threads.emplace_back([&] { result = p.publish(ev{2}); });
    threads.emplace_back([&] {
      core.set_state(sluice::detail::run_state::draining);
      core.settle_credit_publishes();
      seen = core.queued();
    });
    sluice_model::options o;
    o.seed = seed;
    o.how = how;
    o.mutations = mutations;
    (void)sluice_model::run(o, std::move(threads), [](bool) {});
    if (result == sluice::publish_result::ok && seen == 0) ++missed;
    core.set_state(sluice::detail::run_state::running);
    bus.poll();
  }
  return missed;
}
}  // namespace

TEST_CASE("model: stop() sees every event published through credit", "[model][credit]") {
  test::watchdog wd(std::chrono::seconds(240), "model credit");
  // The window is a few steps wide: more schedules than the other searches.
  for (auto how : {sluice_model::strategy::every_point, sluice_model::strategy::sticky})
    CHECK(check_credit_stop(0, how, 8 * schedules) == 0);
}

TEST_CASE("model (positive control): stop() that does not wait for credit publishes misses one",
          "[model][credit][control]") {
  test::watchdog wd(std::chrono::seconds(240), "model credit control");
  // Mutation 5: stop() does not wait for publishes through credit under way.
  std::uint64_t missed = 0;
  for (auto how : {sluice_model::strategy::every_point, sluice_model::strategy::sticky})
    missed += check_credit_stop(1u << 5, how, 8 * schedules);
  CHECK(missed > 0);
}

// A producer that goes away gives its unused places back (lowering its credit
// and the lane's count) while another thread counts what is queued. The
// count must never fall below the events really queued: idle() and stop()
// rely on it.
namespace {
std::uint64_t check_credit_return(unsigned mutations, sluice_model::strategy how,
                                  std::uint64_t seeds) {
  std::uint64_t under = 0;
  for (std::uint64_t seed = 1; seed <= seeds; ++seed) {
    sluice::bus bus{
        sluice::bus_options{}.with_lanes(1).with_lane_capacity(8).with_reserve_chunk(4)};
    sluice::detail::bus_core& core = bus_access::core(bus);
    auto sub = bus.subscribe([](const ev&) {});
    auto p = std::make_unique<sluice::producer>(bus.make_producer());
    REQUIRE(p->publish(ev{1}) == sluice::publish_result::ok);  // 1 queued, 3 held
    std::size_t seen = 1;
    std::vector<std::function<void()>> threads;
    threads.emplace_back([&] { p.reset(); });
    threads.emplace_back([&] { seen = core.queued(); });
    sluice_model::options o;
    o.seed = seed;
    o.how = how;
    o.mutations = mutations;
    (void)sluice_model::run(o, std::move(threads), [](bool) {});
    if (seen < 1) ++under;
    bus.poll();
  }
  return under;
}
}  // namespace

TEST_CASE("model: places given back never make the queued count fall short", "[model][credit]") {
  test::watchdog wd(std::chrono::seconds(240), "model credit return");
  for (auto how : {sluice_model::strategy::every_point, sluice_model::strategy::sticky})
    CHECK(check_credit_return(0, how, 4 * schedules) == 0);
}

TEST_CASE("model (positive control): a count that ignores returns under way falls short",
          "[model][credit][control]") {
  test::watchdog wd(std::chrono::seconds(240), "model credit return control");
  // Mutation 6: size() does not take its reading again when a return
  // overlapped it.
  std::uint64_t under = 0;
  for (auto how : {sluice_model::strategy::every_point, sluice_model::strategy::sticky})
    under += check_credit_return(1u << 6, how, 4 * schedules);
  CHECK(under > 0);
}
