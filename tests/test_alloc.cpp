// Contract 5, memory: in steady state no heap allocation per event for events
// that fit inline. The global operator new is replaced in this binary; the
// queue's blocks come from it too (see detail/queue.hpp).
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <new>
#include <sluice/detail/timer_wheel.hpp>
#include <sluice/sluice.hpp>
#include <sluice/storage.hpp>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

namespace {
std::atomic<long> g_allocs{0};
// A failing allocator: with g_fail_after >= 0, that many more allocations
// succeed and every one after fails (std::bad_alloc, or nullptr for the
// nothrow forms). -1: never fail.
std::atomic<long> g_fail_after{-1};
bool allocation_fails() noexcept {
  long left = g_fail_after.load(std::memory_order_relaxed);
  while (left >= 0) {
    if (left == 0) return true;
    if (g_fail_after.compare_exchange_weak(left, left - 1, std::memory_order_relaxed)) return false;
  }
  return false;
}
struct small_event {
  std::uint64_t a, b;
};
struct big_event {
  char bytes[SLUICE_INLINE_SIZE + 8];
};
}  // namespace

void* operator new(std::size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (allocation_fails()) throw std::bad_alloc();
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (allocation_fails()) return nullptr;
  return std::malloc(n == 0 ? 1 : n);
}
void* operator new[](std::size_t n) {
  return operator new(n);
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}
// The over-aligned forms (cache-line aligned cells, slots and registries).
void* operator new(std::size_t n, std::align_val_t al) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (allocation_fails()) throw std::bad_alloc();
  const auto a = static_cast<std::size_t>(al);
  if (void* p = std::aligned_alloc(a, (n + a - 1) / a * a)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (allocation_fails()) return nullptr;
  const auto a = static_cast<std::size_t>(al);
  return std::aligned_alloc(a, (n + a - 1) / a * a);
}
void* operator new[](std::size_t n, std::align_val_t al) {
  return operator new(n, al);
}
// (Sanitizer runtimes define the nothrow array forms themselves rather than
// through the forms above: replaced too.)
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept {
  return operator new(n, t);
}
void* operator new[](std::size_t n, std::align_val_t al, const std::nothrow_t& t) noexcept {
  return operator new(n, al, t);
}
void operator delete(void* p, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  std::free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  std::free(p);
}

TEST_CASE("queued publish and poll allocate nothing in steady state", "[alloc]") {
  sluice::bus bus{sluice::bus_options{}.with_lanes(2).with_lane_capacity(1024)};
  std::uint64_t sum = 0;
  auto sub = bus.subscribe<small_event>([&](const small_event& e) { sum += e.a; });
  auto p = bus.make_producer();
  auto round = [&] {
    for (std::uint64_t i = 0; i < 1000; ++i) p.publish(small_event{i, i}, i);
    bus.poll();
    for (std::uint64_t i = 0; i < 1000; ++i) bus.publish(small_event{i, i});
    bus.poll();
    bus.dispatch(small_event{1, 1});
  };
  for (int i = 0; i < 20; ++i) round();  // warm-up: blocks, indexes, slots
  const long before = g_allocs.load();
  for (int i = 0; i < 100; ++i) round();
  const long after = g_allocs.load();
  CHECK(after - before == 0);
  CHECK(sum > 0);
}

TEST_CASE("latency metrics and an observer allocate nothing once their histograms exist",
          "[alloc][monitoring]") {
  struct quiet_observer final : sluice::bus_observer {
    std::uint64_t calls = 0;
    void on_deliver(const sluice::delivery_info&) noexcept override { ++calls; }
  };
  auto obs = std::make_shared<quiet_observer>();
  sluice::bus bus{sluice::bus_options{}
                      .with_lanes(2)
                      .with_lane_capacity(1024)
                      .with_latency_metrics(1)
                      .with_observer(obs)};
  std::uint64_t sum = 0;
  auto sub = bus.subscribe<small_event>([&](const small_event& e) { sum += e.a; });
  auto p = bus.make_producer();
  auto round = [&] {
    for (std::uint64_t i = 0; i < 1000; ++i) p.publish(small_event{i, i}, i);
    bus.poll();
  };
  for (int i = 0; i < 20; ++i) round();  // warm-up: the histograms of both lanes
  const long before = g_allocs.load();
  for (int i = 0; i < 100; ++i) round();
  const long after = g_allocs.load();
  CHECK(after - before == 0);
  CHECK(obs->calls == 120 * 1000);
  CHECK(sub.handler_time().count() == 120 * 1000);
}

