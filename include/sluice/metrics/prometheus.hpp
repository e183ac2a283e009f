// sluice — a bus's counters and gauges, and a recorder's, in the Prometheus
// text exposition format (version 0.0.4), for a /metrics endpoint.
//
//   sluice::prometheus_exporter prom;
//   prom.add(bus, "shop").type<order_placed>("order_placed").type<payment>("payment");
//   prom.add(recorder, "orders");
//   std::string text = prom.render();   // serve it as text/plain; version=0.0.4
//
// Every metric name starts with the exporter's prefix ("sluice" unless given)
// and follows Prometheus conventions: counters end in _total, a unit is named
// (_bytes), labels carry the bus, the type, the lane and the recorder. The
// names, and what each means, are listed in docs/monitoring.md.
//
// Contracts:
//  - reading: render() reads the counters as bus::stats() does, without
//    stopping anything; during a run each value is read on its own (not one
//    atomic snapshot), after stop() they are exact;
//  - threads: add, type, remove, render and error may run on any threads at
//    once;
//  - lifetime: the exporter keeps references. Remove a bus or a recorder
//    (or destroy the exporter) before destroying it;
//  - bad input: an empty name or one that is not well-formed UTF-8, a prefix
//    that is not a Prometheus metric name, a bus, type or recorder name
//    given twice (Prometheus would refuse the duplicate series), or type()
//    on a handle whose bus was removed throws std::invalid_argument; without
//    exceptions the call changes nothing, add() says so, and error() says
//    why;
//  - cost: nothing on a bus's event path; for a recorder, render() takes the
//    recorder's lock twice, briefly (the lock each recorded event takes);
//    render() allocates its string.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../bus.hpp"
#include "../config.hpp"
#include "../detail/text.hpp"
#include "../stats.hpp"
#include "../storage/record_options.hpp"
#include "histogram.hpp"
#include "snapshot.hpp"

#if SLUICE_HAS_EXCEPTIONS
#include <stdexcept>
#endif

