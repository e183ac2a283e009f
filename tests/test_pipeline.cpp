// The processing layer: filter, transform, route and tap stages, channels,
// key extractors; their accounting, ordering, failures and configuration rules.
#include <algorithm>
#include <array>
#include <atomic>
#include <catch2/catch.hpp>
#include <optional>
#include <random>
#include <sluice/sluice.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support.hpp"

namespace {
struct reading {
  int sensor;
  double celsius;
};
struct alert {
  int sensor;
  double celsius;
  int level;
};
struct order {
  std::uint64_t id;
  std::int64_t cents;
  int n;  // per-order sequence
  int producer;
};
struct invoice {
  std::uint64_t order;
  std::int64_t cents;
  int n;
  int producer;
};
struct ping {
  int n;
};
struct pong {
  int n;
};
}  // namespace

TEST_CASE("filter drops events and counts them", "[pipeline]") {
  sluice::bus bus;
  bus.stages<reading>().filter([](const reading& r) { return r.celsius > -50 && r.celsius < 80; });
  std::vector<double> got;
  auto s = bus.subscribe<reading>([&](const reading& r) { got.push_back(r.celsius); });
  auto p = bus.make_producer();
  for (double c : {20.0, 200.0, -99.0, 21.5}) p.publish(reading{1, c});
  bus.poll();
  CHECK(got == std::vector<double>{20.0, 21.5});
  const auto st = bus.stats<reading>();
  CHECK(st.filtered == 2);
  CHECK(st.delivered == 2);
  CHECK(st.balanced());
}

TEST_CASE("transform T to U: U's chain and subscribers take over", "[pipeline]") {
  sluice::bus bus;
  bus.stages<reading>()
      .filter([](const reading& r) { return r.celsius < 80; })
      .transform([](const reading& r) -> std::optional<alert> {
        if (r.celsius < 30) return std::nullopt;  // nothing to say: filtered
        return alert{r.sensor, r.celsius, r.celsius > 50 ? 2 : 1};
      });
  std::vector<int> levels;
  int readings_seen = 0;
  auto a = bus.subscribe<alert>([&](const alert& x) { levels.push_back(x.level); });
  auto r = bus.subscribe<reading>([&](const reading&) { ++readings_seen; });
  auto p = bus.make_producer();
  for (double c : {20.0, 35.0, 60.0, 90.0}) p.publish(reading{7, c});
  bus.poll();
  CHECK(levels == std::vector<int>{1, 2});
  CHECK(readings_seen == 0);  // transformed readings are not delivered as readings
  const auto rs = bus.stats<reading>();
  CHECK(rs.published == 4);
  CHECK(rs.transformed == 2);
  CHECK(rs.filtered == 2);  // 90 by the filter, 20 by the empty optional
  CHECK(rs.balanced());
  const auto as = bus.stats<alert>();
  CHECK(as.published == 2);  // made by the transform
  CHECK(as.delivered == 2);
  CHECK(as.balanced());
}

TEST_CASE("transform T to T enriches and the chain goes on", "[pipeline]") {
  sluice::bus bus;
  std::vector<double> tapped;
  bus.stages<reading>()
      .transform([](const reading& r) {
        return reading{r.sensor, r.celsius * 2};
      })
      .tap([&](const reading& r) { tapped.push_back(r.celsius); })
      .filter([](const reading& r) { return r.celsius > 10; });
  std::vector<double> got;
  auto s = bus.subscribe<reading>([&](const reading& r) { got.push_back(r.celsius); });
  bus.publish(reading{1, 3});
  bus.publish(reading{1, 8});
  bus.poll();
  CHECK(tapped == std::vector<double>{6, 16});
  CHECK(got == std::vector<double>{16});
  CHECK(bus.stats<reading>().balanced());
}

