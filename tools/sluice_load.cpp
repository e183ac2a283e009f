// sluice-load: drive a bus built from flags with synthetic load and report
// throughput and latency; find the highest rate that meets a latency
// objective (--ramp) and compare configurations (--sweep). The manual is
// docs/load-testing.md.
//
// Exit codes: 0 the load was sustained; 1 it was not (events dropped or
// rejected, the producers fell behind the rate, p99 above --slo; a ramp or
// sweep that found nothing sustained); 2 usage error (including an --out
// file that cannot be opened); 3 the recording folder cannot be used, the
// report cannot be written, or memory or threads ran out.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <sluice/metrics/histogram.hpp>
#include <sluice/sluice.hpp>
#include <sluice/storage.hpp>
#include <sluice/version.hpp>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr int exit_ok = 0;
constexpr int exit_slo = 1;
constexpr int exit_usage = 2;
constexpr int exit_io = 3;

using clock_type = std::chrono::steady_clock;

std::uint64_t now_ns() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now().time_since_epoch())
          .count());
}

// ---- configuration ---------------------------------------------------------------

struct config {
  std::size_t lanes = 4;
  std::size_t capacity = 8192;
  sluice::full_policy policy = sluice::full_policy::block;
  unsigned producers = 1;
  unsigned workers = 2;  // 0: one thread polls
  std::size_t event_size = 16;
  std::uint64_t keys = 0;  // 0: no keys
  std::uint64_t handler_ns = 0;
  double fail_rate = 0;
  std::string record_dir;    // empty: no recording
  double rate = 0;           // events/s over all producers; 0: closed loop
  double duration = 5;       // seconds of sending
  std::uint64_t slo_ns = 0;  // p99 objective; 0: none
  bool stamp_time = true;
};

struct options {
  config base;
  bool ramp = false;
  double ramp_factor = 2;
  unsigned ramp_steps = 3;
  unsigned ramp_retries = 1;
  bool sweep = false;
  std::vector<std::size_t> sweep_lanes{1, 2, 4, 8};
  std::vector<unsigned> sweep_workers{1, 2};
  std::string format = "text";
  std::string out;  // empty: stdout
  bool progress = true;
};

const char* const usage_text =
    "usage: sluice-load [flags]\n"
    "  what the bus is:\n"
    "    --lanes N          lanes (1..1024, default 4)\n"
    "    --capacity N       events per lane (1..16777216, default 8192)\n"
    "    --policy P         when a lane is full: block, drop or reject (default block)\n"
    "    --workers N        worker threads (0..64; 0: one thread polls; default 2)\n"
    "    --no-stamp         bus_options::stamp_time off\n"
    "    --record DIR       record every event in a file log under DIR\n"
    "  the load:\n"
    "    --producers N      producer threads (1..64, default 1)\n"
    "    --event-size B     event bytes: 16, 64, 256 or 1024 (default 16)\n"
    "    --keys N           keys the events spread over (0: no key; default 0)\n"
    "    --handler-ns N     busy time per handler call, ns (0..10000000, default 0)\n"
    "    --fail-rate P      share of handler calls that fail (0..1, default 0)\n"
    "    --rate R           events/s over all producers, open loop (latency from each\n"
    "                       event's intended send time); 0: closed loop at maximum (default 0)\n"
    "    --duration S       seconds of sending per run (0.05..3600, default 5)\n"
    "    --slo D            latency objective for p99, e.g. 500us, 1ms, 2s\n"
    "  searching:\n"
    "    --ramp             from --rate (default 10000) multiply by --ramp-factor until a\n"
    "                       run misses the objective, then narrow down (--ramp-steps)\n"
    "    --ramp-factor F    (1.1..100, default 2)   --ramp-steps N (0..10, default 3)\n"
    "    --ramp-retries N   runs of a rate that misses before it counts as missed,\n"
    "                       after the first (0..10, default 1)\n"
    "    --sweep            try --sweep-lanes x --sweep-workers at --rate; recommend one\n"
    "    --sweep-lanes L    comma list (default 1,2,4,8)   --sweep-workers W (default 1,2)\n"
    "  output:\n"
    "    --format F         text, json or csv (default text)\n"
    "    --out FILE         write the report there (default: standard output)\n"
    "    --quiet            no progress line on standard error\n"
    "    --help, --version\n"
    "exit codes: 0 sustained; 1 not sustained (drops, rejects, producers behind the rate,\n"
    "  p99 above --slo; nothing found by --ramp or --sweep); 2 usage error; 3 recording\n"
    "  folder unusable, report not written, or out of memory or threads\n";

