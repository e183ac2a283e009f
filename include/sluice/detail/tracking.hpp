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
#include <thread>

#include "../config.hpp"

#if SLUICE_USE_MEMBARRIER
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

// A spin-wait hint, without <immintrin.h> (which costs every including file
// about half a second of compile time).
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define SLUICE_PAUSE() __builtin_ia32_pause()
#elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
#include <intrin.h>
#define SLUICE_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define SLUICE_PAUSE() __asm__ __volatile__("yield")
#else
#define SLUICE_PAUSE() ((void)0)
#endif

namespace sluice::detail {

struct alignas(SLUICE_CACHE_LINE) reader_slot {
  std::atomic<const void*> array[SLUICE_MAX_DEPTH] = {};  // subscriber array in use
  std::atomic<const void*> node[SLUICE_MAX_DEPTH] = {};   // handler being called
  const void* bus[SLUICE_MAX_DEPTH] = {};                 // owner thread only: whose handler runs
  std::atomic<bool> in_use{false};
  reader_slot* next = nullptr;  // immutable once the slot is linked
  unsigned depth = 0;           // owner thread only
};

inline std::atomic<reader_slot*> g_slots{nullptr};
inline std::atomic<bool> g_asymmetric{false};
inline thread_local reader_slot* t_slot = nullptr;

// Decides once per process whether membarrier is usable.
inline bool init_fence_mode() noexcept {
  static const bool asym = [] {
#if SLUICE_USE_MEMBARRIER
    const long cmds = syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0);
    if (cmds < 0 || (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return false;
    if (syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0) != 0) return false;
    g_asymmetric.store(true, std::memory_order_relaxed);
    return true;
#else
    return false;
#endif
  }();
  return asym;
}

struct slot_owner {
  reader_slot* slot = nullptr;
  ~slot_owner() {
    if (slot != nullptr) {
      t_slot = nullptr;
      slot->in_use.store(false, std::memory_order_release);
    }
  }
};

SLUICE_NOINLINE inline reader_slot* acquire_slot() {
  init_fence_mode();
  reader_slot* found = nullptr;
  for (reader_slot* s = g_slots.load(std::memory_order_acquire); s != nullptr; s = s->next) {
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
    reader_slot* head = g_slots.load(std::memory_order_relaxed);
    do {
      found->next = head;
    } while (!g_slots.compare_exchange_weak(head, found, std::memory_order_release,
                                            std::memory_order_relaxed));
  }
  static thread_local slot_owner owner;
  owner.slot = found;
  t_slot = found;
  return found;
}

[[nodiscard]] inline reader_slot* my_slot() {
  reader_slot* s = t_slot;
  if (SLUICE_LIKELY(s != nullptr)) return s;
  return acquire_slot();
}

// Reader side: announce a pointer, then read what the writer may have changed.
// `asym` is asymmetric_mode(), read once by the caller.
inline void announce(std::atomic<const void*>& cell, const void* p, bool asym) noexcept {
  if (asym) {
    cell.store(p, std::memory_order_relaxed);
    std::atomic_signal_fence(std::memory_order_seq_cst);
  } else {
    cell.store(p, std::memory_order_seq_cst);
  }
}

template <class T>
[[nodiscard]] inline T reader_load(const std::atomic<T>& a, bool asym) noexcept {
  return asym ? a.load(std::memory_order_acquire) : a.load(std::memory_order_seq_cst);
}

[[nodiscard]] inline bool asymmetric_mode() noexcept {
  return g_asymmetric.load(std::memory_order_relaxed);
}

inline void retract(std::atomic<const void*>& cell) noexcept {
  cell.store(nullptr, std::memory_order_release);
}

// Writer side: after changing flags or arrays with seq_cst stores, make every
// reader's announcement visible.
inline void heavy_fence() noexcept {
#if SLUICE_USE_MEMBARRIER
  if (init_fence_mode()) {
    syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0);
    return;
  }
#endif
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

// Spin, then yield, then sleep: for waits that are normally short.
class backoff {
 public:
  void pause() noexcept {
    if (n_ < 64) {
      SLUICE_PAUSE();
    } else if (n_ < 256) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    ++n_;
  }

 private:
  unsigned n_ = 0;
};

// True when this thread is inside a call of the handler `node`.
[[nodiscard]] inline bool running_here(const void* node) noexcept {
  reader_slot* s = t_slot;
  if (s == nullptr) return false;
  for (unsigned d = 0; d < s->depth && d < SLUICE_MAX_DEPTH; ++d)
    if (s->node[d].load(std::memory_order_relaxed) == node) return true;
  return false;
}

// True when this thread is inside a handler called by the bus `bus`.
[[nodiscard]] inline bool inside(const void* bus) noexcept {
  const reader_slot* s = t_slot;
  if (s == nullptr || s->depth == 0) return false;
  for (unsigned d = 0; d < s->depth && d < SLUICE_MAX_DEPTH; ++d)
    if (s->bus[d] == bus) return true;
  return false;
}

// Blocks until no other thread shows `node` as running.
inline void wait_not_running(const void* node) noexcept {
  const reader_slot* self = t_slot;
  for (reader_slot* s = g_slots.load(std::memory_order_acquire); s != nullptr; s = s->next) {
    if (s == self) continue;
    for (auto& cell : s->node) {
      backoff b;
      while (cell.load(std::memory_order_seq_cst) == node) b.pause();
    }
  }
}

// True when some thread (this one included) still reads `array`.
[[nodiscard]] inline bool array_in_use(const void* array) noexcept {
  for (reader_slot* s = g_slots.load(std::memory_order_acquire); s != nullptr; s = s->next)
    for (auto& cell : s->array)
      if (cell.load(std::memory_order_seq_cst) == array) return true;
  return false;
}

}  // namespace sluice::detail
