// sluice — what a metrics exporter reports, as plain values, and as JSON
// (from prometheus_exporter::snapshot(), <sluice/metrics/prometheus.hpp>).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../detail/text.hpp"
#include "../resilience.hpp"
#include "../stats.hpp"
#include "../storage/record_options.hpp"
#include "histogram.hpp"

namespace sluice {
inline namespace SLUICE_ABI {

// Everything an exporter reports, read at one call into plain values (each
// value read on its own, as render() reads them), for a program's own
// dashboards, logs or tests.
struct metrics_snapshot {
  struct type_entry {
    std::string bus, type;
    type_stats stats;
    bool has_latency = false;                      // the bus keeps latency histograms
    type_latency latency;                          // ns; empty when has_latency is false
    std::vector<subscription_info> subscriptions;  // bus::subscriptions<Event>()
  };
  struct bus_entry {
    std::string bus;
    std::size_t workers = 0, workers_parked = 0;
    std::vector<lane_stats> lanes;  // by lane index
  };
  struct recorder_entry {
    std::string recorder;
    recorder_stats stats;
    bool has_sync_durations = false;
    duration_histogram sync_durations;  // ns; empty when has_sync_durations is false
  };
  std::vector<bus_entry> buses;
  std::vector<type_entry> types;
  std::vector<recorder_entry> recorders;

  // One JSON object: {"buses": [{"bus", "workers", "workers_parked",
  // "lanes": [{"depth", "high_water", "capacity"}], "types": [{"type",
  // "published", ..., "in_flight", and with latency histograms
  // "queue_wait_ns" and "handler_ns": {"count", "mean", "p50", "p90",
  // "p99", "p999", "max"}, "subscriptions": [{"name", "active", "failed",
  // "retried", "recovered", "dead_lettered", "retrying", "held",
  // "short_circuited", "breaker_opens", "breaker"}]}]}], "recorders":
  // [{"recorder", "recorded", ..., "sync_duration_ns": {the same}}]}.
  // Names are escaped as JSON strings (detail::json_escape).
  [[nodiscard]] std::string to_json() const {
    std::string o = "{\"buses\": [";
    for (std::size_t i = 0; i < buses.size(); ++i) {
      const bus_entry& b = buses[i];
      o += i ? ", {" : "{";
      o += "\"bus\": " + quote(b.bus) + ", \"workers\": " + std::to_string(b.workers) +
           ", \"workers_parked\": " + std::to_string(b.workers_parked) + ", \"lanes\": [";
      for (std::size_t k = 0; k < b.lanes.size(); ++k)
        o += std::string(k ? ", " : "") + "{\"depth\": " + std::to_string(b.lanes[k].depth) +
             ", \"high_water\": " + std::to_string(b.lanes[k].high_water) +
             ", \"capacity\": " + std::to_string(b.lanes[k].capacity) +
             ", \"delayed\": " + std::to_string(b.lanes[k].delayed) + "}";
      o += "], \"types\": [";
      bool first = true;
      for (const type_entry& t : types) {
        if (t.bus != b.bus) continue;
        const type_stats& x = t.stats;
        const std::uint64_t settled = x.settled();
        const std::pair<const char*, std::uint64_t> fields[] = {
            {"published", x.published},
            {"delivered", x.delivered},
            {"filtered", x.filtered},
            {"transformed", x.transformed},
            {"dropped", x.dropped},
            {"unrouted", x.unrouted},
            {"dead_lettered", x.dead_lettered},
            {"discarded", x.discarded},
            {"rejected", x.rejected},
            {"failed", x.failed},
            {"handler_calls", x.handler_calls},
            {"in_flight", x.published > settled ? x.published - settled : 0}};
        o += std::string(first ? "" : ", ") + "{\"type\": " + quote(t.type);
        for (const auto& f : fields)
          o += std::string(", \"") + f.first + "\": " + std::to_string(f.second);
        if (t.has_latency) {
          o += ", \"queue_wait_ns\": " + summary(t.latency.queue_wait);
          o += ", \"handler_ns\": " + summary(t.latency.handler);
        }
        o += ", \"subscriptions\": [";
        for (std::size_t k = 0; k < t.subscriptions.size(); ++k) {
          const subscription_info& s = t.subscriptions[k];
          const subscription_stats& y = s.stats;
          const std::pair<const char*, std::uint64_t> counts[] = {
              {"failed", y.failed},
              {"retried", y.retried},
              {"recovered", y.recovered},
              {"dead_lettered", y.dead_lettered},
              {"retrying", y.retrying},
              {"held", y.held},
              {"short_circuited", y.short_circuited},
              {"breaker_opens", y.breaker_opens}};
          o += std::string(k ? ", " : "") + "{\"name\": " + quote(s.name) +
               ", \"active\": " + (s.active ? "true" : "false");
          for (const auto& f : counts)
            o += std::string(", \"") + f.first + "\": " + std::to_string(f.second);
          o += std::string(", \"breaker\": \"") + to_string(y.breaker) + "\"}";
        }
        o += "]";
        o += "}";
        first = false;
      }
      o += "]}";
    }
    o += "], \"recorders\": [";
    for (std::size_t i = 0; i < recorders.size(); ++i) {
      const recorder_entry& r = recorders[i];
      const recorder_stats& x = r.stats;
      const std::pair<const char*, std::uint64_t> fields[] = {
          {"recorded", x.recorded},
          {"written", x.written},
          {"synced", x.synced},
          {"dropped", x.dropped},
          {"unrecorded", x.unrecorded},
          {"rejected", x.rejected},
          {"failed", x.failed},
          {"unsynced", x.unsynced},
          {"bytes", x.bytes},
          {"batches", x.batches},
          {"syncs", x.syncs},
          {"append_failures", x.append_failures},
          {"sync_failures", x.sync_failures},
          {"unacknowledged", x.unacknowledged}};
      o += std::string(i ? ", " : "") + "{\"recorder\": " + quote(r.recorder);
      for (const auto& f : fields)
        o += std::string(", \"") + f.first + "\": " + std::to_string(f.second);
      if (r.has_sync_durations) o += ", \"sync_duration_ns\": " + summary(r.sync_durations);
      o += "}";
    }
    return o + "]}";
  }

 private:
  // {"count", "mean", "p50", "p90", "p99", "p999", "max"} of a histogram.
  static std::string summary(const duration_histogram& h) {
    char mean[40];
    std::snprintf(mean, sizeof mean, "%.0f", h.mean());
    return "{\"count\": " + std::to_string(h.count()) + ", \"mean\": " + mean +
           ", \"p50\": " + std::to_string(h.percentile(0.5)) +
           ", \"p90\": " + std::to_string(h.percentile(0.9)) +
           ", \"p99\": " + std::to_string(h.percentile(0.99)) +
           ", \"p999\": " + std::to_string(h.percentile(0.999)) +
           ", \"max\": " + std::to_string(h.max()) + "}";
  }
  static std::string quote(const std::string& v) {
    std::string o = "\"";
    detail::json_escape(o, v);
    return o + "\"";
  }
};

}  // namespace SLUICE_ABI
}  // namespace sluice
