// sluice — counters. Snapshots are plain values; reading them never stops the
// bus. During a run the fields are read one by one (not one atomic snapshot);
// after stop() returns they are exact and satisfy
//   published == delivered + filtered + transformed + dropped + unrouted
//                + dead_lettered + discarded.
#pragma once

#include <cstddef>
#include <cstdint>

#include "config.hpp"
#include "metrics/histogram.hpp"

namespace sluice {
inline namespace SLUICE_ABI {

struct type_stats {
  std::uint64_t published = 0;      // accepted by publish (includes dropped), or made by a
                                    // transform stage from another type
  std::uint64_t delivered = 0;      // handed to at least one handler
  std::uint64_t filtered = 0;       // removed by a filter stage, an empty transform, or a
                                    // stage that failed
  std::uint64_t dropped = 0;        // discarded by the drop_newest policy
  std::uint64_t unrouted = 0;       // no subscriber (on its channel) when it was drained
  std::uint64_t transformed = 0;    // became another type's event in a transform stage
  std::uint64_t dead_lettered = 0;  // moved to a dead-letter channel (failure policy)
  std::uint64_t discarded = 0;      // still queued when stop(discard) ran
  std::uint64_t rejected = 0;       // refused (full or stopped): not accepted, not in the equation
  std::uint64_t failed = 0;         // failed handler calls (an event may fail several)
  std::uint64_t handler_calls = 0;  // handler calls made for queued events

  [[nodiscard]] std::uint64_t settled() const noexcept {
    return delivered + filtered + transformed + dropped + unrouted + dead_lettered + discarded;
  }
  // True when every accepted event has an end (true after stop()).
  [[nodiscard]] bool balanced() const noexcept { return published == settled(); }
};

// One event type's latency histograms (bus_options::latency_sample_every),
// in nanoseconds, over the events that were timed (one in N per lane and type),
// merged over the lanes. Empty when latency metrics are off.
struct type_latency {
  // Publish to the start of its delivery (events stamped in this process:
  // stamp_time on, not replayed or bridged; publish_after's delay included).
  duration_histogram queue_wait;
  // Each handler call of a timed event, over the type's subscriptions that
  // still exist (subscription::handler_time() has one's own).
  duration_histogram handler;
};

struct lane_stats {
  std::size_t depth = 0;       // events queued now (not those being delivered)
  std::size_t high_water = 0;  // most events ever queued at once
  std::size_t capacity = 0;    // the exact bound
  std::size_t delayed = 0;     // events published with a delay, waiting for their time
};

}  // namespace SLUICE_ABI
}  // namespace sluice
