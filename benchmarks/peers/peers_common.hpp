// The harness of the peer benchmarks: sluice against the libraries users
// would pick instead, in the scenarios of bench_dispatch, bench_queued and
// bench_cross_thread. Every library runs through the same loop (run_dispatch,
// run_queued, run_xt) with the same handler, bench::work<I, ev16>; only the
// call that hands an event over differs.
//
// A binary that includes this header registers the raw baselines and sluice
// (register_baselines_and_sluice) next to its peers, so that each peer is
// compared with a baseline measured in the same binary and run.
//
// Names: peers/dispatch/<lib>/<handlers>, peers/queued/<lib>, peers/xt/<lib>.
//
// Delivery check: handler I adds e.a into bench::g_sink[I]. Each loop knows
// which values of e.a it sent, so it checks after the run that every handler's
// slot grew by exactly their sum, and skips the run with an error otherwise.
// The check costs nothing per event.
#pragma once

#include <array>
#include <sluice/detail/queue.hpp>
#include <string>
#include <thread>

#include "../common.hpp"

namespace bench::peers {

using bench::ev16;

// Scenario sizes: as in bench_queued (N = 4096) and bench_cross_thread.
inline constexpr std::size_t queued_n = 4096;
inline constexpr std::size_t xt_total = std::size_t{1} << 21;
inline constexpr std::size_t max_handlers = 10;

// Calls f(std::integral_constant<int, I>{}) for I in [0, n), n <= 10, so that
// libraries binding a function at compile time (EnTT) can name work<I>.
template <class F, std::size_t... I>
void for_first_n_impl(std::size_t n, F& f, std::index_sequence<I...>) {
  ((I < n ? f(std::integral_constant<int, static_cast<int>(I)>{}) : void()), ...);
}
template <class F>
void for_first_n(std::size_t n, F&& f) {
  for_first_n_impl(n, f, std::make_index_sequence<max_handlers>{});
}

// The handler, as a plain function pointer, for libraries that take one.
template <int I>
inline constexpr handler_fn<ev16> fn = &work<I, ev16>;

// Makes an object's address escape, so that the optimizer cannot see through
// what was connected to it (as the raw loop hides its vector's contents).
template <class T>
void escape(T& x) {
  void* p = &x;
  benchmark::DoNotOptimize(p);
  benchmark::ClobberMemory();
}

// Sum of a, a+1, ..., a+count-1, modulo 2^64 (as the handlers add).
inline std::uint64_t sum_run(std::uint64_t a, std::uint64_t count) noexcept {
  // count * (2a + count - 1) / 2 without losing the halving to wrap-around.
  const std::uint64_t x = count;
  const std::uint64_t y = 2 * a + count - 1;
  return (x % 2 == 0) ? (x / 2) * y : x * (y / 2);
}

// Snapshot of the first n handler slots; ok(d) is true if each grew by d.
class sink_check {
 public:
  explicit sink_check(std::size_t n) noexcept : n_(n) {
    for (std::size_t i = 0; i < n_; ++i) before_[i] = g_sink[i];
  }
  [[nodiscard]] bool ok(std::uint64_t delta) const noexcept {
    for (std::size_t i = 0; i < n_; ++i)
      if (g_sink[i] - before_[i] != delta) return false;
    return true;
  }

