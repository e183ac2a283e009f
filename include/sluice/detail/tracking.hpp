// sluice — which handler is running where, without a fence on the hot path.
//
// Every thread that delivers events owns a reader_slot (one per thread for the
// whole process, reused after the thread exits). Before it reads a subscriber
// array or calls a handler it writes the pointer into its slot, then checks the
// subscriber's `closed` flag. A writer (subscribe, unsubscribe) changes the flag
// or the array, runs a heavy fence, and then scans the slots:
//  - unsubscribe waits until no slot shows the handler (precise: it waits for
//    that handler only, never for a whole dispatch, so reentrant unsubscribes do
//    not wait on each other);
//  - an old subscriber array is freed once no slot shows it.
// Memory ordering: this is the store-load (Dekker) pattern. With Linux
// membarrier(PRIVATE_EXPEDITED) the reader side is a plain store plus a
// compiler barrier, and the writer's membarrier call makes it a full fence on
// every running thread. Without membarrier (other systems, thread sanitizer,
// or a kernel that refuses it) both sides use sequentially consistent atomics.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "../config.hpp"
#include "process.hpp"
#include "sync.hpp"

#if SLUICE_USE_MEMBARRIER
#include <linux/membarrier.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace sluice {
inline namespace SLUICE_ABI {
namespace detail {

[[noreturn]] inline void fatal(const char* message) noexcept {
  std::fprintf(stderr, "sluice: %s\n", message);
  std::abort();
}

#if SLUICE_USE_MEMBARRIER
inline long membarrier_call(process_state& p, int cmd) noexcept {
  if (auto fn = p.membarrier.load(std::memory_order_acquire)) return fn(cmd, 0);
  return ::syscall(__NR_membarrier, cmd, 0, 0);
}
#endif

#if SLUICE_USE_MEMBARRIER && defined(__x86_64__)
// The fallback when membarrier(2) fails after readers went without fences:
// changing the protection of a page this process has written makes the kernel
// shoot down its TLB entry, with an interrupt, on every CPU that runs one of
// the process's threads; taking the interrupt drains that CPU's store buffer,
// so every reader's announcement is visible when mprotect returns. (x86-64
// only: elsewhere TLB shootdowns need not interrupt.) fence_mutex held.
inline bool page_barrier(process_state& p) noexcept {
  const long size = ::sysconf(_SC_PAGESIZE);
  if (p.fence_page == nullptr || size <= 0) return false;
  const auto n = static_cast<std::size_t>(size);
  if (::mprotect(p.fence_page, n, PROT_READ | PROT_WRITE) != 0) return false;
  __atomic_add_fetch(static_cast<int*>(p.fence_page), 1, __ATOMIC_SEQ_CST);  // mapped and dirty
  return ::mprotect(p.fence_page, n, PROT_READ) == 0;
}
inline bool prepare_page_barrier(process_state& p) noexcept {
  const long size = ::sysconf(_SC_PAGESIZE);
  if (size <= 0) return false;
  void* m = ::mmap(nullptr, static_cast<std::size_t>(size), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return false;
  p.fence_page = m;
  return page_barrier(p);
}
#else
inline bool page_barrier(process_state&) noexcept {
  return false;
}
inline bool prepare_page_barrier(process_state&) noexcept {
  return false;
}
#endif

// Decides once per process how readers are fenced: membarrier when the kernel
// offers it (and the fallback barrier is ready should it ever fail), else
// sequentially consistent atomics.
SLUICE_NOINLINE inline fence_mode decide_fence_mode() noexcept {
  process_state& p = process();
  std::lock_guard<std::mutex> lock(p.fence_mutex);
  fence_mode m = p.fence.load(std::memory_order_acquire);
  if (m != fence_mode::unknown) return m;
  m = fence_mode::symmetric;
#if SLUICE_USE_MEMBARRIER
  const long cmds = membarrier_call(p, MEMBARRIER_CMD_QUERY);
  if (cmds >= 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0 &&
      membarrier_call(p, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0 &&
      (p.fence_page != nullptr || prepare_page_barrier(p)))
    m = fence_mode::asymmetric;
#endif
  p.fence.store(m, std::memory_order_seq_cst);
  return m;
}

[[nodiscard]] inline fence_mode current_fence_mode() noexcept {
  const fence_mode m = process().fence.load(std::memory_order_acquire);
  return SLUICE_LIKELY(m != fence_mode::unknown) ? m : decide_fence_mode();
}

// True when readers may announce without a fence. Read once per delivery
// (once per run of one type, for a drainer: run_frame);
// decided before this thread's first delivery (acquire_slot).
[[nodiscard]] inline bool asymmetric_mode() noexcept {
  return process().fence.load(std::memory_order_relaxed) == fence_mode::asymmetric;
}

struct slot_owner {
  reader_slot* slot = nullptr;
  ~slot_owner() {
    if (slot != nullptr) {
      this_thread().slot = nullptr;
      // A thread that ends inside a handler without unwinding (pthread_exit
      // in a build without exceptions) leaves its announcements: it runs no
      // handler any more, so they are withdrawn, or a reset() would wait for
      // it for ever.
      for (auto& c : slot->array) c.store(nullptr, std::memory_order_seq_cst);
      for (auto& c : slot->node) c.store(nullptr, std::memory_order_seq_cst);
      for (auto& b : slot->bus) b = nullptr;
      slot->depth = 0;
      slot->in_use.store(false, std::memory_order_release);
    }
  }
};

SLUICE_NOINLINE inline reader_slot* acquire_slot() {
  (void)current_fence_mode();
  need_fork_handlers();
  process_state& p = process();
  reader_slot* found = nullptr;
  for (reader_slot* s = p.slots.load(std::memory_order_seq_cst); s != nullptr; s = s->next) {
    bool expected = false;
    if (!s->in_use.load(std::memory_order_relaxed) &&
        s->in_use.compare_exchange_strong(expected, true, std::memory_order_acquire)) {
      found = s;
      break;
    }
  }
  if (found == nullptr) {
    found = new reader_slot;  // never freed: slots are reused by later threads
    found->in_use.store(true, std::memory_order_relaxed);
    reader_slot* head = p.slots.load(std::memory_order_relaxed);
    // seq_cst: without membarrier, a writer that scans the list after its
    // fence must find a slot whose announcement preceded the writer's store.
    do {
      found->next = head;
    } while (!p.slots.compare_exchange_weak(head, found, std::memory_order_seq_cst,
                                            std::memory_order_relaxed));
  }
  static thread_local slot_owner owner;
  owner.slot = found;
  this_thread().slot = found;
  return found;
}

[[nodiscard]] inline reader_slot* my_slot() {
  reader_slot* s = this_thread().slot;
  if (SLUICE_LIKELY(s != nullptr)) return s;
  return acquire_slot();
}

// Reader side: announce a pointer, then read what the writer may have changed.
// `asym` is asymmetric_mode(), read once by the caller.
inline void announce(std::atomic<const void*>& cell, const void* p, bool asym) noexcept {
  SLUICE_SCHEDULE_POINT();
  if (asym) {
    cell.store(p, std::memory_order_relaxed);
    std::atomic_signal_fence(std::memory_order_seq_cst);
  } else {
    cell.store(p, std::memory_order_seq_cst);
  }
}

template <class T>
[[nodiscard]] inline T reader_load(const std::atomic<T>& a, bool asym) noexcept {
  SLUICE_SCHEDULE_POINT();
  return asym ? a.load(std::memory_order_acquire) : a.load(std::memory_order_seq_cst);
}

inline void retract(std::atomic<const void*>& cell) noexcept {
  SLUICE_SCHEDULE_POINT();
  cell.store(nullptr, std::memory_order_release);
}

// Writer side: after changing flags or arrays with seq_cst stores, make every
// reader's announcement visible. If membarrier fails after start-up (a
// seccomp filter installed later, say), readers switch to fenced announcements
// for good and writers also run the fallback barrier, which covers deliveries
// that began unfenced; where no fallback exists the process stops with a
// message rather than let reset() return while a handler may run.
inline void heavy_fence() noexcept {
  SLUICE_SCHEDULE_POINT();
#if SLUICE_USE_MEMBARRIER
  process_state& p = process();
  const fence_mode m = current_fence_mode();
  if (m == fence_mode::asymmetric || m == fence_mode::degraded) {
    if (m == fence_mode::asymmetric && membarrier_call(p, MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0)
      return;
    p.fence.store(fence_mode::degraded, std::memory_order_seq_cst);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    std::lock_guard<std::mutex> lock(p.fence_mutex);
    if (!page_barrier(p))
      fatal(
          "membarrier(2) failed after handlers ran without fences, and no fallback barrier "
          "works here; build with SLUICE_USE_MEMBARRIER=0");
    return;
  }
#endif
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

// True when this thread is inside a call of the handler `node`.
[[nodiscard]] inline bool running_here(const void* node) noexcept {
  const reader_slot* s = this_thread().slot;
  if (s == nullptr) return false;
  for (unsigned d = 0; d < s->depth && d < SLUICE_MAX_DEPTH; ++d)
    if (s->node[d].load(std::memory_order_relaxed) == node) return true;
  return false;
}

// True when this thread is inside a handler called by the bus `bus`.
[[nodiscard]] inline bool inside(const void* bus) noexcept {
  const reader_slot* s = this_thread().slot;
  if (s == nullptr || s->depth == 0) return false;
  for (unsigned d = 0; d < s->depth && d < SLUICE_MAX_DEPTH; ++d)
    if (s->bus[d] == bus) return true;
  return false;
}

// Blocks until no other thread shows `node` as running.
inline void wait_not_running(const void* node) noexcept {
  const reader_slot* self = this_thread().slot;
  for (reader_slot* s = process().slots.load(std::memory_order_seq_cst); s != nullptr;
       s = s->next) {
    if (s == self) continue;
    for (auto& cell : s->node) {
      backoff b;
      for (;;) {
        SLUICE_SCHEDULE_POINT();
        if (cell.load(std::memory_order_seq_cst) != node) break;
        b.pause();
      }
    }
  }
}

// True when some thread (this one included) shows `p` in one of its slot's
// `cells` (reader_slot::node or reader_slot::array).
using slot_cells = std::atomic<const void*> (reader_slot::*)[SLUICE_MAX_DEPTH];
[[nodiscard]] inline bool shown(slot_cells cells, const void* p) noexcept {
  for (reader_slot* s = process().slots.load(std::memory_order_seq_cst); s != nullptr; s = s->next)
    for (auto& cell : s->*cells) {
      SLUICE_SCHEDULE_POINT();
      if (cell.load(std::memory_order_seq_cst) == p) return true;
    }
  return false;
}
// A handler some thread is calling, or an array some thread still reads.
[[nodiscard]] inline bool node_in_use(const void* node) noexcept {
  return shown(&reader_slot::node, node);
}
[[nodiscard]] inline bool array_in_use(const void* array) noexcept {
  return shown(&reader_slot::array, array);
}

}  // namespace detail
}  // namespace SLUICE_ABI
}  // namespace sluice
