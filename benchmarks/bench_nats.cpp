// The NATS JetStream bridge against the raw NATS C client doing the same
// work, with the same server, in the same binary. The binary starts its own
// nats-server (JetStream, a free loopback port, a temporary store).
//
//  - nats/out/raw:     js_PublishMsgAsync of N messages carrying the bridge's
//                      headers, then js_PublishAsyncComplete;
//    nats/out/sluice:  N events published into a bus whose recorder's
//                      nats_sink publishes them, then recorder::sync();
//                      target >= 0.8x raw.
//  - nats/in/raw:      a new durable pull consumer reads N messages in batches
//                      of 256, decodes each (memcpy), calls a handler through
//                      a pointer and acknowledges it;
//    nats/in/sluice:   a new nats_source reads them into a bus (one worker)
//                      until all are acknowledged; target >= 0.8x raw.
//  - nats/latency/*:   end to end at a paced 5000 events/s: publish (or
//                      js_PublishMsgAsync) to handler call, in a second
//                      process's place here a second connection; p50 and
//                      p99 reported as counters (ns).
#include <nats/nats.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <sluice/bridge/nats.hpp>
#include <sluice/storage.hpp>
#include <string>
#include <thread>
#include <vector>

#include "../tests/nats/nats_server.hpp"
#include "common.hpp"

