// sluice — running an event through its type's stage chain (filters, taps,
// enrichments, transforms, a route: see pipeline.hpp), then delivering it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../config.hpp"
#include "../errors.hpp"
#include "../event.hpp"
#include "delivery.hpp"
#include "failures.hpp"
#include "process.hpp"
#include "registry.hpp"
#include "stages.hpp"

namespace sluice {
inline namespace SLUICE_ABI {
namespace detail {

// A stage failed (threw, or a store stage could not make the event durable):
// reported against the chain's type with the stage's message.
inline void stage_failed(const chain_run& run, const void* ev,
                         const metadata& m) noexcept(!SLUICE_HAS_EXCEPTIONS) {
#if SLUICE_HAS_EXCEPTIONS
  run.failures->failure(*run.reg, failure_kind::stage, 0, stage_error_message(), ev, &m);
#else
  run.failures->failure(*run.reg, failure_kind::stage, 0, "a stage failed", ev, &m);
#endif
}

// The last step of every chain: calls the handlers (on the channel a route
// picked) in the chain's own frame, which it closes: at the depth the chain
// started from, as if the chain's frame had closed and the handlers' opened.
inline fate deliver_step(const stage*, const void* ev, const metadata& m, chain_run& run) {
  run.open = false;
  run.calls =
      SLUICE_LIKELY(run.gate == nullptr)
          ? deliver_in_frame<1>(*run.failures, *run.reg, ev, m, *run.slot, run.depth, run.channel)
          : deliver_in_frame<3>(*run.failures, *run.reg, ev, m, *run.slot, run.depth, run.channel,
                                *run.gate);
  return run.calls != 0 ? fate::delivered : fate::unrouted;
}

// The entry that ends every chain.
inline stage delivery_stage() noexcept {
  stage st;
  st.kind = stage_kind::deliver;
  st.step = &deliver_step;
  return st;
}

// Runs the event through r's chain, then delivers it on the channel a route
// picked; `calls` gets the handler calls. Stages run inside a frame of
// `core` (so that what they call knows it runs inside the bus); a failing
// stage is reported and drops the event (a failing tap does not).
inline fate run_stages(bus_core* core, const failure_reporter& f, registry& r, const void* ev,
                       const metadata& m, reader_slot& s, unsigned hops, std::size_t& calls,
                       const delivery_gate* gate = nullptr) {
  calls = 0;
  const stage_chain* c = r.chain.load(std::memory_order_acquire);
  const unsigned d = s.depth;
  if (c == nullptr) {
    if (SLUICE_UNLIKELY(d >= SLUICE_MAX_DEPTH)) {
      f.too_deep(r, ev, m, "delivery nested deeper than SLUICE_MAX_DEPTH");
      return fate::filtered;
    }
    calls = gate == nullptr ? deliver(core, f, r, ev, m, s) : deliver(core, f, r, ev, m, s, *gate);
    return calls != 0 ? fate::delivered : fate::unrouted;
  }
  if (SLUICE_UNLIKELY(d >= SLUICE_MAX_DEPTH)) {
    f.too_deep(r, ev, m, "stages nested deeper than SLUICE_MAX_DEPTH");
    return fate::filtered;
  }
  s.depth = d + 1;
  s.bus[d] = core;
  chain_run run{core, &f, &r, &s, hops, d, true, 0, 0, gate};
  fate out = fate::filtered;
#if SLUICE_HAS_EXCEPTIONS
  try {
#endif
    const stage* first = c->stages.data();
    out = first->step(first, ev, m, run);
#if SLUICE_HAS_EXCEPTIONS
  } catch (...) {  // a forced unwind (see deliver)
    if (run.open) leave_frames(s, d);
    throw;
  }
#endif
  if (run.open) {
    s.bus[d] = nullptr;
    s.depth = d;
  }
  calls = run.calls;
  return out;
}

}  // namespace detail
}  // namespace SLUICE_ABI
}  // namespace sluice
