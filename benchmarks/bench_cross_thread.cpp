// Scenario 3: one producer thread -> one consumer thread, 16-byte events.
// Each iteration sends `total` events and stops the clock only when the
// consumer has handled all of them (real time, end to end).
//  - sluice: bus.run(1) worker, a sluice::producer, one publish per event,
//    or publish_bulk of 256; lanes = 1, stamp_time off (a variant keeps the
//    default options: 4 lanes, stamp_time on; another uses bus.publish, the
//    shared-producer convenience);
//  - raw moodycamel (sluice::detail::queue: same traits as a lane) with a
//    ProducerToken and a ConsumerToken; single-item enqueue with a spinning
//    try_dequeue consumer, and enqueue_bulk of 256 with a spinning
//    try_dequeue_bulk(256) consumer. The raw queue starts with room for 8192
//    events but is unbounded (enqueue allocates more blocks), whereas a
//    sluice lane holds exactly lane_capacity (8192) and publish blocks when
//    it is full.
// The handler does the same work on both sides and bumps a single-writer
// counter (plain store) that the producer thread waits on.
// Diagnostics (no target): the raw pipe with record-sized (112-byte) payloads,
// and with a lane's 64-item drain batch, then also its exact, shared count.
// Targets: publish >= 2x raw single-item; publish_bulk >= 0.8x raw bulk.
#include <sluice/detail/queue.hpp>

#include "common.hpp"