namespace {

using bench::ev16;
constexpr int k_messages = 20000;

test::nats_server& server() {
  static test::nats_server s;
  static const bool started = s.start();
  if (!started) std::abort();
  return s;
}

std::shared_ptr<const sluice::codecs> types() {
  static const auto t = [] {
    auto c = std::make_shared<sluice::codecs>();
    c->add<ev16>("ev16", 1);
    return c;
  }();
  return t;
}

// A plain connection with a JetStream context.
struct plain {
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  explicit plain(jsOptions* jo = nullptr) {
    natsOptions* o = nullptr;
    natsOptions_Create(&o);
    natsOptions_SetURL(o, server().url().c_str());
    natsOptions_SetTimeout(o, 5000);
    if (natsConnection_Connect(&nc, o) != NATS_OK) std::abort();
    natsOptions_Destroy(o);
    if (natsConnection_JetStream(&js, nc, jo) != NATS_OK) std::abort();
  }
  plain(const plain&) = delete;
  plain& operator=(const plain&) = delete;
  ~plain() {
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
  }
  void make_stream(const char* name, const char* subjects) {
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    const char* subj[1] = {subjects};
    cfg.Name = name;
    cfg.Subjects = subj;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    jsStreamInfo* si = nullptr;
    js_AddStream(&si, js, &cfg, nullptr, nullptr);
    if (si != nullptr) jsStreamInfo_Destroy(si);
  }
  void purge(const char* name) { js_PurgeStream(js, name, nullptr, nullptr); }
};

// Message ids never repeat within the process (a stream drops a message
// whose id it has seen within its duplicate window: repeated ids would be
// cheap duplicates, not stored messages).
std::uint64_t g_offset = 0;

// The bridge's message for one event, made by hand.
natsMsg* raw_message(const char* subject, const ev16& e) {
  const std::uint64_t offset = g_offset++;
  natsMsg* m = nullptr;
  natsMsg_Create(&m, subject, nullptr, reinterpret_cast<const char*>(&e), sizeof e);
  const std::string id = "raw.0123456789abcdef-" + std::to_string(offset);
  natsMsgHeader_Set(m, "Nats-Msg-Id", id.c_str());
  natsMsgHeader_Set(m, "Sluice-Type", "ev16");
  natsMsgHeader_Set(m, "Sluice-Version", "1");
  natsMsgHeader_Set(m, "Sluice-Producer", "1");
  natsMsgHeader_Set(m, "Sluice-Offset", std::to_string(offset).c_str());
  natsMsgHeader_Set(m, "Sluice-Time", std::to_string(bench::now_ns()).c_str());
  natsMsgHeader_Set(m, "Sluice-Key", std::to_string(e.b).c_str());
  return m;
}

// A recorder over a nats_sink sending to `stream` (subjects <prefix>.>),
// syncing only when asked; nullptr if the sink cannot be opened.
std::shared_ptr<sluice::recorder> nats_recorder(const char* stream, const char* prefix,
                                                std::chrono::microseconds linger) {
  sluice::nats_options o;
  o.url = server().url();
  o.stream = stream;
  o.subject_prefix = prefix;
  sluice::storage_error err;
  auto out = sluice::nats_sink::open(o, err);
  if (!out) return nullptr;
  sluice::record_options ro;
  ro.sync = sluice::sync_policy::never;  // sync() where the raw side waits for its acks
  ro.linger = linger;
  return std::make_shared<sluice::recorder>(std::move(out), types(), ro);
}

// ---- outbound ------------------------------------------------------------------

// range(0): the ack timeout per message (ms; 0: none), as the sink sets it
// (it sends again what times out).
// range(1): 1 if each acknowledgement is handed to an AckHandler (counted),
// as the sink does; 0 if only js_PublishAsyncComplete waits for them.
std::atomic<std::uint64_t> g_acked{0};
void count_ack(jsCtx*, natsMsg* m, jsPubAck* pa, jsPubAckErr*, void*) {
  if (pa != nullptr) g_acked.fetch_add(1, std::memory_order_relaxed);
  natsMsg_Destroy(m);
}
void BM_out_raw(benchmark::State& state) {
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = state.range(0);
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.PublishAsync.MaxPending = 4096;
  if (state.range(1) != 0) jo.PublishAsync.AckHandler = &count_ack;
  plain p(&jo);
  p.make_stream("OUTRAW", "outraw.>");
  std::uint64_t i0 = 0;
  for (auto _ : state) {
    state.PauseTiming();
    p.purge("OUTRAW");
    state.ResumeTiming();
    for (int i = 0; i < k_messages; ++i) {
      natsMsg* m = raw_message("outraw.ev16", ev16{i0, i0 % 64});
      ++i0;
      if (js_PublishMsgAsync(p.js, &m, state.range(0) != 0 ? &po : nullptr) != NATS_OK) {
        natsMsg_Destroy(m);
        state.SkipWithError("publish failed");
        return;
      }
    }
    jsPubOptions done;
    jsPubOptions_Init(&done);
    done.MaxWait = 30000;
    if (js_PublishAsyncComplete(p.js, &done) != NATS_OK) {
      state.SkipWithError("acknowledgements missing");
      return;
    }
  }
  state.SetItemsProcessed(state.iterations() * k_messages);
}

void BM_out_sluice(benchmark::State& state) {
  plain p;
  auto rec = nats_recorder("OUTSLUICE", "outsluice", std::chrono::microseconds(1000));
  if (!rec) {
    state.SkipWithError("cannot open the sink");
    return;
  }
  sluice::bus bus(sluice::bus_options{}.with_stamp_time(false));
  bus.record(rec);
  auto sub = bus.subscribe<ev16>([](const ev16& e) { bench::work<0>(e); });
  bus.run(1);
  auto prod = bus.make_producer();
  std::uint64_t n = 0;
  bool made = false;
  for (auto _ : state) {
    state.PauseTiming();
    if (made) p.purge("OUTSLUICE");
    made = true;
    state.ResumeTiming();
    for (int i = 0; i < k_messages; ++i, ++n) prod.publish(ev16{n, n % 64}, n % 64);
    if (rec->sync()) {
      state.SkipWithError("sync failed");
      break;
    }
  }
  bus.stop();
  state.SetItemsProcessed(state.iterations() * k_messages);
}

// ---- inbound -------------------------------------------------------------------

// The stream INBENCH with k_messages messages, made once.
void fill_inbound() {
  static std::once_flag once;
  std::call_once(once, [] {
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = 4096;
    plain p(&jo);
    p.make_stream("INBENCH", "inbench.>");
    for (int i = 0; i < k_messages; ++i) {
      const auto u = static_cast<std::uint64_t>(i);
      natsMsg* m = raw_message("inbench.ev16", ev16{u, u % 64});
      if (js_PublishMsgAsync(p.js, &m, nullptr) != NATS_OK) std::abort();
    }
    if (js_PublishAsyncComplete(p.js, nullptr) != NATS_OK) std::abort();
  });
}

int g_consumer = 0;  // a new durable name per run

void BM_in_raw(benchmark::State& state) {
  fill_inbound();
  void (*handler)(const ev16&) noexcept = &bench::work<0, ev16>;
  benchmark::DoNotOptimize(handler);
  for (auto _ : state) {
    plain p;  // a connection of its own, as a source makes
    const std::string durable = "raw" + std::to_string(++g_consumer);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.ManualAck = true;
    so.Config.AckPolicy = js_AckExplicit;
    so.Config.MaxAckPending = 1000;
    natsSubscription* sub = nullptr;
    if (js_PullSubscribe(&sub, p.js, "inbench.>", durable.c_str(), nullptr, &so, nullptr) !=
        NATS_OK) {
      state.SkipWithError("subscribe failed");
      return;
    }
    int got = 0;
    while (got < k_messages) {
      natsMsgList list{};
      if (natsSubscription_Fetch(&list, sub, 256, 5000, nullptr) != NATS_OK) {
        state.SkipWithError("fetch failed");
        natsSubscription_Destroy(sub);
        return;
      }
      for (int i = 0; i < list.Count; ++i) {
        natsMsg* m = list.Msgs[i];
        const char* type = nullptr;
        ev16 e{};
        if (natsMsgHeader_Get(m, "Sluice-Type", &type) == NATS_OK &&
            natsMsg_GetDataLength(m) == static_cast<int>(sizeof e))
          std::memcpy(&e, natsMsg_GetData(m), sizeof e);
        handler(e);
        natsMsg_Ack(m, nullptr);
      }
      got += list.Count;
      natsMsgList_Destroy(&list);
    }
    state.PauseTiming();
    js_DeleteConsumer(p.js, "INBENCH", durable.c_str(), nullptr, nullptr);
    natsSubscription_Destroy(sub);
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * k_messages);
}

void BM_in_sluice(benchmark::State& state) {
  fill_inbound();
  plain p;
  sluice::bus bus(sluice::bus_options{}.with_stamp_time(false));
  auto sub = bus.subscribe<ev16>([](const ev16& e) { bench::work<0>(e); });
  // idle_spin_us: how long the worker spins before it parks once its lanes
  // are empty (the default 200 µs, or 0: a bus fed from the network has no
  // use for it, and on two vCPUs it takes time from the server).
  bus.run(1, std::chrono::microseconds(state.range(0)));
  for (auto _ : state) {
    const std::string durable = "sluice" + std::to_string(++g_consumer);
    sluice::nats_source_options o;
    o.url = server().url();
    o.stream = "INBENCH";
    o.durable = durable;
    sluice::storage_error err;
    auto in = sluice::nats_source::open(bus, types(), o, err);
    if (!in) {
      state.SkipWithError(err.message.c_str());
      break;
    }
    // (Looked at every millisecond: about 0.4 % of a run, and no thread of
    // the benchmark's own competing with the server and the source.)
    while (in->counts().acknowledged < static_cast<std::uint64_t>(k_messages))
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    state.PauseTiming();  // close() waits for the fetch in progress (fetch_wait)
    in->close();
    js_DeleteConsumer(p.js, "INBENCH", durable.c_str(), nullptr, nullptr);
    state.ResumeTiming();
  }
  bus.stop();
  state.SetItemsProcessed(state.iterations() * k_messages);
}

// ---- end-to-end latency, paced -----------------------------------------------------

constexpr int k_rate = 5000;            // events per second
constexpr int k_latency_events = 5000;  // one second of them

struct latencies {
  std::mutex mutex;
  std::vector<std::int64_t> ns;
  void add(std::int64_t v) {
    std::lock_guard<std::mutex> lock(mutex);
    ns.push_back(v);
  }
  void report(benchmark::State& state) {
    std::lock_guard<std::mutex> lock(mutex);
    if (ns.empty()) return;
    std::sort(ns.begin(), ns.end());
    state.counters["p50_ns"] = static_cast<double>(ns[ns.size() / 2]);
    state.counters["p99_ns"] = static_cast<double>(ns[ns.size() * 99 / 100]);
  }
};

// ev16::a carries the send time (steady clock ns).
void paced(const std::function<void(const ev16&)>& send) {
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < k_latency_events; ++i) {
    std::this_thread::sleep_until(start + std::chrono::microseconds(i * 1'000'000LL / k_rate));
    send(ev16{static_cast<std::uint64_t>(bench::now_ns()), static_cast<std::uint64_t>(i % 64)});
  }
}

