// sluice — observer hooks: a bus tells an observer of every publish, drop,
// refusal, handler call (with its duration) and failure.
//
//   struct my_observer final : sluice::bus_observer {
//     void on_deliver(const sluice::delivery_info& d) noexcept override {
//       if (d.duration_ns > 1'000'000) log_slow(d.type, d.subscription, d.duration_ns);
//     }
//   };
//   sluice::bus bus{sluice::bus_options{}.with_observer(std::make_shared<my_observer>())};
//
// Set in bus_options, so fixed for the bus's life: a bus without one pays
// one predictable branch per publish and per drained event (measured in
// docs/benchmarks.md). Hooks run on the thread that published or
// delivered, inside the bus's own work (a drainer's hooks under its lane's
// lock): keep them short; they must not throw (they are noexcept), and
// must not wait for the bus (stop(), wait_idle(), a blocking publish). See
// docs/monitoring.md.
#pragma once

#include <cstddef>
#include <cstdint>

#include "config.hpp"
#include "errors.hpp"
#include "event.hpp"

namespace sluice {
inline namespace SLUICE_ABI {

// One publish call's events of one type, and what became of them.
struct publish_info {
  std::uint32_t type = 0;      // the event type's number (sluice::type_number<Event>())
  std::uint32_t producer = 0;  // the producer's id (metadata::producer)
  std::uint64_t sequence = 0;  // the first accepted event's sequence (0 when none was)
  // The events' cause (0: none, each began a flow of its own) and the
  // first event's correlation (metadata::correlation: with a cause, every
  // event's; without, event k's is event_id(producer, sequence + k); see
  // flows in docs/monitoring.md).
  std::uint64_t cause = 0;
  std::uint64_t correlation = 0;
  key_type key = 0;
  bool has_key = false;
  bool delayed = false;   // publish_after
  std::size_t count = 1;  // events (a bulk publish's share with this result)
  publish_result result = publish_result::ok;
};

// One handler call of a queued event, after it returned.
struct delivery_info {
  std::uint32_t type = 0;
  const void* event = nullptr;      // valid during the hook only
  const metadata* meta = nullptr;   // the event's own
  const char* subscription = "";    // subscribe_options::name ("" when unnamed)
  std::uint64_t duration_ns = 0;    // the call, on the steady clock
  std::uint64_t queue_wait_ns = 0;  // publish to the start of delivery (0 without stamp_time)
  std::size_t lane = 0;
  bool ok = true;  // false: it failed (reported to on_failure too)
};

class bus_observer {
 public:
  virtual ~bus_observer() = default;
  // Events that entered their lane (or timing wheel): they will be settled.
  virtual void on_publish(const publish_info&) noexcept {}
  // Events accepted and discarded at once (full_policy::drop_newest).
  virtual void on_drop(const publish_info&) noexcept {}
  // Events refused (full, stopped): publish returned full or stopped.
  virtual void on_reject(const publish_info&) noexcept {}
  // Each handler call of a queued event (not of dispatch(), not a retry).
  virtual void on_deliver(const delivery_info&) noexcept {}
  // Everything bus_options::on_failure sees, after it: failed calls,
  // retries, dead letters, breaker transitions, full holds, problems.
  virtual void on_failure(const failure_info&) noexcept {}
};

}  // namespace SLUICE_ABI
}  // namespace sluice