namespace sluice {
inline namespace SLUICE_ABI {

class prometheus_exporter;

// A handle to one registration of a bus in an exporter (from
// prometheus_exporter::add), to name the types it reports. A plain value
// that names the registration by a number the exporter never reuses: after
// remove() (on any thread), its type() is refused, even if the same bus, or
// another at the same address, was added again. It must not outlive its
// exporter.
class prometheus_bus {
 public:
  // Reports Event's counters on this bus with the label type="name".
  // Returns a copy of this handle, to chain.
  template <class Event>
  prometheus_bus type(std::string name) const;
  // False for the handle a refused add() returns (its type() does nothing).
  explicit operator bool() const noexcept { return owner_ != nullptr; }

 private:
  friend class prometheus_exporter;
  prometheus_bus(prometheus_exporter* owner, std::uint64_t id) noexcept : owner_(owner), id_(id) {}

  prometheus_exporter* owner_;  // nullptr: refused
  std::uint64_t id_;            // the registration's number
};

class prometheus_exporter {
 public:
  // `prefix` starts every metric name; it must match [a-zA-Z_][a-zA-Z0-9_]*.
  explicit prometheus_exporter(std::string prefix = "sluice") {
    if (!metric_name(prefix)) {
      refuse("sluice: a Prometheus metric prefix must match [a-zA-Z_][a-zA-Z0-9_]*");
      prefix = "sluice";
    }
    prefix_ = std::move(prefix);
  }
  prometheus_exporter(const prometheus_exporter&) = delete;
  prometheus_exporter& operator=(const prometheus_exporter&) = delete;

  // Reports b's lanes and workers with the label bus="name", and the types
  // then named with type<Event>(). A refused call (see above) returns a
  // handle that is false and reports nothing.
  prometheus_bus add(const bus& b, std::string name) {
    std::lock_guard<std::mutex> lock(mutex_);
    const char* why = check_name(name, "sluice: a bus needs a non-empty name in the exporter");
    for (const auto& w : buses_) {
      if (w.object == &b) why = "sluice: this bus is already in the exporter";
      if (w.name == name) why = "sluice: two buses with one name in the exporter";
    }
    if (why != nullptr) {
      refuse(why);
      return prometheus_bus(nullptr, 0);
    }
    const std::uint64_t id = ++registrations_;
    buses_.push_back(watched_bus{std::move(name), &b, id, {}});
    return prometheus_bus(this, id);
  }

  // Reports a recorder's counters (anything whose stats() returns a
  // sluice::recorder_stats) with the label recorder="name". False when
  // refused (see above).
  template <class Recorder>
  bool add(const Recorder& r, std::string name) {
    static_assert(std::is_same_v<decltype(r.stats()), recorder_stats>,
                  "sluice: the exporter reports a bus, or a recorder (stats() returning "
                  "sluice::recorder_stats)");
    std::lock_guard<std::mutex> lock(mutex_);
    const char* why = check_name(name, "sluice: a recorder needs a non-empty name in the exporter");
    for (const auto& w : recorders_) {
      if (w.object == &r) why = "sluice: this recorder is already in the exporter";
      if (w.name == name) why = "sluice: two recorders with one name in the exporter";
    }
    if (why != nullptr) {
      refuse(why);
      return false;
    }
    watched_recorder w{std::move(name), &r,
                       [](const void* o) { return static_cast<const Recorder*>(o)->stats(); },
                       nullptr};
    if constexpr (has_sync_durations<Recorder>::value)
      w.sync_durations = [](const void* o) {
        return static_cast<const Recorder*>(o)->sync_durations();
      };
    recorders_.push_back(std::move(w));
    return true;
  }

  // Stops reporting b (or a recorder). Returns whether it was reported. A
  // handle add(b, ...) returned refuses later type() calls.
  bool remove(const bus& b) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = buses_.begin(); it != buses_.end(); ++it) {
      if (it->object != &b) continue;
      buses_.erase(it);
      return true;
    }
    return false;
  }
  template <class Recorder>
  bool remove(const Recorder& r) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = recorders_.begin(); it != recorders_.end(); ++it) {
      if (it->object != &r) continue;
      recorders_.erase(it);
      return true;
    }
    return false;
  }

  // The last refusal's reason (nullptr when nothing was refused yet).
  [[nodiscard]] const char* error() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return error_;
  }

  // Every reported metric, one family after another (each family's samples
  // together, as the format requires), ending with a newline; empty when
  // nothing is reported. render_to() replaces `out`'s contents, reusing its
  // memory (a server that renders every scrape into one string).
  [[nodiscard]] std::string render() const {
    std::string out;
    render_to(out);
    return out;
  }
  // What render() reports, as plain values (see metrics_snapshot).
  [[nodiscard]] metrics_snapshot snapshot() const {
    metrics_snapshot s;
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& b : buses_) {
      metrics_snapshot::bus_entry e;
      e.bus = b.name;
      e.workers = b.object->workers();
      e.workers_parked = b.object->parked_workers();
      for (std::size_t i = 0; i < b.object->lane_count(); ++i) e.lanes.push_back(b.object->lane(i));
      s.buses.push_back(std::move(e));
      const bool timed = b.object->options().latency_sample_every != 0;
      for (const auto& t : b.types) {
        s.types.push_back({b.name, t.name, t.read(*b.object), timed, {}, {}});
        if (timed) s.types.back().latency = t.latency(*b.object);
        s.types.back().subscriptions = t.subscriptions(*b.object);
      }
    }
    for (const auto& r : recorders_) {
      metrics_snapshot::recorder_entry e;
      e.recorder = r.name;
      e.stats = r.read(r.object);
      if (r.sync_durations != nullptr) {
        e.has_sync_durations = true;
        e.sync_durations = r.sync_durations(r.object);
      }
      s.recorders.push_back(std::move(e));
    }
    return s;
  }

  void render_to(std::string& out) const {
    std::lock_guard<std::mutex> lock(mutex_);
    out.clear();
    render_types(out);
    render_latency(out);
    render_subscriptions(out);
    render_lanes(out);
    render_recorders(out);
  }

 private:
  friend class prometheus_bus;

  void add_type(std::uint64_t id, std::string name, type_stats (*read)(const bus&),
                type_latency (*latency)(const bus&),
                std::vector<subscription_info> (*subscriptions)(const bus&)) {
    std::lock_guard<std::mutex> lock(mutex_);
    const char* why = check_name(name, "sluice: a type needs a non-empty name in the exporter");
    watched_bus* w = nullptr;
    for (auto& x : buses_)
      if (x.id == id) w = &x;
    if (w == nullptr) why = "sluice: this bus is no longer in the exporter";
    if (why == nullptr)
      for (const auto& t : w->types)
        if (t.name == name) why = "sluice: two types with one name on a bus in the exporter";
    if (why != nullptr) {
      refuse(why);
      return;
    }
    w->types.push_back(watched_type{std::move(name), read, latency, subscriptions});
  }

  // One family: its name after the prefix, type, help text.
  struct family {
    const char* name;
    const char* kind;
    const char* help;
  };
  // A family whose value is one field of a statistics struct S.
  template <class S, class T>
  struct field_family {
    family f;
    T S::*value;
  };

  struct watched_type {
    std::string name;
    type_stats (*read)(const bus&);
    type_latency (*latency)(const bus&);
    std::vector<subscription_info> (*subscriptions)(const bus&);
  };
  struct watched_bus {
    std::string name;
    const bus* object;
    std::uint64_t id;  // the registration's number (prometheus_bus)
    std::vector<watched_type> types;
  };
  struct watched_recorder {
    std::string name;
    const void* object;
    recorder_stats (*read)(const void*);
    duration_histogram (*sync_durations)(const void*);  // nullptr: it keeps none
  };
  template <class R, class = void>
  struct has_sync_durations : std::false_type {};
  template <class R>
  struct has_sync_durations<
      R, std::enable_if_t<std::is_same_v<decltype(std::declval<const R&>().sync_durations()),
                                         duration_histogram>>> : std::true_type {};

  // A histogram of durations in ns as a Prometheus histogram in seconds. Its
  // `le` bounds are the upper edges of the histogram's buckets nearest to 1,
  // 2.5 and 5 times each power of ten from 1 us to 100 s (1000 ns lies in
  // the bucket [1000, 1007], so the first bound is 1.007e-06), then +Inf:
  // each `le` count is exact, values <= le, as Prometheus defines it.
  // `labels` come before `le`.
  // With `from_100ns`, three more bounds come first: 100, 250 and 500 ns
  // (an event's queue wait and handler call are often shorter than 1 us).
  void histogram_samples(std::string& out, const family& f, const std::string& labels,
                         const duration_histogram& h, bool from_100ns = false) const {
    static const std::uint64_t nominal_ns[] = {
        100,        250,        500,        1000,        2500,        5000,        10000,
        25000,      50000,      100000,     250000,      500000,      1000000,     2500000,
        5000000,    10000000,   25000000,   50000000,    100000000,   250000000,   500000000,
        1000000000, 2500000000, 5000000000, 10000000000, 25000000000, 50000000000, 100000000000};
    const std::string name = prefix_ + '_' + f.name;
    char num[40];
    for (const std::uint64_t ns : nominal_ns) {
      if (ns < 1000 && !from_100ns) continue;
      const std::uint64_t edge = duration_histogram::upper_bound(duration_histogram::index_of(ns));
      std::snprintf(num, sizeof num, "%.12g", static_cast<double>(edge) / 1e9);
      out += name + "_bucket{" + labels + ",le=\"" + num + "\"} ";
      out += std::to_string(h.count_at_most(edge));
      out += '\n';
    }
    out += name + "_bucket{" + labels + ",le=\"+Inf\"} " + std::to_string(h.count()) + '\n';
    std::snprintf(num, sizeof num, "%.9f", static_cast<double>(h.sum()) / 1e9);
    out += name + "_sum{" + labels + "} " + num + '\n';
    out += name + "_count{" + labels + "} " + std::to_string(h.count()) + '\n';
  }

  static bool metric_name(const std::string& s) noexcept {
    if (s.empty()) return false;
    for (std::size_t i = 0; i < s.size(); ++i) {
      const char c = s[i];
      const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
      if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
    }
    return true;
  }

  // Why `name` cannot be a label value (nullptr when it can): empty (then
  // `if_empty` says why), or not UTF-8, which a scrape would reject.
  static const char* check_name(const std::string& name, const char* if_empty) noexcept {
    if (name.empty()) return if_empty;
    if (!detail::utf8_valid(name)) return "sluice: a name in the exporter must be UTF-8";
    return nullptr;
  }

  void refuse(const char* why) {
    error_ = why;
#if SLUICE_HAS_EXCEPTIONS
    throw std::invalid_argument(why);
#endif
  }

  // "# HELP name help" and "# TYPE name kind".
  void header(std::string& out, const family& f) const {
    const char* what[2][2] = {{"# HELP ", f.help}, {"# TYPE ", f.kind}};
    for (const auto& w : what) {
      out += w[0];
      out += prefix_;
      out += '_';
      out += f.name;
      out += ' ';
      out += w[1];
      out += '\n';
    }
  }

  // A label value with \, " and newline escaped.
  static void label(std::string& out, const char* key, const std::string& value, bool first) {
    if (!first) out += ',';
    out += key;
    out += "=\"";
    for (const char c : value) {
      if (c == '\\') {
        out += "\\\\";
      } else if (c == '"') {
        out += "\\\"";
      } else if (c == '\n') {
        out += "\\n";
      } else {
        out += c;
      }
    }
    out += '"';
  }

  void sample_start(std::string& out, const family& f) const {
    out += prefix_;
    out += '_';
    out += f.name;
    out += '{';
  }
  static void sample_end(std::string& out, std::uint64_t v) {
    out += "} ";
    out += std::to_string(v);
    out += '\n';
  }

  void render_types(std::string& out) const {
    struct by_type {
      family f;
      std::uint64_t (*value)(const type_stats&);
    };
    static const by_type plain[] = {
        {{"events_published_total", "counter",
          "Events accepted by publish (those dropped by drop_newest included), or made by a "
          "transform stage."},
         [](const type_stats& s) { return s.published; }},
        {{"events_rejected_total", "counter",
          "Events refused by publish (lane full, or the bus stopped): never accepted."},
         [](const type_stats& s) { return s.rejected; }},
        {{"events_in_flight", "gauge",
          "Events accepted and not yet settled (queued or being delivered); 0 after stop()."},
         [](const type_stats& s) {
           const std::uint64_t settled = s.settled();
           return s.published > settled ? s.published - settled : std::uint64_t{0};
         }},
        {{"handler_calls_total", "counter", "Handler calls made for queued events."},
         [](const type_stats& s) { return s.handler_calls; }},
        {{"handler_failures_total", "counter",
          "Failed handler calls (thrown, failed outcome, nested too deep)."},
         [](const type_stats& s) { return s.failed; }},
    };
    struct fate {
      const char* name;
      std::uint64_t (*value)(const type_stats&);
    };
    static const fate fates[] = {
        {"delivered", [](const type_stats& s) { return s.delivered; }},
        {"filtered", [](const type_stats& s) { return s.filtered; }},
        {"transformed", [](const type_stats& s) { return s.transformed; }},
        {"dropped", [](const type_stats& s) { return s.dropped; }},
        {"unrouted", [](const type_stats& s) { return s.unrouted; }},
        {"dead_lettered", [](const type_stats& s) { return s.dead_lettered; }},
        {"discarded", [](const type_stats& s) { return s.discarded; }},
    };
    static const family settled{
        "events_settled_total", "counter",
        "Accepted events that reached their end, by fate; summed over fates it equals "
        "events_published_total once the bus is stopped."};

    // Read each type once, then write family by family.
    std::vector<type_stats> read;
    for (const auto& b : buses_)
      for (const auto& t : b.types) read.push_back(t.read(*b.object));
    if (read.empty()) return;
    auto each = [&](auto&& fn) {
      std::size_t i = 0;
      for (const auto& b : buses_)
        for (const auto& t : b.types) fn(b, t, read[i++]);
    };
    for (const by_type& p : plain) {
      header(out, p.f);
      each([&](const watched_bus& b, const watched_type& t, const type_stats& s) {
        sample_start(out, p.f);
        label(out, "bus", b.name, true);
        label(out, "type", t.name, false);
        sample_end(out, p.value(s));
      });
    }
    header(out, settled);
    each([&](const watched_bus& b, const watched_type& t, const type_stats& s) {
      for (const fate& f : fates) {
        sample_start(out, settled);
        label(out, "bus", b.name, true);
        label(out, "type", t.name, false);
        label(out, "fate", f.name, false);
        sample_end(out, f.value(s));
      }
    });
  }

  // The latency histograms of the named types of buses that keep them.
  void render_latency(std::string& out) const {
    static const family queue_wait{"event_queue_wait_seconds", "histogram",
                                   "Publish to the start of delivery, of the events timed (one in "
                                   "bus_options::latency_sample_every per lane)."};
    static const family handler{
        "handler_duration_seconds", "histogram",
        "Handler calls of the events timed, over the type's subscriptions."};
    std::vector<type_latency> read;
    for (const auto& b : buses_)
      if (b.object->options().latency_sample_every != 0)
        for (const auto& t : b.types) read.push_back(t.latency(*b.object));
    if (read.empty()) return;
    const family* families[] = {&queue_wait, &handler};
    for (const family* f : families) {
      header(out, *f);
      std::size_t i = 0;
      for (const auto& b : buses_) {
        if (b.object->options().latency_sample_every == 0) continue;
        for (const auto& t : b.types) {
          std::string labels;
          label(labels, "bus", b.name, true);
          label(labels, "type", t.name, false);
          const type_latency& l = read[i++];
          histogram_samples(out, *f, labels, f == &queue_wait ? l.queue_wait : l.handler, true);
        }
      }
    }
  }

  // The failure-policy counts of the named subscriptions of the named
  // types (several of one name on a type are summed, with the worst
  // breaker state; unnamed ones, and names that are not UTF-8, are left
  // out: their failures count in the type's families).
  void render_subscriptions(std::string& out) const {
    struct row {
      const watched_bus* b;
      const watched_type* t;
      subscription_info s;
    };
    std::vector<row> rows;
    for (const auto& b : buses_)
      for (const auto& t : b.types)
        for (subscription_info& s : t.subscriptions(*b.object)) {
          // (A name that is not UTF-8 would make the whole scrape fail.)
          if (s.name.empty() || !detail::utf8_valid(s.name)) continue;
          auto same = std::find_if(rows.begin(), rows.end(), [&](const row& x) {
            return x.b == &b && x.t == &t && x.s.name == s.name;
          });
          if (same == rows.end()) {
            rows.push_back({&b, &t, std::move(s)});
            continue;
          }
          subscription_stats& into = same->s.stats;
          for (std::uint64_t subscription_stats::*f : summed) into.*f += s.stats.*f;
          // The worst of their breakers: open, then half-open, then closed.
          auto rank = [](breaker_state x) {
            return x == breaker_state::open ? 2 : x == breaker_state::half_open ? 1 : 0;
          };
          if (rank(s.stats.breaker) > rank(into.breaker)) into.breaker = s.stats.breaker;
        }
    if (rows.empty()) return;
    static const field_family<subscription_stats, std::uint64_t> fields[] = {
        {{"subscription_failed_calls_total", "counter", "Failed calls of the handler."},
         &subscription_stats::failed},
        {{"subscription_retries_total", "counter", "Calls that were retries."},
         &subscription_stats::retried},
        {{"subscription_recovered_total", "counter", "Events that failed, then succeeded."},
         &subscription_stats::recovered},
        {{"subscription_dead_lettered_total", "counter", "Events it dead-lettered."},
         &subscription_stats::dead_lettered},
        {{"subscription_retrying", "gauge", "Events waiting for a retry now."},
         &subscription_stats::retrying},
        {{"subscription_held", "gauge", "Events held behind a retry of their key now."},
         &subscription_stats::held},
        {{"subscription_short_circuited_total", "counter",
          "Attempts not made: its circuit breaker was open."},
         &subscription_stats::short_circuited},
        {{"subscription_breaker_opens_total", "counter", "Times its circuit breaker opened."},
         &subscription_stats::breaker_opens},
    };
    auto labels = [&](const row& r, const family& f) {
      sample_start(out, f);
      label(out, "bus", r.b->name, true);
      label(out, "type", r.t->name, false);
      label(out, "subscription", r.s.name, false);
    };
    for (const auto& f : fields) {
      header(out, f.f);
      for (const row& r : rows) {
        labels(r, f.f);
        sample_end(out, r.s.stats.*f.value);
      }
    }
    static const family state{"subscription_breaker_state", "gauge",
                              "1 for the state its circuit breaker is in, 0 for the others."};
    header(out, state);
    for (const row& r : rows)
      for (const breaker_state s :
           {breaker_state::closed, breaker_state::open, breaker_state::half_open}) {
        labels(r, state);
        label(out, "state", to_string(s), false);
        sample_end(out, r.s.stats.breaker == s ? 1 : 0);
      }
  }
  static constexpr std::uint64_t subscription_stats::*summed[] = {
      &subscription_stats::failed,          &subscription_stats::retried,
      &subscription_stats::recovered,       &subscription_stats::dead_lettered,
      &subscription_stats::retrying,        &subscription_stats::held,
      &subscription_stats::short_circuited, &subscription_stats::breaker_opens};

  void render_lanes(std::string& out) const {
    if (buses_.empty()) return;
    struct by_bus {
      family f;
      std::size_t (bus::*value)() const noexcept;
    };
    static const by_bus whole[] = {
        {{"workers", "gauge", "Worker threads the bus runs (0 when polled)."}, &bus::workers},
        {{"workers_parked", "gauge", "Workers asleep waiting for events now (or about to be)."},
         &bus::parked_workers},
    };
    for (const by_bus& w : whole) {
      header(out, w.f);
      for (const auto& b : buses_) {
        sample_start(out, w.f);
        label(out, "bus", b.name, true);
        sample_end(out, ((*b.object).*w.value)());
      }
    }
    static const field_family<lane_stats, std::size_t> lanes[] = {
        {{"lane_depth", "gauge", "Events queued in the lane now (not those being delivered)."},
         &lane_stats::depth},
        {{"lane_high_water", "gauge", "Most events ever queued in the lane at once."},
         &lane_stats::high_water},
        {{"lane_capacity", "gauge", "The lane's exact bound, in events."}, &lane_stats::capacity},
        {{"lane_delayed", "gauge", "Events published with a delay, waiting for their time."},
         &lane_stats::delayed},
    };
    // Read each lane once.
    std::vector<lane_stats> read;
    for (const auto& b : buses_)
      for (std::size_t i = 0; i < b.object->lane_count(); ++i) read.push_back(b.object->lane(i));
    for (const auto& l : lanes) {
      header(out, l.f);
      std::size_t k = 0;
      for (const auto& b : buses_) {
        for (std::size_t i = 0; i < b.object->lane_count(); ++i) {
          sample_start(out, l.f);
          label(out, "bus", b.name, true);
          label(out, "lane", std::to_string(i), false);
          sample_end(out, read[k++].*l.value);
        }
      }
    }
  }

  void render_recorders(std::string& out) const {
    if (recorders_.empty()) return;
    static const field_family<recorder_stats, std::uint64_t> fields[] = {
        {{"recorder_recorded_records_total", "counter", "Records put in the recorder's buffer."},
         &recorder_stats::recorded},
        {{"recorder_written_records_total", "counter", "Records appended to the sink."},
         &recorder_stats::written},
        {{"recorder_synced_records_total", "counter",
          "Records known durable (covered by a successful sync)."},
         &recorder_stats::synced},
        {{"recorder_unrecorded_events_total", "counter",
          "Events not recorded because their type has no codec."},
         &recorder_stats::unrecorded},
        {{"recorder_written_bytes_total", "counter", "Bytes appended to the sink."},
         &recorder_stats::bytes},
        {{"recorder_appends_total", "counter", "Appends to the sink (batches)."},
         &recorder_stats::batches},
        {{"recorder_syncs_total", "counter", "Successful syncs."}, &recorder_stats::syncs},
        {{"recorder_append_failures_total", "counter", "Appends that failed, wholly or in part."},
         &recorder_stats::append_failures},
        {{"recorder_sync_failures_total", "counter", "Syncs that failed."},
         &recorder_stats::sync_failures},
        {{"recorder_unacknowledged_losses", "gauge",
          "Lost records not yet acknowledged with acknowledge_losses()."},
         &recorder_stats::unacknowledged},
    };
    struct reason {
      const char* name;
      std::uint64_t recorder_stats::*value;
    };
    static const reason reasons[] = {
        {"dropped", &recorder_stats::dropped},
        {"rejected", &recorder_stats::rejected},
        {"append_failed", &recorder_stats::failed},
        {"sync_failed", &recorder_stats::unsynced},
    };
    static const family lost{"recorder_lost_records_total", "counter",
                             "Records lost, by reason: buffer full or recorder closed (dropped), "
                             "refused by the codec or sink (rejected), append failed, sync failed "
                             "(durability unknown)."};
    std::vector<recorder_stats> read;
    for (const auto& r : recorders_) read.push_back(r.read(r.object));
    for (const auto& f : fields) {
      header(out, f.f);
      for (std::size_t i = 0; i < recorders_.size(); ++i) {
        sample_start(out, f.f);
        label(out, "recorder", recorders_[i].name, true);
        sample_end(out, read[i].*f.value);
      }
    }
    header(out, lost);
    for (std::size_t i = 0; i < recorders_.size(); ++i) {
      for (const reason& r : reasons) {
        sample_start(out, lost);
        label(out, "recorder", recorders_[i].name, true);
        label(out, "reason", r.name, false);
        sample_end(out, read[i].*r.value);
      }
    }
    static const family sync_duration{"recorder_sync_duration_seconds", "histogram",
                                      "How long the recorder's syncs took, failed ones included."};
    bool any = false;
    for (const auto& r : recorders_) any = any || r.sync_durations != nullptr;
    if (!any) return;
    header(out, sync_duration);
    for (const auto& r : recorders_) {
      if (r.sync_durations == nullptr) continue;
      std::string labels;
      label(labels, "recorder", r.name, true);
      histogram_samples(out, sync_duration, labels, r.sync_durations(r.object));
    }
  }

  mutable std::mutex mutex_;
  std::string prefix_;
  std::vector<watched_bus> buses_;
  std::uint64_t registrations_ = 0;  // add(bus) calls that were taken
  std::vector<watched_recorder> recorders_;
  const char* error_ = nullptr;
};

template <class Event>
prometheus_bus prometheus_bus::type(std::string name) const {
  if (owner_ != nullptr)
    owner_->add_type(
        id_, std::move(name), [](const bus& b) { return b.stats<Event>(); },
        [](const bus& b) { return b.latency<Event>(); },
        [](const bus& b) { return b.subscriptions<Event>(); });
  return *this;
}

}  // namespace SLUICE_ABI
}  // namespace sluice