void BM_latency_raw(benchmark::State& state) {
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.PublishAsync.MaxPending = 4096;
  plain out(&jo), in;
  out.make_stream("LATRAW", "latraw.>");
  latencies lat;
  for (auto _ : state) {
    lat.ns.clear();
    const std::string durable = "latraw" + std::to_string(++g_consumer);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.ManualAck = true;
    so.Config.AckPolicy = js_AckExplicit;
    so.Config.DeliverPolicy = js_DeliverNew;
    natsSubscription* sub = nullptr;
    if (js_PullSubscribe(&sub, in.js, "latraw.>", durable.c_str(), nullptr, &so, nullptr) !=
        NATS_OK) {
      state.SkipWithError("subscribe failed");
      return;
    }
    std::atomic<int> got{0};
    std::thread reader([&] {
      while (got.load() < k_latency_events) {
        natsMsgList list{};
        if (natsSubscription_Fetch(&list, sub, 256, 100, nullptr) != NATS_OK) continue;
        for (int i = 0; i < list.Count; ++i) {
          ev16 e{};
          std::memcpy(&e, natsMsg_GetData(list.Msgs[i]), sizeof e);
          lat.add(bench::now_ns() - static_cast<std::int64_t>(e.a));
          natsMsg_Ack(list.Msgs[i], nullptr);
        }
        got += list.Count;
        natsMsgList_Destroy(&list);
      }
    });
    paced([&](const ev16& e) {
      natsMsg* m = raw_message("latraw.ev16", e);
      if (js_PublishMsgAsync(out.js, &m, nullptr) != NATS_OK) natsMsg_Destroy(m);
    });
    reader.join();
    natsSubscription_Destroy(sub);
  }
  lat.report(state);
  state.SetItemsProcessed(state.iterations() * k_latency_events);
}

