// Basics: publish, poll, dispatch, subscribe, metadata, boxed events, options.
#include <algorithm>
#include <catch2/catch.hpp>
#include <sluice/sluice.hpp>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "support.hpp"

namespace {
struct tick {
  int n;
};
struct note {
  std::string text;
  char padding[64];
};
struct unheard {
  int x;
};
}  // namespace

TEST_CASE("publish then poll delivers every event in order", "[basic]") {
  sluice::bus bus{sluice::bus_options{}.with_lanes(1)};
  std::vector<int> seen;
  auto sub = bus.subscribe<tick>([&](const tick& t) { seen.push_back(t.n); });
  auto p = bus.make_producer();
  for (int i = 0; i < 1000; ++i) REQUIRE(p.publish(tick{i}) == sluice::publish_result::ok);
  CHECK(bus.queued() == 1000);
  CHECK(bus.poll() == 1000);
  REQUIRE(seen.size() == 1000);
  for (int i = 0; i < 1000; ++i) REQUIRE(seen[static_cast<std::size_t>(i)] == i);
  const auto st = bus.stats<tick>();
  CHECK(st.published == 1000);
  CHECK(st.delivered == 1000);
  CHECK(st.handler_calls == 1000);
  CHECK(st.balanced());
}

TEST_CASE("event_view carries metadata", "[basic]") {
  sluice::bus bus;
  std::vector<sluice::metadata> metas;
  auto sub = bus.subscribe<tick>([&](sluice::event_view<tick> v) {
    CHECK(v->n == static_cast<int>(v.meta().sequence));
    metas.push_back(v.meta());
  });
  auto p = bus.make_producer();
  p.publish(tick{1}, 42);
  p.publish(tick{2}, 42);
  p.publish(tick{3});
  bus.poll();
  REQUIRE(metas.size() == 3);
  // Lanes are drained in turn: order is kept per key, not across lanes.
  std::sort(metas.begin(), metas.end(), [](const sluice::metadata& x, const sluice::metadata& y) {
    return x.sequence < y.sequence;
  });
  CHECK(metas[0].has_key);
  CHECK(metas[0].key == 42);
  CHECK(metas[0].producer == p.id());
  CHECK(metas[0].timestamp > 0);
  CHECK(metas[1].timestamp >= metas[0].timestamp);
  CHECK(metas[1].sequence == 2);
  const bool unkeyed_seen = metas[2].sequence == 3 && !metas[2].has_key;
  CHECK(unkeyed_seen);
}

TEST_CASE("timestamps can be switched off", "[basic]") {
  sluice::bus bus{sluice::bus_options{}.with_stamp_time(false)};
  std::int64_t ts = -1;
  auto sub = bus.subscribe<tick>([&](sluice::event_view<tick> v) { ts = v.meta().timestamp; });
  bus.publish(tick{1});
  bus.poll();
  CHECK(ts == 0);
}

TEST_CASE("events larger than the inline size are boxed and destroyed", "[basic]") {
  static_assert(sizeof(note) > SLUICE_INLINE_SIZE, "note must be boxed");
  {
    sluice::bus bus;
    std::vector<std::string> got;
    auto sub = bus.subscribe<note>([&](const note& n) { got.push_back(n.text); });
    auto p = bus.make_producer();
    for (int i = 0; i < 100; ++i) p.publish(note{"note " + std::to_string(i), {}}, 1);
    bus.poll();
    REQUIRE(got.size() == 100);
    CHECK(got[99] == "note 99");
  }
  {
    // Every counted instance made for the bus is destroyed: delivered,
    // discarded, and still queued at destruction.
    const long before = test::counted::live.load();
    {
      sluice::bus bus;
      long sum = 0;
      auto sub = bus.subscribe<test::counted>([&](const test::counted& c) { sum += c.value; });
      auto p = bus.make_producer();
      for (int i = 0; i < 50; ++i) p.publish(test::counted{i});
      bus.poll(10);
      for (int i = 0; i < 50; ++i) p.publish(test::counted{i});
      CHECK(sum > 0);
    }  // the destructor drains what is still queued
    CHECK(test::counted::live.load() == before);
    {
      sluice::bus bus;
      auto p = bus.make_producer();
      for (int i = 0; i < 50; ++i) p.publish(test::counted{i});
      CHECK(test::counted::live.load() == before + 50);  // boxed copies in the lanes
      bus.stop(sluice::stop_mode::discard);
      CHECK(bus.stats<test::counted>().discarded == 50);
      CHECK(test::counted::live.load() == before);
    }
  }
}

TEST_CASE("dispatch calls handlers now, in subscription order", "[basic]") {
  sluice::bus bus;
  std::vector<int> order;
  auto a = bus.subscribe<tick>([&](const tick&) { order.push_back(1); });
  auto b = bus.subscribe<tick>([&](const tick&) { order.push_back(2); });
  auto c = bus.subscribe<tick>([&](const tick&) { order.push_back(3); });
  CHECK(bus.dispatch(tick{0}) == 3);
  CHECK(order == std::vector<int>{1, 2, 3});
  b.reset();
  CHECK(bus.dispatch(tick{0}) == 2);
  CHECK(order == std::vector<int>{1, 2, 3, 1, 3});
  CHECK(bus.dispatch(unheard{1}) == 0);
  // dispatch is a call, not a publication
  CHECK(bus.stats<tick>().published == 0);
}

