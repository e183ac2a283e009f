// Scenario 5: publish-to-handler latency at a paced 100k events/s (one event
// every 10 us, spin-wait pacing on the producer thread). The event carries
// its publish time (steady_clock ns); the handler stores now - ts into a
// preallocated vector. Reported as counters p50_ns, p90_ns, p99_ns, p999_ns,
// max_ns over the measured events of one repetition (after a warm-up).
//  - sluice: bus.run(1) (the worker spins, then yields, for 200 us before it
//    parks, so at 10 us spacing it never parks), a sluice::producer, lanes = 1,
//    stamp_time off; a variant keeps the default options (4 lanes, stamping);
//  - raw moodycamel (sluice::detail::queue) with tokens and a consumer thread
//    spinning on try_dequeue.
// Target: sluice p50 <= 1.3x raw p50.
#include "common.hpp"

#include <sluice/detail/queue.hpp>

namespace {

struct stamped {
  std::int64_t ts;
  std::uint64_t seq;
};
static_assert(sizeof(stamped) == 16, "16-byte event");

constexpr std::int64_t period_ns = 10'000;  // 100k events/s
constexpr std::size_t warmup = 2'000;
constexpr std::size_t measured = 30'000;  // 0.3 s per repetition

struct recorder {
  std::vector<std::int64_t> lat = std::vector<std::int64_t>(warmup + measured, 0);
  bench::padded_counter count;
  // Called by the single consumer thread only.
  void record(const stamped& e) noexcept {
    const std::int64_t now = bench::now_ns();
    const std::uint64_t i = count.n.load(std::memory_order_relaxed);
    if (i < lat.size()) lat[i] = now - e.ts;
    count.bump();
  }
};

// Sends `n` events, one every period_ns, and waits until `rec` counted them.
// Returns how many were refused, or were not handled within 30 s.
template <class Publish>
std::size_t paced(Publish&& publish, const recorder& rec, std::size_t first, std::size_t n) {
  std::size_t bad = 0;
  std::int64_t next = bench::now_ns();
  for (std::size_t i = 0; i < n; ++i) {
    next += period_ns;
    while (bench::now_ns() < next) bench::cpu_relax();
    bad += !publish(stamped{bench::now_ns(), first + i});
  }
  if (!bench::wait_until([&] { return rec.count.get() >= first + n; })) bad += n;
  return bad;
}

void report(benchmark::State& state, const recorder& rec, std::size_t bad) {
  if (bad != 0) {
    state.SkipWithError("events were refused or not handled");
    return;
  }
  std::vector<std::int64_t> v(rec.lat.begin() + static_cast<std::ptrdiff_t>(warmup), rec.lat.end());
  std::sort(v.begin(), v.end());
  const auto at = [&](double q) {
    const auto i = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1));
    return static_cast<double>(v[i]);
  };
  state.counters["p50_ns"] = at(0.50);
  state.counters["p90_ns"] = at(0.90);
  state.counters["p99_ns"] = at(0.99);
  state.counters["p999_ns"] = at(0.999);
  state.counters["max_ns"] = static_cast<double>(v.back());
  state.SetItemsProcessed(state.iterations() * bench::to_i64(measured));
}

void BM_latency_sluice(benchmark::State& state, bool default_options) {
  recorder rec;
  sluice::bus_options o;
  if (!default_options) {
    o.lanes = 1;
    o.stamp_time = false;
  }
  sluice::bus bus(o);
  const sluice::subscription sub =
      bus.subscribe<stamped>([&rec](const stamped& e) { rec.record(e); });
  sluice::producer prod = bus.make_producer();
  if (!bus.run(1)) {
    state.SkipWithError("bus.run(1) failed");
    return;
  }
  const auto publish = [&](const stamped& e) {
    return prod.publish(e) == sluice::publish_result::ok;
  };
  std::size_t bad = paced(publish, rec, 0, warmup);
  for (auto _ : state) bad += paced(publish, rec, warmup, measured);
  bus.stop();
  report(state, rec, bad);
}

void BM_latency_moodycamel(benchmark::State& state) {
  recorder rec;
  using queue = sluice::detail::queue<stamped>;
  queue q(8192 + 2 * queue::BLOCK_SIZE);
  std::atomic<bool> stop{false};
  std::thread consumer([&] {
    moodycamel::ConsumerToken ct(q);
    stamped e{};
    while (!stop.load(std::memory_order_relaxed))
      if (q.try_dequeue(ct, e)) rec.record(e);
  });
  moodycamel::ProducerToken pt(q);
  const auto publish = [&](const stamped& e) { return q.enqueue(pt, e); };
  std::size_t bad = paced(publish, rec, 0, warmup);
  for (auto _ : state) bad += paced(publish, rec, warmup, measured);
  stop.store(true, std::memory_order_relaxed);
  consumer.join();
  report(state, rec, bad);
}

// Diagnostics: what one look at empty queues costs, i.e. the period of an
// idle consumer's polling loop (and so part of its reaction time).
void BM_poll_empty_sluice(benchmark::State& state) {
  sluice::bus_options o;
  o.lanes = static_cast<std::size_t>(state.range(0));
  sluice::bus bus(o);
  std::size_t n = 0;
  for (auto _ : state) n += bus.poll();
  benchmark::DoNotOptimize(n);
  state.SetItemsProcessed(state.iterations());
}

void BM_poll_empty_moodycamel(benchmark::State& state) {
  sluice::detail::queue<stamped> q(8192);
  moodycamel::ConsumerToken ct(q);
  moodycamel::ProducerToken pt(q);
  stamped buf[SLUICE_DRAIN_BATCH];
  std::size_t n = 0;
  for (auto _ : state) n += q.try_dequeue_bulk(ct, buf, SLUICE_DRAIN_BATCH);
  benchmark::DoNotOptimize(n);
  state.SetItemsProcessed(state.iterations());
}

void register_benchmarks() {
  const auto setup = [](benchmark::internal::Benchmark* b) {
    b->UseRealTime()->Unit(benchmark::kMillisecond)->Iterations(1);
  };
  setup(benchmark::RegisterBenchmark("latency/sluice", BM_latency_sluice, false));
  setup(benchmark::RegisterBenchmark("latency/sluice_defaults", BM_latency_sluice, true));
  setup(benchmark::RegisterBenchmark("latency/moodycamel", BM_latency_moodycamel));
  benchmark::RegisterBenchmark("poll_empty/sluice", BM_poll_empty_sluice)
      ->ArgName("lanes")->Arg(1)->Arg(4)->MinTime(0.2);
  benchmark::RegisterBenchmark("poll_empty/moodycamel", BM_poll_empty_moodycamel)->MinTime(0.2);
}

}  // namespace

SLUICE_BENCH_MAIN()
