// sluice — the per-type subscriber registry of a bus.
//
// Readers (whoever delivers an event) read an immutable array of subscriber
// nodes; writers (subscribe, unsubscribe) copy it under `mutex`, publish the
// copy, and free the old one once no reader shows it (see tracking.hpp). A node
// lives while an array holds it; its callable is destroyed as soon as it is
// known that no call is running or can begin.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "../config.hpp"
#include "../errors.hpp"
#include "../event.hpp"
#include "stages.hpp"
#include "tracking.hpp"

namespace sluice::detail {

struct registry;

// A handler object taken out of its node, to be destroyed after the registry
// lock is released (its destructor may reset subscriptions of this bus).
struct callable_box {
  void (*destroy)(void* callable) noexcept = nullptr;
  void* callable = nullptr;
  void run() noexcept {
    if (callable != nullptr) destroy(callable);
    callable = nullptr;
  }
};
using dead_list = std::vector<callable_box>;

struct sub_node {
  std::atomic<bool> closed{false};
  std::atomic<bool> bus_gone{false};
  outcome (*invoke)(void* callable, const void* event, const metadata& m) = nullptr;
  void (*destroy)(void* callable) noexcept = nullptr;
  void* callable = nullptr;
  registry* owner = nullptr;
  std::uint32_t channel = 0;  // 0: every channel; else only events routed there
  // Guarded by owner->mutex:
  std::uint32_t array_refs = 0;
  bool handle_released = false;
  sub_node* next_all = nullptr;

  [[nodiscard]] callable_box take_callable() noexcept {
    callable_box box{destroy, callable};
    callable = nullptr;
    return box;
  }
};

struct sub_array {
  std::vector<sub_node*> items;
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

struct alignas(SLUICE_CACHE_LINE) registry {
  explicit registry(std::uint32_t t) : type(t) {}
  registry(const registry&) = delete;
  registry& operator=(const registry&) = delete;

  ~registry() {
    // The bus is gone: no thread delivers any more. Settle every node first,
    // then destroy the handlers (whose destructors may reset subscriptions).
    dead_list dead;
    for (sub_array* a : retired) delete a;
    retired.clear();
    delete current.load(std::memory_order_relaxed);
    current.store(nullptr, std::memory_order_relaxed);
    sub_node* n = nodes;
    nodes = nullptr;
    while (n != nullptr) {
      sub_node* next = n->next_all;
      n->closed.store(true, std::memory_order_relaxed);
      dead.push_back(n->take_callable());
      if (n->handle_released) {
        delete n;
      } else {
        n->bus_gone.store(true, std::memory_order_release);  // the handle frees it
      }
      n = next;
    }
    for (callable_box& b : dead) b.run();
    if (key_fn != nullptr) key_destroy(key_fn);
    counter_cell* c = cells.load(std::memory_order_relaxed);
    while (c != nullptr) {
      counter_cell* next = c->next;
      delete c;
      c = next;
    }
  }

  const std::uint32_t type;
  std::atomic<const sub_array*> current{nullptr};

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

  // Processing layer: set before the bus starts, read-only afterwards.
  std::atomic<const stage_chain*> chain{nullptr};
  std::unique_ptr<stage_chain> chain_owner;
  key_type (*key_of)(const void* fn, const void* event) = nullptr;
  void* key_fn = nullptr;
  void (*key_destroy)(void* fn) noexcept = nullptr;

  alignas(SLUICE_CACHE_LINE) std::mutex mutex;
  std::vector<sub_array*> retired;  // guarded by mutex
  sub_node* nodes = nullptr;        // guarded by mutex
  std::atomic<counter_cell*> cells{nullptr};

  // --- writer side (all under mutex) ---------------------------------------

  void add(sub_node* n) {
    dead_list dead;
    {
      std::lock_guard<std::mutex> lock(mutex);
      const sub_array* old = current.load(std::memory_order_relaxed);
      auto fresh = std::make_unique<sub_array>();
      if (old != nullptr) {
        fresh->items.reserve(old->items.size() + 1);
        fresh->items = old->items;
      }
      fresh->items.push_back(n);
      retired.reserve(retired.size() + 1);
      // Nothing below throws: link the node only now.
      n->owner = this;
      n->next_all = nodes;
      nodes = n;
      swap_in(fresh.release(), old, dead);
    }
    for (callable_box& b : dead) b.run();
  }

  // Marks n closed and removes it from the current array. Returns with the
  // guarantee that every reader either shows n in its slot or will see closed.
  void remove(sub_node* n) {
    dead_list dead;
    {
      std::lock_guard<std::mutex> lock(mutex);
      n->closed.store(true, std::memory_order_seq_cst);
      const sub_array* old = current.load(std::memory_order_relaxed);
      auto fresh = std::make_unique<sub_array>();
      if (old != nullptr) {
        fresh->items.reserve(old->items.size());
        for (sub_node* x : old->items)
          if (x != n) fresh->items.push_back(x);
      }
      retired.reserve(retired.size() + 1);
      swap_in(fresh.release(), old, dead);
    }
    for (callable_box& b : dead) b.run();
  }

  // Called by the handle once the node's calls are over (or cannot be waited
  // for because reset ran inside the handler itself).
  void release(sub_node* n, bool destroy_now) {
    dead_list dead;
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (destroy_now) dead.push_back(n->take_callable());
      reclaim(dead);  // before handle_released: reclaim must not free n itself
      n->handle_released = true;
      maybe_free(n, dead);
    }
    for (callable_box& b : dead) b.run();
  }

 private:
  void swap_in(sub_array* fresh, const sub_array* old, dead_list& dead) {
    for (sub_node* x : fresh->items) ++x->array_refs;
    current.store(fresh, std::memory_order_seq_cst);
    if (old != nullptr) retired.push_back(const_cast<sub_array*>(old));
    heavy_fence();
    reclaim(dead);
  }

  void reclaim(dead_list& dead) {
    std::size_t keep = 0;
    for (sub_array* a : retired) {
      if (array_in_use(a)) {
        retired[keep++] = a;
        continue;
      }
      std::vector<sub_node*> held = std::move(a->items);
      delete a;
      for (sub_node* x : held) {
        --x->array_refs;
        maybe_free(x, dead);
      }
    }
    retired.resize(keep);
  }

  void maybe_free(sub_node* n, dead_list& dead) {
    if (n->array_refs != 0 || !n->handle_released) return;
    // No array holds n, so no reader can reach it or be running it.
    dead.push_back(n->take_callable());
    for (sub_node** p = &nodes; *p != nullptr; p = &(*p)->next_all) {
      if (*p == n) {
        *p = n->next_all;
        break;
      }
    }
    delete n;
  }
};

}  // namespace sluice::detail
