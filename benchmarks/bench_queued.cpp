// Scenario 2: queued delivery on one thread. Each iteration publishes N = 4096
// events through a sluice::producer into a one-lane bus (lane_capacity = N),
// then drains them with bus.poll() into one handler. 16- and 64-byte events,
// with stamp_time off and on.
// Baselines, same work per event:
//  - std::vector push_back of N events, then a loop calling a function pointer;
//  - a raw moodycamel queue (sluice::detail::queue<E>: the same block size and
//    allocator traits as a lane) with a ProducerToken / ConsumerToken: N
//    single-item enqueues, then try_dequeue_bulk in batches of 64 (as a lane
//    drain does) calling the function pointer per event.
// Target: >= 100M events/s for 16-byte events.
//
// One event size per binary (SLUICE_BENCH_EVENT_BYTES, 16 by default; CMake
// also builds bench_queued_64B). This is only to keep each binary's runs and
// tables small: the GCC bug that once routed all but one queued event type to
// the wrong handlers is fixed (type indexes and record ops are function-local
// statics; tests/test_basic.cpp "many event types keep their identity through
// the queue" guards it). Every sluice run still checks delivery and fails
// loudly if the handler did not get each event.
#include <sluice/detail/queue.hpp>

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
#include <malloc.h>
#define SLUICE_BENCH_HEAP_BYTES 1  // glibc's mallinfo2
#endif

#include "common.hpp"

#ifndef SLUICE_BENCH_EVENT_BYTES
#define SLUICE_BENCH_EVENT_BYTES 16
#endif

