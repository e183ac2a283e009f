// Scenario 9: memory and CPU footprint. Each figure is one benchmark with a
// fixed iteration count, its baseline another benchmark in this binary; the
// figures are counters (the times Google Benchmark reports are not the point).
//
// 1. footprint/bytes/*: bytes per queued event. This file replaces the global
//    operator new / delete (for the whole program) with versions that keep
//    the net number of bytes live (requested sizes). A bus with 1 lane of
//    capacity C = 65536 and expected_producers 1, plus one producer, is made
//    (the bus object itself is on the heap, so it is counted) and its lane is
//    filled with C events (64- and 256-byte events exceed SLUICE_INLINE_SIZE
//    and are boxed: the fill adds one box per event). Counter bytes_per_event
//    = net bytes live after the fill / C; construct_bytes_per_event and
//    fill_bytes_per_event split it. Baseline: a raw moodycamel queue
//    (sluice::detail::queue<T>: the lane's block size, blocks from operator
//    new) constructed with capacity C, plus a ProducerToken, filled with C
//    T's of the same size through the token.
// 2. footprint/idle_cpu/*: CPU the process uses while a bus's workers have
//    nothing to do. run(2) with default options (and run(2, 0us): no idle
//    spin, workers park at once), one event published and delivered, 100 ms
//    of settling, then getrusage(RUSAGE_SELF) user+sys over the next 1 s of
//    wall time: idle_cpu_pct, in percent of one core. Baseline: a thread
//    blocked on a condition variable for the same second.
// 3. footprint/overload_rss/*: peak RSS under a 10x overload. The peak is a
//    process-wide high-water mark that this binary's other benchmarks raise,
//    and freed heap memory stays resident for reuse, so the scenario runs in
//    a fresh copy of this binary (re-executed with SLUICE_FOOTPRINT_CHILD
//    set; it prints its figures on a pipe). There, a bus with 1 lane of
//    capacity C, drop_newest, run(1) and a handler doing ~100 cycles of work
//    gets 10 * C 16-byte events from one producer as fast as it can publish.
//    rss_growth_kib = peak RSS after the overload (drained) - peak RSS just
//    before it (bus built and running); rss_bus_setup_kib = the growth while
//    the bus was built. The peak is read as VmHWM (/proc/self/status), not
//    ru_maxrss: exec keeps the spawning process's ru_maxrss, so in the child
//    it starts at this binary's peak so far and hides the growth (see
//    peak_rss_kib). configured_kib = net bytes the bus and producer allocated
//    (figure 1's construction figure); dropped / delivered from
//    bus.stats<ev16>() show that the overload happened. Baseline: a fresh
//    copy of the binary doing nothing for as long as the overload took.
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <new>
#include <sluice/detail/queue.hpp>
#include <sstream>
#include <string>

#include "common.hpp"

// ---- counting allocator ----------------------------------------------------
// Each block carries a header just before the pointer handed out: the
// requested size (for the net count) and the address malloc returned.
namespace {
struct alloc_header {
  std::size_t size;
  void* base;
};
constexpr std::size_t k_min_align = alignof(std::max_align_t);
static_assert(sizeof(alloc_header) <= k_min_align, "header fits in the alignment padding");

std::atomic<std::int64_t> g_live{0};  // bytes requested through operator new, not yet freed

void* counted_alloc(std::size_t n, std::size_t align) noexcept {
  if (align < k_min_align) align = k_min_align;
  const std::size_t offset = align;  // a multiple of align, room for the header
  void* base = nullptr;
  if (align == k_min_align) {
    base = std::malloc(offset + n);
  } else if (posix_memalign(&base, align, offset + n) != 0) {
    base = nullptr;
  }
  if (base == nullptr) return nullptr;
  unsigned char* user = static_cast<unsigned char*>(base) + offset;
  const alloc_header h{n, base};
  std::memcpy(user - sizeof h, &h, sizeof h);
  g_live.fetch_add(static_cast<std::int64_t>(n), std::memory_order_relaxed);
  return user;
}
// Out of line so that GCC, after inlining a delete-expression, does not see
// free() applied to what operator new returned (-Wmismatched-new-delete).
[[gnu::noinline]] void counted_free(void* p) noexcept {
  if (p == nullptr) return;
  alloc_header h{};
  std::memcpy(&h, static_cast<unsigned char*>(p) - sizeof h, sizeof h);
  g_live.fetch_sub(static_cast<std::int64_t>(h.size), std::memory_order_relaxed);
  std::free(h.base);
}
void* alloc_or_throw(std::size_t n, std::size_t align) {
  if (void* p = counted_alloc(n, align)) return p;
  throw std::bad_alloc();
}
}  // namespace

