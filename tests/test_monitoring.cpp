// Monitoring: latency histograms (queue wait per type, handler calls per
// subscription, kept per lane and merged on read, sampled one in N) and the
// observer hooks (publish, drop, reject, deliver with its duration, failure),
// checked against the bus's own counters, also under four producers and two
// workers with a reader taking snapshots all along.
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <sluice/sluice.hpp>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

namespace {
using namespace std::chrono_literals;

struct tick {
  std::uint64_t n = 0;
};
struct quiet {
  int x = 0;
};

// Spins for at least `ns` on the steady clock.
void spin_for(std::int64_t ns) {
  const std::int64_t until = test::steady_ns() + ns;
  while (test::steady_ns() < until) {
  }
}

// Counts what it is told.
struct counting_observer final : sluice::bus_observer {
  std::atomic<std::uint64_t> published{0}, dropped{0}, rejected{0}, delivered{0}, failed_calls{0},
      failures{0}, delayed{0};
  std::mutex m;
  std::vector<sluice::publish_info> publishes;    // under m, when `keep`
  std::vector<sluice::delivery_info> deliveries;  // under m, when `keep` (event/meta cleared)
  std::vector<std::uint64_t> delivered_sequences;
  bool keep = false;

  void on_publish(const sluice::publish_info& i) noexcept override {
    published += i.count;
    if (i.delayed) delayed += i.count;
    remember(i);
  }
  void on_drop(const sluice::publish_info& i) noexcept override {
    dropped += i.count;
    remember(i);
  }
  void on_reject(const sluice::publish_info& i) noexcept override {
    rejected += i.count;
    remember(i);
  }
  void on_deliver(const sluice::delivery_info& d) noexcept override {
    ++delivered;
    if (!d.ok) ++failed_calls;
    if (keep) {
      std::lock_guard<std::mutex> lock(m);
      deliveries.push_back(d);
      delivered_sequences.push_back(d.meta->sequence);
      deliveries.back().event = nullptr;
      deliveries.back().meta = nullptr;
    }
  }
  void on_failure(const sluice::failure_info&) noexcept override { ++failures; }

 private:
  void remember(const sluice::publish_info& i) {
    if (!keep) return;
    std::lock_guard<std::mutex> lock(m);
    publishes.push_back(i);
  }
};
}  // namespace

TEST_CASE("latency metrics are off by default and cost no histogram", "[monitoring]") {
  sluice::bus bus{sluice::bus_options{}.with_lanes(2)};
  auto sub = bus.subscribe([](const tick&) {});
  auto p = bus.make_producer();
  for (std::uint64_t i = 0; i < 100; ++i) REQUIRE(p.publish(tick{i}) == sluice::publish_result::ok);
  REQUIRE(bus.stop());
  CHECK(bus.stats<tick>().delivered == 100);
  CHECK(bus.latency<tick>().queue_wait.count() == 0);
  CHECK(bus.latency<tick>().handler.count() == 0);
  CHECK(sub.handler_time().count() == 0);
  CHECK(sluice::subscription{}.handler_time().count() == 0);
}

TEST_CASE("with sampling 1 every queue wait and every handler call is timed", "[monitoring]") {
  sluice::bus bus{sluice::bus_options{}.with_lanes(2).with_latency_metrics(1)};
  constexpr std::int64_t slow_ns = 50'000;
  auto slow = bus.subscribe([&](const tick&) { spin_for(slow_ns); },
                            sluice::subscribe_options::named("slow"));
  auto fast = bus.subscribe([](const tick&) {});
  auto p = bus.make_producer();
  constexpr std::uint64_t n = 100;
  for (std::uint64_t i = 0; i < n; ++i)
    REQUIRE(p.publish(tick{i}, i) == sluice::publish_result::ok);
  REQUIRE(p.publish(quiet{}) == sluice::publish_result::ok);  // no subscriber
  // Nobody drains yet: every event waits at least this long in its lane.
  const std::int64_t waited_from = test::steady_ns();
  std::this_thread::sleep_for(3ms);
  const auto waited = static_cast<std::uint64_t>(test::steady_ns() - waited_from);
  while (bus.poll() != 0) {
  }
  const sluice::type_latency l = bus.latency<tick>();
  CHECK(l.queue_wait.count() == n);
  CHECK(l.queue_wait.min() >= waited * 9 / 10);  // the stamp clock's rate is calibrated, not exact
  CHECK(l.handler.count() == 2 * n);
  const sluice::duration_histogram s = slow.handler_time();
  CHECK(s.count() == n);
  CHECK(s.min() >= static_cast<std::uint64_t>(slow_ns) * 9 / 10);
  CHECK(s.percentile(0.5) >= static_cast<std::uint64_t>(slow_ns) * 9 / 10);
  const sluice::duration_histogram f = fast.handler_time();
  CHECK(f.count() == n);
  // A type without subscribers: its queue waits, no handler call.
  CHECK(bus.latency<quiet>().queue_wait.count() == 1);
  CHECK(bus.latency<quiet>().handler.count() == 0);
  CHECK(bus.stats<tick>().handler_calls == 2 * n);
  CHECK(bus.latency_lost() == 0);
  REQUIRE(bus.stop());
}

