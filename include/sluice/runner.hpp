// sluice — the worker loop behind bus::run(): drain lanes in bulk; when idle,
// spin, then yield, then park until a producer wakes the worker.
#pragma once

#include <chrono>
#include <cstddef>
#include <thread>
#include <vector>

#include "config.hpp"
#include "detail/clock.hpp"
#include "detail/core.hpp"
#include "detail/tracking.hpp"

namespace sluice {
inline namespace SLUICE_ABI {
namespace detail {

inline void worker_loop(bus_core& core, std::size_t index, std::chrono::nanoseconds idle_spin) {
  // Counted out however the thread ends (a handler may end it: pthread_exit).
  struct exit_guard {
    bus_core& core;
    ~exit_guard() { core.worker_ended(); }
  } counted{core};
  SLUICE_SCHEDULE_POINT();
  (void)my_slot();
  const std::size_t lanes = core.lane_count();
  std::size_t start = index % lanes;
  unsigned misses = 0;
  std::int64_t idle_since = 0;
  backoff draining;
  for (;;) {
    const run_state st = core.state();
    if (st == run_state::discarding || st == run_state::stopped) return;
    if (core.drain_pass(start, static_cast<std::size_t>(-1)) != 0) {
      start = (start + 1) % lanes;
      misses = 0;
      idle_since = 0;
      continue;
    }
    if (st == run_state::draining) {
      if (core.idle()) return;
      draining.pause();  // another thread is delivering: do not burn a core
      continue;
    }
    // Idle: spin with pause for the first quarter of idle_spin (lowest
    // latency), then yield the core for the rest, then park. No idle_spin:
    // park at once.
    if (idle_spin.count() > 0) {
      if ((++misses & 63) != 0) {
        SLUICE_PAUSE();
        continue;
      }
      const std::int64_t now = now_ns();
      if (idle_since == 0) idle_since = now;
      const std::int64_t idle = now - idle_since;
      if (idle < idle_spin.count() / 4) continue;
      if (idle < idle_spin.count()) {
        std::this_thread::yield();
        continue;
      }
    }
    core.park_worker();
    misses = 0;
    idle_since = 0;
  }
}

}  // namespace detail
}  // namespace SLUICE_ABI
}  // namespace sluice
