// Run modes: poll_for's budget, wait_idle, and the two footguns a bus catches
// (a blocking publish nobody can drain, a destructor that delivers to nobody).
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <sluice/sluice.hpp>
#include <thread>
#include <vector>

#include "support.hpp"

namespace {
using sluice::publish_result;
using namespace std::chrono_literals;

struct job {
  int n;
};
struct other {
  int n;
};

// A clock that moves only when told: the budget tests never depend on how
// fast this machine is.
struct fake_clock {
  using rep = std::int64_t;
  using period = std::nano;
  using duration = std::chrono::nanoseconds;
  using time_point = std::chrono::time_point<fake_clock>;
  static constexpr bool is_steady = true;
  static inline std::atomic<std::int64_t> ns{0};
  static time_point now() noexcept { return time_point(duration(ns.load())); }
  static void advance(duration d) noexcept { ns.fetch_add(d.count()); }
};

struct failures {
  std::vector<sluice::failure_info> seen;
  std::vector<int> codes;
  sluice::bus_options options() {
    return sluice::bus_options{}.with_on_failure([this](const sluice::failure_info& f) {
      seen.push_back(f);
      codes.push_back(f.code);
    });
  }
  [[nodiscard]] std::size_t count(sluice::failure_kind k) const {
    std::size_t n = 0;
    for (const auto& f : seen) n += f.kind == k ? 1 : 0;
    return n;
  }
};
}  // namespace

TEST_CASE("poll_for with an unbounded budget drains everything", "[run][poll_for]") {
  sluice::bus bus{sluice::bus_options{}.with_lanes(4).with_lane_capacity(4096)};
  std::uint64_t calls = 0;
  auto sub = bus.subscribe<job>([&](const job&) { ++calls; });
  auto p = bus.make_producer();
  for (int i = 0; i < 3000; ++i)
    REQUIRE(p.publish(job{i}, static_cast<sluice::key_type>(i)) == publish_result::ok);
  CHECK(bus.poll_for(std::chrono::nanoseconds::max()) == 3000);
  for (int i = 0; i < 500; ++i) REQUIRE(p.publish(job{i}) == publish_result::ok);
  CHECK(bus.poll_for(std::chrono::hours::max()) == 500);
  for (int i = 0; i < 500; ++i) REQUIRE(p.publish(job{i}) == publish_result::ok);
  CHECK(bus.poll_for(std::chrono::duration<double>(1e300)) == 500);
  CHECK(calls == 4000);
  CHECK(bus.queued() == 0);
}

TEST_CASE("poll_for with no budget delivers one event, not a batch", "[run][poll_for]") {
  sluice::bus bus{sluice::bus_options{}.with_lanes(1)};
  int calls = 0;
  auto sub = bus.subscribe<job>([&](const job&) { ++calls; });
  auto p = bus.make_producer();
  for (int i = 0; i < 10; ++i) REQUIRE(p.publish(job{i}) == publish_result::ok);
  CHECK(bus.poll_for(-5ms) == 1);
  CHECK(bus.poll_for(0ns) == 1);
  CHECK(bus.poll_for(std::chrono::duration<double>(-1.0)) == 1);
  CHECK(calls == 3);
  CHECK(bus.queued() == 7);
  CHECK(bus.poll() == 7);
}

TEST_CASE("poll_for overruns its budget by at most one handler call", "[run][poll_for]") {
  // Handlers of 0.5 ms and a 5 ms budget: a batch of SLUICE_DRAIN_BATCH (64)
  // events checked once would take 32 ms.
  sluice::bus bus{sluice::bus_options{}.with_lanes(2).with_lane_capacity(512)};
  const auto handler_time = 500us;
  std::vector<int> order;
  auto sub = bus.subscribe<job>([&](const job& j) {
    fake_clock::advance(handler_time);
    order.push_back(j.n);
  });
  auto p = bus.make_producer();
  for (int i = 0; i < 400; ++i) REQUIRE(p.publish(job{i}, 7) == publish_result::ok);  // one lane
  for (int frame = 0; frame < 20; ++frame) {
    const std::int64_t start = fake_clock::ns.load();
    const std::size_t n = bus.poll_for<fake_clock>(5ms);
    const auto spent = std::chrono::nanoseconds(fake_clock::ns.load() - start);
    CHECK(n >= 1);
    CHECK(spent <= 5ms + handler_time);  // the budget, plus the call that crossed it
    CHECK(spent >= 5ms);                 // and no frame gives up early while events wait
  }
  // What a spent budget left in the lane's batch came first in the next
  // frame: the order of the key holds across frames.
  bus.poll();
  REQUIRE(order.size() == 400);
  for (std::size_t i = 0; i < order.size(); ++i) REQUIRE(order[i] == static_cast<int>(i));
  CHECK(bus.stats<job>().balanced());
}

