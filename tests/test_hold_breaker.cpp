// Ordering while retrying (hold_key against skip_ahead, a full hold, held
// events of unkeyed producers, a held event that fails in turn, stop in both
// modes, a reset while events are held) and circuit breakers (their state
// machine under a clock of the test's own, and on a bus: open, short
// circuits, half-open probes, reports), with a stress run of random failures
// under four producers and two workers that checks each key's order.
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <sluice/sluice.hpp>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support.hpp"

namespace {
using sluice::breaker_state;
using sluice::failure_kind;
using sluice::failure_policy;
using sluice::publish_result;
using sluice::retry_backoff;
using sluice::subscribe_options;
using namespace std::chrono_literals;

struct order {
  int id = 0;
};

subscribe_options with_policy(failure_policy p, std::string name = "") {
  return subscribe_options::named(std::move(name)).with_failure_policy(p);
}

// A handler that fails the first `fail_first[id]` calls of each event, and
// logs every call and every success.
struct flaky_log {
  std::map<int, int> fail_first;
  std::map<int, int> calls_of;
  std::vector<int> calls;
  std::vector<int> successes;
  sluice::outcome operator()(const order& o) {
    calls.push_back(o.id);
    if (++calls_of[o.id] <= fail_first[o.id]) return sluice::outcome::failure(3, "busy");
    successes.push_back(o.id);
    return sluice::outcome::success();
  }
};
}  // namespace

TEST_CASE("hold_key: later events of a retrying key wait, other keys and subscribers go on",
          "[resilience][hold]") {
  test::watchdog dog(60s);
  sluice::bus bus;
  flaky_log log;
  log.fail_first[1] = 2;
  std::vector<int> steady;
  // (Waits long enough that the first poll cannot reach the retry.)
  auto flaky = bus.subscribe([&](const order& o) { return log(o); },
                             with_policy(failure_policy::retry(5, retry_backoff::fixed(50ms))));
  auto other = bus.subscribe([&](const order& o) { steady.push_back(o.id); });
  auto p = bus.make_producer();
  constexpr sluice::key_type a = 7;
  constexpr sluice::key_type b = 8;
  REQUIRE(p.publish(order{1}, a) == publish_result::ok);
  REQUIRE(p.publish(order{2}, a) == publish_result::ok);
  REQUIRE(p.publish(order{3}, a) == publish_result::ok);
  REQUIRE(p.publish(order{4}, b) == publish_result::ok);
  bus.poll(4);  // the four events, and nothing more (no retry yet)
  // Order 1 failed: 2 and 3 (key a) wait for this subscriber only; 4 (key b) went on.
  CHECK(steady == std::vector<int>{1, 2, 3, 4});
  CHECK(log.successes == std::vector<int>{4});
  CHECK(flaky.stats().held == 2);
  CHECK(flaky.stats().retrying == 1);
  REQUIRE(test::poll_until(bus, [&] { return log.successes.size() == 4; }));
  CHECK(log.successes == std::vector<int>{4, 1, 2, 3});
  CHECK(log.calls == std::vector<int>{1, 4, 1, 1, 2, 3});
  const sluice::subscription_stats st = flaky.stats();
  CHECK(st.held == 0);
  CHECK(st.retrying == 0);
  CHECK(st.retried == 2);  // the held events' first calls are not retries
  CHECK(st.recovered == 1);
  REQUIRE(bus.stop());
  const sluice::type_stats ts = bus.stats<order>();
  CHECK(ts.delivered == 4);
  CHECK(ts.balanced());
}

TEST_CASE("skip_ahead: later events of a retrying key overtake it", "[resilience][hold]") {
  test::watchdog dog(60s);
  sluice::bus bus;
  flaky_log log;
  log.fail_first[1] = 1;
  auto flaky = bus.subscribe(
      [&](const order& o) { return log(o); },
      with_policy(failure_policy::retry(5, retry_backoff::fixed(1ms)).skipping_ahead()));
  auto p = bus.make_producer();
  for (int id = 1; id <= 3; ++id) REQUIRE(p.publish(order{id}, 7) == publish_result::ok);
  REQUIRE(test::poll_until(bus, [&] { return log.successes.size() == 3; }));
  CHECK(log.successes == std::vector<int>{2, 3, 1});
  CHECK(flaky.stats().held == 0);
  REQUIRE(bus.stop());
  CHECK(bus.stats<order>().balanced());
}

