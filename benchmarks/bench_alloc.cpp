// Scenario 6: heap allocations per event in steady state. This file replaces
// the global operator new / delete (for the whole program) with versions that
// count calls, then measures queued publish + poll on one thread after a
// warm-up round. Counter "allocs_per_event" = operator new calls made inside
// the timed loop / events. Expected 0 for events stored inline; 64-byte
// events exceed SLUICE_INLINE_SIZE (48) and are boxed, so 1 is expected there.
// One event size per binary (SLUICE_BENCH_EVENT_BYTES; CMake also builds
// bench_alloc_64B), as in bench_queued.cpp: a layout choice, not a workaround
// (the GCC type-identity bug is fixed). Each run also checks that the handler
// received every event.
#include "common.hpp"

#ifndef SLUICE_BENCH_EVENT_BYTES
#define SLUICE_BENCH_EVENT_BYTES 16
#endif

#include <cstdlib>
#include <new>

namespace {
std::atomic<std::uint64_t> g_news{0};

void* counted_alloc(std::size_t n) noexcept {
  g_news.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n == 0 ? 1 : n);
}
void* counted_aligned_alloc(std::size_t n, std::size_t align) noexcept {
  g_news.fetch_add(1, std::memory_order_relaxed);
  if (align < sizeof(void*)) align = sizeof(void*);
  void* p = nullptr;
  return posix_memalign(&p, align, n == 0 ? 1 : n) == 0 ? p : nullptr;
}
// Out of line so that GCC, after inlining a delete-expression, does not see
// free() applied to what operator new returned (-Wmismatched-new-delete).
[[gnu::noinline]] void counted_free(void* p) noexcept { std::free(p); }
}  // namespace

void* operator new(std::size_t n) {
  if (void* p = counted_alloc(n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  if (void* p = counted_alloc(n)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n); }
void* operator new(std::size_t n, std::align_val_t a) {
  if (void* p = counted_aligned_alloc(n, static_cast<std::size_t>(a))) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n, std::align_val_t a) {
  if (void* p = counted_aligned_alloc(n, static_cast<std::size_t>(a))) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted_aligned_alloc(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted_aligned_alloc(n, static_cast<std::size_t>(a));
}
void operator delete(void* p) noexcept { counted_free(p); }
void operator delete[](void* p) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t) noexcept { counted_free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { counted_free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { counted_free(p); }
void operator delete(void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { counted_free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { counted_free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  counted_free(p);
}

namespace {

static_assert(SLUICE_BENCH_EVENT_BYTES == 16 || SLUICE_BENCH_EVENT_BYTES == 64,
              "SLUICE_BENCH_EVENT_BYTES is 16 or 64");
using event = std::conditional_t<SLUICE_BENCH_EVENT_BYTES == 16, bench::ev16, bench::ev64>;

constexpr std::size_t N = 4096;

enum class how { publish, publish_bulk, bus_publish, dispatch };

template <class E, how H>
void BM_alloc(benchmark::State& state) {
  sluice::bus_options o;
  o.lanes = 1;
  o.lane_capacity = N;
  o.stamp_time = false;
  sluice::bus bus(o);
  std::size_t calls = 0;
  const sluice::subscription sub = bus.subscribe<E>([&calls](const E& e) {
    bench::work<0>(e);
    ++calls;
  });
  sluice::producer prod = bus.make_producer();
  std::vector<E> src(N);
  for (std::size_t i = 0; i < N; ++i) src[i].a = i;
  std::size_t handled = 0;
  const auto round = [&] {
    if constexpr (H == how::publish) {
      for (const E& e : src) prod.publish(e);
      handled += bus.poll();
    } else if constexpr (H == how::bus_publish) {
      for (const E& e : src) bus.publish(e);
      handled += bus.poll();
    } else if constexpr (H == how::publish_bulk) {
      prod.publish_bulk(src.begin(), src.end());
      handled += bus.poll();
    } else {
      for (const E& e : src) handled += bus.dispatch(e);
    }
  };
  round();  // warm-up: queue blocks, counter cells, reader slots
  round();
  handled = 0;
  calls = 0;
  std::uint64_t news = 0;
  for (auto _ : state) {
    const std::uint64_t before = g_news.load(std::memory_order_relaxed);
    round();
    news += g_news.load(std::memory_order_relaxed) - before;
  }
  benchmark::DoNotOptimize(bench::g_sink);
  const auto events = static_cast<std::size_t>(state.iterations()) * N;
  if (handled != events || calls != events)
    state.SkipWithError("the handler did not receive every event");
  state.counters["allocs_per_event"] = static_cast<double>(news) / static_cast<double>(events);
  state.counters["allocs_total"] = static_cast<double>(news);
  state.SetItemsProcessed(bench::to_i64(events));
}

void register_benchmarks() {
  const std::string sz = SLUICE_BENCH_EVENT_BYTES == 16 ? "16B" : "64B";
  const auto reg = [&](const std::string& name, void (*fn)(benchmark::State&)) {
    benchmark::RegisterBenchmark(name.c_str(), fn)->MinTime(0.2);
  };
  reg("alloc/publish_poll/" + sz, BM_alloc<event, how::publish>);
  reg("alloc/publish_bulk_poll/" + sz, BM_alloc<event, how::publish_bulk>);
  reg("alloc/bus_publish_poll/" + sz, BM_alloc<event, how::bus_publish>);
  reg("alloc/dispatch/" + sz, BM_alloc<event, how::dispatch>);
}

}  // namespace

SLUICE_BENCH_MAIN()