TEST_CASE("route picks a channel, unheard channels are unrouted", "[pipeline]") {
  sluice::bus bus;
  const sluice::channel pager{"pager"}, dashboard{"dashboard"}, archive{"archive"};
  CHECK(pager != dashboard);
  CHECK(sluice::channel{"pager"} == pager);
  bus.stages<alert>().route(
      [&](const alert& a) { return a.level >= 2 ? pager : (a.level == 1 ? dashboard : archive); });
  int paged = 0, shown = 0, all = 0;
  auto sp = bus.subscribe<alert>(pager, [&](const alert&) { ++paged; });
  auto sd = bus.subscribe<alert>(dashboard, [&](const alert&) { ++shown; });
  auto p = bus.make_producer();
  for (int level : {2, 1, 0, 2}) p.publish(alert{1, 0, level});
  bus.poll();
  CHECK(paged == 2);
  CHECK(shown == 1);
  auto st = bus.stats<alert>();
  CHECK(st.delivered == 3);
  CHECK(st.unrouted == 1);  // archive has no subscriber
  CHECK(st.balanced());
  // A subscription without a channel hears every channel.
  auto any = bus.subscribe<alert>([&](const alert&) { ++all; });
  p.publish(alert{1, 0, 0});
  bus.poll();
  CHECK(all == 1);
  CHECK(bus.stats<alert>().unrouted == 1);
}

TEST_CASE("channel subscribers do not hear unrouted events of the default channel", "[pipeline]") {
  sluice::bus bus;
  int on_pager = 0;
  auto s = bus.subscribe<alert>(sluice::channel{"pager"}, [&](const alert&) { ++on_pager; });
  bus.publish(alert{1, 0, 3});  // no route stage: default channel
  bus.poll();
  CHECK(on_pager == 0);
  CHECK(bus.stats<alert>().unrouted == 1);
}

TEST_CASE("stages run in dispatch too, on the caller's thread", "[pipeline]") {
  sluice::bus bus;
  const auto caller = std::this_thread::get_id();
  bool same_thread = false;
  bus.stages<ping>()
      .tap([&](const ping&) { same_thread = std::this_thread::get_id() == caller; })
      .transform([](const ping& p) { return pong{p.n + 1}; });
  int got = 0;
  auto s = bus.subscribe<pong>([&](const pong& p) { got = p.n; });
  CHECK(bus.dispatch(ping{41}) == 0);  // no ping handler called; the pong was handled
  CHECK(got == 42);
  CHECK(same_thread);
}

TEST_CASE("a key extractor keys events published without a key", "[pipeline]") {
  sluice::bus bus{sluice::bus_options{}.with_lanes(8)};
  REQUIRE(bus.key<order>([](const order& o) { return o.id; }) == nullptr);
  std::vector<sluice::metadata> metas;
  auto s = bus.subscribe<order>([&](sluice::event_view<order> v) { metas.push_back(v.meta()); });
  auto p = bus.make_producer();
  p.publish(order{42, 100, 1, 0});
  std::vector<order> batch{{7, 1, 1, 0}, {8, 1, 1, 0}};
  p.publish_bulk(batch.begin(), batch.end());
  p.publish(order{5, 1, 1, 0}, 99);  // an explicit key wins
  bus.poll();
  REQUIRE(metas.size() == 4);
  std::vector<std::uint64_t> keys;
  for (auto& m : metas) {
    CHECK(m.has_key);
    keys.push_back(m.key);
  }
  std::sort(keys.begin(), keys.end());
  CHECK(keys == std::vector<std::uint64_t>{7, 8, 42, 99});
}