TEST_CASE("a held event that fails in turn is retried, and the key's order still holds",
          "[resilience][hold]") {
  test::watchdog dog(60s);
  sluice::bus bus;
  flaky_log log;
  log.fail_first[1] = 1;
  log.fail_first[2] = 2;
  auto flaky = bus.subscribe([&](const order& o) { return log(o); },
                             with_policy(failure_policy::retry(5, retry_backoff::fixed(1ms))));
  auto p = bus.make_producer();
  for (int id = 1; id <= 4; ++id) REQUIRE(p.publish(order{id}, 1) == publish_result::ok);
  REQUIRE(test::poll_until(bus, [&] { return log.successes.size() == 4; }));
  CHECK(log.successes == std::vector<int>{1, 2, 3, 4});
  CHECK(log.calls == std::vector<int>{1, 1, 2, 2, 2, 3, 4});
  CHECK(flaky.stats().failed == 3);
  CHECK(flaky.stats().recovered == 2);
  REQUIRE(bus.stop());
  CHECK(bus.stats<order>().delivered == 4);
  CHECK(bus.stats<order>().balanced());
}

TEST_CASE("a dead-lettered event lets the events held behind it go on", "[resilience][hold]") {
  test::watchdog dog(60s);
  sluice::bus bus;
  flaky_log log;
  log.fail_first[1] = 100;
  std::vector<int> letters;
  auto flaky = bus.subscribe([&](const order& o) { return log(o); },
                             with_policy(failure_policy::retry(2, retry_backoff::fixed(1ms))));
  auto dead =
      bus.subscribe([&](const sluice::dead_letter<order>& d) { letters.push_back(d.event.id); });
  auto p = bus.make_producer();
  for (int id = 1; id <= 3; ++id) REQUIRE(p.publish(order{id}, 1) == publish_result::ok);
  REQUIRE(test::poll_until(bus, [&] { return log.successes.size() == 2; }));
  CHECK(letters == std::vector<int>{1});
  CHECK(log.calls == std::vector<int>{1, 1, 2, 3});
  REQUIRE(bus.stop());
  const sluice::type_stats ts = bus.stats<order>();
  CHECK(ts.delivered == 2);
  CHECK(ts.dead_lettered == 1);
  CHECK(ts.balanced());
}

TEST_CASE("a full hold dead-letters the event, or delivers it ahead, as the policy says",
          "[resilience][hold]") {
  test::watchdog dog(60s);
  const bool skip = GENERATE(false, true);
  CAPTURE(skip);
  std::vector<sluice::failure_info> seen;
  std::vector<std::string> subs;
  sluice::bus bus{sluice::bus_options{}.with_on_failure([&](const sluice::failure_info& f) {
    seen.push_back(f);
    subs.emplace_back(f.subscription);
  })};
  flaky_log log;
  log.fail_first[1] = 1;
  auto flaky =
      bus.subscribe([&](const order& o) { return log(o); },
                    with_policy(failure_policy::retry(3, retry_backoff::fixed(1ms))
                                    .holding_keys(1, skip ? sluice::hold_full::skip_ahead
                                                          : sluice::hold_full::dead_letter),
                                "ledger"));
  std::vector<sluice::dead_letter<order>> letters;
  auto dead = bus.subscribe([&](const sluice::dead_letter<order>& d) { letters.push_back(d); });
  auto p = bus.make_producer();
  for (int id = 1; id <= 3; ++id) REQUIRE(p.publish(order{id}, 5) == publish_result::ok);
  REQUIRE(
      test::poll_until(bus, [&] { return flaky.stats().retrying == 0 && (bus.queued() == 0); }));
  auto full = std::find_if(seen.begin(), seen.end(), [](const sluice::failure_info& f) {
    return f.kind == failure_kind::hold_full;
  });
  REQUIRE(full != seen.end());
  CHECK(subs[static_cast<std::size_t>(full - seen.begin())] == "ledger");
  if (skip) {
    CHECK(letters.empty());
    CHECK(log.successes == std::vector<int>{3, 1, 2});
  } else {
    REQUIRE(letters.size() == 1);
    CHECK(letters[0].event.id == 3);
    CHECK(letters[0].kind == failure_kind::hold_full);
    CHECK(letters[0].attempts == 0);
    CHECK(letters[0].subscription == "ledger");
    CHECK(log.successes == std::vector<int>{1, 2});
  }
  REQUIRE(bus.stop());
  const sluice::type_stats ts = bus.stats<order>();
  CHECK(ts.dead_lettered == (skip ? 0u : 1u));
  CHECK(ts.balanced());
}

