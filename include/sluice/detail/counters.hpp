// sluice — the counts behind type_stats: how they are added on the hot paths
// (per producer, or once per run of one type in a drained batch) and summed
// when read.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>

#include "../stats.hpp"
#include "registry.hpp"
#include "stages.hpp"

namespace sluice {
inline namespace SLUICE_ABI {
namespace detail {

// The counter of `c` (a tally or a derived_cell) that an event with fate `f`
// ends in.
template <class Counts>
auto& end_count(Counts& c, fate f) noexcept {
  switch (f) {
    case fate::delivered:
      return c.delivered;
    case fate::unrouted:
      return c.unrouted;
    case fate::filtered:
      return c.filtered;
    case fate::transformed:
      break;
  }
  return c.transformed;
}

// A drainer's counts for the current run of one type: one atomic add per
// run and counter, not per event.
struct tally {
  registry* r = nullptr;
  std::uint64_t delivered = 0, unrouted = 0, discarded = 0, calls = 0, filtered = 0,
                transformed = 0, dead_lettered = 0;
  void switch_to(registry& next) {
    if (r == &next) return;
    flush();
    r = &next;
  }
  void count(fate f, std::size_t handler_calls) noexcept {
    ++end_count(*this, f);
    calls += handler_calls;
  }
  void flush() noexcept {
    if (r == nullptr) return;
    if (delivered) r->delivered.fetch_add(delivered, std::memory_order_relaxed);
    if (unrouted) r->unrouted.fetch_add(unrouted, std::memory_order_relaxed);
    if (discarded) r->discarded.fetch_add(discarded, std::memory_order_relaxed);
    if (calls) r->handler_calls.fetch_add(calls, std::memory_order_relaxed);
    if (filtered) r->filtered.fetch_add(filtered, std::memory_order_relaxed);
    if (transformed) r->transformed.fetch_add(transformed, std::memory_order_relaxed);
    if (dead_lettered) r->dead_lettered.fetch_add(dead_lettered, std::memory_order_relaxed);
    delivered = unrouted = discarded = calls = filtered = transformed = dead_lettered = 0;
  }
};

// The counts of one type (all zero for a type never used).
inline type_stats stats_of(const registry* r) {
  type_stats st;
  if (r == nullptr) return st;
  for (counter_cell* c = r->cells.load(std::memory_order_acquire); c != nullptr; c = c->next) {
    st.published += c->published.load(std::memory_order_relaxed);
    st.dropped += c->dropped.load(std::memory_order_relaxed);
    st.rejected += c->rejected.load(std::memory_order_relaxed);
  }
  st.delivered = r->delivered.load(std::memory_order_relaxed);
  st.unrouted = r->unrouted.load(std::memory_order_relaxed);
  st.failed = r->failed.load(std::memory_order_relaxed);
  st.discarded = r->discarded.load(std::memory_order_relaxed);
  st.handler_calls = r->handler_calls.load(std::memory_order_relaxed);
  st.filtered = r->filtered.load(std::memory_order_relaxed);
  st.dead_lettered = r->dead_lettered.load(std::memory_order_relaxed);
  st.transformed = r->transformed.load(std::memory_order_relaxed);
  st.published += r->derived.load(std::memory_order_relaxed);
  for (const derived_cell* d = r->derived_cells.load(std::memory_order_acquire); d != nullptr;
       d = d->next) {
    st.published += d->made.load(std::memory_order_relaxed);
    st.delivered += d->delivered.load(std::memory_order_relaxed);
    st.unrouted += d->unrouted.load(std::memory_order_relaxed);
    st.filtered += d->filtered.load(std::memory_order_relaxed);
    st.transformed += d->transformed.load(std::memory_order_relaxed);
    st.handler_calls += d->handler_calls.load(std::memory_order_relaxed);
  }
  return st;
}

// A counter cell for one producer and r's type (made or reused; never freed
// before the bus, so its counts survive the producer).
inline counter_cell* take_cell(registry& r) {
  for (counter_cell* c = r.cells.load(std::memory_order_acquire); c != nullptr; c = c->next) {
    bool expected = false;
    if (!c->in_use.load(std::memory_order_relaxed) &&
        c->in_use.compare_exchange_strong(expected, true, std::memory_order_acquire))
      return c;
  }
  auto* c = new counter_cell;
  c->owner = &r;
  c->in_use.store(true, std::memory_order_relaxed);
  counter_cell* head = r.cells.load(std::memory_order_relaxed);
  do {
    c->next = head;
  } while (!r.cells.compare_exchange_weak(head, c, std::memory_order_release,
                                          std::memory_order_relaxed));
  return c;
}

// Counts the end of an event that no batch tally covers (a transform's output).
inline void settle(registry& r, fate f, std::size_t calls) noexcept {
  tally t;
  t.r = &r;
  t.count(f, calls);
  t.flush();
}

// ---- counts of events that transforms make ----------------------------------------

// The cell of slot `s` in r (found on r's list, or made and linked), kept in
// the slot's cache; nullptr when there is no memory for one. Only the thread
// holding `s` calls it.
SLUICE_NOINLINE inline derived_cell* find_derived_cell(registry& r, reader_slot& s) noexcept {
  derived_cell* found = nullptr;
  for (derived_cell* d = r.derived_cells.load(std::memory_order_acquire); d != nullptr;
       d = d->next) {
    if (d->slot == &s) {
      found = d;
      break;
    }
  }
  if (found == nullptr) {
    found = new (std::nothrow) derived_cell;
    if (found == nullptr) return nullptr;
    found->slot = &s;
    derived_cell* head = r.derived_cells.load(std::memory_order_relaxed);
    do {
      found->next = head;
    } while (!r.derived_cells.compare_exchange_weak(head, found, std::memory_order_release,
                                                    std::memory_order_relaxed));
  }
  const unsigned w = s.derived_next++ % reader_slot::derived_ways;
  s.derived_number[w] = r.number;
  s.derived[w] = found;
  return found;
}

// The calling thread's cell for events made of r's type (its slot is `s`).
[[nodiscard]] inline derived_cell* derived_cell_for(registry& r, reader_slot& s) noexcept {
  for (unsigned w = 0; w < reader_slot::derived_ways; ++w)
    if (s.derived_number[w] == r.number) return s.derived[w];
  return find_derived_cell(r, s);
}

// Counts a derived event's end in its cell (the caller holds the cell's slot).
inline void settle(derived_cell& d, fate f, std::size_t calls) noexcept {
  counter_cell::bump(end_count(d, f));
  if (calls != 0) counter_cell::bump(d.handler_calls, calls);
}

}  // namespace detail
}  // namespace SLUICE_ABI
}  // namespace sluice