TEST_CASE("cross-thread delivery allocates nothing in steady state", "[alloc]") {
  test::watchdog wd(std::chrono::seconds(60), "alloc cross-thread");
  sluice::bus bus{sluice::bus_options{}.with_lanes(2).with_lane_capacity(4096)};
  std::atomic<std::uint64_t> calls{0};
  auto sub = bus.subscribe<small_event>(
      [&](const small_event&) { calls.fetch_add(1, std::memory_order_relaxed); });
  REQUIRE(bus.run(2, std::chrono::microseconds(100000)));  // keep workers spinning
  auto p = bus.make_producer();
  std::uint64_t sent = 0;
  auto round = [&] {
    for (std::uint64_t i = 0; i < 2000; ++i) p.publish(small_event{i, i}, i);
    sent += 2000;
    REQUIRE(test::wait_until([&] { return calls.load() == sent; }));
  };
  for (int i = 0; i < 20; ++i) round();
  const long before = g_allocs.load();
  for (int i = 0; i < 50; ++i) round();
  const long after = g_allocs.load();
  CHECK(after - before == 0);
  bus.stop();
}

namespace {
struct small_alert {
  std::uint64_t a;
  int level;
};
}  // namespace

TEST_CASE("publish_bulk, stage chains and routes allocate nothing in steady state", "[alloc]") {
  sluice::bus bus{sluice::bus_options{}.with_lanes(2).with_lane_capacity(1024)};
  const sluice::channel loud{"loud"}, quiet{"quiet"};
  bus.stages<small_event>()
      .filter([](const small_event& e) { return e.a % 4 != 3; })  // a quarter filtered
      .tap([](const small_event&) {})
      .transform([](const small_event& e) {
        return small_alert{e.a, e.a % 2 == 0 ? 2 : 0};
      });
  bus.stages<small_alert>().route(
      [&](const small_alert& x) { return x.level >= 2 ? loud : quiet; });
  std::uint64_t heard = 0, alerts = 0;
  auto sl = bus.subscribe<small_alert>(loud, [&](const small_alert& x) { heard += x.a + 1; });
  auto sq = bus.subscribe<small_alert>(quiet, [&](const small_alert&) { ++alerts; });
  auto p = bus.make_producer();
  std::vector<small_event> batch(256);
  for (std::uint64_t i = 0; i < batch.size(); ++i) batch[i] = small_event{i, i};
  std::uint64_t sent = 0, dispatched = 0;
  auto round = [&] {
    REQUIRE(p.publish_bulk(batch.begin(), batch.end()) == batch.size());
    REQUIRE(p.publish_bulk(batch.begin(), batch.end(), 7) == batch.size());
    bus.poll();
    bus.dispatch(small_event{4, 4});  // through the chain on this thread (not counted as published)
    sent += 2 * batch.size();
    ++dispatched;
  };
  for (int i = 0; i < 20; ++i) round();  // warm-up: blocks, indexes, slots, count cells
  const long before = g_allocs.load();
  for (int i = 0; i < 100; ++i) round();
  const long after = g_allocs.load();
  CHECK(after - before == 0);
  // Everything went through the chain and the route.
  const sluice::type_stats in = bus.stats<small_event>();
  CHECK(in.published == sent);
  CHECK(in.filtered + in.transformed == sent);
  CHECK(in.filtered == dispatched * (2 * batch.size() / 4));  // one dispatch per round
  // The alerts the dispatched events made are counted as their type's events.
  CHECK(bus.stats<small_alert>().delivered == in.transformed + dispatched);
  CHECK(heard > 0);
  CHECK(alerts > 0);
}