TEST_CASE("per-key order holds through transforms: 4 producers, 2 workers", "[pipeline]") {
  test::watchdog wd(std::chrono::seconds(90), "pipeline ordering");
  constexpr int producers = 4, orders = 32, per_producer = 10000;
  sluice::bus bus{sluice::bus_options{}.with_lanes(8).with_lane_capacity(256)};
  REQUIRE(bus.key<order>([](const order& o) { return o.id; }) == nullptr);
  bus.stages<order>()
      .filter([](const order& o) { return o.cents != 13; })  // a few are filtered
      .transform([](const order& o) {
        return invoice{o.id, o.cents, o.n, o.producer};
      });
  std::array<std::array<int, orders>, producers> last{};
  std::atomic<long> violations{0}, seen{0};
  auto s = bus.subscribe<invoice>([&](const invoice& i) {
    int& l = last[static_cast<std::size_t>(i.producer)][i.order];
    if (i.n <= l) ++violations;  // filtered ones leave gaps, never reorder
    l = i.n;
    ++seen;
  });
  REQUIRE(bus.run(2));
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p)
    threads.emplace_back([&bus, p] {
      auto prod = bus.make_producer();
      std::mt19937 rng(static_cast<unsigned>(p) + 3u);
      std::array<int, orders> next{};
      for (int i = 0; i < per_producer; ++i) {
        const auto id = static_cast<std::uint64_t>(rng() % orders);
        const int n = ++next[id];
        prod.publish(order{id, static_cast<std::int64_t>(rng() % 20), n, p});
      }
    });
  for (auto& t : threads) t.join();
  REQUIRE(bus.stop());
  CHECK(violations.load() == 0);
  const auto os = bus.stats<order>();
  const auto is = bus.stats<invoice>();
  CHECK(os.published == producers * per_producer);
  CHECK(os.filtered > 0);
  CHECK(os.transformed + os.filtered == os.published);
  CHECK(os.balanced());
  CHECK(is.published == os.transformed);
  CHECK(is.delivered == static_cast<std::uint64_t>(seen.load()));
  CHECK(is.balanced());
}

TEST_CASE("a failing stage is counted and drops only its event", "[pipeline][failures]") {
  int stage_failures = 0;
  std::string message;
  sluice::bus bus{sluice::bus_options{}.with_on_failure([&](const sluice::failure_info& f) {
    if (f.kind == sluice::failure_kind::stage) {
      ++stage_failures;
      message = f.message;
    }
  })};
  bus.stages<reading>().filter([](const reading& r) {
    if (r.sensor < 0) throw std::runtime_error("bad sensor id");
    return true;
  });
  int got = 0;
  auto s = bus.subscribe<reading>([&](const reading&) { ++got; });
  auto p = bus.make_producer();
  for (int sensor : {1, -1, 2, -2, 3}) p.publish(reading{sensor, 20});
  bus.poll();
  CHECK(got == 3);
  CHECK(stage_failures == 2);
  CHECK(message == "bad sensor id");
  const auto st = bus.stats<reading>();
  CHECK(st.failed == 2);
  CHECK(st.filtered == 2);
  CHECK(st.balanced());
}

TEST_CASE("stages may publish and dispatch", "[pipeline][reentrancy]") {
  sluice::bus bus;
  bus.stages<ping>().tap([&](const ping& p) {
    bus.publish(pong{p.n});    // queued
    bus.dispatch(pong{-p.n});  // immediate
  });
  std::vector<int> pongs;
  auto s = bus.subscribe<pong>([&](const pong& p) { pongs.push_back(p.n); });
  auto pi = bus.subscribe<ping>([](const ping&) {});
  bus.publish(ping{5});
  bus.poll();
  bus.poll();
  std::sort(pongs.begin(), pongs.end());
  CHECK(pongs == std::vector<int>{-5, 5});
  bus.stop();
  CHECK(bus.stats<pong>().balanced());
}

