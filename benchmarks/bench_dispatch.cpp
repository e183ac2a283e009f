// Scenario 1: immediate delivery. bus.dispatch(ev), and the dispatch-only
// sluice::dispatcher, of a 16-byte trivially
// copyable event with 1 and 10 handlers, against a loop over the same number
// of function pointers held in a std::vector. Both sides call the same work
// (one add into a global) through one indirect call per handler.
// Target: sluice time per event <= 1.15x the raw loop's.
#include "common.hpp"

namespace {

using bench::ev16;

// On a sluice::bus or a sluice::dispatcher: the same loop.
template <class Target>
void BM_dispatch_on(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  Target target;
  const std::vector<sluice::subscription> subs = bench::subscribe_n<ev16>(target, n);
  ev16 e{1, 2};
  std::size_t calls = 0;
  for (auto _ : state) {
    calls += target.dispatch(e);
    ++e.a;
  }
  benchmark::DoNotOptimize(calls);
  benchmark::DoNotOptimize(bench::g_sink);
  if (calls != static_cast<std::size_t>(state.iterations()) * n)
    state.SkipWithError("dispatch made the wrong number of handler calls");
  state.SetItemsProcessed(state.iterations());
  state.counters["handlers"] = static_cast<double>(n);
}

void BM_dispatch_raw_fnptr(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto& all = bench::k_fns<ev16, 10>;
  std::vector<bench::handler_fn<ev16>> fns(all.begin(),
                                           all.begin() + static_cast<std::ptrdiff_t>(n));
  // The vector's contents are unknown to the optimizer from here on.
  benchmark::DoNotOptimize(fns.data());
  benchmark::ClobberMemory();
  ev16 e{1, 2};
  std::size_t calls = 0;
  for (auto _ : state) {
    for (bench::handler_fn<ev16> f : fns) {
      f(e);
      ++calls;
    }
    ++e.a;
  }
  benchmark::DoNotOptimize(calls);
  benchmark::DoNotOptimize(bench::g_sink);
  state.SetItemsProcessed(state.iterations());
  state.counters["handlers"] = static_cast<double>(n);
}

void register_benchmarks() {
  benchmark::RegisterBenchmark("dispatch/sluice", BM_dispatch_on<sluice::bus>)->Arg(1)->Arg(10);
  benchmark::RegisterBenchmark("dispatch/dispatcher", BM_dispatch_on<sluice::dispatcher>)
      ->Arg(1)
      ->Arg(10);
  benchmark::RegisterBenchmark("dispatch/raw_fnptr", BM_dispatch_raw_fnptr)->Arg(1)->Arg(10);
}

}  // namespace

SLUICE_BENCH_MAIN()