TEST_CASE("the counter sees allocations (positive control)", "[alloc]") {
  sluice::bus bus;
  auto p = bus.make_producer();
  for (int i = 0; i < 10; ++i) p.publish(big_event{});  // warm-up
  bus.poll();
  const long before = g_allocs.load();
  for (int i = 0; i < 10; ++i) p.publish(big_event{});  // boxed: one allocation each
  bus.poll();
  CHECK(g_allocs.load() - before == 10);
}

// Contract 3 under memory pressure: subscribe either subscribes or throws
// std::bad_alloc with nothing changed and nothing leaked; reset() allocates
// nothing, so it cannot fail (it is noexcept: a bad_alloc there would end the
// program).
namespace {
struct counted_handler {
  static inline std::atomic<long> live{0};
  int* calls;
  explicit counted_handler(int* c) noexcept : calls(c) { ++live; }
  counted_handler(const counted_handler& o) noexcept : calls(o.calls) { ++live; }
  counted_handler(counted_handler&& o) noexcept : calls(o.calls) { ++live; }
  counted_handler& operator=(const counted_handler&) = delete;
  ~counted_handler() { --live; }
  void operator()(const small_event&) const { ++*calls; }
};
struct fail_scope {
  explicit fail_scope(long after) { g_fail_after.store(after); }
  ~fail_scope() { g_fail_after.store(-1); }
  fail_scope(const fail_scope&) = delete;
  fail_scope& operator=(const fail_scope&) = delete;
};
}  // namespace

TEST_CASE("subscribe under allocation failure changes nothing and leaks nothing", "[alloc][oom]") {
  sluice::bus bus{sluice::bus_options{}.with_lanes(1).with_lane_capacity(64)};
  int calls = 0;
  std::vector<sluice::subscription> subs;
  subs.reserve(64);
  (void)bus.dispatch(small_event{0, 0});  // this thread's tracking slot, made once
  long failures = 0;
  // Fail at every allocation subscribe makes in turn, then let it succeed.
  for (long k = 0; k < 40; ++k) {
    const long live_before = counted_handler::live.load();
    bool threw = false;
    {
      fail_scope fail(k);
      try {
        subs.push_back(bus.subscribe<small_event>(counted_handler{&calls}));
      } catch (const std::bad_alloc&) {
        threw = true;
      }
    }
    if (threw) {
      ++failures;
      CHECK(counted_handler::live.load() == live_before);  // the handler was destroyed
    } else {
      CHECK(counted_handler::live.load() == live_before + 1);
    }
  }
  CHECK(failures > 0);  // the failing allocator did hit subscribe
  calls = 0;
  CHECK(bus.dispatch(small_event{1, 1}) == subs.size());  // exactly the subscriptions that exist
  CHECK(calls == static_cast<int>(subs.size()));
  subs.clear();
  CHECK(counted_handler::live.load() == 0);
}

namespace {
// A filter that passes everything and counts its calls (and, through its
// base, its live copies).
struct counted_filter : counted_handler {
  using counted_handler::counted_handler;
  bool operator()(const small_event&) const {
    ++*calls;
    return true;
  }
};
}  // namespace

TEST_CASE("adding stages under allocation failure changes nothing and leaks nothing",
          "[alloc][oom][pipeline]") {
  sluice::bus bus{sluice::bus_options{}.with_lanes(1).with_lane_capacity(64)};
  int calls = 0;
  long added = 0, failures = 0;
  // Fail at every allocation adding a stage makes in turn (the first time
  // included, which makes the chain), then let it succeed.
  for (long k = 0; k < 40; ++k) {
    const long live_before = counted_handler::live.load();
    bool threw = false;
    {
      fail_scope fail(k);
      try {
        bus.stages<small_event>().filter(counted_filter{&calls});
      } catch (const std::bad_alloc&) {
        threw = true;
      }
    }
    if (threw) {
      ++failures;
      CHECK(counted_handler::live.load() == live_before);  // the filter was destroyed
    } else {
      ++added;
      CHECK(counted_handler::live.load() == live_before + 1);
    }
  }
  CHECK(failures > 0);  // the failing allocator did hit adding a stage
  REQUIRE(added > 0);
  int handled = 0;
  auto sub = bus.subscribe<small_event>([&](const small_event&) { ++handled; });
  CHECK(bus.dispatch(small_event{1, 1}) == 1);  // through the chain to the handler
  CHECK(calls == added);                        // every stage that was added ran once
  CHECK(handled == 1);
}