bool parse_u64(const char* s, std::uint64_t lo, std::uint64_t hi, std::uint64_t& out) {
  if (s == nullptr || *s < '0' || *s > '9') return false;
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0' || v < lo || v > hi) return false;
  out = v;
  return true;
}

bool parse_double(const char* s, double lo, double hi, double& out) {
  if (s == nullptr || *s == '\0') return false;
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(s, &end);
  if (errno != 0 || *end != '\0' || !(v >= lo && v <= hi)) return false;
  out = v;
  return true;
}

// "500us", "1ms", "2s", "750ns" (a number and a unit).
bool parse_duration_ns(const char* s, std::uint64_t& out) {
  if (s == nullptr || *s == '\0') return false;
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(s, &end);
  if (errno != 0 || end == s || !(v > 0)) return false;
  const std::string unit = end;
  double scale = 0;
  if (unit == "ns") scale = 1;
  if (unit == "us") scale = 1e3;
  if (unit == "ms") scale = 1e6;
  if (unit == "s") scale = 1e9;
  if (scale == 0 || v * scale > 3.6e12 || v * scale < 1) return false;
  out = static_cast<std::uint64_t>(v * scale);
  return true;
}

template <class T>
bool parse_list(const char* s, std::uint64_t lo, std::uint64_t hi, std::vector<T>& out) {
  if (s == nullptr) return false;
  std::vector<T> v;
  std::string all = s, item;
  all += ',';
  for (char c : all) {
    if (c != ',') {
      item += c;
      continue;
    }
    std::uint64_t x = 0;
    if (!parse_u64(item.c_str(), lo, hi, x)) return false;
    v.push_back(static_cast<T>(x));
    item.clear();
  }
  if (v.empty()) return false;
  out = v;
  return true;
}

// Reads the flags; on a bad one prints why and returns false.
bool parse_args(int argc, char** argv, options& o, int& exit_now) {
  exit_now = -1;
  config& c = o.base;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    std::uint64_t u = 0;
    bool ok = true, takes = true;
    if (a == "--help" || a == "-h") {
      std::fputs(usage_text, stdout);
      exit_now = exit_ok;
      return true;
    } else if (a == "--version") {
      std::printf("sluice-load %d.%d.%d\n", sluice::version_major, sluice::version_minor,
                  sluice::version_patch);
      exit_now = exit_ok;
      return true;
    } else if (a == "--lanes") {
      ok = parse_u64(v, 1, 1024, u);
      c.lanes = u;
    } else if (a == "--capacity") {
      ok = parse_u64(v, 1, 16777216, u);
      c.capacity = u;
    } else if (a == "--policy") {
      const std::string p = v ? v : "";
      ok = p == "block" || p == "drop" || p == "reject";
      c.policy = p == "drop"     ? sluice::full_policy::drop_newest
                 : p == "reject" ? sluice::full_policy::reject
                                 : sluice::full_policy::block;
    } else if (a == "--workers") {
      ok = parse_u64(v, 0, 64, u);
      c.workers = static_cast<unsigned>(u);
    } else if (a == "--producers") {
      ok = parse_u64(v, 1, 64, u);
      c.producers = static_cast<unsigned>(u);
    } else if (a == "--event-size") {
      ok = parse_u64(v, 16, 1024, u) && (u == 16 || u == 64 || u == 256 || u == 1024);
      c.event_size = u;
    } else if (a == "--keys") {
      ok = parse_u64(v, 0, std::uint64_t{1} << 40, c.keys);
    } else if (a == "--handler-ns") {
      ok = parse_u64(v, 0, 10000000, c.handler_ns);
    } else if (a == "--fail-rate") {
      ok = parse_double(v, 0, 1, c.fail_rate);
    } else if (a == "--record") {
      ok = v != nullptr && *v != '\0';
      c.record_dir = ok ? v : "";
    } else if (a == "--rate") {
      ok = parse_double(v, 0, 1e9, c.rate);
    } else if (a == "--duration") {
      ok = parse_double(v, 0.05, 3600, c.duration);
    } else if (a == "--slo") {
      ok = parse_duration_ns(v, c.slo_ns);
    } else if (a == "--ramp-factor") {
      ok = parse_double(v, 1.1, 100, o.ramp_factor);
    } else if (a == "--ramp-steps") {
      ok = parse_u64(v, 0, 10, u);
      o.ramp_steps = static_cast<unsigned>(u);
    } else if (a == "--ramp-retries") {
      ok = parse_u64(v, 0, 10, u);
      o.ramp_retries = static_cast<unsigned>(u);
    } else if (a == "--sweep-lanes") {
      ok = parse_list(v, 1, 1024, o.sweep_lanes);
    } else if (a == "--sweep-workers") {
      ok = parse_list(v, 0, 64, o.sweep_workers);
    } else if (a == "--format") {
      o.format = v ? v : "";
      ok = o.format == "text" || o.format == "json" || o.format == "csv";
    } else if (a == "--out") {
      ok = v != nullptr && *v != '\0';
      o.out = ok ? v : "";
    } else {
      takes = false;
      if (a == "--ramp") {
        o.ramp = true;
      } else if (a == "--sweep") {
        o.sweep = true;
      } else if (a == "--quiet") {
        o.progress = false;
      } else if (a == "--no-stamp") {
        c.stamp_time = false;
      } else {
        ok = false;
      }
    }
    if (!ok) {
      std::fprintf(stderr, "sluice-load: bad argument %s%s%s\n%s", a.c_str(), takes && v ? " " : "",
                   takes && v ? v : "", usage_text);
      return false;
    }
    if (takes) ++i;
  }
  const char* conflict = nullptr;
  if (o.ramp && o.sweep) conflict = "--ramp and --sweep do not go together";
  if (o.ramp && c.slo_ns == 0) conflict = "--ramp needs an objective: --slo";
  if (c.rate > 0 && std::llround(c.rate * c.duration) < 1)
    conflict = "--rate x --duration must make at least one event";
  if (conflict != nullptr) {
    std::fprintf(stderr, "sluice-load: %s\n", conflict);
    return false;
  }
  if (o.ramp && c.rate == 0) c.rate = 10000;
  return true;
}