TEST_CASE("events without a key are held per producer", "[resilience][hold]") {
  test::watchdog dog(60s);
  sluice::bus bus{sluice::bus_options{}.with_lanes(1)};
  flaky_log log;
  log.fail_first[1] = 1;
  auto flaky = bus.subscribe([&](const order& o) { return log(o); },
                             with_policy(failure_policy::retry(3, retry_backoff::fixed(50ms))));
  auto p = bus.make_producer();
  auto q = bus.make_producer();
  REQUIRE(p.publish(order{1}) == publish_result::ok);
  REQUIRE(p.publish(order{2}) == publish_result::ok);
  REQUIRE(q.publish(order{3}) == publish_result::ok);
  // A keyed event whose key equals p's id is another key: not held.
  REQUIRE(q.publish(order{4}, static_cast<sluice::key_type>(p.id())) == publish_result::ok);
  bus.poll(4);
  CHECK(log.successes == std::vector<int>{3, 4});
  REQUIRE(test::poll_until(bus, [&] { return log.successes.size() == 4; }));
  CHECK(log.successes == std::vector<int>{3, 4, 1, 2});
  REQUIRE(bus.stop());
  CHECK(bus.stats<order>().balanced());
}

TEST_CASE("held events at stop: drain delivers them in order, discard dead-letters them",
          "[resilience][hold]") {
  test::watchdog dog(60s);
  const bool drain = GENERATE(true, false);
  CAPTURE(drain);
  sluice::bus bus;
  flaky_log log;
  log.fail_first[1] = 1;
  std::vector<int> letters;
  auto flaky = bus.subscribe([&](const order& o) { return log(o); },
                             with_policy(failure_policy::retry(3, retry_backoff::fixed(200ms))));
  auto dead =
      bus.subscribe([&](const sluice::dead_letter<order>& d) { letters.push_back(d.event.id); });
  auto p = bus.make_producer();
  for (int id = 1; id <= 4; ++id) REQUIRE(p.publish(order{id}, 9) == publish_result::ok);
  bus.poll(4);
  REQUIRE(flaky.stats().held == 3);
  REQUIRE(bus.stop(drain ? sluice::stop_mode::drain : sluice::stop_mode::discard));
  const sluice::type_stats ts = bus.stats<order>();
  if (drain) {
    CHECK(log.successes == std::vector<int>{1, 2, 3, 4});
    CHECK(ts.delivered == 4);
  } else {
    CHECK(log.successes.empty());
    CHECK(ts.dead_lettered == 4);
    CHECK(flaky.stats().dead_lettered == 4);
    CHECK(letters.empty());  // no handler runs for a discarding stop
  }
  CHECK(flaky.stats().held == 0);
  CHECK(flaky.stats().retrying == 0);
  CHECK(bus.queued() == 0);
  CHECK(ts.balanced());
}

TEST_CASE("a subscription reset while events are held is not called for them",
          "[resilience][hold]") {
  test::watchdog dog(60s);
  sluice::bus bus;
  flaky_log log;
  log.fail_first[1] = 1;
  auto flaky = bus.subscribe([&](const order& o) { return log(o); },
                             with_policy(failure_policy::retry(3, retry_backoff::fixed(1ms))));
  auto p = bus.make_producer();
  for (int id = 1; id <= 3; ++id) REQUIRE(p.publish(order{id}, 2) == publish_result::ok);
  bus.poll(3);
  REQUIRE(log.calls == std::vector<int>{1});
  flaky.reset();
  REQUIRE(test::poll_until(bus, [&] { return (bus.queued() == 0); }));
  CHECK(log.calls == std::vector<int>{1});
  REQUIRE(bus.stop());
  const sluice::type_stats ts = bus.stats<order>();
  CHECK(ts.delivered == 3);
  CHECK(ts.balanced());
}