TEST_CASE("reset allocates nothing, even with every allocation failing", "[alloc][oom]") {
  test::watchdog wd(std::chrono::seconds(60), "reset under OOM");
  sluice::bus bus{sluice::bus_options{}.with_lanes(1)};
  int calls = 0;
  std::atomic<bool> entered{false}, release{false}, finished{false};
  auto blocking = bus.subscribe<big_event>([&](const big_event&) {
    entered = true;
    while (!release.load()) std::this_thread::yield();
    finished = true;
  });
  auto a = bus.subscribe<small_event>(counted_handler{&calls});
  auto b = bus.subscribe<small_event>(counted_handler{&calls});
  REQUIRE(bus.run(1));
  bus.publish(big_event{});
  REQUIRE(test::wait_until([&] { return entered.load(); }));
  std::thread opener([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    release = true;
  });
  {
    fail_scope fail(0);  // every allocation fails from here
    const long allocs = g_allocs.load();
    a.reset();
    blocking.reset();  // waits for the running handler, without allocating
    CHECK(finished.load());
    CHECK(g_allocs.load() == allocs);
  }
  opener.join();
  CHECK(counted_handler::live.load() == 1);  // a's handler is gone, b's lives
  calls = 0;
  CHECK(bus.dispatch(small_event{1, 1}) == 1);
  CHECK(calls == 1);
  b.reset();
  CHECK(counted_handler::live.load() == 0);
  bus.stop();
}

TEST_CASE("make_producer under allocation failure throws and the bus goes on", "[alloc][oom]") {
  // One place per publish, and places in chunks (a credit cell per lane).
  const std::size_t chunk = GENERATE(std::size_t{1}, std::size_t{8});
  INFO("reserve_chunk " << chunk);
  sluice::bus bus{
      sluice::bus_options{}.with_lanes(4).with_lane_capacity(64).with_reserve_chunk(chunk)};
  int calls = 0;
  auto sub = bus.subscribe<small_event>([&](const small_event&) { ++calls; });
  long failures = 0;
  // Fail at each allocation make_producer makes in turn (the queue's own
  // allocations of producer blocks report failure by a null pointer).
  for (long k = 0; k < 64; ++k) {
    bool threw = false;
    {
      fail_scope fail(k);
      try {
        sluice::producer p = bus.make_producer();
        fail_scope ok(-1);  // (publishing is not what is tested)
        CHECK(p.publish(small_event{1, 2}) == sluice::publish_result::ok);
      } catch (const std::bad_alloc&) {
        threw = true;
      }
    }
    if (threw) ++failures;
  }
  CHECK(failures > 0);
  auto p = bus.make_producer();
  REQUIRE(p.publish(small_event{3, 4}) == sluice::publish_result::ok);
  bus.poll();
  CHECK(calls == 64 - failures + 1);
  // Nothing is held by the producers that failed or went: every place is free.
  for (std::size_t i = 0; i < bus.lane_count(); ++i) CHECK(bus.lane(i).depth == 0);
  std::size_t filled = 0;
  while (p.try_publish(small_event{5, 6}) == sluice::publish_result::ok) ++filled;
  CHECK(filled == 64);
}

TEST_CASE("dispatcher: dispatch allocates nothing, and subscribe under failure changes nothing",
          "[alloc][oom][dispatcher]") {
  sluice::dispatcher d;
  int calls = 0;
  std::vector<sluice::subscription> subs;
  subs.reserve(64);
  subs.push_back(d.subscribe<small_event>(counted_handler{&calls}));
  (void)d.dispatch(small_event{0, 0});  // this thread's tracking slot, made once
  {
    const long allocs = g_allocs.load();
    for (int i = 0; i < 1000; ++i) (void)d.dispatch(small_event{1, 2});
    CHECK(g_allocs.load() == allocs);
  }
  long failures = 0;
  for (long k = 0; k < 20; ++k) {
    const long live_before = counted_handler::live.load();
    bool threw = false;
    {
      fail_scope fail(k);
      try {
        subs.push_back(d.subscribe<small_event>(counted_handler{&calls}));
      } catch (const std::bad_alloc&) {
        threw = true;
      }
    }
    if (threw) {
      ++failures;
      CHECK(counted_handler::live.load() == live_before);
    } else {
      CHECK(counted_handler::live.load() == live_before + 1);
    }
  }
  CHECK(failures > 0);
  calls = 0;
  CHECK(d.dispatch(small_event{1, 1}) == subs.size());
  CHECK(calls == static_cast<int>(subs.size()));
  subs.clear();
  CHECK(counted_handler::live.load() == 0);
}