// ---- one run ---------------------------------------------------------------------

template <std::size_t N>
struct load_event {
  std::uint64_t intended_ns;  // when it was meant to be sent (open loop) or was sent
  std::uint64_t seq;
  unsigned char pad[N - 16];
};
template <>
struct load_event<16> {
  std::uint64_t intended_ns;
  std::uint64_t seq;
};

struct result {
  config cfg;
  double elapsed_s = 0;  // first send to the last event settled
  double send_s = 0;     // first send to the last send
  std::uint64_t sent = 0, accepted = 0, delivered = 0, dropped = 0, rejected = 0, failed = 0;
  std::uint64_t recorded = 0, recorded_bytes = 0;
  double throughput = 0;  // delivered per second
  double offered = 0;     // sent per second (send_s)
  std::uint64_t p50 = 0, p90 = 0, p99 = 0, p999 = 0, max = 0;
  double mean = 0;
  long peak_rss_kb = 0;
  double cpu_s = 0;
  bool balanced = false;
  std::vector<std::pair<double, double>> timeline;  // (second, delivered per second)
  [[nodiscard]] bool meets(std::uint64_t slo) const {
    // The producers kept to their schedule: sending ended no later after
    // the last intended send time than 5 % of the duration, plus half the
    // duration up to 250 ms (a run of 3 s may end 0.4 s late, one of 0.1 s
    // 55 ms: one descheduling of the host, not a bus that blocks them).
    const bool kept_up =
        cfg.rate == 0 || send_s <= cfg.duration * 1.05 + std::min(0.25, cfg.duration / 2);
    return balanced && delivered > 0 && dropped == 0 && rejected == 0 && kept_up &&
           (slo == 0 || p99 <= slo);
  }
};

// Latency histograms, one per delivering thread, merged at the end.
struct latencies {
  std::mutex m;
  std::vector<std::unique_ptr<sluice::duration_histogram>> all;
  std::atomic<unsigned> generation{0};
  sluice::duration_histogram& mine() {
    thread_local sluice::duration_histogram* h = nullptr;
    thread_local unsigned gen = ~0u;
    const unsigned g = generation.load(std::memory_order_relaxed);
    if (h == nullptr || gen != g) {
      std::lock_guard<std::mutex> lock(m);
      all.push_back(std::make_unique<sluice::duration_histogram>());
      h = all.back().get();
      gen = g;
    }
    return *h;
  }
  void reset() {
    std::lock_guard<std::mutex> lock(m);
    all.clear();
    generation.fetch_add(1);
  }
};

latencies g_latencies;

double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