 private:
  std::size_t n_;
  std::array<std::uint64_t, max_handlers> before_{};
};

inline void fail_undelivered(benchmark::State& state) {
  state.SkipWithError("not every event reached every handler exactly once");
}

// ---- immediate dispatch ------------------------------------------------------
// emit(e) must call the n connected handlers work<0..n-1> with e, now.
template <class Emit>
void run_dispatch(benchmark::State& state, std::size_t n, Emit&& emit) {
  const sink_check check(n);
  ev16 e{1, 2};
  for (auto _ : state) {
    emit(e);
    ++e.a;
  }
  benchmark::DoNotOptimize(g_sink);
  const auto iters = static_cast<std::uint64_t>(state.iterations());
  if (!check.ok(sum_run(1, iters))) fail_undelivered(state);
  state.SetItemsProcessed(state.iterations());
  state.counters["handlers"] = static_cast<double>(n);
}

// ---- queued, one thread ------------------------------------------------------
// enqueue(e) queues one event; drain() delivers all queued events to the one
// handler, work<0>.
template <class Enqueue, class Drain>
void run_queued(benchmark::State& state, Enqueue&& enqueue, Drain&& drain) {
  const sink_check check(1);
  ev16 e{0, 0};
  for (auto _ : state) {
    for (std::size_t i = 0; i < queued_n; ++i) {
      e.a = i;
      enqueue(e);
    }
    drain();
  }
  benchmark::DoNotOptimize(g_sink);
  const auto iters = static_cast<std::uint64_t>(state.iterations());
  if (!check.ok(iters * sum_run(0, queued_n))) fail_undelivered(state);
  state.SetItemsProcessed(state.iterations() * to_i64(queued_n));
  state.SetBytesProcessed(state.iterations() * to_i64(queued_n * sizeof(ev16)));
}

// ---- cross-thread, 1 producer -> 1 consumer -----------------------------------
// The handler every consumer runs (as in bench_cross_thread): the work, then
// a single-writer count that the producer thread waits on.
struct xt_handler {
  padded_counter* handled;
  void operator()(const ev16& e) const noexcept {
    work<0>(e);
    handled->bump();
  }
};

// send(e) hands one event to the consumer thread, which runs xt_handler.
// Each iteration sends xt_total events and ends when all were handled (real
// time, end to end). Call with the consumer running; stop it afterwards.
template <class Send>
void run_xt(benchmark::State& state, const padded_counter& handled, Send&& send) {
  const sink_check check(1);
  std::uint64_t target = handled.get();
  bool lost = false;
  ev16 e{0, 0};
  for (auto _ : state) {
    target += xt_total;
    for (std::size_t i = 0; i < xt_total; ++i) {
      e.a = i;
      send(e);
    }
    if (!wait_until([&] { return handled.get() >= target; })) {
      lost = true;
      break;
    }
  }
  benchmark::DoNotOptimize(g_sink);
  const auto iters = static_cast<std::uint64_t>(state.iterations());
  if (lost)
    state.SkipWithError("not every event reached the handler within 30 s");
  else if (handled.get() != target || !check.ok(iters * sum_run(0, xt_total)))
    fail_undelivered(state);
  state.SetItemsProcessed(state.iterations() * to_i64(xt_total));
}

inline void xt_setup(benchmark::internal::Benchmark* b) {
  b->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(0.2);
}
inline void fast_setup(benchmark::internal::Benchmark* b) {
  b->MinTime(0.1);
}

// ---- baselines and sluice ----------------------------------------------------
// Dispatch baseline (bench_dispatch's raw_fnptr): a loop over a vector of n
// function pointers whose contents the optimizer cannot see.
inline void bm_dispatch_raw(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto& all = k_fns<ev16, max_handlers>;
  std::vector<handler_fn<ev16>> fns(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n));
  benchmark::DoNotOptimize(fns.data());
  benchmark::ClobberMemory();
  run_dispatch(state, n, [&](const ev16& e) {
    for (handler_fn<ev16> f : fns) f(e);
  });
}

inline void bm_dispatch_sluice(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  sluice::bus bus;
  const std::vector<sluice::subscription> subs = subscribe_n<ev16>(bus, n);
  escape(bus);
  run_dispatch(state, n, [&](const ev16& e) { static_cast<void>(bus.dispatch(e)); });
}

// Queued baseline (bench_queued's moodycamel): a raw queue with the traits of
// a lane, a producer token, single-item enqueues, then try_dequeue_bulk in
// batches of 64 calling the handler through a pointer per event.
inline void bm_queued_raw(benchmark::State& state) {
  using queue = sluice::detail::queue<ev16>;
  queue q(queued_n + 2 * queue::BLOCK_SIZE);
  moodycamel::ProducerToken pt(q);
  moodycamel::ConsumerToken ct(q);
  const handler_fn<ev16> f = opaque(&work<0, ev16>);
  ev16 buf[SLUICE_DRAIN_BATCH];
  std::size_t not_ok = 0;
  run_queued(
      state, [&](const ev16& e) { not_ok += !q.enqueue(pt, e); },
      [&] {
        for (;;) {
          const std::size_t k = q.try_dequeue_bulk(ct, buf, SLUICE_DRAIN_BATCH);
          if (k == 0) break;
          for (std::size_t j = 0; j < k; ++j) f(buf[j]);
        }
      });
  if (not_ok != 0) state.SkipWithError("moodycamel refused events");
}