TEST_CASE("events left in a lane by poll_for are delivered by workers and by stop",
          "[run][poll_for]") {
  test::watchdog wd(std::chrono::seconds(60), "carried events");
  sluice::bus bus{sluice::bus_options{}.with_lanes(1)};
  std::atomic<int> calls{0};
  auto sub = bus.subscribe<job>([&](const job&) {
    fake_clock::advance(1ms);
    ++calls;
  });
  auto p = bus.make_producer();
  for (int i = 0; i < 100; ++i) REQUIRE(p.publish(job{i}) == publish_result::ok);
  CHECK(bus.poll_for<fake_clock>(2ms) < 100);  // stops with most of the batch carried
  CHECK(bus.queued() == 100 - static_cast<std::size_t>(calls.load()));
  REQUIRE(bus.run(1, std::chrono::microseconds(0)));  // parks at once when idle
  REQUIRE(bus.wait_idle(30s));
  CHECK(calls.load() == 100);

  sluice::bus b2{sluice::bus_options{}.with_lanes(1)};
  int calls2 = 0;
  auto sub2 = b2.subscribe<job>([&](const job&) {
    fake_clock::advance(1ms);
    ++calls2;
  });
  auto p2 = b2.make_producer();
  for (int i = 0; i < 100; ++i) REQUIRE(p2.publish(job{i}) == publish_result::ok);
  CHECK(b2.poll_for<fake_clock>(2ms) < 100);
  p2 = sluice::producer{};
  b2.stop();
  CHECK(calls2 == 100);
  CHECK(b2.stats<job>().balanced());
}

TEST_CASE("a blocking publish nobody can drain returns full instead of hanging", "[run][footgun]") {
  test::watchdog wd(std::chrono::seconds(30), "no drainer");
  failures f;
  sluice::bus bus{f.options().with_lanes(1).with_lane_capacity(4)};
  int calls = 0;
  auto sub = bus.subscribe<job>([&](const job&) { ++calls; });
  auto p = bus.make_producer();
  // One thread, no workers, nobody has polled: the fifth event would wait for
  // this very thread.
  for (int i = 0; i < 4; ++i) REQUIRE(p.publish(job{i}) == publish_result::ok);
  CHECK(p.publish(job{4}) == publish_result::full);
  CHECK(bus.publish(job{5}) == publish_result::full);  // the shared producers too
  CHECK(f.count(sluice::failure_kind::no_drainer) == 2);
  CHECK(bus.stats<job>().rejected == 2);
  CHECK(bus.stats<job>().failed == 0);  // not a failed call
  CHECK(bus.poll() == 4);
  // Having polled does not change it: this thread is still the only drainer.
  for (int i = 0; i < 4; ++i) REQUIRE(p.publish(job{i}) == publish_result::ok);
  CHECK(p.publish(job{4}) == publish_result::full);
  CHECK(f.count(sluice::failure_kind::no_drainer) == 3);
  CHECK(bus.poll() == 4);
  CHECK(calls == 8);
  CHECK(bus.stats<job>().balanced());
}

TEST_CASE("a failure observer may publish when a blocking publish finds no drainer",
          "[run][footgun]") {
  // The refusal is reported after the shared producer is given back: an
  // observer that publishes (a dead letter, a metric) from the same thread
  // takes that same shared producer, and waited for it for ever.
  test::watchdog wd(std::chrono::seconds(30), "observer publishes");
  sluice::bus* self = nullptr;
  int reports = 0;
  publish_result from_observer = publish_result::ok;
  sluice::bus bus{sluice::bus_options{}.with_lanes(1).with_lane_capacity(4).with_on_failure(
      [&](const sluice::failure_info& f) {
        if (f.kind != sluice::failure_kind::no_drainer) return;
        ++reports;
        from_observer = self->try_publish(job{-1});
      })};
  self = &bus;
  int calls = 0;
  auto sub = bus.subscribe<job>([&](const job&) { ++calls; });
  for (int i = 0; i < 4; ++i) REQUIRE(bus.publish(job{i}) == publish_result::ok);
  CHECK(bus.publish(job{4}) == publish_result::full);
  CHECK(reports == 1);
  CHECK(from_observer == publish_result::full);  // the lane is still full
  CHECK(bus.poll() == 4);
  CHECK(calls == 4);
  CHECK(bus.stats<job>().rejected == 2);
  CHECK(bus.stats<job>().balanced());
}