template <std::size_t N>
bool run_typed(const config& c, int run_number, bool progress, result& r) {
  using event = load_event<N>;
  r.cfg = c;
  sluice::bus_options bo;
  bo.lanes = c.lanes;
  bo.lane_capacity = c.capacity;
  bo.policy = c.policy;
  bo.expected_producers = c.producers;
  bo.stamp_time = c.stamp_time;
  sluice::bus bus(bo);

  std::shared_ptr<sluice::recorder> rec;
  if (!c.record_dir.empty()) {
    sluice::file_log_options fo;
    fo.dir = c.record_dir + "/run-" + std::to_string(run_number);
    sluice::storage_error err;
    auto log = sluice::file_log::open(fo, err);
    if (log == nullptr) {
      std::fprintf(stderr, "sluice-load: cannot record in %s: %s\n", fo.dir.c_str(),
                   err.describe().c_str());
      return false;
    }
    auto types = std::make_shared<sluice::codecs>();
    types->add<event>("load" + std::to_string(N), 1, sluice::memcpy_codec<event>{});
    rec = std::make_shared<sluice::recorder>(std::move(log), types);
    bus.record(rec);
  }

  g_latencies.reset();
  const std::uint64_t fail_below =
      c.fail_rate >= 1 ? ~std::uint64_t{0}
                       : static_cast<std::uint64_t>(c.fail_rate * 18446744073709551615.0);
  auto sub = bus.subscribe<event>([&c, fail_below](const event& e) {
    const std::uint64_t start = now_ns();
    g_latencies.mine().record(start > e.intended_ns ? start - e.intended_ns : 0);
    if (c.handler_ns != 0)
      while (now_ns() - start < c.handler_ns) {
      }
    if (fail_below != 0) {
      thread_local std::uint64_t x = 0x9E3779B97F4A7C15ull ^ reinterpret_cast<std::uintptr_t>(&x);
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      if (x <= fail_below) return sluice::outcome::failure(1, "load: failure asked for");
    }
    return sluice::outcome::success();
  });

  std::atomic<bool> polling{true};
  std::thread poller;
  if (c.workers > 0) {
    bus.run(c.workers);
  } else {
    poller = std::thread([&] {
      while (polling.load(std::memory_order_relaxed))
        if (bus.poll() == 0) std::this_thread::yield();
    });
  }

  const double cpu0 = cpu_seconds();
  std::atomic<std::uint64_t> sent{0}, rejected{0};
  std::atomic<unsigned> sending{c.producers}, ready{0};
  std::atomic<std::uint64_t> start_at{0};               // set once every producer is ready
  constexpr std::uint64_t abandon = ~std::uint64_t{0};  // start_at: do not send
  std::atomic<bool> no_producer{false};
  const auto send_ns = static_cast<std::uint64_t>(c.duration * 1e9);
  // Open loop: events 0 .. total-1, event n intended at start + n / rate and
  // sent by producer n % producers, with key n % keys: one even stream at
  // the rate, whatever the number of producers.
  const auto total = static_cast<std::uint64_t>(std::llround(c.rate * c.duration));
  const double gap = c.rate > 0 ? 1e9 / c.rate : 0;
  std::atomic<std::uint64_t> last_send{0};
  std::vector<std::thread> producers;
  // If a thread cannot be made, those made are told to give up and joined,
  // and the run fails (no thread is left running, nothing terminates).
  auto abandon_run = [&] {
    start_at.store(abandon);
    for (auto& t : producers) t.join();
    polling.store(false);
    if (poller.joinable()) poller.join();
    bus.stop(sluice::stop_mode::discard);
  };
  try {
    producers.reserve(c.producers);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sluice-load: %s\n", e.what());
    abandon_run();
    return false;
  }
  for (unsigned p = 0; p < c.producers; ++p) {
    try {
      producers.emplace_back([&, p] {
        std::unique_ptr<sluice::producer> made;
        try {
          made.reset(new sluice::producer(bus.make_producer()));
        } catch (const std::exception& e) {
          std::fprintf(stderr, "sluice-load: cannot make producer %u: %s\n", p, e.what());
          no_producer.store(true);
        }
        ready.fetch_add(1);
        std::uint64_t start;
        while ((start = start_at.load()) == 0) std::this_thread::yield();
        if (start == abandon) {  // a producer could not be made or started
          sending.fetch_sub(1);
          return;
        }
        sluice::producer& prod = *made;
      std::uint64_t local_sent = 0, local_rejected = 0;
        while (now_ns() < start) std::this_thread::yield();
        // Producer p sends events p, p + P, p + 2P, ... (P producers).
        for (std::uint64_t n = p;; n += c.producers) {
          std::uint64_t intended;
          if (c.rate > 0) {
            if (n >= total) break;
            intended = start + static_cast<std::uint64_t>(static_cast<double>(n) * gap);
            // Sleep when far ahead, else yield until due: a producer that
            // spun would take the core the workers need on a small machine.
            std::uint64_t t = now_ns();
            if (intended > t + 100000) {
              std::this_thread::sleep_for(std::chrono::nanoseconds(intended - t - 50000));
              t = now_ns();
            }
            while (t < intended) {
              std::this_thread::yield();
              t = now_ns();
            }
          } else {
            intended = now_ns();
            if (intended - start >= send_ns) break;
          }
          event e{};
          e.intended_ns = intended;
          e.seq = n;
          const sluice::publish_result pr =
              c.keys != 0 ? prod.publish(std::move(e), n % c.keys) : prod.publish(std::move(e));
          ++local_sent;
          if (pr != sluice::publish_result::ok && pr != sluice::publish_result::dropped)
            ++local_rejected;
          if ((local_sent & 1023) == 0) sent.fetch_add(1024, std::memory_order_relaxed);
        }
        sent.fetch_add(local_sent & 1023, std::memory_order_relaxed);
        rejected.fetch_add(local_rejected, std::memory_order_relaxed);
        std::uint64_t t = now_ns(), prev = last_send.load();
        while (t > prev && !last_send.compare_exchange_weak(prev, t)) {
        }
        sending.fetch_sub(1);
      });
    } catch (const std::exception& e) {
      std::fprintf(stderr, "sluice-load: cannot start producer thread %u: %s\n", p, e.what());
      abandon_run();
      return false;
    }
  }
  // Every producer made and waiting: they start together, 1 ms from now.
  while (ready.load() != c.producers) std::this_thread::yield();
  if (no_producer.load()) {
    abandon_run();
    return false;
  }
  const std::uint64_t start = now_ns() + 1000000;
  start_at.store(start);

  // Progress, about once a second, until the producers are done: the
  // delivered rate over the time since the last sample.
  std::uint64_t last_t = start, last_delivered = 0;
  const bool tty = ::isatty(2) != 0;
  while (sending.load() != 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const std::uint64_t t = now_ns();
    if (t < last_t + 1000000000) continue;
    const std::uint64_t d = bus.stats<event>().delivered;
    const double secs = static_cast<double>(t - start) / 1e9;
    r.timeline.emplace_back(
        secs, static_cast<double>(d - last_delivered) * 1e9 / static_cast<double>(t - last_t));
    last_delivered = d;
    last_t = t;
    if (progress)
      std::fprintf(stderr, "%s  run %d: %.0f s, sent %llu, delivered %llu (%.0f/s)%s",
                   tty ? "\r" : "", run_number, secs, static_cast<unsigned long long>(sent.load()),
                   static_cast<unsigned long long>(d), r.timeline.back().second,
                   tty ? "   " : "\n");
  }
  for (auto& t : producers) t.join();
  // Drain, within 120 s; past that, what is still queued is discarded (and
  // the run is not balanced) instead of draining for ever.
  const bool idle = bus.wait_idle(std::chrono::seconds(120));
  const std::uint64_t end = now_ns();
  polling.store(false);
  if (poller.joinable()) poller.join();
  bus.stop(idle ? sluice::stop_mode::drain : sluice::stop_mode::discard);
  if (progress && tty) std::fputs("\n", stderr);

  const sluice::type_stats s = bus.stats<event>();
  r.sent = sent.load();
  r.rejected = rejected.load();
  r.accepted = s.published;
  r.delivered = s.delivered;
  r.dropped = s.dropped;
  r.failed = s.failed;
  r.balanced = idle && s.balanced();
  r.elapsed_s = static_cast<double>(end - start) / 1e9;
  r.send_s = static_cast<double>(last_send.load() - start) / 1e9;
  r.throughput = r.elapsed_s > 0 ? static_cast<double>(r.delivered) / r.elapsed_s : 0;
  r.offered = r.send_s > 0 ? static_cast<double>(r.sent) / r.send_s : 0;
  sluice::duration_histogram h;
  {
    std::lock_guard<std::mutex> lock(g_latencies.m);
    for (const auto& one : g_latencies.all) h.merge(*one);
  }
  r.p50 = h.percentile(0.5);
  r.p90 = h.percentile(0.9);
  r.p99 = h.percentile(0.99);
  r.p999 = h.percentile(0.999);
  r.max = h.max();
  r.mean = h.mean();
  r.cpu_s = cpu_seconds() - cpu0;
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  r.peak_rss_kb = u.ru_maxrss;
  if (rec) {
    (void)rec->close();
    const sluice::recorder_stats rs = rec->stats();
    r.recorded = rs.written;
    r.recorded_bytes = rs.bytes;
  }
  return true;
}