TEST_CASE("a handler that unsubscribes itself while retried with events held behind it",
          "[resilience][hold]") {
  test::watchdog dog(60s);
  sluice::bus bus;
  sluice::subscription self;
  std::vector<int> calls;
  self = bus.subscribe(
      [&](const order& o) {
        calls.push_back(o.id);
        if (calls.size() == 1) return sluice::outcome::failure(1, "first");
        self.reset();  // on its retry
        return sluice::outcome::success();
      },
      with_policy(failure_policy::retry(3, retry_backoff::fixed(1ms))));
  auto p = bus.make_producer();
  for (int id = 1; id <= 3; ++id) REQUIRE(p.publish(order{id}, 4) == publish_result::ok);
  REQUIRE(test::poll_until(bus, [&] { return (bus.queued() == 0); }));
  CHECK(calls == std::vector<int>{1, 1});
  REQUIRE(bus.stop());
  CHECK(bus.stats<order>().delivered == 3);
  CHECK(bus.stats<order>().balanced());
}

// ---- circuit breakers ------------------------------------------------------------

TEST_CASE("breaker: closed, open for the cool-down, half-open probes, closed or open again",
          "[resilience][breaker]") {
  sluice::circuit_breaker cfg;
  cfg.failures = 3;
  cfg.cool_down = std::chrono::nanoseconds(1000);
  cfg.probes = 2;
  sluice::detail::breaker b;
  std::int64_t now = 5000;
  CHECK(b.state() == breaker_state::closed);
  CHECK_FALSE(b.watched());
  CHECK(b.on_success().watched == 0);  // nothing counted: nothing to change
  auto c = b.on_failure(now, cfg);
  CHECK(c.watched == 1);
  CHECK_FALSE(c.opened);
  CHECK(b.on_success().watched == -1);  // a success ends the run of failures
  CHECK_FALSE(b.watched());
  for (int k = 0; k < 2; ++k) CHECK_FALSE(b.on_failure(now, cfg).opened);
  c = b.on_failure(now, cfg);
  CHECK(c.opened);
  CHECK(c.in_a_row == 3);
  CHECK(c.watched == 0);  // watched since the first failure
  CHECK(b.state() == breaker_state::open);
  CHECK_FALSE(b.allow(now, cfg));
  CHECK_FALSE(b.allow(now + 999, cfg));
  CHECK_FALSE(b.on_failure(now + 10, cfg).opened);  // a late result while open changes nothing
  CHECK_FALSE(b.on_success().closed);
  CHECK(b.state() == breaker_state::open);
  // The cool-down ends: two probes, no third.
  CHECK(b.allow(now + 1000, cfg));
  CHECK(b.state() == breaker_state::half_open);
  CHECK(b.allow(now + 1001, cfg));
  CHECK_FALSE(b.allow(now + 1002, cfg));
  // A probe fails: open again, from then.
  c = b.on_failure(now + 1003, cfg);
  CHECK(c.opened);
  CHECK(c.in_a_row == 0);
  CHECK(b.state() == breaker_state::open);
  CHECK_FALSE(b.allow(now + 2002, cfg));
  CHECK(b.allow(now + 2003, cfg));
  // A probe succeeds: closed, no longer watched.
  c = b.on_success();
  CHECK(c.closed);
  CHECK(c.watched == -1);
  CHECK(b.state() == breaker_state::closed);
  CHECK(b.allow(now + 2004, cfg));
  CHECK_FALSE(b.watched());
  // Probes taken and never answered (their thread ended in the handler):
  // after another cool-down, probing starts over.
  for (int k = 0; k < 3; ++k) (void)b.on_failure(now + 3000, cfg);
  REQUIRE(b.state() == breaker_state::open);
  CHECK(b.allow(now + 4000, cfg));
  CHECK(b.allow(now + 4000, cfg));
  CHECK_FALSE(b.allow(now + 4999, cfg));
  CHECK(b.allow(now + 5000, cfg));
  CHECK(b.state() == breaker_state::half_open);
  // Retired (its subscription is gone): it was watched; nothing changes it now.
  CHECK(b.retire());
  CHECK_FALSE(b.watched());
  CHECK_FALSE(b.on_failure(now + 6000, cfg).opened);
  CHECK(b.on_success().watched == 0);
  CHECK(b.allow(now + 6000, cfg));
  CHECK_FALSE(b.retire());
}

