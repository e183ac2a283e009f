// sluice — flow tracing: a bus given a tracer records, for one flow in N,
// each publish, each queue wait and each handler call, and the tracer
// writes them as Chrome Trace Event JSON (open it in https://ui.perfetto.dev
// or chrome://tracing): a track per thread with its delivery and handler
// spans, the queue waits as async spans, and an arrow from each publish to
// the delivery of the event it published.
//
//   auto tr = std::make_shared<sluice::tracer>(1000);  // one flow in 1000
//   tr->name<order_placed>("order_placed");
//   sluice::bus bus{sluice::bus_options{}.with_tracer(tr)};
//   ...
//   bus.stop();
//   std::string error;
//   if (!tr->write("orders.trace.json", &error)) std::fprintf(stderr, "%s\n", error.c_str());
//
// A flow is an event published outside any handler and every event its
// handlers (and theirs, ...) publish: they share metadata::correlation, and
// the sampling is decided by it, so a flow is traced whole or not at all.
// The tracer keeps at most `capacity` records, made when it is (no
// allocation while tracing); beyond them, records are counted in lost().
// Records are added under a mutex: tracing every flow serialises the
// bus's threads on it (see docs/monitoring.md#tracing for the cost).
#pragma once

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "config.hpp"
#include "detail/process.hpp"
#include "detail/stamp_clock.hpp"
#include "detail/type_id.hpp"
#include "event.hpp"
#include "observer.hpp"

namespace sluice {
inline namespace SLUICE_ABI {

class tracer {
 public:
  // Traces one flow in `sample_every` (1 or 0: every flow), keeping at most
  // `capacity` records (a publish, a delivery and each handler call are
  // one record each; about 100 bytes each, reserved now).
  explicit tracer(std::uint64_t sample_every = 1000, std::size_t capacity = 65536)
      : every_(sample_every == 0 ? 1 : sample_every),
        threshold_(every_ == 1 ? ~std::uint64_t{0} : ~std::uint64_t{0} / every_),
        capacity_(capacity) {
    records_.reserve(capacity_);
  }
  tracer(const tracer&) = delete;
  tracer& operator=(const tracer&) = delete;

  // The name Event's spans carry (default: "type N", N its type_number).
  template <class Event>
  tracer& name(std::string_view n) {
    std::lock_guard<std::mutex> lock(mutex_);
    names_[detail::type_index<Event>()] = std::string(n);
    return *this;
  }

  // Whether the flow with this correlation is traced.
  // (Fibonacci hashing: the id times 2^64 / phi, modulo 2^64, spreads
  // consecutive ids evenly over the words; one in sample_every falls at or
  // below the threshold. One multiplication: every publish and every
  // drained event asks.)
  [[nodiscard]] bool sampled(std::uint64_t correlation) const noexcept {
    return correlation * 0x9E3779B97F4A7C15ULL <= threshold_;
  }
  [[nodiscard]] std::uint64_t sample_every() const noexcept { return every_; }

  // Records kept, and records that found no room.
  [[nodiscard]] std::size_t size() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return records_.size();
  }
  [[nodiscard]] std::uint64_t lost() const noexcept {
    return lost_.load(std::memory_order_relaxed);
  }
  // Forgets the records kept (and the count lost): a new trace.
  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    records_.clear();
    lost_.store(0, std::memory_order_relaxed);
  }

  // The trace as Chrome Trace Event JSON (an object with "traceEvents"),
  // times in microseconds from the first record.
  [[nodiscard]] std::string to_json() const;
  // Writes to_json() to `path`; false (and *error, if given) when it could
  // not be written whole.
  bool write(const std::string& path, std::string* error = nullptr) const;

  // ---- what the bus calls (any thread; times on detail::stamp_now's clock)