TEST_CASE("sampling 1 in N times the first event of a lane and every Nth after it",
          "[monitoring]") {
  const std::uint32_t every = GENERATE(2u, 10u, 64u);
  INFO("one in " << every);
  sluice::bus bus{sluice::bus_options{}.with_lanes(1).with_latency_metrics(every)};
  auto sub = bus.subscribe([](const tick&) {});
  auto p = bus.make_producer();
  constexpr std::uint64_t n = 1000;
  for (std::uint64_t i = 0; i < n; ++i) {
    REQUIRE(p.publish(tick{i}) == sluice::publish_result::ok);
    if (i % 97 == 0) bus.poll();  // runs of every length
  }
  while (bus.poll() != 0) {
  }
  const std::uint64_t timed = (n + every - 1) / every;
  CHECK(bus.latency<tick>().queue_wait.count() == timed);
  CHECK(sub.handler_time().count() == timed);
  CHECK(bus.stats<tick>().delivered == n);
  REQUIRE(bus.stop());
}

TEST_CASE("events through stages and the delivery gate are timed too", "[monitoring]") {
  sluice::bus bus{sluice::bus_options{}.with_lanes(1).with_latency_metrics(1)};
  bus.stages<tick>().filter([](const tick& t) { return t.n % 2 == 0; });
  auto even = bus.subscribe([](const tick&) {}, sluice::subscribe_options::named("even"));
  // A breaker that opens after 3 failed calls in a row and stays open: the
  // calls it refuses are not made, so not timed.
  sluice::bus gated{sluice::bus_options{}.with_lanes(1).with_latency_metrics(1)};
  auto broken = gated.subscribe(
      [](const quiet&) { return sluice::outcome::failure(7, "down"); },
      sluice::subscribe_options::named("broken").with_failure_policy(
          sluice::failure_policy::dead_letter().with_breaker(3, std::chrono::hours(1), 1)));
  auto p = bus.make_producer();
  auto q = gated.make_producer();
  for (std::uint64_t i = 0; i < 20; ++i) {
    REQUIRE(p.publish(tick{i}) == sluice::publish_result::ok);
    REQUIRE(q.publish(quiet{}) == sluice::publish_result::ok);
  }
  while (bus.poll() + gated.poll() != 0) {
  }
  CHECK(bus.stats<tick>().filtered == 10);
  CHECK(even.handler_time().count() == 10);
  CHECK(bus.latency<tick>().queue_wait.count() == 20);
  CHECK(broken.handler_time().count() == 3);
  CHECK(broken.stats().short_circuited == 17);
  CHECK(gated.latency<quiet>().queue_wait.count() == 20);
  REQUIRE(bus.stop());
  REQUIRE(gated.stop());
}