TEST_CASE("breaker on a bus: it opens, events are not handed to the handler, a probe closes it",
          "[resilience][breaker]") {
  test::watchdog dog(60s);
  std::vector<failure_kind> kinds;
  std::vector<int> codes;
  sluice::bus bus{sluice::bus_options{}.with_on_failure([&](const sluice::failure_info& f) {
    kinds.push_back(f.kind);
    codes.push_back(f.code);
  })};
  bool broken = true;
  std::vector<int> calls;
  auto gateway = bus.subscribe(
      [&](const order& o) {
        calls.push_back(o.id);
        return broken ? sluice::outcome::failure(503, "down") : sluice::outcome::success();
      },
      with_policy(failure_policy::retry(1000, retry_backoff::fixed(2ms))
                      .skipping_ahead()
                      .with_breaker(3, 30ms),
                  "gateway"));
  int steady = 0;
  auto other = bus.subscribe([&](const order&) { ++steady; });
  auto p = bus.make_producer();
  for (int id = 1; id <= 5; ++id) REQUIRE(p.publish(order{id}, id) == publish_result::ok);
  bus.poll(5);  // the five events, and nothing more (no retry yet)
  // Three calls failed, then the breaker opened: 4 and 5 were not handed over.
  CHECK(calls == std::vector<int>{1, 2, 3});
  CHECK(steady == 5);
  sluice::subscription_stats st = gateway.stats();
  CHECK(st.breaker == breaker_state::open);
  CHECK(st.breaker_opens == 1);
  CHECK(st.short_circuited == 2);
  CHECK(st.retrying == 5);
  auto opened = std::find(kinds.begin(), kinds.end(), failure_kind::breaker_opened);
  REQUIRE(opened != kinds.end());
  CHECK(codes[static_cast<std::size_t>(opened - kinds.begin())] == 3);
  broken = false;
  REQUIRE(test::poll_until(bus, [&] { return gateway.stats().recovered == 5; }));
  st = gateway.stats();
  CHECK(st.breaker == breaker_state::closed);
  CHECK(st.breaker_opens == 1);
  CHECK(std::count(kinds.begin(), kinds.end(), failure_kind::breaker_closed) == 1);
  // While open, nothing reached the handler: every call after the first
  // three came once the cool-down had ended, the first of them the probe.
  CHECK(calls.size() == 8);
  REQUIRE(bus.stop());
  const sluice::type_stats ts = bus.stats<order>();
  CHECK(ts.delivered == 5);
  CHECK(ts.failed == 3);  // attempts not made are not failed calls
  CHECK(ts.balanced());
}

TEST_CASE("breaker: attempts it refuses run out into dead letters that carry breaker_open",
          "[resilience][breaker]") {
  test::watchdog dog(60s);
  sluice::bus bus;
  int calls = 0;
  auto gateway = bus.subscribe(
      [&](const order&) {
        ++calls;
        return sluice::outcome::failure(1, "down");
      },
      with_policy(failure_policy::retry(2, retry_backoff::fixed(1ms))
                      .skipping_ahead()
                      .with_breaker(1, 1h)));
  std::vector<sluice::dead_letter<order>> letters;
  auto dead = bus.subscribe([&](const sluice::dead_letter<order>& d) { letters.push_back(d); });
  auto p = bus.make_producer();
  REQUIRE(p.publish(order{1}, 1) == publish_result::ok);
  REQUIRE(p.publish(order{2}, 2) == publish_result::ok);
  REQUIRE(test::poll_until(bus, [&] { return letters.size() == 2; }));
  CHECK(calls == 1);  // the first call opened it for an hour
  std::vector<int> ids;
  for (const auto& d : letters) {
    ids.push_back(d.event.id);
    CHECK(d.kind == failure_kind::breaker_open);
    CHECK(d.attempts == 2);
  }
  std::sort(ids.begin(), ids.end());
  CHECK(ids == std::vector<int>{1, 2});
  CHECK(gateway.stats().short_circuited == 3);
  CHECK(gateway.stats().breaker == breaker_state::open);
  REQUIRE(bus.stop());
  CHECK(bus.stats<order>().dead_lettered == 2);
  CHECK(bus.stats<order>().balanced());
}