bool run_once(const config& c, int run_number, bool progress, result& r) {
  switch (c.event_size) {
    case 64:
      return run_typed<64>(c, run_number, progress, r);
    case 256:
      return run_typed<256>(c, run_number, progress, r);
    case 1024:
      return run_typed<1024>(c, run_number, progress, r);
    default:
      return run_typed<16>(c, run_number, progress, r);
  }
}

// ---- reports ---------------------------------------------------------------------

const char* policy_name(sluice::full_policy p) {
  return p == sluice::full_policy::drop_newest ? "drop"
         : p == sluice::full_policy::reject    ? "reject"
                                               : "block";
}

std::string us(std::uint64_t ns) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", static_cast<double>(ns) / 1e3);
  return b;
}

// The columns of the CSV and the fields of each run in the JSON, in order.
std::string num(std::uint64_t v) {
  return std::to_string(v);
}
std::string fixed(double v, int digits) {
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", digits, v);
  return b;
}
std::string yes(bool v) {
  return v ? "true" : "false";
}

struct column {
  const char* name;
  std::string (*value)(const result&, std::uint64_t slo);
  bool quoted;  // in JSON
};
const column columns[] = {
    {"lanes", [](const result& r, std::uint64_t) { return num(r.cfg.lanes); }, false},
    {"capacity", [](const result& r, std::uint64_t) { return num(r.cfg.capacity); }, false},
    {"policy",
     [](const result& r, std::uint64_t) { return std::string(policy_name(r.cfg.policy)); }, true},
    {"producers", [](const result& r, std::uint64_t) { return num(r.cfg.producers); }, false},
    {"workers", [](const result& r, std::uint64_t) { return num(r.cfg.workers); }, false},
    {"event_size", [](const result& r, std::uint64_t) { return num(r.cfg.event_size); }, false},
    {"keys", [](const result& r, std::uint64_t) { return num(r.cfg.keys); }, false},
    {"handler_ns", [](const result& r, std::uint64_t) { return num(r.cfg.handler_ns); }, false},
    {"fail_rate", [](const result& r, std::uint64_t) { return fixed(r.cfg.fail_rate, 4); }, false},
    {"stamp_time", [](const result& r, std::uint64_t) { return yes(r.cfg.stamp_time); }, false},
    {"recording", [](const result& r, std::uint64_t) { return yes(!r.cfg.record_dir.empty()); },
     false},
    {"rate", [](const result& r, std::uint64_t) { return fixed(r.cfg.rate, 0); }, false},
    {"duration_s", [](const result& r, std::uint64_t) { return fixed(r.cfg.duration, 3); }, false},
    {"elapsed_s", [](const result& r, std::uint64_t) { return fixed(r.elapsed_s, 3); }, false},
    {"sent", [](const result& r, std::uint64_t) { return num(r.sent); }, false},
    {"accepted", [](const result& r, std::uint64_t) { return num(r.accepted); }, false},
    {"delivered", [](const result& r, std::uint64_t) { return num(r.delivered); }, false},
    {"dropped", [](const result& r, std::uint64_t) { return num(r.dropped); }, false},
    {"rejected", [](const result& r, std::uint64_t) { return num(r.rejected); }, false},
    {"failed", [](const result& r, std::uint64_t) { return num(r.failed); }, false},
    {"balanced", [](const result& r, std::uint64_t) { return yes(r.balanced); }, false},
    {"throughput", [](const result& r, std::uint64_t) { return fixed(r.throughput, 0); }, false},
    {"offered", [](const result& r, std::uint64_t) { return fixed(r.offered, 0); }, false},
    {"p50_ns", [](const result& r, std::uint64_t) { return num(r.p50); }, false},
    {"p90_ns", [](const result& r, std::uint64_t) { return num(r.p90); }, false},
    {"p99_ns", [](const result& r, std::uint64_t) { return num(r.p99); }, false},
    {"p999_ns", [](const result& r, std::uint64_t) { return num(r.p999); }, false},
    {"max_ns", [](const result& r, std::uint64_t) { return num(r.max); }, false},
    {"mean_ns", [](const result& r, std::uint64_t) { return fixed(r.mean, 0); }, false},
    {"peak_rss_kb", [](const result& r, std::uint64_t) { return std::to_string(r.peak_rss_kb); },
     false},
    {"cpu_s", [](const result& r, std::uint64_t) { return fixed(r.cpu_s, 3); }, false},
    {"recorded", [](const result& r, std::uint64_t) { return num(r.recorded); }, false},
    {"recorded_bytes", [](const result& r, std::uint64_t) { return num(r.recorded_bytes); }, false},
    {"meets_slo", [](const result& r, std::uint64_t slo) { return yes(r.meets(slo)); }, false},
};