  // Events accepted by a publish (one record per sampled flow's event).
  void published(const publish_info& info) noexcept {
    if (info.result != publish_result::ok || info.sequence == 0) return;
    std::int64_t now = 0;  // read once, for the first sampled event
    for (std::size_t k = 0; k < info.count; ++k) {
      const std::uint64_t id = event_id(info.producer, info.sequence + k);
      const std::uint64_t flow = info.cause != 0 ? info.correlation : id;
      if (!sampled(flow)) continue;
      if (now == 0) now = detail::stamp_now();
      record r;
      r.what = kind::publish;
      r.t1 = now;
      r.id = id;
      r.correlation = flow;
      r.cause = info.cause;
      r.type = info.type;
      add(r);
    }
  }
  // A traced event's delivery: from `start` to `end` on this thread, after
  // waiting in its lane since m.timestamp (0: not stamped).
  void delivered(std::uint32_t type, const metadata& m, std::int64_t start, std::int64_t end,
                 std::size_t lane) noexcept {
    record r;
    r.what = kind::delivery;
    r.t0 = m.timestamp;
    r.t1 = start;
    r.t2 = end;
    fill(r, type, m);
    r.lane = static_cast<std::uint32_t>(lane);
    add(r);
  }
  // One handler call of a traced event.
  void handled(std::uint32_t type, const metadata& m, const char* subscription, std::int64_t start,
               std::int64_t end, bool ok) noexcept {
    record r;
    r.what = kind::handler;
    r.t1 = start;
    r.t2 = end;
    fill(r, type, m);
    r.ok = ok;
    if (subscription != nullptr) {
      std::size_t n = 0;
      while (subscription[n] != '\0' && n + 1 < sizeof r.name) ++n;
      // Cut at a character's start (a name cut inside one would not be UTF-8).
      if (subscription[n] != '\0')
        while (n != 0 && (static_cast<unsigned char>(subscription[n]) & 0xC0) == 0x80) --n;
      std::memcpy(r.name, subscription, n);
      r.name[n] = '\0';
    }
    add(r);
  }

 private:
  enum class kind : std::uint8_t { publish, delivery, handler };
  struct record {
    std::int64_t t0 = 0;  // delivery: when published (0: unknown)
    std::int64_t t1 = 0;  // publish: when; else the start
    std::int64_t t2 = 0;  // the end
    std::uint64_t id = 0;
    std::uint64_t correlation = 0;
    std::uint64_t cause = 0;
    std::uint32_t type = 0;
    std::uint32_t thread = 0;
    std::uint32_t lane = 0;
    kind what = kind::publish;
    bool ok = true;
    char name[40] = {};  // a handler's subscription name (cut to 39 bytes)
  };

  static void fill(record& r, std::uint32_t type, const metadata& m) noexcept {
    r.id = event_id(m);
    r.correlation = m.correlation;
    r.cause = m.cause;
    r.type = type;
  }

  void add(record& r) noexcept {
    r.thread = detail::thread_number();
    std::lock_guard<std::mutex> lock(mutex_);
    if (records_.size() == capacity_) {
      lost_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    records_.push_back(r);  // reserved: no allocation
  }

  const std::uint64_t every_;
  const std::uint64_t threshold_;
  const std::size_t capacity_;
  mutable std::mutex mutex_;
  std::vector<record> records_;
  std::map<std::uint32_t, std::string> names_;
  std::atomic<std::uint64_t> lost_{0};
};

namespace detail {

// Microseconds with three decimals (the format's unit is the microsecond).
inline void trace_time(std::string& out, std::int64_t ns) {
  char buf[32];
  const long long v = ns < 0 ? 0 : static_cast<long long>(ns);
  std::snprintf(buf, sizeof buf, "%lld.%03lld", v / 1000, v % 1000);
  out += buf;
}

inline void trace_string(std::string& out, std::string_view s) {
  out += '"';
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  out += '"';
}

inline void trace_id(std::string& out, std::uint64_t id) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "\"0x%llx\"", static_cast<unsigned long long>(id));
  out += buf;
}

}  // namespace detail