namespace {

using bench::ev16;

constexpr std::size_t total = 1u << 21;  // 2,097,152 events per iteration
constexpr std::size_t bulk = 256;

enum class mode { producer_publish, bus_publish, producer_bulk };

template <mode M>
void BM_xt_sluice(benchmark::State& state, bool default_options) {
  bench::padded_counter handled;
  sluice::bus_options o;
  if (!default_options) {
    o.lanes = 1;
    o.stamp_time = false;
  }
  sluice::bus bus(o);
  const sluice::subscription sub = bus.subscribe<ev16>([&handled](const ev16& e) {
    bench::work<0>(e);
    handled.bump();
  });
  sluice::producer prod = bus.make_producer();
  std::vector<ev16> src(bulk);
  for (std::size_t i = 0; i < bulk; ++i) src[i].a = i;
  if (!bus.run(1)) {
    state.SkipWithError("bus.run(1) failed");
    return;
  }
  std::uint64_t target = 0;
  std::size_t not_ok = 0;
  bool lost = false;
  ev16 e{0, 0};
  for (auto _ : state) {
    target += total;
    if constexpr (M == mode::producer_bulk) {
      for (std::size_t i = 0; i < total; i += bulk)
        not_ok += bulk - prod.publish_bulk(src.begin(), src.end());
    } else {
      for (std::size_t i = 0; i < total; ++i) {
        e.a = i;
        if constexpr (M == mode::producer_publish) {
          not_ok += prod.publish(e) != sluice::publish_result::ok;
        } else {
          not_ok += bus.publish(e) != sluice::publish_result::ok;
        }
      }
    }
    if (not_ok != 0) break;
    if (!bench::wait_until([&] { return handled.get() >= target; })) {
      lost = true;
      break;
    }
  }
  if (not_ok != 0) state.SkipWithError("sluice refused events");
  if (lost) state.SkipWithError("sluice did not deliver every event to the handler within 30 s");
  bus.stop();
  benchmark::DoNotOptimize(bench::g_sink);
  state.SetItemsProcessed(state.iterations() * bench::to_i64(total));
}

// Diagnostic payload: the size of a sluice record (metadata 48 B + ops
// pointer + 48 B inline buffer, 16-aligned = 112 B) carrying a 16-byte event.
struct ev_record {
  std::uint64_t a;
  std::uint64_t rest[13];
};
static_assert(sizeof(ev_record) == sizeof(sluice::detail::envelope), "envelope-sized payload");

// GCC 12 reports a false -Wstringop-overflow inside moodycamel's
// enqueue_bulk once it is inlined here with the record-sized payload.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#endif
template <bool Bulk, class E = ev16>
void BM_xt_moodycamel(benchmark::State& state) {
  using queue = sluice::detail::queue<E>;
  queue q(8192 + 2 * queue::BLOCK_SIZE);
  bench::padded_counter handled;
  std::atomic<bool> stop{false};
  const bench::handler_fn<E> fn = bench::opaque(&bench::work<0, E>);
  std::thread consumer([&] {
    moodycamel::ConsumerToken ct(q);
    if constexpr (Bulk) {
      E buf[bulk];
      while (!stop.load(std::memory_order_relaxed)) {
        const std::size_t n = q.try_dequeue_bulk(ct, buf, bulk);
        for (std::size_t k = 0; k < n; ++k) fn(buf[k]);
        if (n != 0) handled.bump(n);
      }
    } else {
      E x;
      while (!stop.load(std::memory_order_relaxed)) {
        if (q.try_dequeue(ct, x)) {
          fn(x);
          handled.bump();
        }
      }
    }
  });
  moodycamel::ProducerToken pt(q);
  std::vector<E> src(bulk);
  for (std::size_t i = 0; i < bulk; ++i) src[i].a = i;
  std::uint64_t target = 0;
  std::size_t not_ok = 0;
  bool lost = false;
  E e{};
  for (auto _ : state) {
    target += total;
    if constexpr (Bulk) {
      for (std::size_t i = 0; i < total; i += bulk) not_ok += !q.enqueue_bulk(pt, src.data(), bulk);
    } else {
      for (std::size_t i = 0; i < total; ++i) {
        e.a = i;
        not_ok += !q.enqueue(pt, e);
      }
    }
    if (not_ok != 0) break;
    if (!bench::wait_until([&] { return handled.get() >= target; })) {
      lost = true;
      break;
    }
  }
  stop.store(true, std::memory_order_relaxed);
  consumer.join();
  if (not_ok != 0) state.SkipWithError("moodycamel refused events");
  if (lost) state.SkipWithError("moodycamel lost events");
  benchmark::DoNotOptimize(bench::g_sink);
  state.SetItemsProcessed(state.iterations() * bench::to_i64(total));
}
// Diagnostics: a raw pipe built like a sluice lane, one piece at a time. The
// consumer takes up to 64 items per try_dequeue_bulk (a lane drain's batch);
// with Counted, the producer also takes a place in a shared, exactly bounded
// count (8192) with a seq_cst compare-and-swap before each enqueue, and the
// consumer looks at the count before dequeuing and gives places back per
// batch, as a sluice lane does for its capacity bound.
template <bool Counted, class E = ev16>
void BM_xt_moodycamel_drain64(benchmark::State& state) {
  using queue = sluice::detail::queue<E>;
  constexpr std::size_t capacity = 8192;
  queue q(capacity + 2 * queue::BLOCK_SIZE);
  bench::padded_counter handled;
  struct alignas(64) padded_size {
    std::atomic<std::size_t> n{0};
  } size;
  std::atomic<bool> stop{false};
  const bench::handler_fn<E> fn = bench::opaque(&bench::work<0, E>);
  std::thread consumer([&] {
    moodycamel::ConsumerToken ct(q);
    E buf[SLUICE_DRAIN_BATCH];
    while (!stop.load(std::memory_order_relaxed)) {
      if (Counted && size.n.load(std::memory_order_seq_cst) == 0) continue;
      const std::size_t n = q.try_dequeue_bulk(ct, buf, SLUICE_DRAIN_BATCH);
      for (std::size_t k = 0; k < n; ++k) fn(buf[k]);
      if (n != 0) {
        if (Counted) size.n.fetch_sub(n, std::memory_order_seq_cst);
        handled.bump(n);
      }
    }
  });
  moodycamel::ProducerToken pt(q);
  std::uint64_t target = 0;
  std::size_t not_ok = 0;
  bool lost = false;
  E e{};
  for (auto _ : state) {
    target += total;
    for (std::size_t i = 0; i < total; ++i) {
      if (Counted) {
        std::size_t s = size.n.load(std::memory_order_seq_cst);
        for (;;) {
          if (s >= capacity) {
            bench::cpu_relax();
            s = size.n.load(std::memory_order_seq_cst);
          } else if (size.n.compare_exchange_weak(s, s + 1, std::memory_order_seq_cst,
                                                  std::memory_order_relaxed)) {
            break;
          }
        }
      }
      e.a = i;
      not_ok += !q.enqueue(pt, e);
    }
    if (not_ok != 0) break;
    if (!bench::wait_until([&] { return handled.get() >= target; })) {
      lost = true;
      break;
    }
  }
  stop.store(true, std::memory_order_relaxed);
  consumer.join();
  if (not_ok != 0) state.SkipWithError("moodycamel refused events");
  if (lost) state.SkipWithError("moodycamel lost events");
  benchmark::DoNotOptimize(bench::g_sink);
  state.SetItemsProcessed(state.iterations() * bench::to_i64(total));
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

void register_benchmarks() {
  const auto setup = [](benchmark::internal::Benchmark* b) {
    b->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(0.5);
  };
  setup(benchmark::RegisterBenchmark("xt/sluice_publish", BM_xt_sluice<mode::producer_publish>,
                                     false));
  setup(benchmark::RegisterBenchmark("xt/sluice_publish_defaults",
                                     BM_xt_sluice<mode::producer_publish>, true));
  setup(benchmark::RegisterBenchmark("xt/sluice_bus_publish", BM_xt_sluice<mode::bus_publish>,
                                     false));
  setup(benchmark::RegisterBenchmark("xt/moodycamel_single", BM_xt_moodycamel<false>));
  setup(benchmark::RegisterBenchmark("xt/sluice_publish_bulk256", BM_xt_sluice<mode::producer_bulk>,
                                     false));
  setup(benchmark::RegisterBenchmark("xt/moodycamel_bulk256", BM_xt_moodycamel<true>));
  // Diagnostics: raw moodycamel moving record-sized (112 B) payloads.
  setup(benchmark::RegisterBenchmark("xt/moodycamel_single/record",
                                     BM_xt_moodycamel<false, ev_record>));
  setup(benchmark::RegisterBenchmark("xt/moodycamel_bulk256/record",
                                     BM_xt_moodycamel<true, ev_record>));
  // Diagnostics: a raw pipe with a lane's drain batch, then with its exact count.
  setup(benchmark::RegisterBenchmark("xt/moodycamel_drain64", BM_xt_moodycamel_drain64<false>));
  setup(benchmark::RegisterBenchmark("xt/moodycamel_drain64_counted",
                                     BM_xt_moodycamel_drain64<true>));
  setup(benchmark::RegisterBenchmark("xt/moodycamel_drain64_counted/record",
                                     BM_xt_moodycamel_drain64<true, ev_record>));
}

}  // namespace

SLUICE_BENCH_MAIN()