TEST_CASE("a blocking publish waits when another thread drains", "[run][footgun]") {
  test::watchdog wd(std::chrono::seconds(30), "other drainer");
  failures f;
  sluice::bus bus{f.options().with_lanes(1).with_lane_capacity(4)};
  std::atomic<int> calls{0};
  auto sub = bus.subscribe<job>([&](const job&) { ++calls; });
  std::atomic<bool> done{false};
  std::atomic<bool> polled{false};
  std::thread poller([&] {
    while (!done.load()) {
      bus.poll();
      polled.store(true);
      std::this_thread::yield();
    }
  });
  REQUIRE(test::wait_until([&] { return polled.load(); }));
  auto p = bus.make_producer();
  for (int i = 0; i < 100; ++i) REQUIRE(p.publish(job{i}) == publish_result::ok);
  REQUIRE(test::wait_until([&] { return calls.load() == 100; }));
  done.store(true);
  poller.join();
  CHECK(f.count(sluice::failure_kind::no_drainer) == 0);
}

TEST_CASE("a destructor that delivers to nobody says so", "[run][footgun]") {
  failures f;
  {
    sluice::bus bus{f.options().with_lanes(2)};
    int calls = 0;
    {
      auto sub = bus.subscribe<job>([&](const job&) { ++calls; });
      bus.publish(job{1});
      CHECK(bus.poll() == 1);
    }  // the subscription goes first (declared after the bus, in the same scope)
    for (int i = 0; i < 3; ++i) bus.publish(job{i});
    bus.publish(other{1});  // never had a subscriber, but queued all the same
    CHECK(calls == 1);
  }
  REQUIRE(f.count(sluice::failure_kind::unrouted_in_destructor) == 2);
  int codes = 0;
  for (const auto& x : f.seen)
    if (x.kind == sluice::failure_kind::unrouted_in_destructor) codes += x.code;
  CHECK(codes == 4);

  // Positive controls: delivered events, or a stop() before the destructor,
  // are not reported.
  failures g;
  int calls = 0;
  {
    sluice::subscription sub;  // declared before the bus: outlives it
    sluice::bus bus{g.options()};
    sub = bus.subscribe<job>([&](const job&) { ++calls; });
    for (int i = 0; i < 3; ++i) bus.publish(job{i});
  }
  CHECK(calls == 3);
  CHECK(g.seen.empty());
  {
    sluice::bus bus{g.options()};
    bus.publish(job{1});
    bus.stop();
  }
  CHECK(g.seen.empty());
}

TEST_CASE("wait_idle waits for the workers to settle everything", "[run][wait_idle]") {
  test::watchdog wd(std::chrono::seconds(60), "wait_idle");
  sluice::bus bus{sluice::bus_options{}.with_lanes(4).with_lane_capacity(256)};
  std::atomic<std::uint64_t> calls{0};
  std::atomic<std::uint64_t> children{0};
  auto sub = bus.subscribe<job>([&](const job& j) {
    calls.fetch_add(1);
    if (j.n % 10 == 0) {
      bus.publish(other{j.n});  // handlers publish: part of what wait_idle waits for
    }
  });
  auto sub2 = bus.subscribe<other>([&](const other&) { children.fetch_add(1); });
  REQUIRE(bus.run(2));
  auto p = bus.make_producer();
  for (int round = 0; round < 20; ++round) {
    for (int i = 0; i < 500; ++i) p.publish(job{i}, static_cast<sluice::key_type>(i));
    REQUIRE(bus.wait_idle(30s));
    CHECK(bus.queued() == 0);
    CHECK(calls.load() == static_cast<std::uint64_t>(500 * (round + 1)));
    CHECK(children.load() == static_cast<std::uint64_t>(50 * (round + 1)));
    const auto st = bus.stats<job>();
    CHECK(st.published == st.delivered);
  }
}