std::string csv_header() {
  std::string s;
  for (const column& c : columns) s += std::string(s.empty() ? "" : ",") + c.name;
  return s + "\n";
}

std::string csv_row(const result& r, std::uint64_t slo) {
  std::string s;
  for (const column& c : columns) {
    if (&c != columns) s += ',';
    s += c.value(r, slo);
  }
  return s + "\n";
}

// One run: every column, then the timeline as [second, delivered per second].
std::string json_run(const result& r, std::uint64_t slo) {
  std::string s = "{";
  for (const column& c : columns) {
    s += std::string("\"") + c.name + "\": ";
    s += c.quoted ? "\"" + c.value(r, slo) + "\"" : c.value(r, slo);
    s += ", ";
  }
  s += "\"timeline\": [";
  for (std::size_t i = 0; i < r.timeline.size(); ++i)
    s += (i ? ", [" : "[") + fixed(r.timeline[i].first, 1) + ", " + fixed(r.timeline[i].second, 0) +
         "]";
  return s + "]}";
}

std::string text_run(const result& r) {
  const config& c = r.cfg;
  const std::string recorded = c.record_dir.empty()
                                   ? std::string()
                                   : ", recorded " + std::to_string(r.recorded) + " records (" +
                                         std::to_string(r.recorded_bytes) + " bytes)";
  const std::string load =
      c.rate > 0 ? "open loop at " + std::to_string(static_cast<long long>(c.rate)) + "/s"
                 : std::string("closed loop");
  char b[2048];
  std::snprintf(
      b, sizeof b,
      "bus: %zu lanes x %zu, policy %s, %u %s; %u producer(s), %zu-byte events, %llu keys, "
      "handler %llu ns, fail rate %g%s\n"
      "load: %s for %g s\n"
      "  sent %llu (%.0f/s), accepted %llu, delivered %llu, dropped %llu, rejected %llu, "
      "failed %llu%s\n"
      "  throughput %.0f events/s over %.3f s\n"
      "  latency (us): p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  mean %.1f\n"
      "  peak RSS of the process so far %ld KiB, CPU %.2f s%s\n",
      c.lanes, c.capacity, policy_name(c.policy), c.workers,
      c.workers == 0 ? "workers (polled)" : "worker(s)", c.producers, c.event_size,
      static_cast<unsigned long long>(c.keys), static_cast<unsigned long long>(c.handler_ns),
      c.fail_rate, c.record_dir.empty() ? "" : ", recording", load.c_str(), c.duration,
      static_cast<unsigned long long>(r.sent), r.offered,
      static_cast<unsigned long long>(r.accepted), static_cast<unsigned long long>(r.delivered),
      static_cast<unsigned long long>(r.dropped), static_cast<unsigned long long>(r.rejected),
      static_cast<unsigned long long>(r.failed), r.balanced ? "" : " (NOT BALANCED)", r.throughput,
      r.elapsed_s, us(r.p50).c_str(), us(r.p90).c_str(), us(r.p99).c_str(), us(r.p999).c_str(),
      us(r.max).c_str(), r.mean / 1e3, r.peak_rss_kb, r.cpu_s, recorded.c_str());
  return b;
}

