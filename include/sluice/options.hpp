// sluice — how a bus is made. Options are plain values checked once when the
// bus is constructed: an impossible combination is reported by
// bus_options::validate() as a message; the bus constructor throws
// std::invalid_argument with it (without exceptions: bus::valid() is false).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "config.hpp"
#include "errors.hpp"
#include "observer.hpp"
#include "resilience.hpp"

namespace sluice {
inline namespace SLUICE_ABI {

class tracer;  // tracer.hpp

// What publish does when the target lane holds `lane_capacity` events.
enum class full_policy : std::uint8_t {
  block,        // spin, yield, then park until there is room or the bus stops
  drop_newest,  // count the event as dropped and return publish_result::dropped
  reject,       // return publish_result::full; the event was not accepted
};

[[nodiscard]] constexpr const char* to_string(full_policy p) noexcept {
  switch (p) {
    case full_policy::block:
      return "block";
    case full_policy::drop_newest:
      return "drop_newest";
    case full_policy::reject:
      return "reject";
  }
  return "unknown";
}

struct bus_options {
  // Number of lanes (queues). Keys hash onto lanes; a lane is drained by one
  // thread at a time, so more lanes allow more workers to run in parallel.
  std::size_t lanes = 4;
  // Exact number of events one lane holds; publish never exceeds it.
  std::size_t lane_capacity = 8192;
  // Default full behaviour; a producer may override it.
  full_policy policy = full_policy::block;
  // Producers expected at once (pre-allocates queue blocks for them; more may
  // be made, at the cost of an allocation when they first publish).
  std::size_t expected_producers = 8;
  // Places a producer reserves in a lane at once; it publishes into them
  // without touching the lane's shared count (one update per chunk instead
  // of one per event). 0: automatic, min(32, lane_capacity / (8 *
  // expected_producers)), at least 1. 1: one reservation per publish. The
  // bound stays exact: a lane never holds more than lane_capacity events;
  // but places another producer holds unused count as taken, so a publish
  // may find a lane full while it holds fewer (see docs/performance.md).
  std::size_t reserve_chunk = 0;
  // Stamp each event with the steady clock at publish (a time-stamp counter
  // read where it is invariant; see docs/performance.md).
  bool stamp_time = true;
  // Events published with a delay (publish_after) that one lane holds at
  // most while they wait; its timing wheel is allocated (about 128 bytes
  // per event) on the first publish_after into the lane. 0: publish_after
  // is refused (publish_result::full).
  std::size_t delayed_capacity = 1024;
  // The failure policy of subscriptions made without one (resilience.hpp;
  // the default only counts and reports failures).
  failure_policy default_failure_policy;
  // Retries one lane holds at most while they wait; its retry wheel is
  // allocated on the first retry in the lane. A failure that finds it full
  // is not retried (the policy's end comes at once).
  std::size_t retry_capacity = 1024;
  // Called (on the thread that ran the handler) for each failed handler call.
  // Must not throw. Empty: failures are only counted.
  std::function<void(const failure_info&)> on_failure;
  // Latency histograms (docs/monitoring.md): 0, off; N, one event in N of
  // each type drained from each lane is timed, its queue wait (publish to
  // delivery, with stamp_time) per type and each handler call per
  // subscription. 1 times every event.
  std::uint32_t latency_sample_every = 0;
  // Told of every publish, drop, refusal, handler call and failure
  // (observer.hpp); nullptr: nobody. With one set, every event is timed.
  std::shared_ptr<bus_observer> observer;
  // Records one flow in tracer::sample_every() for a Chrome trace
  // (tracer.hpp); nullptr: no tracing.
  std::shared_ptr<sluice::tracer> tracer;

  bus_options& with_lanes(std::size_t n) {
    lanes = n;
    return *this;
  }
  bus_options& with_lane_capacity(std::size_t n) {
    lane_capacity = n;
    return *this;
  }
  bus_options& with_policy(full_policy p) {
    policy = p;
    return *this;
  }
  bus_options& with_expected_producers(std::size_t n) {
    expected_producers = n;
    return *this;
  }
  bus_options& with_reserve_chunk(std::size_t n) {
    reserve_chunk = n;
    return *this;
  }
  bus_options& with_stamp_time(bool on) {
    stamp_time = on;
    return *this;
  }
  bus_options& with_delayed_capacity(std::size_t n) {
    delayed_capacity = n;
    return *this;
  }
  bus_options& with_default_failure_policy(failure_policy p) {
    default_failure_policy = p;
    return *this;
  }
  bus_options& with_retry_capacity(std::size_t n) {
    retry_capacity = n;
    return *this;
  }
  bus_options& with_on_failure(std::function<void(const failure_info&)> f) {
    on_failure = std::move(f);
    return *this;
  }
  bus_options& with_latency_metrics(std::uint32_t one_in = 1) {
    latency_sample_every = one_in;
    return *this;
  }
  bus_options& with_observer(std::shared_ptr<bus_observer> o) {
    observer = std::move(o);
    return *this;
  }
  bus_options& with_tracer(std::shared_ptr<sluice::tracer> t) {
    tracer = std::move(t);
    return *this;
  }

  // nullptr when the options are usable, else a message saying what is wrong.
  [[nodiscard]] const char* validate() const noexcept {
    if (lanes == 0) return "sluice: bus_options::lanes must be at least 1";
    if (lanes > 4096) return "sluice: bus_options::lanes must be at most 4096";
    if (lane_capacity == 0) return "sluice: bus_options::lane_capacity must be at least 1";
    if (lane_capacity > (std::size_t{1} << 30))
      return "sluice: bus_options::lane_capacity must be at most 2^30";
    if (policy != full_policy::block && policy != full_policy::drop_newest &&
        policy != full_policy::reject)
      return "sluice: bus_options::policy is not a full_policy value";
    if (reserve_chunk > lane_capacity)
      return "sluice: bus_options::reserve_chunk must be at most lane_capacity";
    if (reserve_chunk > 4096) return "sluice: bus_options::reserve_chunk must be at most 4096";
    if (delayed_capacity > (std::size_t{1} << 30))
      return "sluice: bus_options::delayed_capacity must be at most 2^30";
    if (retry_capacity == 0) return "sluice: bus_options::retry_capacity must be at least 1";
    if (retry_capacity > (std::size_t{1} << 30))
      return "sluice: bus_options::retry_capacity must be at most 2^30";
    if (const char* why = default_failure_policy.validate()) return why;
    if (expected_producers > 4096)
      return "sluice: bus_options::expected_producers must be at most 4096";
    return nullptr;
  }
};

// Per-producer settings.
struct producer_options {
  bool override_policy = false;
  full_policy policy = full_policy::block;
  // Marks every event as replayed (metadata::replayed): what a log replay uses.
  // Recorders do not store replayed events again.
  bool replayed = false;
  // Marks every event as bridged (metadata::bridged): what an inbound bridge
  // uses. Recorders (so outbound bridges) do not store bridged events.
  bool bridged = false;
  // Marks every event as redriven (metadata::redriven): what a dead-letter
  // log's redrive uses.
  bool redriven = false;

  static producer_options with_policy(full_policy p) {
    producer_options o;
    o.override_policy = true;
    o.policy = p;
    return o;
  }
};

// How stop() ends a bus.
enum class stop_mode : std::uint8_t {
  drain,    // deliver every accepted event first
  discard,  // destroy what is still queued, counting it as discarded
};

}  // namespace SLUICE_ABI
}  // namespace sluice
