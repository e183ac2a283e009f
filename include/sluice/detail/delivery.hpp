// sluice — calling a type's handlers on this thread, with the announcements
// that let an unsubscribe wait for a running handler (tracking.hpp). Used by
// every way an event reaches its handlers: a bus's drainers and dispatch, and
// the dispatch-only `dispatcher`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>

#include "../config.hpp"
#include "../errors.hpp"
#include "../event.hpp"
#include "failures.hpp"
#include "process.hpp"
#include "registry.hpp"
#include "tracking.hpp"

namespace sluice {
inline namespace SLUICE_ABI {
namespace detail {

// One handler call: a failed outcome or an exception is reported, never
// passed on (a thread's forced unwind is). One instance per caller (`Site`),
// so that each is called once and the compiler inlines it as it did when
// deliver() was its only caller: shared, it became a call of its own, which
// cost dispatch about 2 ns per handler; forced inline, dispatch to ten
// handlers ran about 20 % slower than with one instance per caller.
template <int Site>
inline void call_one(const failure_reporter& f, registry& r, const sub_entry& sub, const void* ev,
                     const metadata& m) noexcept(!SLUICE_HAS_EXCEPTIONS) {
#if SLUICE_HAS_EXCEPTIONS
  try {
    const outcome o = sub.invoke(sub.callable, ev, m);
    if (SLUICE_UNLIKELY(!o.ok()))
      f.failure(r, failure_kind::outcome, o.code(), o.message(), ev, &m);
  } catch (const std::exception& e) {
    f.failure(r, failure_kind::exception, 0, e.what(), ev, &m);
  } catch (...) {
    SLUICE_PASS_FORCED_UNWIND();  // a handler that ends its thread (pthread_exit)
    f.failure(r, failure_kind::exception, 0, "unknown exception", ev, &m);
  }
#else
  const outcome o = sub.invoke(sub.callable, ev, m);
  if (SLUICE_UNLIKELY(!o.ok())) f.failure(r, failure_kind::outcome, o.code(), o.message(), ev, &m);
#endif
}

// Clears this thread's frames from depth d up (a forced unwind leaving).
inline void leave_frames(reader_slot& s, unsigned d) noexcept {
  for (unsigned k = d; k < SLUICE_MAX_DEPTH; ++k) {
    retract(s.node[k]);
    retract(s.array[k]);
    s.bus[k] = nullptr;
  }
  s.depth = d;
}

// What a gate did with one subscriber of an event (see delivery_gate).
enum class gate_result : std::uint8_t {
  pass,    // nothing: call it as usual
  called,  // the gate called it
  kept,    // not called now (held behind a retry of its key, or its breaker is open)
};

// No gate: every open subscriber is called (compiled away).
struct no_gate {
  static constexpr bool active = false;
  gate_result operator()(registry&, const sub_entry&, const void*, const metadata&) const noexcept {
    return gate_result::pass;
  }
};

// Asked about each open subscriber before it is called, while it is
// announced: a bus's failure policies (held keys, circuit breakers) use it
// for the events of lanes that hold keys or subscriptions whose breakers
// are watched (bus_core::gate).
struct delivery_gate {
  static constexpr bool active = true;
  gate_result (*fn)(void* self, registry& r, const sub_entry& e, const void* ev,
                    const metadata& m) = nullptr;
  void* self = nullptr;
  gate_result operator()(registry& r, const sub_entry& e, const void* ev, const metadata& m) const {
    return fn(self, r, e, ev, m);
  }
};

// Calls every open subscriber of r (on `channel`, or every one for 0) with
// the event, inside the frame the caller opened at depth d (s.depth is d + 1
// and s.bus[d] its owner), and closes that frame. Returns the handler calls
// made. One instance per caller (`Site`), as call_one.
template <int Site, class Gate = no_gate>
inline std::size_t deliver_in_frame(const failure_reporter& f, registry& r, const void* ev,
                                    const metadata& m, reader_slot& s, unsigned d,
                                    std::uint32_t channel, const Gate& gate = Gate{}) {
  const bool asym = asymmetric_mode();
  const sub_array* a = reader_load(r.current, asym);
  for (;;) {
    announce(s.array[d], a, asym);
    const sub_array* b = reader_load(r.current, asym);
    if (b == a) break;
    a = b;
  }
  std::size_t calls = 0;
#if SLUICE_HAS_EXCEPTIONS
  try {
#endif
    if (a != nullptr) {
      // In locals: an array never changes once made, but the handler calls
      // (and the announcements' compiler fences) make the compiler read
      // members again per handler.
      std::atomic<const void*>& node = s.node[d];
      const std::uint64_t closes_seen = a->closes_seen;
      for (const sub_entry& e : a->items) {
        if (e.channel != 0 && e.channel != channel) continue;
        announce(node, e.node, asym);
        // Open unless a close was counted since the array was made (then
        // the node's own flag says).
        if (SLUICE_LIKELY(reader_load(r.closes, asym) == closes_seen) ||
            !reader_load(e.node->closed, asym)) {
          if constexpr (Gate::active) {
            const gate_result g = gate(r, e, ev, m);
            if (g == gate_result::pass) {
              ++calls;
              call_one<Site>(f, r, e, ev, m);
            } else if (g == gate_result::called) {
              ++calls;
            }
          } else {
            ++calls;
            call_one<Site>(f, r, e, ev, m);
          }
        }
        retract(node);
      }
    }
#if SLUICE_HAS_EXCEPTIONS
  } catch (...) {  // only a thread's forced unwind gets here: leave the slot clean
    leave_frames(s, d);
    throw;
  }
#endif
  retract(s.array[d]);
  s.bus[d] = nullptr;
  s.depth = d;
  return calls;
}

// Calls every open subscriber of r without a channel (a route's channel is
// delivered by its chain's delivery step) with the event, on this thread,
// inside a frame of `owner` (the bus or dispatcher: what inside(owner) then
// answers), asking `gate` about each, if there is one (a bus's drainer, for
// an event its failure policies may keep from some subscribers). Returns the
// handler calls made.
template <class Gate = no_gate>
inline std::size_t deliver(const void* owner, const failure_reporter& f, registry& r,
                           const void* ev, const metadata& m, reader_slot& s,
                           const Gate& gate = Gate{}) {
  const unsigned d = s.depth;
  if (SLUICE_UNLIKELY(d >= SLUICE_MAX_DEPTH)) {
    f.too_deep(r, ev, m, "dispatch nested deeper than SLUICE_MAX_DEPTH");
    return 0;
  }
  s.depth = d + 1;
  s.bus[d] = owner;
  return deliver_in_frame < Gate::active ? 4 : 0 > (f, r, ev, m, s, d, 0, gate);
}

// A frame in which one type's handlers are called for several events in a
// row (a drainer's run of one type's events, none with stages): the frame is
// opened and the subscriber array announced once per run instead of once per
// event. Before each event the registry's array is read again (one load) and
// announced again only when it changed, so that each event meets the
// subscribers deliver() would give it; an array stays announced between the
// run's events, which only delays freeing an array that was replaced.
// Closed (on every way out, a thread's forced unwind included) when it goes.
class run_frame {
 public:
  // The caller checked s.depth < SLUICE_MAX_DEPTH.
  run_frame(const void* owner, registry& r, reader_slot& s) noexcept
      : r_(r), s_(s), d_(s.depth), asym_(asymmetric_mode()) {
    SLUICE_ASSERT(d_ < SLUICE_MAX_DEPTH, "a run frame opened too deep");
    s.depth = d_ + 1;
    s.bus[d_] = owner;
  }
  run_frame(const run_frame&) = delete;
  run_frame& operator=(const run_frame&) = delete;
  ~run_frame() {
    // A handler is shown here only when its thread ends inside it (a forced
    // unwind); only this thread writes the cell.
    if (s_.node[d_].load(std::memory_order_relaxed) != nullptr) retract(s_.node[d_]);
    retract(s_.array[d_]);
    s_.bus[d_] = nullptr;
    s_.depth = d_;
  }

  // Calls every open subscriber without a channel (as deliver() with channel
  // 0). Returns the handler calls made.
  std::size_t call(const failure_reporter& f, const void* ev, const metadata& m) {
    const sub_array* a = reader_load(r_.current, asym_);
    if (SLUICE_UNLIKELY(a != shown_)) a = show(a);
    if (a == nullptr) return 0;
    // In locals: the handler calls may write anything, as far as the
    // compiler knows, and would make it read the members again per handler.
    const bool asym = asym_;
    registry& r = r_;
    std::atomic<const void*>& node = s_.node[d_];
    std::size_t calls = 0;
    for (const sub_entry& e : a->items) {
      if (e.channel != 0) continue;
      announce(node, e.node, asym);
      if (SLUICE_LIKELY(reader_load(r.closes, asym) == a->closes_seen) ||
          !reader_load(e.node->closed, asym)) {
        ++calls;
        call_one<2>(f, r, e, ev, m);
      }
      retract(node);
    }
    return calls;
  }

 private:
  // Announces the registry's array, read again until it stays (as deliver()).
  const sub_array* show(const sub_array* a) noexcept {
    for (;;) {
      announce(s_.array[d_], a, asym_);
      const sub_array* b = reader_load(r_.current, asym_);
      if (b == a) break;
      a = b;
    }
    shown_ = a;
    return a;
  }

  registry& r_;
  reader_slot& s_;
  const unsigned d_;
  const bool asym_;
  const sub_array* shown_ = nullptr;
};

}  // namespace detail
}  // namespace SLUICE_ABI
}  // namespace sluice
