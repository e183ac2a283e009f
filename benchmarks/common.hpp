// Shared pieces of the sluice benchmarks: event types, the handler work both
// sluice and its baselines do, waiting helpers and a main() that records a
// little machine context in the JSON output.
//
// Every scenario keeps its baseline in the same binary, so report.py can
// compare medians measured under the same conditions.
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <sluice/sluice.hpp>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace bench {

// 16 bytes: stored inline in a sluice record (SLUICE_INLINE_SIZE is 48).
struct ev16 {
  std::uint64_t a;
  std::uint64_t b;
};
// 64 bytes: larger than SLUICE_INLINE_SIZE, so sluice boxes it on the heap.
struct ev64 {
  std::uint64_t a;
  std::uint64_t rest[7];
};
static_assert(sizeof(ev16) == 16 && std::is_trivially_copyable_v<ev16>, "ev16 layout");
static_assert(sizeof(ev64) == 64 && std::is_trivially_copyable_v<ev64>, "ev64 layout");

// Handler work: one load-add-store into a global the optimizer cannot see
// the end of (the functions are only ever called through pointers). Distinct
// slots per handler index so ten handlers do not form one store chain.
inline std::uint64_t g_sink[16];

template <int I, class E>
void work(const E& e) noexcept {
  g_sink[I] += e.a;
}

template <class E>
using handler_fn = void (*)(const E&);

// Pointers to work<0..N-1, E>, for the baselines' indirect calls.
template <class E, std::size_t... I>
constexpr std::array<handler_fn<E>, sizeof...(I)> make_fns(std::index_sequence<I...>) {
  return {{&work<static_cast<int>(I), E>...}};
}
template <class E, std::size_t N>
inline constexpr std::array<handler_fn<E>, N> k_fns = make_fns<E>(std::make_index_sequence<N>{});

// Subscribes `n` (at most 10) distinct handlers, the i-th doing work<i>.
template <class E, class Target, std::size_t... I>
std::vector<sluice::subscription> subscribe_n_impl(Target& b, std::size_t n,
                                                   std::index_sequence<I...>) {
  std::vector<sluice::subscription> subs;
  subs.reserve(n);
  ((I < n ? subs.push_back(b.template subscribe<E>([](const E& e) { work<static_cast<int>(I)>(e); }))
          : void()),
   ...);
  return subs;
}
// On a bus or a dispatcher.
template <class E, class Target>
std::vector<sluice::subscription> subscribe_n(Target& b, std::size_t n) {
  return subscribe_n_impl<E>(b, n, std::make_index_sequence<10>{});
}

// An opaque copy of a function pointer: the optimizer must call through it.
template <class F>
F opaque(F f) {
  benchmark::DoNotOptimize(f);
  return f;
}

inline std::int64_t now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Waits for `done()` spinning gently (few reads of the watched cache line),
// then yielding, so that the waiter disturbs the thread it waits for little.
// Gives up after `limit` (returns false): a benchmark must not hang when the
// library loses or misroutes events.
template <class Pred>
bool wait_until(Pred done, std::chrono::seconds limit = std::chrono::seconds(30)) {
  unsigned spins = 0;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (spins < 4096) {
      for (int i = 0; i < 16; ++i) cpu_relax();
      ++spins;
    } else {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::yield();
    }
  }
  return true;
}

// A counter with its own cache line.
struct alignas(64) padded_counter {
  std::atomic<std::uint64_t> n{0};
  // Single writer: a plain load and store, no locked instruction.
  void bump(std::uint64_t k = 1) noexcept {
    n.store(n.load(std::memory_order_relaxed) + k, std::memory_order_release);
  }
  [[nodiscard]] std::uint64_t get() const noexcept { return n.load(std::memory_order_acquire); }
};

inline std::int64_t to_i64(std::size_t n) noexcept {
  return static_cast<std::int64_t>(n);
}

inline std::string read_first_line(const char* path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

inline void add_context() {
  benchmark::AddCustomContext("sluice_version", std::to_string(sluice::version_major) + "." +
                                                    std::to_string(sluice::version_minor) + "." +
                                                    std::to_string(sluice::version_patch));
  benchmark::AddCustomContext("sluice_membarrier", sluice::detail::current_fence_mode() ==
                                                           sluice::detail::fence_mode::asymmetric
                                                       ? "yes"
                                                       : "no");
  benchmark::AddCustomContext("loadavg_at_start", read_first_line("/proc/loadavg"));
  benchmark::AddCustomContext("hardware_concurrency",
                              std::to_string(std::thread::hardware_concurrency()));
#if defined(__VERSION__)
  benchmark::AddCustomContext("compiler", __VERSION__);
#endif
#if defined(__OPTIMIZE__)
  benchmark::AddCustomContext("optimized", "yes");
#endif
#if defined(NDEBUG)
  benchmark::AddCustomContext("ndebug", "yes");
#endif
}

}  // namespace bench

// Each benchmark source defines register_benchmarks() and uses this main.
#define SLUICE_BENCH_MAIN()                                           \
  int main(int argc, char** argv) {                                   \
    bench::add_context();                                             \
    register_benchmarks();                                            \
    benchmark::Initialize(&argc, argv);                               \
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1; \
    benchmark::RunSpecifiedBenchmarks();                              \
    benchmark::Shutdown();                                            \
    return 0;                                                         \
  }
