// sluice — the per-type subscriber registry of a bus.
//
// Readers (whoever delivers an event) read an immutable array of subscriber
// nodes; subscribe copies it under `writer_mutex`, without the nodes closed since,
// publishes the copy, and frees old arrays once no reader shows them (see
// tracking.hpp). Unsubscribing only closes its node (a flag and a fence): it
// allocates nothing, so reset() cannot fail; the node leaves the array at the
// next subscribe. A node lives while an array holds it; its callable is
// destroyed as soon as it is known that no call is running or can begin.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../config.hpp"
#include "../errors.hpp"
#include "../event.hpp"
#include "latency.hpp"
#include "retry.hpp"
#include "stages.hpp"
#include "sync.hpp"
#include "tracking.hpp"

namespace sluice {
inline namespace SLUICE_ABI {
namespace detail {

struct registry;

struct sub_node {
  sub_node() = default;
  sub_node(const sub_node&) = delete;
  sub_node& operator=(const sub_node&) = delete;
  ~sub_node() { delete handler_time.load(std::memory_order_relaxed); }

  std::atomic<bool> closed{false};
  std::atomic<bool> bus_gone{false};
  outcome (*invoke)(void* callable, const void* event, const metadata& m) = nullptr;
  void (*destroy)(void* callable) noexcept = nullptr;
  void* callable = nullptr;
  registry* owner = nullptr;
  std::uint32_t channel = 0;  // 0: every channel; else only events routed there
  // Its failure policy, when it does more than count (retry.hpp); null else.
  std::unique_ptr<const retry_spec> retry;
  // Its counts (subscription_stats), written by whoever delivers.
  std::atomic<std::uint64_t> failed{0};
  std::atomic<std::uint64_t> retried{0};
  std::atomic<std::uint64_t> recovered{0};
  std::atomic<std::uint64_t> dead_lettered{0};
  std::atomic<std::uint64_t> retrying{0};
  std::atomic<std::uint64_t> held{0};
  std::atomic<std::uint64_t> short_circuited{0};
  std::atomic<std::uint64_t> breaker_opens{0};
  std::string name;  // subscribe_options::name
  // Its handler's call durations per lane (latency metrics; latency.hpp).
  std::atomic<lane_histograms*> handler_time{nullptr};
  // Guarded by owner->writer_mutex:
  std::uint32_t array_refs = 0;
  std::uint32_t retry_refs = 0;  // retry records that call it (they keep it)
  bool handle_released = false;
  sub_node* next_all = nullptr;
  sub_node* next_dead = nullptr;  // on a graveyard list
};

// Nodes, or only their callables, to destroy once the registry's lock is
// released (a handler's destructor may reset subscriptions of this bus).
// Collecting them never allocates: nodes go on an intrusive list, and a call
// takes at most `max_callables` callables from nodes that live on.
class graveyard {
 public:
  static constexpr std::size_t max_callables = 2;

  graveyard() = default;
  graveyard(const graveyard&) = delete;
  graveyard& operator=(const graveyard&) = delete;
  ~graveyard() { bury(); }

  // The node is gone for good: its callable and the node itself.
  void add_node(sub_node* n) noexcept {
    n->next_dead = nodes_;
    nodes_ = n;
  }
  // Only the callable: the node lives on (held by arrays or its handle).
  void add_callable(sub_node* n) noexcept {
    if (n->callable == nullptr) return;
    SLUICE_ASSERT(count_ < max_callables, "graveyard full");
    callables_[count_++] = {n->destroy, n->callable};
    n->callable = nullptr;
  }
  [[nodiscard]] bool room() const noexcept { return count_ < max_callables; }
  void bury() noexcept {
    for (std::size_t i = 0; i < count_; ++i) callables_[i].destroy(callables_[i].callable);
    count_ = 0;
    while (nodes_ != nullptr) {
      sub_node* n = nodes_;
      nodes_ = n->next_dead;
      if (n->callable != nullptr) n->destroy(n->callable);
      delete n;
    }
  }

 private:
  struct box {
    void (*destroy)(void*) noexcept;
    void* callable;
  };
  sub_node* nodes_ = nullptr;
  box callables_[max_callables] = {};
  std::size_t count_ = 0;
};

// One subscriber as a reader sees it: everything a call needs, so that
// delivering reads the array's entries in a row and touches a node only for
// its announcement (and, after a close, its flag).
struct sub_entry {
  sub_node* node;
  outcome (*invoke)(void* callable, const void* event, const metadata& m);
  void* callable;
  std::uint32_t channel;  // 0: every channel; else only events routed there
};

struct sub_array {
  std::vector<sub_entry> items;
  // registry::closes when the array was made, before its nodes' flags were
  // read: while the count is still this, no node of the array is closed.
  std::uint64_t closes_seen = 0;
};

// Counters owned by one producer for one type: single writer, so increments
// are a relaxed load and store, never a locked instruction.
struct alignas(SLUICE_CACHE_LINE) counter_cell {
  std::atomic<std::uint64_t> published{0};
  std::atomic<std::uint64_t> dropped{0};
  std::atomic<std::uint64_t> rejected{0};
  std::atomic<bool> in_use{false};
  counter_cell* next = nullptr;
  const registry* owner = nullptr;  // the type's registry (key extractor, stages)

  static void bump(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) noexcept {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
};

// How the events that transforms made of one type ended, counted by the
// threads that made them: one cell per tracking slot (so per delivering
// thread, and reused by the thread that takes the slot over after one exits),
// written only by the slot's holder with a relaxed load and store, never a
// locked instruction; summed when the type's stats are read.
struct alignas(SLUICE_CACHE_LINE) derived_cell {
  std::atomic<std::uint64_t> made{0};
  std::atomic<std::uint64_t> delivered{0};
  std::atomic<std::uint64_t> unrouted{0};
  std::atomic<std::uint64_t> filtered{0};
  std::atomic<std::uint64_t> transformed{0};
  std::atomic<std::uint64_t> handler_calls{0};
  const reader_slot* slot = nullptr;  // whose cell it is
  derived_cell* next = nullptr;       // immutable once the cell is linked
};

// Registries are numbered once per process (never reused, unlike their
// addresses): a thread's cache of derived cells is keyed by the number.
SLUICE_API inline std::atomic<std::uint64_t>& registry_numbers() noexcept {
  static std::atomic<std::uint64_t> n{0};
  return n;
}

struct alignas(SLUICE_CACHE_LINE) registry {
  registry(std::uint32_t t, std::uint64_t bus_epoch)
      : type(t),
        epoch(bus_epoch),
        number(registry_numbers().fetch_add(1, std::memory_order_relaxed) + 1) {}
  registry(const registry&) = delete;
  registry& operator=(const registry&) = delete;

  ~registry() {
    // The bus is gone: no thread delivers any more. Settle every node first,
    // then destroy the handlers (whose destructors may reset subscriptions).
    graveyard dead;
    for (sub_array* a : retired) delete a;
    retired.clear();
    delete current.load(std::memory_order_relaxed);
    current.store(nullptr, std::memory_order_relaxed);
    sub_node* n = nodes;
    nodes = nullptr;
    while (n != nullptr) {
      sub_node* next = n->next_all;
      n->closed.store(true, std::memory_order_relaxed);
      if (n->handle_released) {
        dead.add_node(n);
      } else {
        dead.add_callable(n);
        dead.bury();
        n->bus_gone.store(true, std::memory_order_release);  // the handle frees it
      }
      n = next;
    }
    dead.bury();
    if (key_fn != nullptr) key_destroy(key_fn);
    counter_cell* c = cells.load(std::memory_order_relaxed);
    while (c != nullptr) {
      counter_cell* next = c->next;
      delete c;
      c = next;
    }
    delete queue_wait.load(std::memory_order_relaxed);
    delete ended_handler_time;
    derived_cell* d = derived_cells.load(std::memory_order_relaxed);
    while (d != nullptr) {
      derived_cell* next = d->next;
      delete d;
      d = next;
    }
  }

  const std::uint32_t type;
  const std::uint64_t epoch;   // process().forks when the bus was made (fork: see reset)
  const std::uint64_t number;  // unique in the process (registry_numbers)
  std::atomic<const sub_array*> current{nullptr};
  // Closes so far (see sub_array::closes_seen): a reader that reads it
  // unchanged after announcing a node knows the node is open without reading
  // the node's flag.
  std::atomic<std::uint64_t> closes{0};
  // Subscriptions whose circuit breaker is watched (breaker::watched): while
  // there are any, drainers pass this type's events through the delivery
  // gate (bus_core::gate).
  std::atomic<std::uint32_t> gated{0};
  // Queue waits of its events per lane (latency metrics; latency.hpp).
  std::atomic<lane_histograms*> queue_wait{nullptr};
  // The handler times of this type's subscriptions that ended, so that the
  // type's handler histogram (bus::latency) never goes back. writer_mutex
  // held; made on first use (with no memory, they are left out).
  duration_histogram* ended_handler_time = nullptr;
  void fold_handler_time(const lane_histograms& h) noexcept {
    if (ended_handler_time == nullptr) ended_handler_time = new (std::nothrow) duration_histogram;
    if (ended_handler_time != nullptr) h.add_to(*ended_handler_time);
  }

  // Consumer-side counters (batched by the drainers).
  alignas(SLUICE_CACHE_LINE) std::atomic<std::uint64_t> delivered{0};
  std::atomic<std::uint64_t> unrouted{0};
  std::atomic<std::uint64_t> failed{0};
  std::atomic<std::uint64_t> discarded{0};
  std::atomic<std::uint64_t> handler_calls{0};
  std::atomic<std::uint64_t> filtered{0};
  std::atomic<std::uint64_t> dead_lettered{0};
  std::atomic<std::uint64_t> transformed{0};  // left as another type's event
  std::atomic<std::uint64_t> derived{0};      // made by a transform of another type
  // The same counts for events transforms made, kept per delivering thread
  // (derived_cell); the atomics above take them only when no cell could be
  // made (no memory) or a thread ends inside a handler.
  std::atomic<derived_cell*> derived_cells{nullptr};

  // Processing layer: set before the bus starts, read-only afterwards.
  std::atomic<const stage_chain*> chain{nullptr};
  std::unique_ptr<stage_chain> chain_owner;
  key_type (*key_of)(const void* fn, const void* event) = nullptr;
  void* key_fn = nullptr;
  void (*key_destroy)(void* fn) noexcept = nullptr;

  alignas(SLUICE_CACHE_LINE) mutex writer_mutex;
  std::vector<sub_array*> retired;  // guarded by writer_mutex
  sub_node* nodes = nullptr;        // guarded by writer_mutex
  std::atomic<counter_cell*> cells{nullptr};

  // --- writer side ----------------------------------------------------------

  // Publishes an array with n added (and the nodes closed since the last
  // subscribe left out). Strong exception guarantee: everything that can
  // throw (the copy) happens before anything changes.
  void add(sub_node* n) {
    graveyard dead;
    std::lock_guard<detail::mutex> lock(writer_mutex);
    const sub_array* old = current.load(std::memory_order_relaxed);
    auto fresh = std::make_unique<sub_array>();
    // Read before the flags: a close that this read misses is counted after
    // it, so readers of the new array check the flags again (close() sets
    // the flag before it counts; this acquire makes a counted close's flag
    // visible to the reads below).
    fresh->closes_seen = closes.load(std::memory_order_seq_cst);
    std::size_t live = 1;
    if (old != nullptr)
      for (const sub_entry& x : old->items)
        if (!x.node->closed.load(std::memory_order_relaxed)) ++live;
    fresh->items.reserve(live);
    if (old != nullptr)
      for (const sub_entry& x : old->items)
        if (!x.node->closed.load(std::memory_order_relaxed)) fresh->items.push_back(x);
    fresh->items.push_back(sub_entry{n, n->invoke, n->callable, n->channel});
    retired.reserve(retired.size() + 1);
    // Nothing below throws.
    n->owner = this;
    n->next_all = nodes;
    nodes = n;
    for (const sub_entry& x : fresh->items) ++x.node->array_refs;
    SLUICE_SCHEDULE_POINT();
    current.store(fresh.release(), std::memory_order_seq_cst);
    if (old != nullptr) retired.push_back(const_cast<sub_array*>(old));
    heavy_fence();
    reclaim(dead);
    // `dead` is buried after the lock is released (declared before it).
  }

  // Closes n: when this returns, every reader either shows n in its slot or
  // will see it closed and not call it. Allocates nothing.
  void close(sub_node* n) noexcept {
    SLUICE_SCHEDULE_POINT();
    n->closed.store(true, std::memory_order_seq_cst);
    SLUICE_SCHEDULE_POINT();
    // (Mutation 4: the close is not counted; readers trust the array.)
    if (!SLUICE_MODEL_MUTATION(4)) closes.fetch_add(1, std::memory_order_seq_cst);
    heavy_fence();
    // A watched breaker of a node that is gone no longer costs its type.
    if (n->retry != nullptr && n->retry->brk.retire())
      gated.fetch_sub(1, std::memory_order_relaxed);
  }

  // A retry record of n is made (it keeps n until it ends).
  void retry_ref(sub_node* n) noexcept {
    std::lock_guard<detail::mutex> lock(writer_mutex);
    ++n->retry_refs;
  }
  // A retry record of n ended: n goes if nothing else holds it.
  void retry_unref(sub_node* n) noexcept {
    graveyard dead;
    std::lock_guard<detail::mutex> lock(writer_mutex);
    --n->retry_refs;
    maybe_free(n, dead);
  }

  // Called by the handle once the node's calls are over (destroy_now), or
  // when reset ran inside the handler itself and cannot wait for it: the
  // callable is then destroyed by a later reset or subscribe of this type, as
  // soon as no thread shows the node, or with the bus. Allocates nothing.
  void release(sub_node* n, bool destroy_now) noexcept {
    graveyard dead;
    std::lock_guard<detail::mutex> lock(writer_mutex);
    if (destroy_now) dead.add_callable(n);
    n->handle_released = true;
    maybe_free(n, dead);
    sweep_self_reset(n, dead);
  }

 private:
  // Frees the arrays no reader shows any more, and the nodes only they held.
  void reclaim(graveyard& dead) noexcept {
    std::size_t keep = 0;
    for (sub_array* a : retired) {
      if (array_in_use(a)) {
        retired[keep++] = a;
        continue;
      }
      for (const sub_entry& x : a->items) {
        --x.node->array_refs;
        maybe_free(x.node, dead);
      }
      delete a;
    }
    retired.resize(keep);
    sweep_self_reset(nullptr, dead);
  }

  void maybe_free(sub_node* n, graveyard& dead) noexcept {
    if (n->array_refs != 0 || n->retry_refs != 0 || !n->handle_released) return;
    // No array holds n, so no reader can reach it or be running it.
    if (const lane_histograms* h = n->handler_time.load(std::memory_order_acquire))
      fold_handler_time(*h);
    for (sub_node** p = &nodes; *p != nullptr; p = &(*p)->next_all) {
      if (*p == n) {
        *p = n->next_all;
        break;
      }
    }
    dead.add_node(n);
  }

  // Destroys the callables of handlers that reset themselves (their handle
  // is released, the node still held by an array) once no thread shows them:
  // closed and fenced, so no call can begin either. `skip`: just released.
  void sweep_self_reset(sub_node* skip, graveyard& dead) noexcept {
    for (sub_node* n = nodes; n != nullptr && dead.room(); n = n->next_all) {
      if (n == skip || !n->handle_released || n->callable == nullptr) continue;
      if (!node_in_use(n)) dead.add_callable(n);
    }
  }
};

// The registries of one bus (or dispatcher), one per event type, each made
// on first use and freed with the table.
class registry_table {
 public:
  explicit registry_table(std::uint64_t epoch) noexcept : epoch_(epoch) {}
  registry_table(const registry_table&) = delete;
  registry_table& operator=(const registry_table&) = delete;
  ~registry_table() {
    if (abandoned_) return;
    for (auto& r : regs_) delete r.load(std::memory_order_relaxed);
  }

  // The registry of a type, made on first use (throws std::bad_alloc).
  [[nodiscard]] registry& get(std::uint32_t type) {
    std::atomic<registry*>& slot = regs_[type];
    registry* r = slot.load(std::memory_order_acquire);
    if (SLUICE_LIKELY(r != nullptr)) return *r;
    auto* fresh = new registry(type, epoch_);
    if (slot.compare_exchange_strong(r, fresh, std::memory_order_acq_rel)) return *fresh;
    delete fresh;
    return *r;
  }
  // The registry of a type, or nullptr if it was never used.
  [[nodiscard]] registry* find(std::uint32_t type) const noexcept {
    return regs_[type].load(std::memory_order_acquire);
  }

  // In a fork() child, for a table of the parent: its locks may be held by
  // threads that do not exist here, so nothing is freed.
  void abandon() noexcept { abandoned_ = true; }

 private:
  std::atomic<registry*> regs_[SLUICE_MAX_EVENT_TYPES] = {};
  const std::uint64_t epoch_;
  bool abandoned_ = false;
};

}  // namespace detail
}  // namespace SLUICE_ABI
}  // namespace sluice