namespace {
// Larger than a recorder's smallest buffer (4096 bytes, plus 4096 of slack):
// recording it makes the buffer grow.
struct huge_record {
  std::uint64_t id;
  unsigned char bytes[12000];
};
}  // namespace

// The same bytes through a byte_writer (no encode_to): the other encode path.
struct huge_writer_codec {
  void encode(const huge_record& h, sluice::byte_writer& out) const { out.append(&h, sizeof h); }
  sluice::decoded<huge_record> decode(sluice::byte_view in, std::uint32_t) const {
    if (in.size != sizeof(huge_record)) return sluice::decode_failure("size");
    huge_record h;
    std::memcpy(&h, in.data, sizeof h);
    return h;
  }
};

TEST_CASE("recorder: a record there is no memory for is refused, and nothing recorded is lost",
          "[alloc][oom]") {
  for (bool through_writer : {false, true}) {
    INFO("through a byte_writer: " << through_writer);
    auto types = std::make_shared<sluice::codecs>();
    types->add<small_event>("small");
    if (through_writer) {
      types->add<huge_record>("huge", 1, huge_writer_codec{});
      REQUIRE(types->find<huge_record>()->encode_fixed == nullptr);
    } else {
      types->add<huge_record>("huge");
      REQUIRE(types->find<huge_record>()->encode_fixed != nullptr);
    }
    auto ring = std::make_unique<sluice::memory_sink>(100);
    auto* r = ring.get();
    sluice::record_options ro;
    ro.buffer_bytes = 4096;
    ro.sync = sluice::sync_policy::never;
    // The writer holds what it is given until flush(): it calls the sink
    // (which allocates) only then, never while allocations fail below.
    ro.linger = std::chrono::hours(1);
    sluice::recorder rec(std::move(ring), types, ro);
    for (std::uint64_t i = 0; i < 10; ++i) REQUIRE(rec.write(small_event{i, 0}));
    REQUIRE(rec.flush().ok());
    REQUIRE(rec.write(small_event{10, 0}));  // waits in the buffer, which must keep it
    auto h = std::make_unique<huge_record>();
    h->id = 7;
    bool written = true;
    long failed_allocations = 0;
    {
      fail_scope fail(0);
      const long before = g_allocs.load();
      written = rec.write(*h);
      failed_allocations = g_allocs.load() - before;
    }
    CHECK(failed_allocations >= 1);  // the buffer did try to grow
    CHECK_FALSE(written);
    CHECK(rec.stats().rejected == 1);
    // With memory again, the same record goes in, after what came before it.
    CHECK(rec.write(*h));
    CHECK(rec.write(small_event{11, 0}));
    REQUIRE(rec.flush().ok());
    const sluice::recorder_stats st = rec.stats();
    CHECK(st.recorded == 13);
    CHECK(st.written == 13);
    CHECK(st.failed == 0);
    const auto ev = r->events();
    REQUIRE(ev.size() == 13);
    for (std::size_t i = 0; i < 11; ++i) CHECK(types->decode<small_event>(ev[i].view())->a == i);
    CHECK(ev[11].type == "huge");
    CHECK(types->decode<huge_record>(ev[11].view())->id == 7);
    CHECK(types->decode<small_event>(ev[12].view())->a == 11);
  }
}

namespace {
struct derived_event {
  std::uint64_t a;
};
}  // namespace

