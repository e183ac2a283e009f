// Contract 5, memory: in steady state no heap allocation per event for events
// that fit inline. The global operator new is replaced in this binary; the
// queue's blocks come from it too (see detail/queue.hpp).
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <new>
#include <sluice/sluice.hpp>
#include <string>
#include <thread>

#include "support.hpp"

namespace {
std::atomic<long> g_allocs{0};
struct small_event {
  std::uint64_t a, b;
};
struct big_event {
  char bytes[SLUICE_INLINE_SIZE + 8];
};
}  // namespace

void* operator new(std::size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
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