inline std::string tracer::to_json() const {
  std::vector<record> recs;
  std::map<std::uint32_t, std::string> names;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    recs = records_;
    names = names_;
  }
  std::int64_t origin = 0;
  bool first = true;
  for (const record& r : recs) {
    for (const std::int64_t t : {r.t0, r.t1, r.t2}) {
      if (t != 0 && (first || t < origin)) {
        origin = t;
        first = false;
      }
    }
  }
  const auto type_name = [&](std::uint32_t type) {
    const auto it = names.find(type);
    return it != names.end() ? it->second : "type " + std::to_string(type);
  };
  std::string out = "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[";
  bool comma = false;
  // One trace event: `ph`, its name, its thread and time; `rest` adds fields.
  const auto open = [&](const char* ph, std::string_view name, std::uint32_t thread,
                        std::int64_t t) {
    out += comma ? ",\n{" : "\n{";
    comma = true;
    out += "\"ph\":\"";
    out += ph;
    out += "\",\"cat\":\"sluice\",\"name\":";
    detail::trace_string(out, name);
    out += ",\"pid\":1,\"tid\":";
    out += std::to_string(thread);
    out += ",\"ts\":";
    detail::trace_time(out, t - origin);
  };
  const auto ids = [&](const record& r) {
    out += ",\"args\":{\"event\":";
    detail::trace_id(out, r.id);
    out += ",\"correlation\":";
    detail::trace_id(out, r.correlation);
    out += ",\"cause\":";
    detail::trace_id(out, r.cause);
  };
  // Where each delivery starts: a publish is drawn no later than its
  // event's delivery (the publish hook runs after the enqueue, and a
  // drainer may start first), so that no arrow points back in time.
  std::map<std::uint64_t, std::int64_t> delivered_at;
  for (const record& r : recs)
    if (r.what == kind::delivery) delivered_at.emplace(r.id, r.t1);
  std::vector<std::uint32_t> threads;
  for (const record& r : recs) {
    if (std::find(threads.begin(), threads.end(), r.thread) == threads.end())
      threads.push_back(r.thread);
    const std::string type = type_name(r.type);
    switch (r.what) {
      case kind::publish: {
        // A span of no length where the event was published (inside its
        // cause's handler span when it has one), and the arrow's start.
        const auto d = delivered_at.find(r.id);
        const std::int64_t at = d != delivered_at.end() && d->second < r.t1 ? d->second : r.t1;
        open("X", "publish " + type, r.thread, at);
        out += ",\"dur\":0";
        ids(r);
        out += "}}";
        open("s", type, r.thread, at);
        out += ",\"id\":";
        detail::trace_id(out, r.id);
        out += '}';
        break;
      }
      case kind::delivery:
        if (r.t0 != 0) {  // the queue wait: an async span of its own
          // (The publisher's stamp may read a few microseconds ahead of the
          // drainer's clock: a wait is never drawn below zero.)
          open("b", "queue wait " + type, r.thread, r.t0 < r.t1 ? r.t0 : r.t1);
          out += ",\"id\":";
          detail::trace_id(out, r.id);
          out += '}';
          open("e", "queue wait " + type, r.thread, r.t1);
          out += ",\"id\":";
          detail::trace_id(out, r.id);
          out += '}';
        }
        open("X", "deliver " + type, r.thread, r.t1);
        out += ",\"dur\":";
        detail::trace_time(out, r.t2 > r.t1 ? r.t2 - r.t1 : 0);
        ids(r);
        out += ",\"lane\":";
        out += std::to_string(r.lane);
        out += "}}";
        open("f", type, r.thread, r.t1);  // the arrow's end, bound to the delivery span
        out += ",\"bp\":\"e\",\"id\":";
        detail::trace_id(out, r.id);
        out += '}';
        break;
      case kind::handler:
        open("X", r.name[0] != '\0' ? std::string(r.name) : "handler " + type, r.thread, r.t1);
        out += ",\"dur\":";
        detail::trace_time(out, r.t2 > r.t1 ? r.t2 - r.t1 : 0);
        ids(r);
        out += ",\"ok\":";
        out += r.ok ? "true" : "false";
        out += "}}";
        break;
    }
  }
  for (const std::uint32_t t : threads) {
    out += comma ? ",\n{" : "\n{";
    comma = true;
    out += "\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":1,\"tid\":";
    out += std::to_string(t);
    out += ",\"args\":{\"name\":\"sluice thread ";
    out += std::to_string(t);
    out += "\"}}";
  }
  out += "\n]}\n";
  return out;
}

inline bool tracer::write(const std::string& path, std::string* error) const {
  const std::string json = to_json();
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    if (error != nullptr) *error = "sluice: cannot open " + path + ": " + std::strerror(errno);
    return false;
  }
  const bool whole = std::fwrite(json.data(), 1, json.size(), f) == json.size();
  const int e = errno;
  const bool closed = std::fclose(f) == 0;
  if (whole && closed) return true;
  if (error != nullptr)
    *error = "sluice: cannot write " + path + ": " + std::strerror(whole ? errno : e);
  return false;
}

}  // namespace SLUICE_ABI
}  // namespace sluice