TEST_CASE("events without subscribers are counted as unrouted", "[basic]") {
  sluice::bus bus;
  auto p = bus.make_producer();
  for (int i = 0; i < 10; ++i) p.publish(unheard{i});
  bus.poll();
  const auto st = bus.stats<unheard>();
  CHECK(st.published == 10);
  CHECK(st.unrouted == 10);
  CHECK(st.delivered == 0);
  CHECK(st.balanced());
}

TEST_CASE("bus.publish keeps one thread's order", "[basic]") {
  sluice::bus bus{sluice::bus_options{}.with_lanes(4)};
  std::vector<int> seen;
  auto sub = bus.subscribe<tick>([&](const tick& t) { seen.push_back(t.n); });
  for (int i = 0; i < 500; ++i) REQUIRE(bus.publish(tick{i}) == sluice::publish_result::ok);
  bus.poll();
  REQUIRE(seen.size() == 500);
  for (int i = 0; i < 500; ++i) REQUIRE(seen[static_cast<std::size_t>(i)] == i);
}

TEST_CASE("impossible options are refused with a message", "[basic][options]") {
  CHECK(sluice::bus_options{}.validate() == nullptr);
  CHECK(std::string(sluice::bus_options{}.with_lanes(0).validate()).find("lanes") !=
        std::string::npos);
  CHECK(sluice::bus_options{}.with_lane_capacity(0).validate() != nullptr);
  CHECK(sluice::bus_options{}.with_lane_capacity(std::size_t{1} << 40).validate() != nullptr);
  CHECK_THROWS_AS(sluice::bus{sluice::bus_options{}.with_lanes(0)}, std::invalid_argument);
  CHECK_THROWS_WITH(sluice::bus{sluice::bus_options{}.with_lane_capacity(0)},
                    Catch::Contains("lane_capacity"));
}

TEST_CASE("a stopped bus refuses events and says so", "[basic]") {
  sluice::bus bus;
  auto p = bus.make_producer();
  CHECK(bus.stop());
  CHECK(bus.stopped());
  CHECK_FALSE(bus.stop());
  CHECK(p.publish(tick{1}) == sluice::publish_result::stopped);
  CHECK(bus.publish(tick{1}) == sluice::publish_result::stopped);
  CHECK_FALSE(bus.run(1));
  const auto st = bus.stats<tick>();
  CHECK(st.published == 0);
  CHECK(st.rejected == 2);
}

TEST_CASE("run refuses zero threads and a second pool", "[basic]") {
  sluice::bus bus;
  CHECK_FALSE(bus.run(0));
  CHECK(bus.run(2));
  CHECK_FALSE(bus.run(1));
  CHECK(bus.workers() == 2);
  CHECK(bus.stop());
  CHECK(bus.workers() == 0);
}

TEST_CASE("subscription handles move and report activity", "[basic]") {
  sluice::bus bus;
  int calls = 0;
  sluice::subscription outer;
  CHECK_FALSE(outer.active());
  {
    auto inner = bus.subscribe<tick>([&](const tick&) { ++calls; });
    CHECK(inner.active());
    outer = std::move(inner);
    CHECK_FALSE(inner.active());  // NOLINT(bugprone-use-after-move): moved-from is empty
  }
  bus.dispatch(tick{1});
  CHECK(calls == 1);
  outer.reset();
  CHECK_FALSE(outer.active());
  bus.dispatch(tick{1});
  CHECK(calls == 1);
}

namespace {
template <int I>
struct kind {
  int value;
};
template <int... I>
void publish_kinds(sluice::producer& p, std::integer_sequence<int, I...>) {
  (p.publish(kind<I>{I}), ...);
}
}  // namespace

TEST_CASE("many event types keep their identity through the queue", "[basic]") {
  // Each type's records must carry that type's index: a mix-up would route an
  // event to another type's handlers (or count it as unrouted).
  sluice::bus bus;
  std::vector<int> wrong;
  std::vector<sluice::subscription> subs;
  // A handler for kind<1> must only ever see value 1.
  auto add = [&](auto tag, int expected) {
    using K = decltype(tag);
    subs.push_back(bus.subscribe<K>([&wrong, expected](const K& k) {
      if (k.value != expected) wrong.push_back(k.value);
    }));
  };
  int got[12] = {};
  subs.push_back(bus.subscribe<kind<0>>([&](const kind<0>& k) { got[0] += k.value == 0; }));
  subs.push_back(bus.subscribe<kind<5>>([&](const kind<5>& k) { got[5] += k.value == 5; }));
  subs.push_back(bus.subscribe<kind<11>>([&](const kind<11>& k) { got[11] += k.value == 11; }));
  add(kind<1>{}, 1);
  add(kind<7>{}, 7);
  auto p = bus.make_producer();
  for (int round = 0; round < 3; ++round) publish_kinds(p, std::make_integer_sequence<int, 12>{});
  bus.poll();
  CHECK(wrong.empty());
  CHECK(bus.stats<kind<7>>().delivered == 3);
  CHECK(got[0] == 3);
  CHECK(got[5] == 3);
  CHECK(got[11] == 3);
  CHECK(bus.stats<kind<0>>().delivered == 3);
  CHECK(bus.stats<kind<1>>().delivered == 3);
  CHECK(bus.stats<kind<2>>().unrouted == 3);
  CHECK(bus.stats<kind<11>>().delivered == 3);
  CHECK(bus.stats<kind<11>>().balanced());
}

TEST_CASE("generic lambdas are called with the event", "[basic]") {
  sluice::bus bus;
  int got = 0;
  auto s = bus.subscribe<tick>([&](const auto& t) { got += t.n; });
  bus.dispatch(tick{5});
  bus.publish(tick{6});
  bus.poll();
  CHECK(got == 11);
}