TEST_CASE("the observer is told of every publish, drop, refusal, call and failure",
          "[monitoring]") {
  auto obs = std::make_shared<counting_observer>();
  obs->keep = true;
  sluice::bus bus{sluice::bus_options{}
                      .with_lanes(1)
                      .with_lane_capacity(4)
                      .with_policy(sluice::full_policy::drop_newest)
                      .with_observer(obs)};
  auto ok = bus.subscribe([](const tick&) {}, sluice::subscribe_options::named("ok"));
  auto bad = bus.subscribe(
      [](const tick& t) {
        return t.n == 2 ? sluice::outcome::failure(5, "two") : sluice::outcome::success();
      },
      sluice::subscribe_options::named("bad"));
  auto p = bus.make_producer();
  std::uint64_t accepted = 0, dropped = 0, refused = 0;
  for (std::uint64_t i = 0; i < 6; ++i) {
    const sluice::publish_result r = p.publish(tick{i}, 1);
    accepted += r == sluice::publish_result::ok;
    dropped += r == sluice::publish_result::dropped;
  }
  refused += p.try_publish(tick{9}) == sluice::publish_result::full;
  std::vector<tick> more(3);
  const std::size_t bulk = p.publish_bulk(more.begin(), more.end());
  dropped += more.size() - bulk;
  CHECK(accepted == 4);
  CHECK(refused == 1);
  while (bus.poll() != 0) {
  }
  REQUIRE(p.publish_after(1ms, tick{2}) == sluice::publish_result::ok);
  REQUIRE(bus.wait_idle(10s));
  REQUIRE(bus.stop());
  refused += p.publish(tick{0}) == sluice::publish_result::stopped;

  const sluice::type_stats s = bus.stats<tick>();
  CHECK(obs->published == s.published - s.dropped);
  CHECK(obs->dropped == s.dropped);
  CHECK(obs->dropped == dropped);
  CHECK(obs->rejected == s.rejected);
  CHECK(obs->rejected == refused);
  CHECK(obs->delayed == 1);
  CHECK(obs->delivered == s.handler_calls);
  CHECK(obs->failed_calls == 2);  // tick 2: the first one, and the delayed one
  CHECK(obs->failures == s.failed);
  std::lock_guard<std::mutex> lock(obs->m);
  for (const auto& i : obs->publishes) {
    CHECK(i.type == sluice::type_number<tick>());
    CHECK(i.producer == p.id());
    if (i.result == sluice::publish_result::ok && !i.delayed && i.count == 1) {
      CHECK(i.has_key);
      CHECK(i.key == 1);
    }
  }
  // Every accepted event's sequence is seen by on_publish, then by each call.
  std::vector<std::uint64_t> seqs;
  for (const auto& i : obs->publishes)
    if (i.result == sluice::publish_result::ok)
      for (std::uint64_t k = 0; k < i.count; ++k) seqs.push_back(i.sequence + k);
  std::vector<std::uint64_t> called = obs->delivered_sequences;
  std::sort(called.begin(), called.end());
  called.erase(std::unique(called.begin(), called.end()), called.end());
  std::sort(seqs.begin(), seqs.end());
  CHECK(called == seqs);
  for (const auto& d : obs->deliveries) {
    CHECK(d.type == sluice::type_number<tick>());
    const std::string name = d.subscription;
    CHECK((name == "ok" || name == "bad"));
    CHECK(d.lane == 0);
  }
}

TEST_CASE("latency and the observer under four producers and two workers", "[monitoring]") {
  auto obs = std::make_shared<counting_observer>();
  const std::uint32_t every = GENERATE(1u, 7u);
  INFO("one in " << every);
  sluice::bus_options o;
  o.lanes = 4;
  o.lane_capacity = 256;
  o.latency_sample_every = every;
  if (every == 1) o.observer = obs;
  sluice::bus bus{o};
  std::atomic<std::uint64_t> calls{0};
  auto a = bus.subscribe([&](const tick&) { calls.fetch_add(1, std::memory_order_relaxed); },
                         sluice::subscribe_options::named("a"));
  auto b = bus.subscribe([&](const tick& t) {
    calls.fetch_add(1, std::memory_order_relaxed);
    if (t.n % 5 == 0) std::this_thread::yield();
  });
  test::watchdog dog(120s, "monitoring under load");
  REQUIRE(bus.run(2));
  std::atomic<bool> done{false};
  std::uint64_t reads = 0, last = 0;
  bool monotonic = true;
  std::thread reader([&] {
    while (!done.load()) {
      const std::uint64_t c = bus.latency<tick>().queue_wait.count();
      monotonic = monotonic && c >= last;
      last = c;
      (void)a.handler_time().percentile(0.99);
      ++reads;
    }
  });
  constexpr std::uint64_t per_producer = 5000;
  std::vector<std::thread> producers;
  for (int k = 0; k < 4; ++k)
    producers.emplace_back([&, k] {
      auto p = bus.make_producer();
      for (std::uint64_t i = 0; i < per_producer; ++i)
        (void)p.publish(tick{i}, static_cast<sluice::key_type>(i * 4 + static_cast<unsigned>(k)));
    });
  for (auto& t : producers) t.join();
  REQUIRE(bus.wait_idle(60s));
  done = true;
  reader.join();
  REQUIRE(bus.stop());
  const sluice::type_stats s = bus.stats<tick>();
  const std::uint64_t n = 4 * per_producer;
  CHECK(s.published == n);
  CHECK(s.delivered == n);
  CHECK(reads > 0);
  CHECK(monotonic);
  const sluice::type_latency l = bus.latency<tick>();
  if (every == 1) {
    CHECK(l.queue_wait.count() == n);
    CHECK(l.handler.count() == 2 * n);
    CHECK(a.handler_time().count() == n);
    CHECK(obs->published == n);
    CHECK(obs->delivered == 2 * n);
  } else {
    // One in `every` per lane, the first of each lane included.
    CHECK(l.queue_wait.count() >= n / every);
    CHECK(l.queue_wait.count() <= n / every + bus.lane_count());
    CHECK(l.handler.count() == 2 * l.queue_wait.count());
  }
  CHECK(calls.load() == 2 * n);
}