TEST_CASE("stop ends while other threads keep publishing and are refused", "[run][wait_idle]") {
  // A draining stop() ends when its workers see the bus idle: publishes that
  // stop() refuses must not look like new work (they once reserved a place
  // first, which could keep the workers from seeing the bus idle for as long
  // as the refusals came).
  test::watchdog wd(std::chrono::seconds(60), "stop with refused publishers");
  sluice::bus bus{sluice::bus_options{}.with_lanes(1).with_lane_capacity(64)};
  std::atomic<std::uint64_t> calls{0};
  auto sub = bus.subscribe<job>([&](const job&) { calls.fetch_add(1); });
  REQUIRE(bus.run(1));
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> accepted{0};
  std::atomic<std::uint64_t> refused{0};
  std::vector<std::thread> producers;
  for (int t = 0; t < 4; ++t) {
    producers.emplace_back([&, t] {
      auto p = bus.make_producer();
      std::uint64_t i = 0;
      while (!done.load()) {
        const auto r = p.try_publish(job{static_cast<int>(i)}, i * 2 + static_cast<unsigned>(t));
        ++i;
        if (r == publish_result::ok) accepted.fetch_add(1);
        if (r == publish_result::stopped) refused.fetch_add(1);
      }
    });
  }
  while (calls.load() < 1000) std::this_thread::yield();
  bus.stop();  // hung here: the refused publishes kept the workers busy
  done.store(true);
  for (auto& t : producers) t.join();
  CHECK(calls.load() == accepted.load());  // everything accepted was delivered
  const auto st = bus.stats<job>();
  CHECK(st.published == st.delivered);
  CHECK(st.rejected >= refused.load());
}

TEST_CASE("wait_idle without workers drains on the calling thread", "[run][wait_idle]") {
  sluice::bus bus{sluice::bus_options{}.with_lanes(2)};
  int calls = 0;
  auto sub = bus.subscribe<job>([&](const job&) { ++calls; });
  auto p = bus.make_producer();
  for (int i = 0; i < 300; ++i) p.publish(job{i}, static_cast<sluice::key_type>(i));
  CHECK(bus.wait_idle(30s));
  CHECK(calls == 300);
  CHECK(bus.wait_idle());  // nothing to do: idle at once
}

TEST_CASE("wait_idle gives up when handlers keep the bus busy, and inside handlers",
          "[run][wait_idle]") {
  test::watchdog wd(std::chrono::seconds(60), "busy bus");
  sluice::bus bus{sluice::bus_options{}.with_lanes(1)};
  std::atomic<bool> again{true};
  std::atomic<int> from_handler{-1};
  auto sub = bus.subscribe<job>([&](const job& j) {
    if (j.n == 0) from_handler.store(bus.wait_idle(1s) ? 1 : 0);
    if (again.load()) bus.publish(job{j.n + 1});  // for ever, until told
  });
  REQUIRE(bus.run(1));
  bus.publish(job{0});
  CHECK_FALSE(bus.wait_idle(20ms));  // a handler republishes every event: never idle
  again.store(false);
  CHECK(bus.wait_idle(30s));
  CHECK(from_handler.load() == 0);  // refused from its own handler
}

TEST_CASE("subscribe takes the event type from the handler's parameter", "[basic][deduce]") {
  sluice::bus bus;
  int by_ref = 0, by_value = 0, by_view = 0, by_functor = 0, mut = 0;
  static int fn_calls = 0;
  struct functor {
    int* n;
    void operator()(const other&) const { ++*n; }
  };
  auto a = bus.subscribe([&](const job&) { ++by_ref; });
  auto b = bus.subscribe([&](job) { ++by_value; });
  auto c = bus.subscribe([&](sluice::event_view<job> v) { by_view += v->n; });
  auto d = bus.subscribe(+[](const other&) { ++fn_calls; });
  auto e = bus.subscribe(functor{&by_functor});
  auto f = bus.subscribe([&, k = 0](const other&) mutable { mut = ++k; });
  const sluice::channel loud{"deduce.loud"};
  int on_channel = 0;
  auto g = bus.subscribe(loud, [&](const job&) -> sluice::outcome {
    ++on_channel;
    return sluice::outcome::success();
  });
  CHECK(bus.dispatch(job{2}) == 3);  // not g: it listens on "deduce.loud" only
  CHECK(bus.dispatch(other{1}) == 3);
  CHECK(by_ref == 1);
  CHECK(by_value == 1);
  CHECK(by_view == 2);
  CHECK(fn_calls == 1);
  CHECK(by_functor == 1);
  CHECK(mut == 1);
  CHECK(on_channel == 0);
  CHECK(g.active());
}