TEST_CASE("configuration is refused after start, after a route, and for cycles",
          "[pipeline][config]") {
  {
    sluice::bus bus;
    bus.stages<ping>().transform([](const ping& p) { return pong{p.n}; });
    // pong -> ping would close ping -> pong -> ping
    CHECK_THROWS_WITH(bus.stages<pong>().transform([](const pong& p) { return ping{p.n}; }),
                      Catch::Contains("cycle"));
    // the chain of ping already ends in a type-changing transform
    CHECK_THROWS_WITH(bus.stages<ping>().tap([](const ping&) {}), Catch::Contains("ends"));
    bus.stages<alert>().route([](const alert&) { return sluice::channel{"x"}; });
    CHECK_THROWS_WITH(bus.stages<alert>().filter([](const alert&) { return true; }),
                      Catch::Contains("ends"));
    // positive control: a chain that does not close a cycle is accepted
    CHECK_NOTHROW(bus.stages<pong>().filter([](const pong&) { return true; }));
    auto p = bus.make_producer();  // the bus has started
    CHECK_THROWS_WITH(bus.stages<reading>().filter([](const reading&) { return true; }),
                      Catch::Contains("before the bus starts"));
    CHECK_THROWS_WITH(bus.key<reading>([](const reading& r) { return r.sensor; }),
                      Catch::Contains("before the bus starts"));
  }
  {
    sluice::bus bus;
    bus.dispatch(ping{1});  // dispatch starts the bus too
    CHECK_THROWS_AS(bus.stages<ping>().tap([](const ping&) {}), std::logic_error);
  }
}

namespace {
template <int I>
struct hop {
  int n;
};
template <int... I>
void chain_hops(sluice::bus& bus, std::integer_sequence<int, I...>) {
  (bus.stages<hop<I>>().transform([](const hop<I>& h) { return hop<I + 1>{h.n + 1}; }), ...);
}
}  // namespace

TEST_CASE("a transform chain longer than SLUICE_MAX_HOPS is cut with an error", "[pipeline]") {
  // hop<0> -> hop<1> -> ... -> hop<MAX+2>: no cycle, but too many hops.
  int failures = 0;
  sluice::bus bus{sluice::bus_options{}.with_on_failure([&](const sluice::failure_info& f) {
    if (f.kind == sluice::failure_kind::stage) ++failures;
  })};
  chain_hops(bus, std::make_integer_sequence<int, SLUICE_MAX_HOPS + 2>{});
  int last = -1, within = -1;
  auto s1 = bus.subscribe<hop<SLUICE_MAX_HOPS + 2>>([&](const auto& h) { last = h.n; });
  bus.publish(hop<0>{0});
  bus.poll();
  CHECK(last == -1);  // never reached
  CHECK(failures == 1);
  CHECK(bus.stats<hop<SLUICE_MAX_HOPS>>().transformed == 0);
  CHECK(bus.stats<hop<SLUICE_MAX_HOPS>>().filtered == 1);
  CHECK(bus.stats<hop<SLUICE_MAX_HOPS>>().balanced());
  // positive control: a chain within the bound goes through
  sluice::bus ok;
  chain_hops(ok, std::make_integer_sequence<int, 3>{});
  auto s2 = ok.subscribe<hop<3>>([&](const hop<3>& h) { within = h.n; });
  ok.publish(hop<0>{0});
  ok.poll();
  CHECK(within == 3);
}

TEST_CASE("a transform's output keeps its cause's metadata", "[pipeline]") {
  sluice::bus bus;
  bus.stages<order>().transform([](const order& o) { return invoice{o.id, o.cents, o.n, 0}; });
  std::vector<sluice::metadata> got;
  auto s = bus.subscribe<invoice>([&](sluice::event_view<invoice> v) { got.push_back(v.meta()); });
  auto p = bus.make_producer();
  p.publish(order{1, 10, 1, 0}, 77);
  p.publish(order{2, 20, 1, 0}, 77);
  bus.poll();
  REQUIRE(got.size() == 2);
  CHECK(got[0].key == 77);
  CHECK(got[0].has_key);
  CHECK(got[0].sequence == 1);
  CHECK(got[1].sequence == 2);
  CHECK(got[0].producer == p.id());
  CHECK(got[0].timestamp > 0);
}