void* operator new(std::size_t n) {
  return alloc_or_throw(n, k_min_align);
}
void* operator new[](std::size_t n) {
  return alloc_or_throw(n, k_min_align);
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  return counted_alloc(n, k_min_align);
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  return counted_alloc(n, k_min_align);
}
void* operator new(std::size_t n, std::align_val_t a) {
  return alloc_or_throw(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return alloc_or_throw(n, static_cast<std::size_t>(a));
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted_alloc(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted_alloc(n, static_cast<std::size_t>(a));
}
void operator delete(void* p) noexcept {
  counted_free(p);
}
void operator delete[](void* p) noexcept {
  counted_free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  counted_free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  counted_free(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
  counted_free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
  counted_free(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
  counted_free(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
  counted_free(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  counted_free(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  counted_free(p);
}
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  counted_free(p);
}
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  counted_free(p);
}

namespace {

using bench::ev16;
using bench::ev64;
// 256 bytes: boxed by sluice.
struct ev256 {
  std::uint64_t a;
  std::uint64_t rest[31];
};
static_assert(sizeof(ev256) == 256 && std::is_trivially_copyable_v<ev256>, "ev256 layout");

constexpr std::size_t k_capacity = 65536;
constexpr std::size_t k_overload_factor = 10;
constexpr const char* k_child_env = "SLUICE_FOOTPRINT_CHILD";

std::int64_t live_bytes() noexcept {
  return g_live.load(std::memory_order_relaxed);
}

sluice::bus_options footprint_options(std::size_t capacity) {
  return sluice::bus_options{}
      .with_lanes(1)
      .with_lane_capacity(capacity)
      .with_expected_producers(1)
      .with_policy(sluice::full_policy::drop_newest);
}

double per_event(std::int64_t bytes) {
  return static_cast<double>(bytes) / static_cast<double>(k_capacity);
}

// ---- 1. bytes per queued event -----------------------------------------------

// Publishes `n` events; true when each was accepted (publish_result::ok).
template <class E>
bool fill(sluice::producer& p, std::size_t n) {
  bool ok = true;
  for (std::size_t i = 0; i < n; ++i) {
    E e{};
    e.a = i;
    ok = p.publish(e) == sluice::publish_result::ok && ok;
  }
  return ok;
}

template <class E>
void BM_bytes_sluice(benchmark::State& state) {
  {  // warm-up: one-time statics (type indexes, per-thread slots) are not the lane's
    sluice::bus warm(footprint_options(64));
    sluice::producer p = warm.make_producer();
    (void)fill<E>(p, 1);
    warm.stop(sluice::stop_mode::discard);
  }
  std::int64_t constructed = 0;
  std::int64_t filled = 0;
  bool ok = true;
  std::size_t depth = 0;
  for (auto _ : state) {
    const std::int64_t before = live_bytes();
    auto bus = std::make_unique<sluice::bus>(footprint_options(k_capacity));
    auto prod = std::make_unique<sluice::producer>(bus->make_producer());
    constructed = live_bytes() - before;
    ok = fill<E>(*prod, k_capacity);
    filled = live_bytes() - before;
    depth = bus->lane(0).depth;
    prod.reset();
    bus->stop(sluice::stop_mode::discard);  // nothing subscribed: discard, not unrouted
    bus.reset();
  }
  if (!ok || depth != k_capacity) {
    state.SkipWithError("sluice did not accept lane_capacity events into the lane");
    return;
  }
  if (constructed <= 0 || filled < constructed) {
    state.SkipWithError("the allocation counter saw no bus allocations");
    return;
  }
  state.counters["bytes_per_event"] = per_event(filled);
  state.counters["construct_bytes_per_event"] = per_event(constructed);
  state.counters["fill_bytes_per_event"] = per_event(filled - constructed);
  state.counters["event_bytes"] = static_cast<double>(sizeof(E));
}

template <class E>
void BM_bytes_moodycamel(benchmark::State& state) {
  std::int64_t constructed = 0;
  std::int64_t filled = 0;
  bool ok = true;
  std::size_t size = 0;
  for (auto _ : state) {
    const std::int64_t before = live_bytes();
    auto q = std::make_unique<sluice::detail::queue<E>>(k_capacity);
    auto tok = std::make_unique<sluice::detail::producer_token>(*q);
    constructed = live_bytes() - before;
    for (std::size_t i = 0; i < k_capacity; ++i) {
      E e{};
      e.a = i;
      ok = q->enqueue(*tok, e) && ok;
    }
    filled = live_bytes() - before;
    size = q->size_approx();
    tok.reset();
    q.reset();
  }
  if (!ok || size != k_capacity) {
    state.SkipWithError("the moodycamel queue did not take capacity items");
    return;
  }
  if (constructed <= 0 || filled < constructed) {
    state.SkipWithError("the allocation counter saw no queue allocations");
    return;
  }
  state.counters["bytes_per_event"] = per_event(filled);
  state.counters["construct_bytes_per_event"] = per_event(constructed);
  state.counters["fill_bytes_per_event"] = per_event(filled - constructed);
  state.counters["event_bytes"] = static_cast<double>(sizeof(E));
}

// ---- 2. idle workers' CPU ----------------------------------------------------------

double seconds(const timeval& t) {
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) * 1e-6;
}
double process_cpu_s() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return seconds(ru.ru_utime) + seconds(ru.ru_stime);
}
// Percent of one core the process used over one second of wall time from now.
double cpu_pct_over_1s() {
  const double c0 = process_cpu_s();
  const std::int64_t w0 = bench::now_ns();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const double c1 = process_cpu_s();
  const std::int64_t w1 = bench::now_ns();
  return 100.0 * (c1 - c0) / (static_cast<double>(w1 - w0) * 1e-9);
}

constexpr auto k_settle = std::chrono::milliseconds(100);

template <bool NoSpin>
void BM_idle_cpu_sluice(benchmark::State& state) {
  double pct = -1;
  bool started = false;
  bool delivered_one = false;
  sluice::type_stats st;
  for (auto _ : state) {
    sluice::bus bus;
    std::atomic<std::uint64_t> got{0};
    const sluice::subscription sub = bus.subscribe<ev16>([&got](const ev16& e) {
      bench::work<0>(e);
      got.fetch_add(1, std::memory_order_release);
    });
    started = NoSpin ? bus.run(2, std::chrono::microseconds(0)) : bus.run(2);
    sluice::producer p = bus.make_producer();
    p.publish(ev16{1, 2});
    delivered_one = bench::wait_until([&got] { return got.load(std::memory_order_acquire) == 1; },
                                      std::chrono::seconds(10));
    std::this_thread::sleep_for(k_settle);
    pct = cpu_pct_over_1s();
    bus.stop();
    st = bus.stats<ev16>();
  }
  if (!started) {
    state.SkipWithError("bus.run(2) failed");
    return;
  }
  if (!delivered_one || st.delivered != 1 || st.published != 1) {
    state.SkipWithError("the event was not delivered exactly once");
    return;
  }
  if (pct < 0) {
    state.SkipWithError("negative CPU time");
    return;
  }
  state.counters["idle_cpu_pct"] = pct;
}

void BM_idle_cpu_condvar(benchmark::State& state) {
  double pct = -1;
  bool waited = false;
  for (auto _ : state) {
    std::mutex m;
    std::condition_variable cv;
    bool go = false;
    std::atomic<bool> waiting{false};
    std::thread t([&] {
      std::unique_lock<std::mutex> lock(m);
      waiting.store(true, std::memory_order_release);
      cv.wait(lock, [&go] { return go; });
    });
    waited = bench::wait_until([&waiting] { return waiting.load(std::memory_order_acquire); },
                               std::chrono::seconds(10));
    std::this_thread::sleep_for(k_settle);
    pct = cpu_pct_over_1s();
    {
      std::lock_guard<std::mutex> lock(m);
      go = true;
    }
    cv.notify_one();
    t.join();
  }
  if (!waited || pct < 0) {
    state.SkipWithError("the waiting thread did not start");
    return;
  }
  state.counters["idle_cpu_pct"] = pct;
}

// ---- 3. peak RSS under overload (in a fresh copy of this binary) -----------------

// The peak resident set of this process's address space, KiB: VmHWM in
// /proc/self/status, the figure getrusage's ru_maxrss takes for the live
// address space. ru_maxrss itself is no use in the child: exec folds the
// spawning process's peak into it (the signal struct's maxrss survives exec),
// so it starts at whatever peak this binary's other benchmarks reached.
long peak_rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.compare(0, 6, "VmHWM:") == 0) return std::atol(line.c_str() + 6);
  return -1;
}

// Child: the overload. Prints "key value" lines on stdout.
int child_overload() {
  const long rss_start = peak_rss_kib();
  const std::int64_t before = live_bytes();
  sluice::bus bus(footprint_options(k_capacity));
  const sluice::subscription sub = bus.subscribe<ev16>([](const ev16& e) {
    std::uint64_t x = e.a;  // ~100 cycles of dependent work
    for (int i = 0; i < 32; ++i) x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    bench::g_sink[0] += x;
  });
  sluice::producer prod = bus.make_producer();
  const std::int64_t configured = live_bytes() - before;
  if (!bus.run(1)) return 2;
  const long rss_before = peak_rss_kib();
  const std::int64_t t0 = bench::now_ns();
  std::uint64_t ok = 0;
  std::uint64_t dropped = 0;
  for (std::size_t i = 0; i < k_overload_factor * k_capacity; ++i) {
    const sluice::publish_result r = prod.publish(ev16{i, i});
    ok += r == sluice::publish_result::ok ? 1 : 0;
    dropped += r == sluice::publish_result::dropped ? 1 : 0;
  }
  const bool idle = bus.wait_idle(std::chrono::seconds(30));
  const std::int64_t t1 = bench::now_ns();
  const long rss_after = peak_rss_kib();
  const std::size_t high_water = bus.lane(0).high_water;
  bus.stop();
  const sluice::type_stats st = bus.stats<ev16>();
  std::printf(
      "rss_start %ld\nrss_before %ld\nrss_after %ld\nconfigured %lld\nelapsed_ns %lld\n"
      "idle %d\nok %llu\ndropped_results %llu\npublished %llu\ndelivered %llu\ndropped %llu\n"
      "high_water %zu\nbalanced %d\n",
      rss_start, rss_before, rss_after, static_cast<long long>(configured),
      static_cast<long long>(t1 - t0), idle ? 1 : 0, static_cast<unsigned long long>(ok),
      static_cast<unsigned long long>(dropped), static_cast<unsigned long long>(st.published),
      static_cast<unsigned long long>(st.delivered), static_cast<unsigned long long>(st.dropped),
      high_water, st.balanced() ? 1 : 0);
  return 0;
}

// Child: nothing, for `ns` nanoseconds.
int child_idle(long long ns) {
  const long rss_before = peak_rss_kib();
  std::this_thread::sleep_for(std::chrono::nanoseconds(ns));
  const long rss_after = peak_rss_kib();
  std::printf("rss_before %ld\nrss_after %ld\nelapsed_ns %lld\n", rss_before, rss_after, ns);
  return 0;
}

// Runs this binary again with SLUICE_FOOTPRINT_CHILD=mode; returns its
// "key value" lines parsed, or an empty map if it failed.
std::vector<std::pair<std::string, long long>> run_child(const std::string& mode) {
  std::vector<std::pair<std::string, long long>> out;
  int fds[2];
  if (pipe(fds) != 0) return out;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  posix_spawn_file_actions_addclose(&fa, fds[1]);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e)
    if (std::strncmp(*e, k_child_env, std::strlen(k_child_env)) != 0) env_strings.emplace_back(*e);
  env_strings.push_back(std::string(k_child_env) + "=" + mode);
  std::vector<char*> envp;
  for (std::string& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string arg0 = "bench_footprint";
  char* argv[] = {arg0.data(), nullptr};
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, "/proc/self/exe", &fa, nullptr, argv, envp.data());
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  std::string text;
  if (rc == 0) {
    char buf[512];
    for (;;) {
      const ssize_t n = read(fds[0], buf, sizeof buf);
      if (n <= 0) break;
      text.append(buf, static_cast<std::size_t>(n));
    }
  }
  close(fds[0]);
  if (rc != 0) return out;
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return out;
  std::istringstream in(text);
  std::string key;
  long long value = 0;
  while (in >> key >> value) out.emplace_back(key, value);
  return out;
}

long long get(const std::vector<std::pair<std::string, long long>>& kv, const char* key) {
  for (const auto& [k, v] : kv)
    if (k == key) return v;
  return -1;
}

std::atomic<long long> g_overload_ns{0};  // how long the last overload took

void BM_overload_rss_sluice(benchmark::State& state) {
  std::vector<std::pair<std::string, long long>> r;
  for (auto _ : state) r = run_child("overload");
  if (r.empty()) {
    state.SkipWithError("the overload child process failed");
    return;
  }
  const long long published = get(r, "published");
  const long long delivered = get(r, "delivered");
  const long long dropped = get(r, "dropped");
  const auto total = static_cast<long long>(k_overload_factor * k_capacity);
  if (get(r, "idle") != 1 || get(r, "balanced") != 1 || published != total) {
    state.SkipWithError("the overload did not settle every event");
    return;
  }
  if (delivered <= 0 || dropped <= 0 || delivered + dropped != total ||
      get(r, "dropped_results") != dropped) {
    state.SkipWithError("no overload: expected both deliveries and drops");
    return;
  }
  const long long before = get(r, "rss_before");
  const long long after = get(r, "rss_after");
  if (before <= 0 || after < before || get(r, "configured") <= 0) {
    state.SkipWithError("implausible peak RSS or allocation figures");
    return;
  }
  g_overload_ns.store(get(r, "elapsed_ns"), std::memory_order_relaxed);
  state.counters["rss_growth_kib"] = static_cast<double>(after - before);
  state.counters["rss_bus_setup_kib"] = static_cast<double>(before - get(r, "rss_start"));
  state.counters["configured_kib"] = static_cast<double>(get(r, "configured")) / 1024.0;
  state.counters["delivered"] = static_cast<double>(delivered);
  state.counters["dropped"] = static_cast<double>(dropped);
  state.counters["lane_high_water"] = static_cast<double>(get(r, "high_water"));
  state.counters["overload_ms"] = static_cast<double>(get(r, "elapsed_ns")) * 1e-6;
}

void BM_overload_rss_idle(benchmark::State& state) {
  long long ns = g_overload_ns.load(std::memory_order_relaxed);
  if (ns <= 0) {  // the sluice run has not happened yet (random interleaving): time one
    const auto r = run_child("overload");
    ns = r.empty() ? 0 : get(r, "elapsed_ns");
  }
  if (ns <= 0) {
    state.SkipWithError("could not time the overload");
    return;
  }
  std::vector<std::pair<std::string, long long>> r;
  for (auto _ : state) r = run_child("idle:" + std::to_string(ns));
  const long long before = r.empty() ? -1 : get(r, "rss_before");
  const long long after = r.empty() ? -1 : get(r, "rss_after");
  if (before <= 0 || after < before) {
    state.SkipWithError("the idle child process failed");
    return;
  }
  state.counters["rss_growth_kib"] = static_cast<double>(after - before);
  state.counters["overload_ms"] = static_cast<double>(ns) * 1e-6;
}

// A child run ends the process here, before Google Benchmark starts.
void run_child_mode_and_exit() {
  const char* mode = std::getenv(k_child_env);
  if (mode == nullptr) return;
  int rc = 3;
  if (std::strcmp(mode, "overload") == 0) {
    rc = child_overload();
  } else if (std::strncmp(mode, "idle:", 5) == 0) {
    rc = child_idle(std::atoll(mode + 5));
  }
  std::fflush(stdout);
  std::exit(rc);
}

void register_benchmarks() {
  run_child_mode_and_exit();
  const auto reg = [](const char* name, void (*fn)(benchmark::State&)) {
    benchmark::RegisterBenchmark(name, fn)->Iterations(1)->Unit(benchmark::kMillisecond);
  };
  reg("footprint/bytes/sluice/16B", BM_bytes_sluice<ev16>);
  reg("footprint/bytes/moodycamel/16B", BM_bytes_moodycamel<ev16>);
  reg("footprint/bytes/sluice/64B", BM_bytes_sluice<ev64>);
  reg("footprint/bytes/moodycamel/64B", BM_bytes_moodycamel<ev64>);
  reg("footprint/bytes/sluice/256B", BM_bytes_sluice<ev256>);
  reg("footprint/bytes/moodycamel/256B", BM_bytes_moodycamel<ev256>);
  reg("footprint/idle_cpu/sluice_run2", BM_idle_cpu_sluice<false>);
  reg("footprint/idle_cpu/sluice_run2_nospin", BM_idle_cpu_sluice<true>);
  reg("footprint/idle_cpu/condvar", BM_idle_cpu_condvar);
  reg("footprint/overload_rss/sluice", BM_overload_rss_sluice);
  reg("footprint/overload_rss/idle", BM_overload_rss_idle);
}

}  // namespace

SLUICE_BENCH_MAIN()
