// sluice — the members of bus_core that time events and tell the observer
// (latency metrics, bus_observer), defined here to keep core.hpp about
// draining; included by it.
//
// An event that is timed leaves the drainer's run of untimed events and is
// delivered through the delivery gate with a timing gate of its own
// (timed_call): the time-stamp counter (stamp_now) is read when its
// delivery starts (ending its queue wait) and as each handler returns, so
// a call's duration runs from the end of the one before (or the start) to
// the moment its handler returned: the bus's bookkeeping between two calls
// (the last one's histogram update, the next subscriber's announcement: a
// few ns) counts in the later call, and an event with k calls costs k + 1
// reads. Anything more between two calls (stages, a failure handled, a
// held or refused subscriber, the observer's hook, a histogram allocated)
// makes the next call read the clock again before it starts. Each duration
// goes to the subscription's histogram of the event's lane, and to the
// observer. Events that are not timed never come here.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "../tracer.hpp"
#include "core.hpp"
#include "stamp_clock.hpp"

namespace sluice {
inline namespace SLUICE_ABI {
namespace detail {

inline fate bus_core::deliver_timed(lane& l, std::size_t li, registry& r, envelope& rec,
                                    reader_slot& s, bool staged, std::size_t& calls, bool counted) {
  const metadata& m = rec.meta();
  // One clock read starts the delivery: it ends the queue wait and starts
  // the first call, unless stages run first.
  const std::int64_t now = stamp_now();
  const bool traced = tracer_ != nullptr && bus_core::traced(tracer_, m);
  timed_self self{this, &l,  li,     needs_gate(l, r, m),       staged,
                  0,    now, traced, counted && histograms_on()};
  if (m.timestamp != 0) {  // stamp_time: stamped at publish by this process's clock
    self.queue_wait = now > m.timestamp ? static_cast<std::uint64_t>(now - m.timestamp) : 0;
    if (self.histograms && record_latency(r.queue_wait, li, self.queue_wait)) self.fresh = true;
  }
  delivery_gate gate;
  gate.fn = &timed_thunk;
  gate.self = &self;
  fate f = fate::unrouted;
  if (staged) {
    f = run_stages(this, failures_, r, rec.event(), m, s, 0, calls, &gate);
  } else {
    calls = detail::deliver(this, failures_, r, rec.event(), m, s, gate);
    f = calls != 0 ? fate::delivered : fate::unrouted;
  }
  if (traced) tracer_->delivered(r.type, m, now, stamp_now(), li);
  return f;
}

inline bool bus_core::traced(const sluice::tracer* tr, const metadata& m) noexcept {
  return tr->sampled(m.correlation);
}

inline bool bus_core::tells_publish(publish_result r, std::uint64_t flow) const noexcept {
  return observer_ != nullptr || (r == publish_result::ok && tracer_->sampled(flow));
}

inline gate_result bus_core::timed_call(timed_self& t, registry& r, const sub_entry& e,
                                        const void* ev, const metadata& m) {
  // A call starts where the one before ended (or the delivery began),
  // unless the bus did more than its bookkeeping since: then it reads the
  // clock again.
  if (t.fresh) {
    t.last = stamp_now();
    t.fresh = false;
  }
  bool ok = true;
  std::int64_t end = 0;
  gate_result g = gate_result::pass;
  if (t.gated) {
    g = gate(*t.l, r, e, ev, m, &ok);
    if (g == gate_result::kept) {  // held, or refused by an open breaker: no call
      t.fresh = true;
      return g;
    }
    if (g == gate_result::called) end = stamp_now();  // (a watched breaker's note included)
  }
  if (g == gate_result::pass) {
    ok = call_timed<true>(r, e, ev, m, end);  // `end`: when the handler returned
    g = gate_result::called;
  }
  const std::uint64_t took = end > t.last ? static_cast<std::uint64_t>(end - t.last) : 0;
  if (t.traced) {
    tracer_->handled(r.type, m, e.node->name.c_str(), t.last, end, ok);
    t.fresh = true;
  }
  t.last = end;
  if (!ok) t.fresh = true;  // the failure was handled after `end`
  sub_node& n = *e.node;
  if (t.histograms && record_latency(n.handler_time, t.lane_index, took)) t.fresh = true;
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
    t.fresh = true;
  }
  return g;
}

inline bool bus_core::record_latency(std::atomic<lane_histograms*>& slot, std::size_t li,
                                     std::uint64_t v) noexcept {
  lane_histograms* h = slot.load(std::memory_order_acquire);
  bool made = false;
  if (SLUICE_UNLIKELY(h == nullptr)) {
    h = histograms_of(slot, lanes_.size());
    made = true;
    if (h == nullptr) {
      metrics_lost_.fetch_add(1, std::memory_order_relaxed);
      return made;
    }
  }
  return h->record(li, v, metrics_lost_) || made;
}

template <bool Timed>
inline bool bus_core::call_timed(registry& r, const sub_entry& e, const void* ev, const metadata& m,
                                 std::int64_t& end) {
#if SLUICE_HAS_EXCEPTIONS
  try {
    const outcome o = e.invoke(e.callable, ev, m);
    if (Timed) end = stamp_now();
    if (o.ok()) return true;
    failures_.failure(r, failure_kind::outcome, o.code(), o.message(), ev, &m);
  } catch (const std::exception& x) {
    if (Timed) end = stamp_now();
    failures_.failure(r, failure_kind::exception, 0, x.what(), ev, &m);
  } catch (...) {
    SLUICE_PASS_FORCED_UNWIND();
    if (Timed) end = stamp_now();
    failures_.failure(r, failure_kind::exception, 0, "unknown exception", ev, &m);
  }
  return false;
#else
  const outcome o = e.invoke(e.callable, ev, m);
  if (Timed) end = stamp_now();
  if (o.ok()) return true;
  failures_.failure(r, failure_kind::outcome, o.code(), o.message(), ev, &m);
  return false;
#endif
}

inline void bus_core::observe_publish(const publish_info& info) const noexcept {
  if (tracer_ != nullptr) tracer_->published(info);
  if (observer_ == nullptr) return;
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
