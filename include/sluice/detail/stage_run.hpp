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

inline void stage_failed(const failure_reporter& f, registry& r, const void* ev,
                         const metadata& m) noexcept(!SLUICE_HAS_EXCEPTIONS) {
#if SLUICE_HAS_EXCEPTIONS
  f.failure(r, failure_kind::stage, 0, stage_error_message(), ev, &m);
#else
  f.failure(r, failure_kind::stage, 0, "a stage failed", ev, &m);
#endif
}

// Runs the event through r's chain from stage `from`, then delivers it on the
// channel a route picked; `calls` gets the handler calls. Stages run inside a
// frame of `core` (so that what they call knows it runs inside the bus); a
// failing stage is reported and drops the event. `framed`: the event's frame
// is already open (an enrichment continuing).
inline fate run_stages(bus_core* core, const failure_reporter& f, registry& r, const void* ev,
                       const metadata& m, reader_slot& s, std::size_t from, unsigned hops,
                       std::size_t& calls, bool framed = false) {
  calls = 0;
  const stage_chain* c = r.chain.load(std::memory_order_acquire);
  std::uint32_t channel = 0;
  if (c != nullptr && from < c->stages.size()) {
    const unsigned d = s.depth;
    if (!framed) {
      if (SLUICE_UNLIKELY(d >= SLUICE_MAX_DEPTH)) {
        f.too_deep(r, ev, m, "stages nested deeper than SLUICE_MAX_DEPTH");
        return fate::filtered;
      }
      s.depth = d + 1;
      s.bus[d] = core;
    }
    bool go_on = true;
    fate out = fate::filtered;
#if SLUICE_HAS_EXCEPTIONS
    try {
#endif
      for (std::size_t i = from; go_on && i < c->stages.size(); ++i) {
        const stage& st = c->stages[i];
        switch (st.kind) {
          case stage_kind::filter: {
            bool pass = false;
            if (!st.test(st.fn, ev, m, pass)) stage_failed(f, r, ev, m);
            if (!pass) go_on = false;  // out stays filtered
            break;
          }
          case stage_kind::tap:
            if (!st.observe(st.fn, ev, m)) stage_failed(f, r, ev, m);
            break;
          case stage_kind::route:
            if (!st.pick(st.fn, ev, channel)) {
              stage_failed(f, r, ev, m);
              go_on = false;
            }
            i = c->stages.size();  // a route ends the chain
            break;
          case stage_kind::enrich:
          case stage_kind::transform: {
            stage_context ctx{core, &s, hops};
            if (!st.convert(st.fn, ev, m, ctx, i + 1, out)) {
              stage_failed(f, r, ev, m);
              out = fate::filtered;
            }
            calls = ctx.calls;
            if (!framed) {
              s.bus[d] = nullptr;
              s.depth = d;
            }
            return out;
          }
        }
      }
#if SLUICE_HAS_EXCEPTIONS
    } catch (...) {  // a forced unwind (see deliver)
      if (!framed) leave_frames(s, d);
      throw;
    }
#endif
    if (!framed) {
      s.bus[d] = nullptr;
      s.depth = d;
    }
    if (!go_on) return out;
  }
  if (SLUICE_UNLIKELY(s.depth >= SLUICE_MAX_DEPTH)) {
    f.too_deep(r, ev, m, "delivery nested deeper than SLUICE_MAX_DEPTH");
    return fate::filtered;  // not delivered, whether or not it had subscribers
  }
  calls = deliver(core, f, r, ev, m, s, channel);
  return calls != 0 ? fate::delivered : fate::unrouted;
}

}  // namespace detail
}  // namespace SLUICE_ABI
}  // namespace sluice