namespace {

static_assert(SLUICE_BENCH_EVENT_BYTES == 16 || SLUICE_BENCH_EVENT_BYTES == 64,
              "SLUICE_BENCH_EVENT_BYTES is 16 or 64");
using event = std::conditional_t<SLUICE_BENCH_EVENT_BYTES == 16, bench::ev16, bench::ev64>;
#define SLUICE_BENCH_SIZE_NAME (SLUICE_BENCH_EVENT_BYTES == 16 ? "16B" : "64B")

constexpr std::size_t N = 4096;

// Fails the run unless every published event reached the handler.
template <class E>
void check_delivered(benchmark::State& state, const sluice::bus& bus, std::size_t expected) {
  const sluice::type_stats st = bus.stats<E>();
  if (st.delivered != expected || st.handler_calls != expected)
    state.SkipWithError(
        "sluice did not deliver every event to its handler (events routed to "
        "another type's registry?)");
}
constexpr std::size_t drain_batch = SLUICE_DRAIN_BATCH;

// With Sample != 0, latency histograms (docs/monitoring.md) time one event
// in Sample; with Observer, an observer that does nothing is set (every
// event is then timed and handed to it). Against the same bus with stamps
// on and nothing monitored. Checks that the histograms counted the events
// they timed. With Trace != 0, a tracer records one flow in Trace (each
// event here is a flow of its own: its publish, delivery and handler call);
// its records are cleared when it holds many (part of the cost).
struct idle_observer final : sluice::bus_observer {};
template <class E, bool Stamp, std::uint32_t Sample = 0, bool Observer = false,
          std::uint64_t Trace = 0>
void BM_queued_sluice(benchmark::State& state) {
  sluice::bus_options o;
  o.lanes = 1;
  o.lane_capacity = N;
  o.stamp_time = Stamp;
  o.latency_sample_every = Sample;
  if (Observer) o.observer = std::make_shared<idle_observer>();
  constexpr std::size_t trace_capacity = std::size_t{1} << 16;
  if (Trace != 0) o.tracer = std::make_shared<sluice::tracer>(Trace, trace_capacity);
  std::size_t traced = 0;
  sluice::bus bus(o);
  const sluice::subscription sub = bus.subscribe<E>([](const E& e) { bench::work<0>(e); });
  sluice::producer prod = bus.make_producer();
  E e{};
  std::size_t not_ok = 0;
  std::size_t drained = 0;
  for (auto _ : state) {
    for (std::size_t i = 0; i < N; ++i) {
      e.a = i;
      not_ok += prod.publish(e) != sluice::publish_result::ok;
    }
    drained += bus.poll();
    if (Trace != 0 && o.tracer->size() > trace_capacity / 2) {
      traced += o.tracer->size();
      o.tracer->clear();
    }
  }
  benchmark::DoNotOptimize(bench::g_sink);
  const auto expected = static_cast<std::size_t>(state.iterations()) * N;
  if (not_ok != 0 || drained != expected) state.SkipWithError("sluice refused or lost events");
  if (Trace != 0 && (traced + o.tracer->size() == 0 || o.tracer->lost() != 0))
    state.SkipWithError("the tracer recorded nothing, or lost records");
  check_delivered<E>(state, bus, expected);
  const std::size_t timed = Sample == 0 ? 0 : (expected + Sample - 1) / Sample;
  if (Sample != 0 &&
      (bus.latency<E>().queue_wait.count() != timed || sub.handler_time().count() != timed))
    state.SkipWithError("the latency histograms did not count the events timed");
  state.SetItemsProcessed(state.iterations() * bench::to_i64(N));
  state.SetBytesProcessed(state.iterations() * bench::to_i64(N * sizeof(E)));
}

// The same with a retry policy on the subscription (docs/resilience.md):
// with nothing failing (FailEvery 0) it should cost nothing; with FailEvery
// 100, one event in a hundred fails once and is retried at once (fixed
// backoff of 0), so the iteration also runs the retries. Policy: the
// default order (hold_key: the events published after a failed one, all of
// one producer without a key, are held until its retry ends), skip_ahead,
// or hold_key with a circuit breaker configured (opening after 1000 failures
// in a row: never, here). Keys 0: every event without a key (so, for
// hold_key, all of one key: the worst case); else event i has key i % Keys.
enum class policy_kind { hold, skip, breaker };
template <class E, unsigned FailEvery, policy_kind Kind = policy_kind::hold, std::size_t Keys = 0>
void BM_queued_sluice_policy(benchmark::State& state) {
  sluice::bus_options o;
  o.lanes = 1;
  o.lane_capacity = N;
  o.stamp_time = false;
  sluice::bus bus(o);
  std::size_t failures = 0;
  std::vector<char> failed_once(N, 0);  // per event of the iteration
  const sluice::subscription sub = bus.subscribe<E>(
      [&](const E& ev) {
        bench::work<0>(ev);
        // Fails the first call of every FailEvery-th event; its retry succeeds.
        if (FailEvery != 0 && ev.a % FailEvery == 0 && failed_once[ev.a] == 0) {
          failed_once[ev.a] = 1;
          ++failures;
          return sluice::outcome::failure(1, "flaky");
        }
        return sluice::outcome::success();
      },
      sluice::subscribe_options::named("bench").with_failure_policy([] {
        auto p = sluice::failure_policy::retry(
            3, sluice::retry_backoff::fixed(std::chrono::nanoseconds(0)));
        if (Kind == policy_kind::skip) p.skipping_ahead();
        if (Kind == policy_kind::breaker) p.with_breaker(1000, std::chrono::seconds(1));
        return p;
      }()));
  sluice::producer prod = bus.make_producer();
  E e{};
  std::size_t not_ok = 0;
  for (auto _ : state) {
    for (std::size_t i = 0; i < N; ++i) {
      e.a = i;
      not_ok +=
          (Keys == 0 ? prod.publish(e) : prod.publish(e, sluice::key_type{i % (Keys + !Keys)})) !=
          sluice::publish_result::ok;
    }
    while (bus.queued() != 0) bus.poll();
    if (FailEvery != 0) std::fill(failed_once.begin(), failed_once.end(), 0);
  }
  benchmark::DoNotOptimize(bench::g_sink);
  const auto expected = static_cast<std::size_t>(state.iterations()) * N;
  const sluice::type_stats st = bus.stats<E>();
  if (not_ok != 0 || st.delivered != expected || st.failed != failures)
    state.SkipWithError("sluice refused, lost or miscounted events");
  state.SetItemsProcessed(state.iterations() * bench::to_i64(N));
}

// The memory of held events: one event of each of `Keys` keys fails (its
// retry waits an hour), then `PerKey` more events of each key are published
// and held behind it. Reports the heap bytes (glibc's mallinfo2) per held
// event and per held key (its first event's retry record, hold and settle
// block); the time is that of holding them and of a discarding stop.
#ifdef SLUICE_BENCH_HEAP_BYTES
template <class E, std::size_t Keys, std::size_t PerKey>
void BM_queued_sluice_held_memory(benchmark::State& state) {
  double per_event = 0;
  double per_key = 0;
  for (auto _ : state) {
    sluice::bus_options o;
    o.lanes = 1;
    o.lane_capacity = Keys * (PerKey + 1);
    o.stamp_time = false;
    o.retry_capacity = Keys;
    sluice::bus bus(o);
    const sluice::subscription sub = bus.subscribe<E>(
        [](const E& ev) {
          bench::work<0>(ev);
          return ev.a == 0 ? sluice::outcome::failure(1, "down") : sluice::outcome::success();
        },
        sluice::subscribe_options::named("bench").with_failure_policy(
            sluice::failure_policy::retry(2, sluice::retry_backoff::fixed(std::chrono::hours(1)))
                .holding_keys(static_cast<std::uint32_t>(Keys * PerKey))));
    sluice::producer prod = bus.make_producer();
    E e{};
    // The bus's own first-use allocations (its wheel, the registry) come first.
    e.a = 1;  // (every event size has `a`)
    (void)prod.publish(e, sluice::key_type{~0ULL});
    (void)bus.poll();
    const std::size_t base = mallinfo2().uordblks;
    e.a = 0;
    for (std::size_t k = 0; k < Keys; ++k) (void)prod.publish(e, sluice::key_type{k});
    (void)bus.poll();
    const std::size_t keys_done = mallinfo2().uordblks;
    e.a = 1;
    for (std::size_t i = 0; i < PerKey; ++i)
      for (std::size_t k = 0; k < Keys; ++k) (void)prod.publish(e, sluice::key_type{k});
    for (int k = 0; k < 1000 && sub.stats().held != Keys * PerKey; ++k) (void)bus.poll();
    const std::size_t held_done = mallinfo2().uordblks;
    if (sub.stats().held != Keys * PerKey) state.SkipWithError("not every event was held");
    per_key = static_cast<double>(keys_done - base) / Keys;
    per_event = static_cast<double>(held_done - keys_done) / (Keys * PerKey);
    (void)bus.stop(sluice::stop_mode::discard);
    if (!bus.stats<E>().balanced()) state.SkipWithError("held events were lost");
  }
  state.counters["bytes_per_held_event"] = per_event;
  state.counters["bytes_per_held_key"] = per_key;
  state.counters["event_bytes"] = static_cast<double>(sizeof(E));
}
#endif

// publish_bulk of the whole batch (one reservation, one bulk enqueue): not
// asked for, but shows what the per-event publish path costs.
template <class E>
void BM_queued_sluice_bulk(benchmark::State& state) {
  sluice::bus_options o;
  o.lanes = 1;
  o.lane_capacity = N;
  o.stamp_time = false;
  sluice::bus bus(o);
  const sluice::subscription sub = bus.subscribe<E>([](const E& e) { bench::work<0>(e); });
  sluice::producer prod = bus.make_producer();
  std::vector<E> src(N);
  for (std::size_t i = 0; i < N; ++i) src[i].a = i;
  std::size_t published = 0;
  std::size_t drained = 0;
  for (auto _ : state) {
    published += prod.publish_bulk(src.begin(), src.end());
    drained += bus.poll();
  }
  benchmark::DoNotOptimize(bench::g_sink);
  const auto expected = static_cast<std::size_t>(state.iterations()) * N;
  if (published != expected || drained != expected)
    state.SkipWithError("sluice refused or lost events");
  check_delivered<E>(state, bus, expected);
  state.SetItemsProcessed(state.iterations() * bench::to_i64(N));
  state.SetBytesProcessed(state.iterations() * bench::to_i64(N * sizeof(E)));
}

template <class E>
void BM_queued_vector(benchmark::State& state) {
  std::vector<E> v;
  v.reserve(N);
  const bench::handler_fn<E> fn = bench::opaque(&bench::work<0, E>);
  E e{};
  for (auto _ : state) {
    v.clear();
    for (std::size_t i = 0; i < N; ++i) {
      e.a = i;
      v.push_back(e);
    }
    for (const E& x : v) fn(x);
  }
  benchmark::DoNotOptimize(bench::g_sink);
  state.SetItemsProcessed(state.iterations() * bench::to_i64(N));
  state.SetBytesProcessed(state.iterations() * bench::to_i64(N * sizeof(E)));
}

template <class E>
void BM_queued_moodycamel(benchmark::State& state) {
  using queue = sluice::detail::queue<E>;
  queue q(N + 2 * queue::BLOCK_SIZE);
  moodycamel::ProducerToken pt(q);
  moodycamel::ConsumerToken ct(q);
  const bench::handler_fn<E> fn = bench::opaque(&bench::work<0, E>);
  E buf[drain_batch];
  E e{};
  std::size_t not_ok = 0;
  std::size_t drained = 0;
  for (auto _ : state) {
    for (std::size_t i = 0; i < N; ++i) {
      e.a = i;
      not_ok += !q.enqueue(pt, e);
    }
    for (;;) {
      const std::size_t n = q.try_dequeue_bulk(ct, buf, drain_batch);
      if (n == 0) break;
      for (std::size_t k = 0; k < n; ++k) fn(buf[k]);
      drained += n;
    }
  }
  benchmark::DoNotOptimize(bench::g_sink);
  if (not_ok != 0 || drained != static_cast<std::size_t>(state.iterations()) * N)
    state.SkipWithError("moodycamel refused or lost events");
  state.SetItemsProcessed(state.iterations() * bench::to_i64(N));
  state.SetBytesProcessed(state.iterations() * bench::to_i64(N * sizeof(E)));
}

void register_benchmarks() {
  const std::string sz = SLUICE_BENCH_SIZE_NAME;
  const auto reg = [&](const std::string& name, void (*fn)(benchmark::State&)) {
    benchmark::RegisterBenchmark(name.c_str(), fn);
  };
  reg("queued/sluice/" + sz + "/stamp:0", BM_queued_sluice<event, false>);
  reg("queued/sluice/" + sz + "/stamp:1", BM_queued_sluice<event, true>);
  reg("queued/sluice_bulk/" + sz + "/stamp:0", BM_queued_sluice_bulk<event>);
  reg("queued/sluice_latency/" + sz + "/stamp:1", BM_queued_sluice<event, true, 1>);
  reg("queued/sluice_latency_1in64/" + sz + "/stamp:1", BM_queued_sluice<event, true, 64>);
  reg("queued/sluice_latency_1in1024/" + sz + "/stamp:1", BM_queued_sluice<event, true, 1024>);
  reg("queued/sluice_observer/" + sz + "/stamp:1", BM_queued_sluice<event, true, 0, true>);
  reg("queued/sluice_trace_1in1000/" + sz + "/stamp:1",
      BM_queued_sluice<event, true, 0, false, 1000>);
  reg("queued/sluice_policy/" + sz + "/stamp:0", BM_queued_sluice_policy<event, 0>);
  reg("queued/sluice_policy_fail1pct/" + sz + "/stamp:0", BM_queued_sluice_policy<event, 100>);
  reg("queued/sluice_policy_fail1pct_1024keys/" + sz + "/stamp:0",
      BM_queued_sluice_policy<event, 100, policy_kind::hold, 1024>);
  reg("queued/sluice_policy_skip/" + sz + "/stamp:0",
      BM_queued_sluice_policy<event, 0, policy_kind::skip>);
  reg("queued/sluice_policy_skip_fail1pct/" + sz + "/stamp:0",
      BM_queued_sluice_policy<event, 100, policy_kind::skip>);
  reg("queued/sluice_policy_breaker/" + sz + "/stamp:0",
      BM_queued_sluice_policy<event, 0, policy_kind::breaker>);
  reg("queued/sluice_policy_breaker_fail1pct/" + sz + "/stamp:0",
      BM_queued_sluice_policy<event, 100, policy_kind::breaker>);
#ifdef SLUICE_BENCH_HEAP_BYTES
  reg("queued/sluice_held_memory/" + sz, BM_queued_sluice_held_memory<event, 64, 16>);
#endif
  reg("queued/vector/" + sz, BM_queued_vector<event>);
  reg("queued/moodycamel/" + sz, BM_queued_moodycamel<event>);
}

}  // namespace

SLUICE_BENCH_MAIN()
