// Scenario 4: 4 producer threads -> 2 workers, keyed publish with random keys
// (16-byte events), events/s end to end. No target; a raw moodycamel queue
// with 4 producers (tokens, single-item enqueue) and 2 consumers
// (try_dequeue_bulk of 64) is measured for context. The raw queue gives no
// per-key order across its two consumers; sluice does (a key maps to one
// lane, a lane is drained by one worker at a time).
// Producer threads are started each iteration (their start-up, tens of
// microseconds, is inside the measured time on both sides).
#include "common.hpp"

#include <memory>

#include <sluice/detail/queue.hpp>

namespace {

using bench::ev16;

constexpr std::size_t producers = 4;
constexpr std::size_t consumers = 2;
constexpr std::size_t per_producer = 1u << 18;  // 262,144
constexpr std::size_t total = producers * per_producer;

// Handler work for two concurrent consumers: a thread-local sink, so the
// workers do not share a written cache line.
thread_local std::uint64_t t_sink = 0;

void keyed_work(const ev16& e) noexcept { t_sink += e.a; }

inline std::uint64_t xorshift(std::uint64_t& s) noexcept {
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return s;
}

void BM_keyed_sluice(benchmark::State& state) {
  sluice::bus_options o;  // 4 lanes
  o.stamp_time = false;
  sluice::bus bus(o);
  const sluice::subscription sub = bus.subscribe<ev16>([](const ev16& e) { keyed_work(e); });
  std::vector<sluice::producer> prods;
  for (std::size_t p = 0; p < producers; ++p) prods.push_back(bus.make_producer());
  if (!bus.run(consumers)) {
    state.SkipWithError("bus.run(2) failed");
    return;
  }
  std::atomic<std::size_t> not_ok{0};
  std::uint64_t target = 0;
  bool lost = false;
  std::uint64_t seed = 0x9e3779b97f4a7c15ULL;
  for (auto _ : state) {
    target += total;
    std::vector<std::thread> threads;
    threads.reserve(producers);
    for (std::size_t p = 0; p < producers; ++p) {
      const std::uint64_t s0 = seed + p * 0x632be59bd9b4e019ULL;
      threads.emplace_back([&prod = prods[p], &not_ok, s0] {
        std::uint64_t s = s0 | 1;
        std::size_t bad = 0;
        for (std::size_t i = 0; i < per_producer; ++i) {
          const std::uint64_t key = xorshift(s);
          bad += prod.publish(ev16{i, key}, key) != sluice::publish_result::ok;
        }
        not_ok.fetch_add(bad, std::memory_order_relaxed);
      });
    }
    for (std::thread& t : threads) t.join();
    seed = xorshift(seed);
    if (!bench::wait_until([&] { return bus.stats<ev16>().handler_calls >= target; })) {
      lost = true;
      break;
    }
  }
  bus.stop();
  if (not_ok.load() != 0) state.SkipWithError("sluice refused events");
  if (lost) state.SkipWithError("sluice did not deliver every event to the handler within 30 s");
  state.SetItemsProcessed(state.iterations() * bench::to_i64(total));
}

void BM_keyed_moodycamel(benchmark::State& state) {
  using queue = sluice::detail::queue<ev16>;
  queue q(4 * 8192, producers, 0);
  std::atomic<std::uint64_t> handled{0};
  std::atomic<bool> stop{false};
  const bench::handler_fn<ev16> fn = bench::opaque(&keyed_work);
  std::vector<std::thread> workers;
  for (std::size_t c = 0; c < consumers; ++c) {
    workers.emplace_back([&] {
      moodycamel::ConsumerToken ct(q);
      ev16 buf[SLUICE_DRAIN_BATCH];
      while (!stop.load(std::memory_order_relaxed)) {
        const std::size_t n = q.try_dequeue_bulk(ct, buf, SLUICE_DRAIN_BATCH);
        if (n == 0) {
          bench::cpu_relax();
          continue;
        }
        for (std::size_t k = 0; k < n; ++k) fn(buf[k]);
        handled.fetch_add(n, std::memory_order_release);
      }
    });
  }
  std::vector<std::unique_ptr<moodycamel::ProducerToken>> tokens;
  for (std::size_t p = 0; p < producers; ++p)
    tokens.push_back(std::make_unique<moodycamel::ProducerToken>(q));
  std::atomic<std::size_t> not_ok{0};
  std::uint64_t target = 0;
  bool lost = false;
  std::uint64_t seed = 0x9e3779b97f4a7c15ULL;
  for (auto _ : state) {
    target += total;
    std::vector<std::thread> threads;
    threads.reserve(producers);
    for (std::size_t p = 0; p < producers; ++p) {
      const std::uint64_t s0 = seed + p * 0x632be59bd9b4e019ULL;
      threads.emplace_back([&q, &pt = *tokens[p], &not_ok, s0] {
        std::uint64_t s = s0 | 1;
        std::size_t bad = 0;
        for (std::size_t i = 0; i < per_producer; ++i) {
          const std::uint64_t key = xorshift(s);
          bad += !q.enqueue(pt, ev16{i, key});
        }
        not_ok.fetch_add(bad, std::memory_order_relaxed);
      });
    }
    for (std::thread& t : threads) t.join();
    seed = xorshift(seed);
    if (!bench::wait_until([&] { return handled.load(std::memory_order_acquire) >= target; })) {
      lost = true;
      break;
    }
  }
  stop.store(true, std::memory_order_relaxed);
  for (std::thread& t : workers) t.join();
  if (not_ok.load() != 0) state.SkipWithError("moodycamel refused events");
  if (lost) state.SkipWithError("moodycamel lost events");
  state.SetItemsProcessed(state.iterations() * bench::to_i64(total));
}

void register_benchmarks() {
  const auto setup = [](benchmark::internal::Benchmark* b) {
    b->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(0.5);
  };
  setup(benchmark::RegisterBenchmark("keyed/sluice_4p_2w", BM_keyed_sluice));
  setup(benchmark::RegisterBenchmark("keyed/moodycamel_4p_2c", BM_keyed_moodycamel));
}

}  // namespace

SLUICE_BENCH_MAIN()