TEST_CASE("a transform's output is counted exactly when there is no memory for a count cell",
          "[alloc][oom]") {
  sluice::bus b;
  b.stages<small_event>().transform([](const small_event& e) { return derived_event{e.a}; });
  long calls = 0;
  auto sub = b.subscribe<derived_event>([&](const derived_event&) { ++calls; });
  auto warm = b.subscribe<big_event>([](const big_event&) {});
  (void)b.dispatch(big_event{});  // this thread's tracking slot exists before allocations fail
  sluice::detail::registry* r =
      sluice::detail::bus_access::core(b).find_reg(sluice::detail::type_index<derived_event>());
  REQUIRE(r != nullptr);
  {
    fail_scope fail(0);
    for (std::uint64_t i = 0; i < 3; ++i) CHECK(b.dispatch(small_event{i, 0}) == 0);
  }
  CHECK(r->derived_cells.load() == nullptr);  // counted in the registry's atomics instead
  for (std::uint64_t i = 0; i < 2; ++i) (void)b.dispatch(small_event{i, 0});
  CHECK(r->derived_cells.load() != nullptr);
  const sluice::type_stats st = b.stats<derived_event>();
  CHECK(calls == 5);
  CHECK(st.published == 5);
  CHECK(st.delivered == 5);
  CHECK(st.handler_calls == 5);
  CHECK(st.balanced());
}

TEST_CASE("recorder: no memory for its buffers is a clear error, not a half-made recorder",
          "[alloc][oom]") {
  auto types = std::make_shared<sluice::codecs>();
  types->add<small_event>("small");
  auto ring = std::make_unique<sluice::memory_sink>(10);
  sluice::record_options ro;
  bool threw = false;
  {
    fail_scope fail(0);
    try {
      sluice::recorder rec(std::move(ring), types, ro);
    } catch (const std::bad_alloc&) {
      threw = true;
    }
  }
  CHECK(threw);
  // With memory, the same options make a working recorder.
  sluice::recorder rec(std::make_unique<sluice::memory_sink>(10), types, ro);
  CHECK(rec.valid());
  CHECK(rec.write(small_event{1, 2}));
  CHECK(rec.flush().ok());
  CHECK(rec.stats().written == 1);
}

TEST_CASE("timer wheel: no memory for its pool is std::bad_alloc, and nothing is allocated after",
          "[alloc][oom]") {
  {
    fail_scope fail(0);
    CHECK_THROWS_AS(sluice::detail::timer_wheel<small_event>(64, 0), std::bad_alloc);
  }
  sluice::detail::timer_wheel<small_event> w(64, 0);
  const long before = g_allocs.load();
  std::uint64_t out = 0;
  for (std::uint64_t round = 0; round < 50; ++round) {
    for (std::uint64_t i = 0; i < 64; ++i)
      REQUIRE(w.schedule(round * 5000 + i * 70, small_event{i, i}));
    out += w.advance(round * 5000 + 4999, [](small_event&&, std::uint64_t) noexcept {});
  }
  CHECK(out == 50 * 64);
  CHECK(g_allocs.load() - before == 0);
}

TEST_CASE("publish_after allocates once per lane, then nothing per event", "[alloc][delayed]") {
  sluice::bus bus{sluice::bus_options{}.with_lanes(2).with_delayed_capacity(256)};
  std::uint64_t sum = 0;
  auto sub = bus.subscribe<small_event>([&](const small_event& e) { sum += e.a; });
  auto p = bus.make_producer();
  auto round = [&] {
    for (std::uint64_t i = 0; i < 100; ++i)
      REQUIRE(p.publish_after(std::chrono::nanoseconds(0), small_event{i, i}, i) ==
              sluice::publish_result::ok);
    REQUIRE(bus.poll() == 100);
  };
  round();  // the two lanes' timing wheels are made here
  const long before = g_allocs.load();
  for (int i = 0; i < 50; ++i) round();
  CHECK(g_allocs.load() - before == 0);
  CHECK(sum > 0);
}

