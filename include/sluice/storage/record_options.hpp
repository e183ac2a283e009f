// sluice — a recorder's options (buffer, full behaviour, sync policy,
// write-ahead delivery) and its statistics. See recorder.hpp and
// docs/storage.md.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>

#include "../config.hpp"
#include "error.hpp"

namespace sluice {
inline namespace SLUICE_ABI {

// When the writer syncs on its own. An explicit sync(), and close(), always
// sync, whatever the policy.
enum class sync_policy : std::uint8_t {
  never,        // never on its own: the operating system writes when it likes
  interval,     // at most every sync_interval while records arrive
  every_batch,  // after every append: a record is durable within one batch's time
};

enum class full_behaviour : std::uint8_t {
  block,  // the delivering thread waits for room (backpressure into the lanes)
  drop,   // the record is dropped and counted; delivery goes on
};

struct record_options {
  // Bytes the delivering threads may gather before the writer takes them (two
  // such buffers exist: one filling, one being written). One record may go
  // beyond it.
  std::size_t buffer_bytes = std::size_t{4} << 20;
  full_behaviour when_full = full_behaviour::block;
  sync_policy sync = sync_policy::every_batch;
  std::chrono::milliseconds sync_interval{100};
  // With sync_policy never or interval: how long the writer lets records
  // gather before it writes them (fewer, larger appends). 0: at once.
  // every_batch always writes at once.
  std::chrono::microseconds linger{1000};
  // Waits, on the delivering thread, until each batch is durable before its
  // events are delivered: true write-ahead logging, at a sync per batch.
  // Events whose records could not be made durable (an append or sync
  // failed, the codec threw, the record was too large or found no memory,
  // the recorder was closed) are not delivered: the lane batch they came in
  // is the unit (a dispatched event, or one through a store stage, is its
  // own). Needs when_full = block.
  bool durable_before_delivery = false;
  // Also store events that a replay published (metadata::replayed).
  bool record_replayed = false;
  // Also store events that came through a bridge (metadata::bridged). Off by
  // default: the stream they came from keeps them, and a recorder under an
  // outbound bridge would send them back where they came from.
  bool record_bridged = false;
  // Called on the writer thread for each sink error. Must not throw, call
  // close(), or wait for the bus (publish under the block policy).  Records
  // it makes while the buffer is full are dropped, not waited for.
  std::function<void(const storage_error&)> on_error;

  [[nodiscard]] const char* validate() const noexcept {
    if (buffer_bytes < 4096 || buffer_bytes > (std::size_t{1} << 30))
      return "sluice: record_options::buffer_bytes must be between 4096 and 2^30";
    if (sync == sync_policy::interval && sync_interval.count() <= 0)
      return "sluice: record_options::sync_interval must be positive";
    if (linger.count() < 0 || linger > std::chrono::hours(1))
      return "sluice: record_options::linger must be between 0 and 1 hour";
    if (when_full != full_behaviour::block && when_full != full_behaviour::drop)
      return "sluice: record_options::when_full is not a full_behaviour value";
    if (durable_before_delivery && when_full == full_behaviour::drop)
      return "sluice: record_options::durable_before_delivery needs when_full = block (a "
             "write-ahead log does not drop records)";
    return nullptr;
  }
};

struct recorder_stats {
  std::uint64_t recorded = 0;    // put in the buffer
  std::uint64_t written = 0;     // appended to the sink
  std::uint64_t synced = 0;      // known durable (covered by a successful sync)
  std::uint64_t dropped = 0;     // buffer full (drop), or recorder closed
  std::uint64_t unrecorded = 0;  // no codec for the type
  std::uint64_t rejected = 0;    // the codec threw, the record was larger than the sink takes,
                                 // or there was no memory for it
  std::uint64_t failed = 0;      // recorded, but the sink's append failed: lost
  std::uint64_t unsynced = 0;    // written, but a sync of them failed: durability unknown (lost)
  std::uint64_t bytes = 0;       // bytes appended to the sink
  std::uint64_t batches = 0;     // appends
  std::uint64_t syncs = 0;       // successful syncs
  std::uint64_t append_failures = 0;  // appends that failed (wholly or in part)
  std::uint64_t sync_failures = 0;    // syncs that failed
  std::uint64_t unacknowledged = 0;   // lost records not yet acknowledged (acknowledge_losses)
};

}  // namespace SLUICE_ABI
}  // namespace sluice