TEST_CASE("throwing taps, transforms and routes", "[pipeline][failures]") {
  int stage_failures = 0;
  sluice::bus bus{sluice::bus_options{}.with_on_failure([&](const sluice::failure_info& f) {
    if (f.kind == sluice::failure_kind::stage) ++stage_failures;
  })};
  bus.stages<reading>()
      .tap([](const reading& r) {
        if (r.sensor == 1) throw std::runtime_error("tap");  // counted; the event goes on
      })
      .transform([](const reading& r) {
        if (r.sensor == 2) throw std::runtime_error("transform");  // drops the event
        return alert{r.sensor, r.celsius, 1};
      });
  bus.stages<alert>().route([](const alert& a) {
    if (a.sensor == 3) throw std::runtime_error("route");  // drops the alert
    return sluice::channel{"ops"};
  });
  std::vector<int> got;
  auto s = bus.subscribe<alert>(sluice::channel{"ops"},
                                [&](const alert& a) { got.push_back(static_cast<int>(a.sensor)); });
  for (int sensor : {0, 1, 2, 3}) bus.publish(reading{sensor, 20});
  bus.poll();
  CHECK(got == std::vector<int>{0, 1});
  CHECK(stage_failures == 3);
  const auto rs = bus.stats<reading>();
  CHECK(rs.failed == 2);  // tap, transform
  CHECK(rs.filtered == 1);
  CHECK(rs.transformed == 3);
  CHECK(rs.balanced());
  const auto as = bus.stats<alert>();
  CHECK(as.failed == 1);
  CHECK(as.filtered == 1);
  CHECK(as.delivered == 2);
  CHECK(as.balanced());
}

TEST_CASE("transform T to optional<T> enriches or drops", "[pipeline]") {
  sluice::bus bus;
  bus.stages<reading>().transform([](const reading& r) -> std::optional<reading> {
    if (r.celsius < 0) return std::nullopt;
    return reading{r.sensor, r.celsius + 273.15};
  });
  std::vector<double> kelvin;
  auto s = bus.subscribe<reading>([&](const reading& r) { kelvin.push_back(r.celsius); });
  bus.publish(reading{1, 10});
  bus.publish(reading{1, -5});
  bus.poll();
  REQUIRE(kelvin.size() == 1);
  CHECK(kelvin[0] == Approx(283.15));
  CHECK(bus.stats<reading>().filtered == 1);
  CHECK(bus.stats<reading>().balanced());
}

namespace {
struct frozen {  // not assignable: a const member
  const int v;
};
}  // namespace

TEST_CASE("transforms to optional of a non-assignable type", "[pipeline]") {
  sluice::bus bus;
  bus.stages<ping>().transform([](const ping& p) -> std::optional<frozen> {
    if (p.n < 0) return std::nullopt;
    return frozen{p.n};
  });
  int got = 0;
  auto s = bus.subscribe<frozen>([&](const frozen& f) { got += f.v; });
  bus.publish(ping{4});
  bus.publish(ping{-1});
  bus.poll();
  CHECK(got == 4);
  CHECK(bus.stats<ping>().filtered == 1);
}

TEST_CASE("enrichments do not use up nesting depth", "[pipeline]") {
  sluice::bus bus;
  auto chain = bus.stages<ping>();
  // More enrichments than nesting levels (as many as a chain takes).
  constexpr int n = std::min(2 * SLUICE_MAX_DEPTH, 64);
  for (int i = 0; i < n; ++i) chain.transform([](const ping& p) { return ping{p.n + 1}; });
  int got = -1;
  auto s = bus.subscribe<ping>([&](const ping& p) { got = p.n; });
  bus.publish(ping{0});
  bus.poll();
  CHECK(got == n);
  CHECK(bus.stats<ping>().delivered == 1);
}

namespace {
struct level {
  int n;
};
struct too_far {
  int n;
};
}  // namespace