// sluice with the default bus_options (4 lanes of 8192, stamp_time on), or
// with only stamp_time turned off.
template <bool Stamp>
void bm_queued_sluice(benchmark::State& state) {
  sluice::bus_options o;
  o.stamp_time = Stamp;
  sluice::bus bus(o);
  const sluice::subscription sub = bus.subscribe<ev16>([](const ev16& e) { work<0>(e); });
  sluice::producer prod = bus.make_producer();
  std::size_t not_ok = 0;
  run_queued(
      state, [&](const ev16& e) { not_ok += prod.publish(e) != sluice::publish_result::ok; },
      [&] { static_cast<void>(bus.poll()); });
  const sluice::type_stats st = bus.stats<ev16>();
  const auto expected = static_cast<std::uint64_t>(state.iterations()) * queued_n;
  if (not_ok != 0 || st.delivered != expected || st.handler_calls != expected)
    state.SkipWithError("sluice refused or lost events");
}

// Cross-thread baseline (bench_cross_thread's moodycamel_single): tokens,
// single-item enqueue, a consumer spinning on try_dequeue.
inline void bm_xt_raw(benchmark::State& state) {
  using queue = sluice::detail::queue<ev16>;
  queue q(8192 + 2 * queue::BLOCK_SIZE);
  padded_counter handled;
  std::atomic<bool> stop{false};
  const handler_fn<ev16> f = opaque(&work<0, ev16>);
  std::thread consumer([&] {
    moodycamel::ConsumerToken ct(q);
    ev16 x;
    while (!stop.load(std::memory_order_relaxed)) {
      if (q.try_dequeue(ct, x)) {
        f(x);
        handled.bump();
      }
    }
  });
  moodycamel::ProducerToken pt(q);
  std::size_t not_ok = 0;
  run_xt(state, handled, [&](const ev16& e) { not_ok += !q.enqueue(pt, e); });
  stop.store(true, std::memory_order_relaxed);
  consumer.join();
  if (not_ok != 0) state.SkipWithError("moodycamel refused events");
}

// sluice: bus.run(1) worker, a producer, one publish per event; default
// options, or lanes = 1 and stamp_time off (bench_cross_thread's settings).
template <bool Defaults>
void bm_xt_sluice(benchmark::State& state) {
  padded_counter handled;
  sluice::bus_options o;
  if (!Defaults) {
    o.lanes = 1;
    o.stamp_time = false;
  }
  sluice::bus bus(o);
  const sluice::subscription sub = bus.subscribe<ev16>(xt_handler{&handled});
  sluice::producer prod = bus.make_producer();
  if (!bus.run(1)) {
    state.SkipWithError("bus.run(1) failed");
    return;
  }
  std::size_t not_ok = 0;
  run_xt(state, handled,
         [&](const ev16& e) { not_ok += prod.publish(e) != sluice::publish_result::ok; });
  bus.stop();
  if (not_ok != 0) state.SkipWithError("sluice refused events");
}

// Registers lib's dispatch benchmark for 1 and 10 handlers.
inline void register_dispatch(const std::string& lib, void (*f)(benchmark::State&)) {
  fast_setup(benchmark::RegisterBenchmark(("peers/dispatch/" + lib).c_str(), f)->Arg(1)->Arg(10));
}
inline void register_queued(const std::string& lib, void (*f)(benchmark::State&)) {
  fast_setup(benchmark::RegisterBenchmark(("peers/queued/" + lib).c_str(), f));
}
inline void register_xt(const std::string& lib, void (*f)(benchmark::State&)) {
  xt_setup(benchmark::RegisterBenchmark(("peers/xt/" + lib).c_str(), f));
}

inline void register_baselines_and_sluice() {
  register_dispatch("raw_fnptr", bm_dispatch_raw);
  register_dispatch("sluice", bm_dispatch_sluice);
  register_queued("raw_moodycamel", bm_queued_raw);
  register_queued("sluice", bm_queued_sluice<true>);
  register_queued("sluice_stamp0", bm_queued_sluice<false>);
  register_xt("raw_moodycamel", bm_xt_raw);
  register_xt("sluice", bm_xt_sluice<true>);
  register_xt("sluice_1lane_stamp0", bm_xt_sluice<false>);
}

// Records a peer's version in the JSON context ("peer:<lib>"), for the report.
inline void add_peer_context(const std::string& lib, const std::string& version) {
  benchmark::AddCustomContext("peer:" + lib, version);
}

}  // namespace bench::peers
