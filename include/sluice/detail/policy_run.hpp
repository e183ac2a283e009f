// sluice — a bus's failure policies on the delivery path (resilience.hpp,
// retry.hpp): what a first failure does (a retry, a dead letter), the gate
// that holds the later events of a retrying key and asks circuit breakers
// before a call, and the running and ending of retries. Members of
// bus_core, defined here to keep core.hpp about draining; included by it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <new>

#include "core.hpp"

namespace sluice {
inline namespace SLUICE_ABI {
namespace detail {

inline void bus_core::on_handler_failure(registry& r, sub_node& n, failure_kind kind, int code,
                                         const char* message, const void* ev, const metadata& m) {
  const retry_spec& spec = *n.retry;
  retry_context* ctx = own_event(ev);
  if (ctx != nullptr && spec.policy.breaker.failures != 0)
    note_breaker(r, n, spec, spec.brk.on_failure(now_ns(), spec.policy.breaker), ev, &m);
  first_failure(r, n, spec, kind, code, message, ev, m, ctx);
}

inline void bus_core::first_failure(registry& r, sub_node& n, const retry_spec& spec,
                                    failure_kind kind, int code, const char* message,
                                    const void* ev, const metadata& m, retry_context* ctx) {
  const bool queued = ctx != nullptr;
  settle_block* block = queued ? ctx->block : nullptr;
  if (queued && block == nullptr) {
    block = new (std::nothrow) settle_block;
    ctx->block = block;
  }
  if (block == nullptr) {
    // No fate to move (or no memory for its block): no retry; a dead
    // letter at once if the policy says so, the event counted as it is.
    if (spec.policy.then == after_retries::dead_letter) {
      n.dead_lettered.fetch_add(1, std::memory_order_relaxed);
      spec.dead_letter(*this, ev, m, kind, code, message, 1, spec.name);
    }
    return;
  }
  if (spec.policy.attempts > 1 &&
      schedule_first_retry(r, n, spec, kind, code, message, ev, m, block, lane_at(ctx->lane)))
    return;
  // No retry (none asked for, or no room for one): the policy's end now.
  if (spec.policy.then == after_retries::dead_letter) {
    block->dead = true;
    n.dead_lettered.fetch_add(1, std::memory_order_relaxed);
    spec.dead_letter(*this, ev, m, kind, code, message, 1, spec.name);
  }
}

inline fate bus_core::deliver_gated(lane& l, registry& r, envelope& rec, reader_slot& s,
                                    bool staged, std::size_t& calls) {
  gate_self self{this, &l};
  delivery_gate gate;
  gate.fn = &gate_thunk;
  gate.self = &self;
  if (staged) return run_stages(this, failures_, r, rec.event(), rec.meta(), s, 0, calls, &gate);
  calls = detail::deliver(this, failures_, r, rec.event(), rec.meta(), s, gate);
  return calls != 0 ? fate::delivered : fate::unrouted;
}

inline gate_result bus_core::gate(lane& l, registry& r, const sub_entry& e, const void* ev,
                                  const metadata& m, bool* ok) {
  sub_node& n = *e.node;
  const retry_spec* spec = n.retry.get();
  if (spec == nullptr) return gate_result::pass;
  retry_context* ctx = own_event(ev);
  if (ctx == nullptr) return gate_result::pass;
  const failure_policy& p = spec->policy;
  if (p.order == retry_order::hold_key && l.holds().count() != 0) {
    if (hold* h = l.holds().find(&n, hold_key::of(m)); h != nullptr) {
      const gate_result g = hold_event(l, r, n, *spec, h, ev, m, *ctx);
      if (g != gate_result::pass) return g;
      // (a full hold that skips ahead: called now)
    }
  }
  if (p.breaker.failures == 0 || !spec->brk.watched()) return gate_result::pass;
  if (!spec->brk.allow(now_ns(), p.breaker)) {
    n.short_circuited.fetch_add(1, std::memory_order_relaxed);
    const char* why =
        "sluice: the subscription's circuit breaker is open: its handler was not called";
    failures_.policy_problem(failure_kind::breaker_open, r.type, 0, why, ev, &m,
                             spec->name.c_str());
    first_failure(r, n, *spec, failure_kind::breaker_open, 0, why, ev, m, ctx);
    return gate_result::kept;
  }
  const bool good = call_watched(r, e, ev, m);
  if (ok != nullptr) *ok = good;
  if (good) note_breaker(r, n, *spec, spec->brk.on_success(), ev, &m);
  return gate_result::called;
}

inline gate_result bus_core::hold_event(lane& l, registry& r, sub_node& n, const retry_spec& spec,
                                        hold* h, const void* ev, const metadata& m,
                                        retry_context& ctx) {
  settle_block* block = ctx.block;
  if (block == nullptr) {
    block = new (std::nothrow) settle_block;
    ctx.block = block;
  }
  const failure_policy& p = spec.policy;
  retry_record* rec = nullptr;
  if (block != nullptr && n.held.load(std::memory_order_relaxed) < p.hold_capacity) {
    SLUICE_TRY {
      rec = spec.make(ev, m);
    }
    SLUICE_CATCH(...) {  // no memory, or the event's copy threw: as if full
      SLUICE_PASS_FORCED_UNWIND();
      rec = nullptr;
    }
  }
  if (rec == nullptr) {
    const char* why =
        p.when_hold_full == hold_full::skip_ahead
            ? "sluice: the subscription's hold is full: the event was delivered ahead of its key"
            : "sluice: the subscription's hold is full: the event was dead-lettered";
    failures_.policy_problem(failure_kind::hold_full, r.type, 0, why, ev, &m, spec.name.c_str());
    if (p.when_hold_full == hold_full::skip_ahead) return gate_result::pass;
    if (block != nullptr) block->dead = true;
    n.dead_lettered.fetch_add(1, std::memory_order_relaxed);
    spec.dead_letter(*this, ev, m, failure_kind::hold_full, 0, why, 0, spec.name);
    return block != nullptr ? gate_result::kept : gate_result::called;
  }
  rec->node = &n;
  rec->reg = &r;
  rec->block = block;
  rec->calls = 0;
  r.retry_ref(&n);
  ++block->chains;
  n.held.fetch_add(1, std::memory_order_relaxed);
  hold_table::append(h, rec);
  l.hold_added();
  return gate_result::kept;
}

inline void bus_core::note_breaker(registry& r, sub_node& n, const retry_spec& spec,
                                   const breaker::change& c, const void* ev, const metadata* m) {
  if (c.watched > 0) r.gated.fetch_add(1, std::memory_order_relaxed);
  if (c.watched < 0) r.gated.fetch_sub(1, std::memory_order_relaxed);
  if (c.opened) {
    n.breaker_opens.fetch_add(1, std::memory_order_relaxed);
    failures_.policy_problem(failure_kind::breaker_opened, r.type, static_cast<int>(c.in_a_row),
                             "sluice: a subscription's circuit breaker opened", ev, m,
                             spec.name.c_str());
  }
  if (c.closed)
    failures_.policy_problem(failure_kind::breaker_closed, r.type, 0,
                             "sluice: a subscription's circuit breaker closed", ev, m,
                             spec.name.c_str());
}

inline std::size_t bus_core::run_retries(lane& l, reader_slot& s, std::size_t max, bool discard,
                                         budget* b) {
  std::size_t done = 0;
  while (done < max && !(done != 0 && b != nullptr && b->spent())) {
    retry_record* rec = l.take_retry(discard);
    if (rec == nullptr) break;
    ++done;
    if (discard) {
      // stop(discard): the event is dead-lettered (reason: stopped), with
      // no call and no dead_letter handed out (no handler runs now).
      rec->block->dead = true;
      rec->node->dead_lettered.fetch_add(1, std::memory_order_relaxed);
      end_retry(l, rec);
      continue;
    }
    run_retry(l, s, rec);
  }
  if (done != 0) notify_idle();
  return done;
}

inline bool bus_core::schedule_first_retry(registry& r, sub_node& n, const retry_spec& spec,
                                           failure_kind kind, int code, const char* message,
                                           const void* ev, const metadata& m, settle_block* block,
                                           lane& l) {
  retry_record* rec = nullptr;
  SLUICE_TRY {
    rec = spec.make(ev, m);
    rec->message = message != nullptr ? message : "";
  }
  SLUICE_CATCH(...) {  // no memory, or the event's copy threw: no retry
    SLUICE_PASS_FORCED_UNWIND();
    if (rec != nullptr) rec->destroy(rec);
    return false;
  }
  rec->node = &n;
  rec->reg = &r;
  rec->block = block;
  rec->calls = 1;
  rec->kind = kind;
  rec->code = code;
  // hold_key: later events of its key wait for n behind it.
  hold* h = nullptr;
  if (spec.policy.order == retry_order::hold_key) {
    const hold_key k = hold_key::of(m);
    if (hold* old = l.holds().find(&n, k); old != nullptr) {
      // An event of a held key that was not held fails: one a full hold let
      // skip ahead (hold_full::skip_ahead). It waits behind the held ones
      // (beyond hold_capacity: it was taken already), and its retry runs
      // when its turn comes.
      r.retry_ref(&n);
      ++block->chains;
      n.held.fetch_add(1, std::memory_order_relaxed);
      hold_table::append(old, rec);
      l.hold_added();
      return true;
    }
    h = l.holds().add(&n, k, rec);
    if (h == nullptr) {  // no memory for the hold: no retry (its order could not be kept)
      rec->destroy(rec);
      return false;
    }
  }
  r.retry_ref(&n);
  bool earlier = false;
  if (!l.schedule_retry(retry_due(spec, 2), rec, options_.retry_capacity, true, earlier)) {
    if (h != nullptr) (void)l.holds().release(h);  // nothing held behind it yet: ends it
    r.retry_unref(&n);
    rec->destroy(rec);
    return false;
  }
  ++block->chains;
  n.retrying.fetch_add(1, std::memory_order_relaxed);
  // Every parked worker parks again with the earlier deadline (one woken
  // worker may be busy elsewhere when the retry falls due).
  if (earlier) wake_workers(true);
  return true;
}

inline void bus_core::run_retry(lane& l, reader_slot& s, retry_record* rec) {
  sub_node& n = *rec->node;
  registry& r = *rec->reg;
  const retry_spec& spec = *n.retry;
  // Ends the record on every way out but a new schedule, a thread's
  // forced unwind (in the handler, the observer or a dead-letter handler)
  // included: nothing stays pending for ever.
  struct ender {
    bus_core& core;
    lane& l;
    retry_record* rec;
    ~ender() {
      if (rec != nullptr) core.end_retry(l, rec);
    }
  } finish{*this, l, rec};
  const bool first = rec->calls == 0;  // a held event's first call
  ++rec->calls;
  const bool refused =
      spec.policy.breaker.failures != 0 && !spec.brk.allow(now_ns(), spec.policy.breaker);
  const unsigned d = s.depth;  // below SLUICE_MAX_DEPTH: drain_lane checked
  const bool asym = asymmetric_mode();
  s.depth = d + 1;
  s.bus[d] = this;
  announce(s.node[d], &n, asym);
  bool called = false;
  outcome o;
  failure_kind kind = failure_kind::outcome;
  const char* message = "";
  const cause_scope cause(&rec->meta);  // what the call publishes, rec caused
  // Open unless reset: the handler is called only while announced, so a
  // reset() waits for this call, and a closed node is never called.
  if (!refused && !reader_load(n.closed, asym)) {
    called = true;
    if (!first) n.retried.fetch_add(1, std::memory_order_relaxed);
#if SLUICE_HAS_EXCEPTIONS
    try {
      o = n.invoke(n.callable, rec->event, rec->meta);
      message = o.message();
    } catch (const std::exception& e) {
      o = outcome::failure(-1);
      kind = failure_kind::exception;
      message = e.what();
      note_retry_failure(rec, kind, 0, message);
    } catch (...) {
      if (!std::current_exception()) {
        // The thread ends inside the handler (a forced unwind): the slot
        // is left clean and the event counts as handed over.
        leave_frames(s, d);
        throw;
      }
      o = outcome::failure(-1);
      kind = failure_kind::exception;
      message = "unknown exception";
      note_retry_failure(rec, kind, 0, message);
    }
#else
    o = n.invoke(n.callable, rec->event, rec->meta);
    message = o.message();
#endif
    if (!o.ok() && kind == failure_kind::outcome) note_retry_failure(rec, kind, o.code(), message);
  }
  retract(s.node[d]);
  s.bus[d] = nullptr;
  s.depth = d;
  const bool breaks = spec.policy.breaker.failures != 0;
  if (refused) {
    // The breaker is open: an attempt not made, which counts as one.
    n.short_circuited.fetch_add(1, std::memory_order_relaxed);
    const char* why =
        "sluice: the subscription's circuit breaker is open: its handler was not called";
    note_retry_failure(rec, failure_kind::breaker_open, 0, why);
    failures_.policy_problem(failure_kind::breaker_open, r.type, 0, why, rec->event, &rec->meta,
                             spec.name.c_str());
  } else {
    if (!called) return;  // unsubscribed meanwhile: nobody is left to retry (ended)
    r.handler_calls.fetch_add(1, std::memory_order_relaxed);
    if (o.ok()) {
      if (!first) n.recovered.fetch_add(1, std::memory_order_relaxed);
      if (breaks) note_breaker(r, n, spec, spec.brk.on_success(), rec->event, &rec->meta);
      return;  // ended
    }
    n.failed.fetch_add(1, std::memory_order_relaxed);
    failures_.policy_failure(r, rec->kind, rec->code, rec->message.c_str(), rec->event, &rec->meta,
                             rec->calls, spec.name.c_str());
    if (breaks)
      note_breaker(r, n, spec, spec.brk.on_failure(now_ns(), spec.policy.breaker), rec->event,
                   &rec->meta);
  }
  if (rec->calls < spec.policy.attempts) {
    bool earlier = false;
    if (l.schedule_retry(retry_due(spec, rec->calls + 1), rec, options_.retry_capacity, false,
                         earlier)) {
      finish.rec = nullptr;  // waits again
      if (earlier) wake_workers(true);
      return;
    }
  }
  if (spec.policy.then == after_retries::dead_letter) {
    rec->block->dead = true;
    n.dead_lettered.fetch_add(1, std::memory_order_relaxed);
    spec.dead_letter(*this, rec->event, rec->meta, rec->kind, rec->code, rec->message.c_str(),
                     rec->calls, spec.name);
  }
}  // ended by `finish`

inline void bus_core::end_retry(lane& l, retry_record* rec) noexcept {
  sub_node* n = rec->node;
  registry& r = *rec->reg;
  settle_block* b = rec->block;
  n->retrying.fetch_sub(1, std::memory_order_relaxed);
  // hold_key: the next event held behind it gets its turn (before this
  // one stops counting as pending).
  if (hold* h = rec->in_hold; h != nullptr && h->active == rec) {
    if (retry_record* next = l.holds().release(h); next != nullptr) {
      next->node->held.fetch_sub(1, std::memory_order_relaxed);
      next->node->retrying.fetch_add(1, std::memory_order_relaxed);
      l.make_ready(next);
    }
  }
  if (--b->chains == 0) {
    (b->dead ? r.dead_lettered : r.delivered).fetch_add(1, std::memory_order_relaxed);
    delete b;
  }
  rec->destroy(rec);
  r.retry_unref(n);
  l.retry_done();
}

}  // namespace detail
}  // namespace SLUICE_ABI
}  // namespace sluice