TEST_CASE("an observer may publish through the bus from its hooks", "[monitoring]") {
  // bus.publish holds a shared producer while it publishes: the observer is
  // told once it is released, so a hook that publishes does not wait on
  // itself.
  struct echoing final : sluice::bus_observer {
    sluice::bus* bus = nullptr;
    std::atomic<std::uint64_t> published{0}, echoed{0}, delivered{0};
    void on_publish(const sluice::publish_info& i) noexcept override {
      published += i.count;
      if (i.type == sluice::type_number<tick>() &&
          bus->publish(quiet{static_cast<int>(i.sequence)}) == sluice::publish_result::ok)
        ++echoed;
    }
    void on_deliver(const sluice::delivery_info& d) noexcept override {
      ++delivered;
      const bool echo =
          d.type == sluice::type_number<quiet>() && static_cast<const quiet*>(d.event)->x >= 0;
      if (echo) (void)bus->try_publish(quiet{-1});
    }
  };
  auto obs = std::make_shared<echoing>();
  sluice::bus bus{sluice::bus_options{}.with_lanes(2).with_observer(obs)};
  obs->bus = &bus;
  std::atomic<int> quiet_calls{0};
  auto q = bus.subscribe([&](const quiet&) { ++quiet_calls; });
  auto t = bus.subscribe([](const tick&) {});
  test::watchdog dog(60s, "an observer that publishes");
  REQUIRE(bus.run(2));
  constexpr std::uint64_t n = 200;
  for (std::uint64_t i = 0; i < n; ++i) {
    REQUIRE(bus.publish(tick{i}) == sluice::publish_result::ok);
    if (i % 10 == 0) REQUIRE(bus.publish_after(1ms, tick{i}) == sluice::publish_result::ok);
  }
  // Each echo's delivery publishes one quiet{-1} more (from inside the
  // drainer).
  REQUIRE(test::wait_until([&] { return obs->echoed.load() == n + n / 10; },
                           std::chrono::milliseconds(30000)));
  REQUIRE(bus.stop());
  const sluice::type_stats ticks = bus.stats<tick>(), quiets = bus.stats<quiet>();
  CHECK(ticks.published == n + n / 10);
  CHECK(obs->published == ticks.published + quiets.published);
  CHECK(obs->delivered == ticks.handler_calls + quiets.handler_calls);
  CHECK(quiets.balanced());
}

TEST_CASE("types that take turns in a lane are each sampled", "[monitoring]") {
  // Events of two types alternate; one countdown for the lane would time
  // only one of them with an even N.
  sluice::bus bus{sluice::bus_options{}.with_lanes(1).with_latency_metrics(2)};
  auto a = bus.subscribe([](const tick&) {});
  auto b = bus.subscribe([](const quiet&) {});
  auto p = bus.make_producer();
  for (int i = 0; i < 100; ++i) {
    REQUIRE(p.publish(tick{}) == sluice::publish_result::ok);
    REQUIRE(p.publish(quiet{}) == sluice::publish_result::ok);
  }
  while (bus.poll() != 0) {
  }
  CHECK(a.handler_time().count() == 50);
  CHECK(b.handler_time().count() == 50);
  REQUIRE(bus.stop());
}

TEST_CASE("a type's handler histogram keeps the calls of subscriptions that ended",
          "[monitoring]") {
  sluice::bus bus{sluice::bus_options{}.with_lanes(2).with_latency_metrics(1)};
  auto keep = bus.subscribe([](const tick&) {});
  auto gone = bus.subscribe([](const tick&) {});
  auto p = bus.make_producer();
  for (std::uint64_t i = 0; i < 50; ++i)
    REQUIRE(p.publish(tick{i}, i) == sluice::publish_result::ok);
  while (bus.poll() != 0) {
  }
  const std::uint64_t before = bus.latency<tick>().handler.count();
  CHECK(before == 100);
  gone.reset();
  // Its node is freed once no subscriber array holds it (the next change).
  auto later = bus.subscribe([](const tick&) {});
  later.reset();
  CHECK(bus.latency<tick>().handler.count() == before);
  for (std::uint64_t i = 0; i < 10; ++i)
    REQUIRE(p.publish(tick{i}, i) == sluice::publish_result::ok);
  while (bus.poll() != 0) {
  }
  CHECK(bus.latency<tick>().handler.count() == before + 10);
  CHECK(keep.handler_time().count() == 60);
  REQUIRE(bus.stop());
}
