// Processing layer: a filter + transform + route + one handler chain, run by
// bus.dispatch, against a hand-written function doing the same work through
// the same kind of indirect calls (std::function-free, one pointer per step).
// Also each stage alone (a chain of one stage before one handler), so that
// per-stage cost = chain time - dispatch-without-stages time.
// Target: full chain <= 1.2x the hand-written version.
#include <optional>

#include "common.hpp"

namespace {

struct reading {
  std::uint64_t a;  // value
  std::uint64_t b;  // sensor
};
struct alert {
  std::uint64_t a;
  std::uint64_t b;
};

// The work both sides do.
bool valid(const reading& r) noexcept {
  return r.a % 8 != 7;
}
std::optional<alert> to_alert(const reading& r) noexcept {
  if (r.a % 4 == 0) return std::nullopt;
  return alert{r.a, r.b};
}
bool urgent(const alert& x) noexcept {
  return x.a % 2 == 0;
}
void handle(const alert& x) noexcept {
  bench::work<0>(x);
}

// Hand-written: the same steps through function pointers the optimizer cannot
// see through (as sluice calls stages through pointers).
struct hand_steps {
  bool (*filter)(const reading&) noexcept;
  std::optional<alert> (*transform)(const reading&) noexcept;
  bool (*route)(const alert&) noexcept;
  void (*pager)(const alert&) noexcept;
  void (*dashboard)(const alert&) noexcept;
};

void BM_pipeline_hand_written(benchmark::State& state) {
  hand_steps steps{&valid, &to_alert, &urgent, &handle, &handle};
  benchmark::DoNotOptimize(&steps);
  benchmark::ClobberMemory();
  reading r{0, 3};
  std::size_t handled = 0;
  for (auto _ : state) {
    ++r.a;
    if (!steps.filter(r)) continue;
    const std::optional<alert> x = steps.transform(r);
    if (!x) continue;
    if (steps.route(*x)) {
      steps.pager(*x);
    } else {
      steps.dashboard(*x);
    }
    ++handled;
  }
  benchmark::DoNotOptimize(handled);
  benchmark::DoNotOptimize(bench::g_sink);
  state.SetItemsProcessed(state.iterations());
}

void BM_pipeline_sluice(benchmark::State& state) {
  sluice::bus bus;
  const sluice::channel pager{"pager"}, dashboard{"dashboard"};
  bus.stages<reading>().filter(&valid).transform(&to_alert);
  bus.stages<alert>().route([&](const alert& x) { return urgent(x) ? pager : dashboard; });
  const sluice::subscription sp = bus.subscribe<alert>(pager, &handle);
  const sluice::subscription sd = bus.subscribe<alert>(dashboard, &handle);
  reading r{0, 3};
  std::size_t calls = 0;
  for (auto _ : state) {
    ++r.a;
    calls += bus.dispatch(r);
  }
  benchmark::DoNotOptimize(calls);
  benchmark::DoNotOptimize(bench::g_sink);
  state.SetItemsProcessed(state.iterations());
}

// Dispatches alerts to one handler for the whole run; each must reach it.
void dispatch_alerts(benchmark::State& state, sluice::bus& bus) {
  const sluice::subscription s = bus.subscribe<alert>(&handle);
  alert x{0, 1};
  std::size_t calls = 0;
  for (auto _ : state) {
    ++x.a;
    calls += bus.dispatch(x);
  }
  benchmark::DoNotOptimize(calls);
  if (calls != static_cast<std::size_t>(state.iterations()))
    state.SkipWithError("the handler was not called once per event");
  state.SetItemsProcessed(state.iterations());
}

// One stage before one handler (kind: 0 none, 1 filter, 2 tap, 3 enrich, 4 route).
void BM_stage_alone(benchmark::State& state) {
  sluice::bus bus;
  const sluice::channel ch{"c"};
  const auto kind = state.range(0);
  if (kind == 1) bus.stages<alert>().filter([](const alert&) { return true; });
  if (kind == 2) bus.stages<alert>().tap([](const alert& x) { benchmark::DoNotOptimize(x.a); });
  if (kind == 3) bus.stages<alert>().transform([](const alert& x) { return alert{x.a + 1, x.b}; });
  if (kind == 4) bus.stages<alert>().route([&](const alert&) { return ch; });
  dispatch_alerts(state, bus);
}

// n filters that pass everything before one handler: the cost of each stage
// after the first (time(n) - time(1)) / (n - 1), apart from entering the chain.
void BM_filters(benchmark::State& state) {
  sluice::bus bus;
  const auto n = state.range(0);
  for (std::int64_t i = 0; i < n; ++i)
    bus.stages<alert>().filter([](const alert& x) { return x.b != 0; });
  dispatch_alerts(state, bus);
}

void register_benchmarks() {
  benchmark::RegisterBenchmark("pipeline/sluice", BM_pipeline_sluice);
  benchmark::RegisterBenchmark("pipeline/hand_written", BM_pipeline_hand_written);
  benchmark::RegisterBenchmark("stage/alone", BM_stage_alone)
      ->ArgName("kind")
      ->Arg(0)
      ->Arg(1)
      ->Arg(2)
      ->Arg(3)
      ->Arg(4);
  benchmark::RegisterBenchmark("stage/filters", BM_filters)->Arg(1)->Arg(2)->Arg(4)->Arg(8);
}

}  // namespace

SLUICE_BENCH_MAIN()