void BM_latency_sluice(benchmark::State& state) {
  latencies lat;
  for (auto _ : state) {
    lat.ns.clear();
    {  // an empty stream: the source's new consumer starts at its beginning
      plain p;
      p.make_stream("LATSLUICE", "latsluice.>");
      p.purge("LATSLUICE");
    }
    auto rec = nats_recorder("LATSLUICE", "latsluice", std::chrono::microseconds(0));
    if (!rec) {
      state.SkipWithError("cannot open the sink");
      return;
    }
    sluice::bus sender(sluice::bus_options{}.with_stamp_time(false));
    sender.record(rec);
    sender.run(1);
    sluice::bus receiver(sluice::bus_options{}.with_stamp_time(false));
    std::atomic<int> got{0};
    auto sub = receiver.subscribe<ev16>([&](const ev16& e) {
      lat.add(bench::now_ns() - static_cast<std::int64_t>(e.a));
      ++got;
    });
    receiver.run(1);
    sluice::nats_source_options io;
    io.url = server().url();
    io.stream = "LATSLUICE";
    io.durable = "latsluice" + std::to_string(++g_consumer);
    io.fetch_wait = std::chrono::milliseconds(100);
    sluice::storage_error err;
    auto in = sluice::nats_source::open(receiver, types(), io, err);
    if (!in) {
      state.SkipWithError(err.message.c_str());
      return;
    }
    auto prod = sender.make_producer();
    paced([&](const ev16& e) { prod.publish(e, e.b); });
    while (got.load() < k_latency_events) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    in->close();
    sender.stop();
    receiver.stop();
  }
  lat.report(state);
  state.SetItemsProcessed(state.iterations() * k_latency_events);
}

void register_benchmarks() {
  benchmark::RegisterBenchmark("nats/out/raw", BM_out_raw)
      ->ArgNames({"ack_timeout_ms", "ack_handler"})
      ->Args({0, 0})
      ->Args({0, 1})
      ->Args({2000, 1})
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("nats/out/sluice", BM_out_sluice)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("nats/in/raw", BM_in_raw)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("nats/in/sluice", BM_in_sluice)
      ->ArgName("idle_spin_us")
      ->Arg(200)
      ->Arg(0)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("nats/latency/raw", BM_latency_raw)
      ->UseRealTime()
      ->Iterations(1)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("nats/latency/sluice", BM_latency_sluice)
      ->UseRealTime()
      ->Iterations(1)
      ->Unit(benchmark::kMillisecond);
}

}  // namespace

SLUICE_BENCH_MAIN()
