// sluice — the state sluice keeps once per process, and once per thread.
//
// Type identities, the handler-tracking slots, the fence mode, channel names,
// the numbering of registries (registry.hpp) and the list of buses that
// fork() must know about are one per process, even
// when sluice is compiled into several shared libraries (plugins) built with
// -fvisibility=hidden: the accessors below are SLUICE_API (exported), so the
// dynamic linker merges every library's copy into one (ELF unique symbols;
// also across dlopen(RTLD_LOCAL)). Everything else in sluice is per object.
//
// fork(): a bus belongs to the process that made it. In a child made by fork()
// only the forking thread exists, and locks may be held by threads that are
// gone, so every bus made before the fork turns inert in the child (see
// docs/run-modes.md#fork), and the tracking slots of the threads that did not
// survive are freed.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <type_traits>

#include "../config.hpp"

namespace sluice {
inline namespace SLUICE_ABI {

struct metadata;  // event.hpp

namespace detail {

struct derived_cell;   // registry.hpp
struct retry_context;  // retry.hpp

// What a delivering thread announces (see tracking.hpp): one per thread that
// ever delivered, reused after the thread exits, never freed.
struct alignas(SLUICE_CACHE_LINE) reader_slot {
  std::atomic<const void*> array[SLUICE_MAX_DEPTH] = {};  // subscriber array in use
  std::atomic<const void*> node[SLUICE_MAX_DEPTH] = {};   // handler being called
  const void* bus[SLUICE_MAX_DEPTH] = {};                 // owner thread only: whose handler runs
  std::atomic<bool> in_use{false};
  reader_slot* next = nullptr;  // immutable once the slot is linked
  unsigned depth = 0;           // owner thread only
  // Owner thread only: the slot's last few count cells for events that
  // transforms make, by registry number (0: empty); see counters.hpp. They
  // stay valid for the next thread that takes the slot (the cells are the
  // slot's), and a registry's number is never reused.
  static constexpr unsigned derived_ways = 4;
  std::uint64_t derived_number[derived_ways] = {};
  derived_cell* derived[derived_ways] = {};
  unsigned derived_next = 0;
};

// How the reader side of handler tracking is fenced (tracking.hpp).
enum class fence_mode : std::uint8_t {
  unknown,     // not decided yet
  symmetric,   // sequentially consistent atomics on both sides
  asymmetric,  // plain stores on the reader side, membarrier(2) on the writer side
  degraded,    // membarrier failed after start-up: readers fence, writers also
               // run the fallback process-wide barrier (for readers still in flight)
};

// A bus's link in the list fork() walks (guarded by process_state::fork_mutex).
struct fork_link {
  fork_link* prev = nullptr;
  fork_link* next = nullptr;
  void* owner = nullptr;
  void (*on_child)(void* owner) noexcept = nullptr;  // runs in the child, single-threaded
};

struct channel_names;  // channel.hpp

// Constant-initialised and trivially destructible: no guard on the paths that
// read it, and still usable from static destructors.
struct process_state {
  std::atomic<std::uint32_t> next_type{0};   // type indices handed out
  std::atomic<reader_slot*> slots{nullptr};  // every tracking slot ever made
  std::atomic<fence_mode> fence{fence_mode::unknown};
  std::atomic<std::uint32_t> next_thread{0};  // thread numbers handed out
  std::atomic<std::uint64_t> forks{0};        // fork() children this process descends from
  std::atomic<bool> fork_handlers{false};     // pthread_atfork done
  // The membarrier(2) call, replaceable by tests (a seam for its failure);
  // nullptr: the system call.
  std::atomic<long (*)(int cmd, unsigned flags)> membarrier{nullptr};
  std::mutex fence_mutex;  // guards the fence decision and the fallback barrier
  void* fence_page = nullptr;
  std::mutex fork_mutex;  // guards `buses`; held across fork()
  fork_link* buses = nullptr;
  std::mutex channel_mutex;  // guards `channels`; held across fork()
  channel_names* channels = nullptr;
};

inline void fork_prepare() noexcept;
inline void fork_parent() noexcept;
inline void fork_child() noexcept;

// The process's one state object.
SLUICE_API inline process_state& process() noexcept {
  static process_state state;
  return state;
}

// Registers the fork handlers once per process (before the first bus, slot or
// channel can exist).
inline void need_fork_handlers() noexcept {
  process_state& p = process();
  if (SLUICE_LIKELY(p.fork_handlers.load(std::memory_order_acquire))) return;
  bool expected = false;
  if (p.fork_handlers.compare_exchange_strong(expected, true, std::memory_order_acq_rel))
    (void)::pthread_atfork(&fork_prepare, &fork_parent, &fork_child);
}

// What sluice keeps per thread. Constant-initialised and trivially
// destructible, so reading it costs a thread-local load and no guard.
struct thread_state {
  reader_slot* slot = nullptr;     // this thread's tracking slot (made on first delivery)
  std::uint32_t number = 0;        // 1, 2, ... in the order threads first ask (0: not yet)
  char stage_error[256] = {};      // the message of the last exception a stage threw here
  retry_context* retry = nullptr;  // the event a drainer of this thread delivers (retry.hpp)
  // The cause of what this thread publishes when it is not the event its
  // drainer delivers: a retried call's event, or a caused_by scope's
  // (producer.hpp).
  const metadata* cause = nullptr;
};

static_assert(std::is_trivially_destructible_v<thread_state>,
              "sluice: thread state must need no destructor");
#if defined(__GLIBCXX__)
static_assert(std::is_trivially_destructible_v<process_state>,
              "sluice: process state must outlive static destructors");
#endif

SLUICE_API inline thread_state& this_thread() noexcept {
  static thread_local thread_state t;
  return t;
}

// Sets this thread's cause for a while (restoring the one before).
class cause_scope {
 public:
  explicit cause_scope(const metadata* m) noexcept : t_(this_thread()), saved_(t_.cause) {
    t_.cause = m;
  }
  cause_scope(const cause_scope&) = delete;
  cause_scope& operator=(const cause_scope&) = delete;
  ~cause_scope() { t_.cause = saved_; }

 private:
  thread_state& t_;
  const metadata* saved_;
};

[[nodiscard]] inline std::uint32_t thread_number() noexcept {
  thread_state& t = this_thread();
  if (SLUICE_UNLIKELY(t.number == 0))
    t.number = process().next_thread.fetch_add(1, std::memory_order_relaxed) + 1;
  return t.number;
}

// ---- fork --------------------------------------------------------------------

inline void link_bus(fork_link& l) {
  need_fork_handlers();
  process_state& p = process();
  std::lock_guard<std::mutex> lock(p.fork_mutex);
  l.prev = nullptr;
  l.next = p.buses;
  if (p.buses != nullptr) p.buses->prev = &l;
  p.buses = &l;
}

inline void unlink_bus(fork_link& l) noexcept {
  process_state& p = process();
  std::lock_guard<std::mutex> lock(p.fork_mutex);
  if (l.prev != nullptr) {
    l.prev->next = l.next;
  } else if (p.buses == &l) {
    p.buses = l.next;
  }
  if (l.next != nullptr) l.next->prev = l.prev;
  l.prev = l.next = nullptr;
}

// Before fork(): no bus is being linked or unlinked, no channel is being
// named and no fence decision or fallback barrier is under way while the
// address space is copied (the child could never take those locks again).
inline void fork_prepare() noexcept {
  process_state& p = process();
  p.fork_mutex.lock();
  p.channel_mutex.lock();
  p.fence_mutex.lock();
}

inline void fork_parent() noexcept {
  process_state& p = process();
  p.fence_mutex.unlock();
  p.channel_mutex.unlock();
  p.fork_mutex.unlock();
}

// In the child, which has only the thread that called fork(): the other
// threads' slots are freed (their handlers do not run here, and never will),
// and every bus turns inert.
inline void fork_child() noexcept {
  process_state& p = process();
  p.forks.fetch_add(1, std::memory_order_relaxed);
  reader_slot* mine = this_thread().slot;
  for (reader_slot* s = p.slots.load(std::memory_order_seq_cst); s != nullptr; s = s->next) {
    if (s == mine) continue;
    for (auto& c : s->array) c.store(nullptr, std::memory_order_relaxed);
    for (auto& c : s->node) c.store(nullptr, std::memory_order_relaxed);
    for (auto& b : s->bus) b = nullptr;
    s->depth = 0;
    s->in_use.store(false, std::memory_order_release);
  }
  for (fork_link* l = p.buses; l != nullptr; l = l->next) l->on_child(l->owner);
  p.fence_mutex.unlock();
  p.channel_mutex.unlock();
  p.fork_mutex.unlock();
}

}  // namespace detail
}  // namespace SLUICE_ABI
}  // namespace sluice
