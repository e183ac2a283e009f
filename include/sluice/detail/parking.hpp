// sluice — where idle threads wait: workers with nothing to drain, and
// callers of wait_idle(). Both are woken through a count that the waking side
// reads first, so that a busy bus never touches a mutex.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <mutex>
#include <new>

#include "../config.hpp"
#include "clock.hpp"
#include "sync.hpp"

namespace sluice {
inline namespace SLUICE_ABI {
namespace detail {

// Idle workers. A worker counts itself, then checks for work under the
// mutex; a publisher (or a drainer leaving work behind) changes what that
// check sees, then reads the count: one of the two sees the other
// (sequentially consistent on both sides).
class parking {
 public:
  // Wakes one parked worker (every one with `all`), if any is parked.
  void wake(bool all = false) {
    SLUICE_SCHEDULE_POINT();
    if (sleepers_.load(std::memory_order_seq_cst) == 0) return;
    std::lock_guard<mutex> lock(mutex_);
    if (all) {
      cv_.notify_all();
    } else {
      cv_.notify_one();
    }
  }

  // Workers parked (or about to park) right now.
  [[nodiscard]] std::size_t parked() const noexcept {
    return sleepers_.load(std::memory_order_seq_cst);
  }

  // Parks the caller unless `keep_awake()` (checked after the caller is
  // counted); `after_counted()` runs between the two. `wake_at()` (read
  // after keep_awake()) is when to wake by itself, in steady-clock
  // nanoseconds (INT64_MAX: only when woken).
  template <class AfterCounted, class KeepAwake, class WakeAt>
  void park(AfterCounted&& after_counted, KeepAwake&& keep_awake, WakeAt&& wake_at) {
    std::unique_lock<mutex> lock(mutex_);
    SLUICE_SCHEDULE_POINT();
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    after_counted();
    if (!keep_awake()) {
      const std::int64_t at = wake_at();
      if (at == std::numeric_limits<std::int64_t>::max()) {
        cv_.wait(lock);
      } else {
        // A due time already past with nothing to take: its lane is held
        // by a drainer, whose unlock wakes a worker; wait a little, not
        // spin (other lanes' due times are read again after it).
        const std::int64_t now = now_ns();
        const std::int64_t wait = at > now ? at - now : 1000000;
        cv_.wait_for(lock, std::chrono::nanoseconds(wait));
      }
    }
    SLUICE_SCHEDULE_POINT();
    sleepers_.fetch_sub(1, std::memory_order_seq_cst);
  }

  // Wakes every parked worker, counted or not (stop()).
  void wake_all() {
    std::lock_guard<mutex> lock(mutex_);
    cv_.notify_all();
  }

  // In a fork() child: the parent's workers that waited here are counted as
  // waiters of the condition variable, and destroying it would wait for
  // them for ever; a fresh one takes its place (it holds nothing to free).
  void abandon() noexcept { ::new (static_cast<void*>(&cv_)) condition_variable(); }

 private:
  alignas(SLUICE_CACHE_LINE) std::atomic<std::uint32_t> sleepers_{0};
  mutex mutex_;
  condition_variable cv_;
};

// Callers of wait_idle(): woken by drainers as lanes go idle.
class idle_waiters {
 public:
  // Waits until `idle()`, or `expired()` or `stopped()`. Returns whether it
  // saw the bus idle.
  template <class Idle, class Expired, class Stopped>
  bool wait(Idle&& idle, Expired&& expired, Stopped&& stopped) {
    waiters_.fetch_add(1, std::memory_order_seq_cst);
    bool settled = false;
    {
      std::unique_lock<mutex> lock(mutex_);
      for (;;) {
        if (idle()) {
          settled = true;
          break;
        }
        if (expired() || stopped()) break;
        // The bounded wait only lets the deadline be checked.
        cv_.wait_for(lock, std::chrono::milliseconds(10));
      }
    }
    waiters_.fetch_sub(1, std::memory_order_seq_cst);
    return settled;
  }

  void notify() {
    SLUICE_SCHEDULE_POINT();
    if (waiters_.load(std::memory_order_seq_cst) == 0) return;
    std::lock_guard<mutex> lock(mutex_);
    cv_.notify_all();
  }

  void abandon() noexcept { ::new (static_cast<void*>(&cv_)) condition_variable(); }

 private:
  std::atomic<std::uint32_t> waiters_{0};
  mutex mutex_;
  condition_variable cv_;
};

}  // namespace detail
}  // namespace SLUICE_ABI
}  // namespace sluice