// ---- searching -------------------------------------------------------------------

struct session {
  options o;
  std::vector<result> runs;
  int next_run = 1;
  bool failed_io = false;
  // Runs c; false if it could not (recording folder).
  bool run(const config& c) {
    result r;
    if (!run_once(c, next_run++, o.progress, r)) {
      failed_io = true;
      return false;
    }
    if (o.progress)
      std::fprintf(stderr, "  run %d: %s/s offered, %.0f/s delivered, p99 %s us%s\n", next_run - 1,
                   c.rate > 0 ? std::to_string(static_cast<long long>(c.rate)).c_str() : "max",
                   r.throughput, us(r.p99).c_str(), r.meets(c.slo_ns) ? "" : " (objective missed)");
    runs.push_back(r);
    return true;
  }
};

// Highest sustainable rate: multiply until a rate misses, then bisect
// between the last good and the first bad rate. A rate misses only when
// 1 + --ramp-retries runs of it all miss (one hiccup of the host must not
// end the search). Returns the best run's index, or -1 when even the first
// rate missed (or a run could not be made).
int ramp(session& s) {
  config c = s.o.base;
  // Runs c.rate until one run meets; the index of that run, or -1.
  auto attempt = [&]() -> int {
    for (unsigned k = 0; k <= s.o.ramp_retries; ++k) {
      if (!s.run(c)) return -2;
      if (s.runs.back().meets(c.slo_ns)) return static_cast<int>(s.runs.size()) - 1;
    }
    return -1;
  };
  int best = -1;
  double good = 0, bad = 0;
  for (;;) {
    const int i = attempt();
    if (i == -2) return -1;
    if (i < 0) {
      bad = c.rate;
      break;
    }
    best = i;
    good = c.rate;
    c.rate *= s.o.ramp_factor;
    if (c.rate > 1e9) break;
  }
  if (good == 0) return -1;
  for (unsigned k = 0; k < s.o.ramp_steps && bad > 0; ++k) {
    c.rate = std::floor((good + bad) / 2);
    const int i = attempt();
    if (i == -2) return -1;
    if (i >= 0) {
      good = c.rate;
      best = i;
    } else {
      bad = c.rate;
    }
  }
  return best;
}