TEST_CASE("a dispatch is not held and not stopped by a breaker", "[resilience][breaker]") {
  test::watchdog dog(60s);
  sluice::bus bus;
  int calls = 0;
  auto gateway = bus.subscribe(
      [&](const order&) {
        ++calls;
        return sluice::outcome::failure(1, "down");
      },
      with_policy(failure_policy::retry(3, retry_backoff::fixed(1h)).with_breaker(1, 1h)));
  REQUIRE(bus.publish(order{1}, 1) == publish_result::ok);
  bus.poll();
  REQUIRE(gateway.stats().breaker == breaker_state::open);
  REQUIRE(gateway.stats().held == 0);
  bus.dispatch(order{2});  // same key as nothing: a dispatch has none
  CHECK(calls == 2);
  REQUIRE(bus.stop(sluice::stop_mode::discard));
  CHECK(bus.stats<order>().balanced());
}

// ---- under load ------------------------------------------------------------------

TEST_CASE("hold_key under four producers and two workers: each key in order and every event once",
          "[resilience][hold][stress]") {
  test::watchdog dog(120s);
  constexpr int producers = 4;
  constexpr int per_producer = 400;
  constexpr int keys = 16;
  constexpr std::uint32_t attempts = 3;
  sluice::bus bus{sluice::bus_options{}.with_lanes(4)};
  std::mutex m;
  // Per event: its producer and place in that producer's sequence of its key.
  std::vector<int> calls(producers * per_producer, 0);
  std::vector<int> ended(producers * per_producer, 0);  // succeeded or dead-lettered
  std::vector<int> last_ended(producers * keys, -1);    // per (producer, key): last place ended
  std::atomic<bool> out_of_order{false};
  auto id_of = [](int producer, int i) { return producer * per_producer + i; };
  auto end = [&](int id) {
    const int producer = id / per_producer;
    const int i = id % per_producer;
    const int slot = producer * keys + i % keys;
    // Events of one (producer, key) end in the order published.
    if (last_ended[static_cast<std::size_t>(slot)] != (i < keys ? -1 : i - keys))
      out_of_order = true;
    last_ended[static_cast<std::size_t>(slot)] = i;
    ++ended[static_cast<std::size_t>(id)];
  };
  auto flaky = bus.subscribe(
      [&](const order& o) {
        std::lock_guard<std::mutex> lock(m);
        const auto i = static_cast<std::size_t>(o.id);
        const int call = ++calls[i];
        // About one event in four fails its first call; a third of those
        // fail every call (dead letters).
        const bool unlucky = (static_cast<unsigned>(o.id) * 2654435761u >> 7) % 4 == 0;
        if (unlucky && (call == 1 || o.id % 3 == 0)) return sluice::outcome::failure(1, "flaky");
        end(o.id);
        return sluice::outcome::success();
      },
      with_policy(
          failure_policy::retry(attempts, retry_backoff::exponential(50us, 1ms).with_jitter())
              .holding_keys(100000)));
  auto dead = bus.subscribe([&](const sluice::dead_letter<order>& d) {
    std::lock_guard<std::mutex> lock(m);
    end(d.event.id);
  });
  REQUIRE(bus.run(2));
  std::vector<std::thread> threads;
  for (int k = 0; k < producers; ++k) {
    threads.emplace_back([&, k] {
      auto p = bus.make_producer();
      for (int i = 0; i < per_producer; ++i)
        if (p.publish(order{id_of(k, i)}, static_cast<sluice::key_type>(i % keys)) !=
            publish_result::ok)
          std::abort();
    });
  }
  for (auto& t : threads) t.join();
  REQUIRE(bus.wait_idle(60s));
  REQUIRE(bus.stop());
  std::lock_guard<std::mutex> lock(m);
  CHECK_FALSE(out_of_order.load());
  int retried_events = 0;
  for (std::size_t i = 0; i < ended.size(); ++i) {
    REQUIRE(ended[i] == 1);
    if (calls[i] > 1) ++retried_events;
  }
  CHECK(retried_events > 0);
  const sluice::type_stats ts = bus.stats<order>();
  CHECK(ts.published == static_cast<std::uint64_t>(producers * per_producer));
  CHECK(ts.balanced());
  CHECK(flaky.stats().held == 0);
  CHECK(flaky.stats().retrying == 0);
}