TEST_CASE("publish_after under allocation failure throws and accepts nothing", "[alloc][oom]") {
  sluice::bus bus{sluice::bus_options{}.with_lanes(1)};
  int calls = 0;
  auto sub = bus.subscribe<small_event>([&](const small_event&) { ++calls; });
  auto p = bus.make_producer();
  {
    fail_scope fail(0);  // the timing wheel cannot be made
    CHECK_THROWS_AS(p.publish_after(std::chrono::milliseconds(1), small_event{1, 1}),
                    std::bad_alloc);
  }
  CHECK(bus.delayed() == 0);
  CHECK(bus.stats<small_event>().published == 0);
  // The next attempt makes it.
  REQUIRE(p.publish_after(std::chrono::nanoseconds(0), small_event{2, 2}) ==
          sluice::publish_result::ok);
  CHECK(bus.poll() == 1);
  CHECK(calls == 1);
  REQUIRE(bus.stop());
  CHECK(bus.stats<small_event>().balanced());
}

TEST_CASE("a retry policy costs no allocation while nothing fails", "[alloc][resilience]") {
  sluice::bus bus{sluice::bus_options{}.with_lanes(2)};
  std::uint64_t sum = 0;
  auto sub = bus.subscribe<small_event>(
      [&](const small_event& e) { sum += e.a; },
      // (hold_key, the default, and a breaker: neither costs while nothing fails.)
      sluice::subscribe_options::named("r").with_failure_policy(
          sluice::failure_policy::retry(
              5, sluice::retry_backoff::exponential(std::chrono::milliseconds(1),
                                                    std::chrono::seconds(1)))
              .with_breaker(3, std::chrono::seconds(1))));
  auto p = bus.make_producer();
  auto round = [&] {
    for (std::uint64_t i = 0; i < 1000; ++i) p.publish(small_event{i, i}, i);
    bus.poll();
    bus.dispatch(small_event{1, 1});
  };
  for (int i = 0; i < 20; ++i) round();
  const long before = g_allocs.load();
  for (int i = 0; i < 100; ++i) round();
  CHECK(g_allocs.load() - before == 0);
  CHECK(sum > 0);
}

TEST_CASE("a retry under allocation failure: no retry, the policy's end at once", "[alloc][oom]") {
  {
    // This thread's first delivery makes its tracking slot: not what is tested.
    sluice::bus warm;
    auto s = warm.subscribe<small_event>([](const small_event&) {});
    (void)warm.dispatch(small_event{0, 0});
  }
  sluice::bus bus{sluice::bus_options{}.with_lanes(1)};
  int calls = 0;
  auto sub = bus.subscribe<small_event>(
      [&](const small_event&) {
        ++calls;
        return sluice::outcome::failure(1);
      },
      sluice::subscribe_options{}.with_failure_policy(sluice::failure_policy::retry(
          3, sluice::retry_backoff::fixed(std::chrono::nanoseconds(0)))));
  // Fail at each allocation the failure path makes in turn (the settle
  // block, the record, its message, the retry wheel): nothing is lost.
  for (long k = 0; k < 6; ++k) {
    REQUIRE(bus.publish(small_event{1, 1}) == sluice::publish_result::ok);
    {
      fail_scope fail(k);
      (void)bus.poll(1);
    }
    while (bus.queued() != 0) bus.poll();
  }
  REQUIRE(bus.stop());
  const sluice::type_stats st = bus.stats<small_event>();
  CHECK(st.published == 6);
  CHECK(st.balanced());
  CHECK(st.dead_lettered > 0);  // no room to retry: dead-lettered at once
  CHECK(calls > 6);             // and some got their retries
}