TEST_CASE("handlers after an enrichment run at the depth they would run at without stages",
          "[pipeline][reentrancy]") {
  sluice::bus bus;
  bus.stages<ping>().transform([](const ping& p) { return ping{p.n + 1}; });
  std::size_t deeper = 99;
  int got = -1;
  auto sp = bus.subscribe<ping>([&](const ping& p) {
    got = p.n;
    deeper = bus.dispatch(too_far{1});  // this handler is at the last level: refused
  });
  auto st = bus.subscribe<too_far>([](const too_far&) {});
  std::size_t ping_calls = 99;
  int reached = -1;
  // Each level's handler dispatches the next; the one at SLUICE_MAX_DEPTH - 1
  // (counting from 1) dispatches a ping, whose chain and handler use the last level.
  auto sl = bus.subscribe<level>([&](const level& l) {
    reached = l.n;
    if (l.n + 2 < SLUICE_MAX_DEPTH) {
      bus.dispatch(level{l.n + 1});
    } else {
      ping_calls = bus.dispatch(ping{0});
    }
  });
  CHECK(bus.dispatch(level{0}) == 1);
  CHECK(reached == SLUICE_MAX_DEPTH - 2);
  CHECK(ping_calls == 1);
  CHECK(got == 1);
  CHECK(deeper == 0);
  CHECK(bus.stats<too_far>().failed == 1);  // refused as too deep
}

TEST_CASE("a chain takes at most 64 stages, and runs them in the order added",
          "[pipeline][config]") {
  sluice::bus bus;
  auto chain = bus.stages<ping>();
  std::vector<int> seen;  // the stages that ran for the last event, in order
  // 64 stages of every kind that does not end the chain, in turns: taps
  // note their place, filters drop odd values, enrichments add one.
  for (int i = 0; i < 64; ++i) {
    switch (i % 3) {
      case 0:
        chain.tap([&seen, i](const ping&) { seen.push_back(i); });
        break;
      case 1:
        chain.filter([&seen, i](const ping& p) {
          seen.push_back(i);
          return p.n % 2 == 0;
        });
        break;
      default:
        chain.transform([&seen, i](const ping& p) {
          seen.push_back(i);
          return ping{p.n + 2};
        });
        break;
    }
  }
  CHECK_THROWS_WITH(chain.tap([](const ping&) {}), Catch::Contains("at most 64 stages"));
  REQUIRE(chain.error() != nullptr);  // the builder's first refusal
  CHECK_THAT(chain.error(), Catch::Contains("at most 64 stages"));
  int got = -1;
  auto s = bus.subscribe<ping>([&](const ping& p) { got = p.n; });
  std::vector<int> all(64);
  for (int i = 0; i < 64; ++i) all[static_cast<std::size_t>(i)] = i;

  CHECK(bus.dispatch(ping{0}) == 1);
  CHECK(seen == all);
  CHECK(got == 2 * 21);  // 21 enrichments (stages 2, 5, ..., 62)

  seen.clear();
  got = -1;
  CHECK(bus.dispatch(ping{1}) == 0);  // the first filter (stage 1) drops it
  CHECK(seen == std::vector<int>{0, 1});
  CHECK(got == -1);

  // queued: the same chain on a drainer, with its accounting
  seen.clear();
  bus.publish(ping{4});
  bus.publish(ping{5});
  bus.poll();
  CHECK(got == 4 + 2 * 21);
  std::vector<int> both = all;  // every stage for 4, then the first two for 5
  both.push_back(0);
  both.push_back(1);
  CHECK(seen == both);
  const auto st = bus.stats<ping>();
  CHECK(st.delivered == 1);
  CHECK(st.filtered == 1);
  CHECK(st.balanced());
}

TEST_CASE("a route after many stages picks the channel its handlers hear", "[pipeline]") {
  sluice::bus bus;
  const sluice::channel even{"even"}, odd{"odd"};
  auto chain = bus.stages<ping>();
  int taps = 0;
  for (int i = 0; i < 10; ++i) chain.tap([&](const ping&) { ++taps; });
  chain.route([&](const ping& p) { return p.n % 2 == 0 ? even : odd; });
  int on_even = 0, on_odd = 0, on_all = 0;
  auto se = bus.subscribe<ping>(even, [&](const ping&) { ++on_even; });
  auto so = bus.subscribe<ping>(odd, [&](const ping&) { ++on_odd; });
  auto sa = bus.subscribe<ping>([&](const ping&) { ++on_all; });
  for (int n = 0; n < 5; ++n) CHECK(bus.dispatch(ping{n}) == 2);
  CHECK(taps == 50);
  CHECK(on_even == 3);
  CHECK(on_odd == 2);
  CHECK(on_all == 5);
}

