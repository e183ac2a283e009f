// sluice — the members of bus_core that time events and tell the observer
// (latency metrics, bus_observer), defined here to keep core.hpp about
// draining; included by it.
//
// An event that is timed leaves the drainer's run of untimed events and is
// delivered through the delivery gate with a timing gate of its own
// (timed_call): the time-stamp counter (stamp_now) is read when its
// delivery starts (ending its queue wait) and after each handler call, so
// a call's duration runs from the end of the one before (or the start) to
// its own end: the bus's few ns of work per subscriber between calls are
// counted in it, and an event with k calls costs k + 1 reads. Each
// duration goes to the subscription's histogram of the event's lane, and
// to the observer. Events that are not timed never come here.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "core.hpp"
#include "stamp_clock.hpp"

namespace sluice {
inline namespace SLUICE_ABI {
namespace detail {

inline fate bus_core::deliver_timed(lane& l, std::size_t li, registry& r, envelope& rec,
                                    reader_slot& s, bool staged, std::size_t& calls) {
  const metadata& m = rec.meta();
  // One clock read starts the delivery: it ends the queue wait and starts
  // the first call (each later call starts where the one before ended).
  const std::int64_t now = stamp_now();
  timed_self self{this, &l, li, needs_gate(l, r, m), 0, now};
  // Events stamped in this process: replayed and bridged ones carry another
  // clock's time.
  if (m.timestamp != 0 && !m.replayed && !m.bridged) {
    self.queue_wait = now > m.timestamp ? static_cast<std::uint64_t>(now - m.timestamp) : 0;
    if (histograms_on()) record_latency(r.queue_wait, li, self.queue_wait);
  }
  delivery_gate gate;
  gate.fn = &timed_thunk;
  gate.self = &self;
  if (staged) return run_stages(this, failures_, r, rec.event(), m, s, 0, calls, &gate);
  calls = detail::deliver(this, failures_, r, rec.event(), m, s, gate);
  return calls != 0 ? fate::delivered : fate::unrouted;
}

inline gate_result bus_core::timed_call(timed_self& t, registry& r, const sub_entry& e,
                                        const void* ev, const metadata& m) {
  bool ok = true;
  gate_result g = t.gated ? gate(*t.l, r, e, ev, m, &ok) : gate_result::pass;
  if (g == gate_result::pass) {
    ok = call_watched(r, e, ev, m);
    g = gate_result::called;
  }
  if (g != gate_result::called) return g;  // held, or refused by an open breaker
  const std::int64_t end = stamp_now();
  const std::uint64_t took = end > t.last ? static_cast<std::uint64_t>(end - t.last) : 0;
  t.last = end;
  sub_node& n = *e.node;
  if (histograms_on()) record_latency(n.handler_time, t.lane_index, took);
  if (observer_ != nullptr) {
    delivery_info d;
    d.type = r.type;
    d.event = ev;
    d.meta = &m;
    d.subscription = n.name.c_str();
    d.duration_ns = took;
    d.queue_wait_ns = t.queue_wait;
    d.lane = t.lane_index;
    d.ok = ok;
    observer_->on_deliver(d);
  }
  return g;
}

inline void bus_core::record_latency(std::atomic<lane_histograms*>& slot, std::size_t li,
                                     std::uint64_t v) noexcept {
  lane_histograms* h = histograms_of(slot, lanes_.size());
  if (SLUICE_UNLIKELY(h == nullptr)) {
    metrics_lost_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  h->record(li, v, metrics_lost_);
}

inline void bus_core::observe_publish(const publish_info& info) const noexcept {
  switch (info.result) {
    case publish_result::ok:
      observer_->on_publish(info);
      break;
    case publish_result::dropped:
      observer_->on_drop(info);
      break;
    default:
      observer_->on_reject(info);
      break;
  }
}

}  // namespace detail
}  // namespace SLUICE_ABI
}  // namespace sluice