// Every lanes x workers pair at the given load. The recommendation: of the
// runs that meet the objective, the fewest workers, then the fewest lanes,
// then the lowest p99 (open loop); the highest throughput (closed loop).
int sweep(session& s) {
  int best = -1;
  for (const std::size_t lanes : s.o.sweep_lanes) {
    for (const unsigned workers : s.o.sweep_workers) {
      config c = s.o.base;
      c.lanes = lanes;
      c.workers = workers;
      if (!s.run(c)) return -1;
      const result& r = s.runs.back();
      if (!r.meets(c.slo_ns)) continue;
      if (best < 0) {
        best = static_cast<int>(s.runs.size()) - 1;
        continue;
      }
      const result& b = s.runs[static_cast<std::size_t>(best)];
      bool better;
      if (c.rate == 0) {
        better = r.throughput > b.throughput;
      } else {
        better = r.cfg.workers != b.cfg.workers ? r.cfg.workers < b.cfg.workers
                 : r.cfg.lanes != b.cfg.lanes   ? r.cfg.lanes < b.cfg.lanes
                                                : r.p99 < b.p99;
      }
      if (better) best = static_cast<int>(s.runs.size()) - 1;
    }
  }
  return best;
}

std::string report(const session& s, int best) {
  const std::uint64_t slo = s.o.base.slo_ns;
  const bool search = s.o.ramp || s.o.sweep;
  std::string out;
  if (s.o.format == "csv") {
    out = csv_header();
    for (const result& r : s.runs) out += csv_row(r, slo);
    return out;
  }
  if (s.o.format == "json") {
    out = "{\"tool\": \"sluice-load\", \"mode\": \"";
    out += s.o.ramp ? "ramp" : s.o.sweep ? "sweep" : "run";
    out += "\", \"slo_p99_ns\": " + std::to_string(slo) + ", \"best\": " + std::to_string(best) +
           ",\n \"runs\": [\n  ";
    for (std::size_t i = 0; i < s.runs.size(); ++i)
      out += (i ? ",\n  " : "") + json_run(s.runs[i], slo);
    return out + "]}\n";
  }
  for (std::size_t i = 0; i < s.runs.size(); ++i) {
    if (search) out += "run " + std::to_string(i + 1) + ": ";
    out += text_run(s.runs[i]);
  }
  if (s.o.ramp) {
    if (best < 0) {
      out += "ramp: no rate tried met p99 <= " + us(slo) + " us with nothing dropped\n";
    } else {
      const result& b = s.runs[static_cast<std::size_t>(best)];
      out += "ramp: highest sustainable rate " +
             std::to_string(static_cast<long long>(b.cfg.rate)) + " events/s (p99 " + us(b.p99) +
             " us <= " + us(slo) + " us)\n";
    }
  }
  if (s.o.sweep) {
    if (best < 0) {
      out += "sweep: no configuration met the objective\n";
    } else {
      const result& b = s.runs[static_cast<std::size_t>(best)];
      out += "sweep: recommended --lanes " + std::to_string(b.cfg.lanes) + " --workers " +
             std::to_string(b.cfg.workers) + " (" +
             std::to_string(static_cast<long long>(b.throughput)) + " events/s, p99 " + us(b.p99) +
             " us)\n";
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  session s;
  int exit_now = -1;
  if (!parse_args(argc, argv, s.o, exit_now)) return exit_usage;
  if (exit_now >= 0) return exit_now;
  std::FILE* out = stdout;
  if (!s.o.out.empty()) {
    out = std::fopen(s.o.out.c_str(), "w");
    if (out == nullptr) {
      std::fprintf(stderr, "sluice-load: cannot write %s: %s\n", s.o.out.c_str(),
                   std::strerror(errno));
      return exit_usage;
    }
  }
  int best = -1;
  try {
    if (s.o.ramp) {
      best = ramp(s);
    } else if (s.o.sweep) {
      best = sweep(s);
    } else if (s.run(s.o.base)) {
      best = 0;
    }
  } catch (const std::exception& e) {  // no memory or threads for a bus, say
    std::fprintf(stderr, "sluice-load: %s\n", e.what());
    return exit_io;
  }
  if (s.failed_io) return exit_io;
  const std::string text = report(s, best);
  const bool written = std::fwrite(text.data(), 1, text.size(), out) == text.size();
  if (out != stdout ? std::fclose(out) != 0 : std::fflush(out) != 0) return exit_io;
  if (!written) return exit_io;
  if (best < 0) return exit_slo;
  if (!s.o.ramp && !s.o.sweep && !s.runs.front().meets(s.o.base.slo_ns)) return exit_slo;
  return exit_ok;
}