TEST_CASE("holding a key under allocation failure: nothing lost, the key's order kept",
          "[alloc][oom][hold]") {
  {
    sluice::bus warm;
    auto s = warm.subscribe<small_event>([](const small_event&) {});
    (void)warm.dispatch(small_event{0, 0});
  }
  sluice::bus bus{sluice::bus_options{}.with_lanes(1)};
  std::vector<std::uint64_t> order;  // successes, by id
  std::vector<std::uint64_t> letters;
  std::vector<std::uint64_t> failed_once;
  order.reserve(64);
  letters.reserve(64);
  failed_once.reserve(64);
  auto sub = bus.subscribe<small_event>(
      [&](const small_event& e) {
        // The first of each pair (b == 1) fails its first call.
        if (e.b == 1 &&
            std::find(failed_once.begin(), failed_once.end(), e.a) == failed_once.end()) {
          failed_once.push_back(e.a);
          return sluice::outcome::failure(1);
        }
        order.push_back(e.a);
        return sluice::outcome::success();
      },
      sluice::subscribe_options{}.with_failure_policy(sluice::failure_policy::retry(
          3, sluice::retry_backoff::fixed(std::chrono::nanoseconds(0)))));
  auto dead = bus.subscribe<sluice::dead_letter<small_event>>(
      [&](const sluice::dead_letter<small_event>& d) { letters.push_back(d.event.a); });
  // Fail at each allocation the failing call and the hold behind it make in
  // turn (the settle block, the record, its message, the hold, the retry
  // wheel, the held copy and its block): nothing is lost.
  constexpr long rounds = 10;
  for (long k = 0; k < rounds; ++k) {
    const auto first = static_cast<std::uint64_t>(2 * k);
    REQUIRE(bus.publish(small_event{first, 1}, 7) == sluice::publish_result::ok);
    REQUIRE(bus.publish(small_event{first + 1, 0}, 7) == sluice::publish_result::ok);
    {
      fail_scope fail(k);
      (void)bus.poll(2);
    }
    while (bus.queued() != 0) bus.poll();
  }
  REQUIRE(bus.stop());
  const sluice::type_stats st = bus.stats<small_event>();
  CHECK(st.published == 2 * rounds);
  CHECK(st.balanced());
  CHECK(order.size() >= rounds);  // most pairs got through
  // Whatever was dead-lettered for want of memory, the rest of each pair
  // was delivered in the pair's order, and nothing twice.
  for (long k = 0; k < rounds; ++k) {
    const auto first = static_cast<std::uint64_t>(2 * k);
    const auto a = std::find(order.begin(), order.end(), first);
    const auto b = std::find(order.begin(), order.end(), first + 1);
    if (a != order.end() && b != order.end()) CHECK(a < b);
    auto lettered = [&](std::uint64_t id) {
      return std::count(letters.begin(), letters.end(), id);
    };
    // (A dead letter there was no memory for is counted, not handed out.)
    CHECK((a != order.end() ? 1 : 0) + lettered(first) <= 1);
    CHECK((b != order.end() ? 1 : 0) + lettered(first + 1) <= 1);
  }
  CHECK(sub.stats().held == 0);
}

TEST_CASE("latency histograms with no memory leave values out, counted, and the bus goes on",
          "[alloc][oom][monitoring]") {
  sluice::bus bus{sluice::bus_options{}.with_lanes(1).with_latency_metrics(1)};
  std::uint64_t calls = 0;
  auto sub = bus.subscribe<small_event>([&](const small_event&) { ++calls; });
  auto p = bus.make_producer();
  (void)bus.dispatch(small_event{0, 0});  // this thread's tracking slot, made once
  calls = 0;  // (the dispatch called it; dispatches are not timed)
  // The producer's counters for the type, made by its first publish.
  REQUIRE(p.publish(small_event{0, 0}) == sluice::publish_result::ok);
  std::size_t accepted = 1;
  {
    fail_scope fail(0);  // every allocation fails: no histogram can be made
    // (No assertion in here: Catch allocates.)
    for (std::uint64_t i = 1; i < 10; ++i)
      accepted += p.publish(small_event{i, i}) == sluice::publish_result::ok;
    while (bus.poll() != 0) {
    }
  }
  REQUIRE(accepted == 10);
  CHECK(calls == 10);
  CHECK(bus.stats<small_event>().delivered == 10);
  CHECK(bus.latency_lost() == 20);  // a queue wait and a call each
  CHECK(sub.handler_time().count() == 0);
  // With memory again, values are recorded.
  REQUIRE(p.publish(small_event{1, 1}) == sluice::publish_result::ok);
  while (bus.poll() != 0) {
  }
  CHECK(sub.handler_time().count() == 1);
  CHECK(bus.latency<small_event>().queue_wait.count() == 1);
  REQUIRE(bus.stop());
}