TEST_CASE("a throwing key extractor leaves bus.publish usable", "[pipeline][failures]") {
  test::watchdog wd(std::chrono::seconds(20), "throwing key extractor");
  sluice::bus bus;
  REQUIRE(bus.key<ping>([](const ping& p) -> sluice::key_type {
    if (p.n < 0) throw std::runtime_error("no key");
    return static_cast<sluice::key_type>(p.n);
  }) == nullptr);
  int got = 0;
  auto s = bus.subscribe<ping>([&](const ping&) { ++got; });
  CHECK_THROWS_AS(bus.publish(ping{-1}), std::runtime_error);  // not accepted
  CHECK(bus.publish(ping{2}) == sluice::publish_result::ok);   // the shared producer is free
  bus.poll();
  CHECK(got == 1);
  CHECK(bus.stats<ping>().published == 1);
}

TEST_CASE(
    "events made by transforms are counted exactly by threads that come and go, in one "
    "count cell per tracking slot",
    "[pipeline][accounting]") {
  sluice::bus bus;
  bus.stages<reading>().transform([](const reading& r) -> std::optional<alert> {
    if (r.sensor % 3 == 0) return std::nullopt;
    return alert{r.sensor, r.celsius, 1};
  });
  bus.stages<alert>().filter([](const alert& a) { return a.sensor % 5 != 0; });
  std::atomic<long> calls{0};
  auto s1 = bus.subscribe<alert>([&](const alert&) { calls.fetch_add(1); });
  auto s2 = bus.subscribe<alert>([&](const alert&) { calls.fetch_add(1); });
  constexpr int rounds = 8, threads = 8, per_thread = 300;
  // A reader of the counts while they change (for the sanitizers).
  std::atomic<bool> done{false};
  std::thread reader([&] {
    std::uint64_t seen = 0;
    while (!done.load()) {
      // Each cell's count only grows, and cells are only added.
      const std::uint64_t now = bus.stats<alert>().published;
      CHECK(now >= seen);
      seen = now;
    }
  });
  long made = 0, passed = 0;
  for (int round = 0; round < rounds; ++round) {
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t)
      ts.emplace_back([&bus, round, t] {
        for (int i = 0; i < per_thread; ++i)
          (void)bus.dispatch(reading{((round * threads + t) * per_thread) + i, 20.0});
      });
    for (auto& th : ts) th.join();  // each thread's slot is free again before the next round
  }
  done.store(true);
  reader.join();
  for (int n = 0; n < rounds * threads * per_thread; ++n) {
    if (n % 3 == 0) continue;
    ++made;
    if (n % 5 != 0) ++passed;
  }
  const sluice::type_stats st = bus.stats<alert>();
  CHECK(st.published == static_cast<std::uint64_t>(made));
  CHECK(st.delivered == static_cast<std::uint64_t>(passed));
  CHECK(st.filtered == static_cast<std::uint64_t>(made - passed));
  CHECK(st.handler_calls == static_cast<std::uint64_t>(2 * passed));
  CHECK(calls.load() == 2 * passed);
  CHECK(st.balanced());
  // The 64 threads took over the slots of those before them, and with them
  // their cells: no more cells than threads ran at once.
  sluice::detail::registry* r =
      sluice::detail::bus_access::core(bus).find_reg(sluice::detail::type_index<alert>());
  REQUIRE(r != nullptr);
  std::size_t cells = 0;
  for (auto* d = r->derived_cells.load(); d != nullptr; d = d->next) ++cells;
  CHECK(cells >= 1);
  CHECK(cells <= static_cast<std::size_t>(threads));
}
