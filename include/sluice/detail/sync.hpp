// sluice — the locks and waits of sluice's own protocols (handler tracking,
// worker and producer parking, idle waiting), and a spin-then-sleep backoff.
//
// They are plain std::mutex and std::condition_variable. The interleaving
// checker (tests/model) builds sluice with SLUICE_MODEL_CHECK=1 and its own
// cooperative versions, declared before sluice is included, so that it can
// run these protocols one step at a time on its own schedule.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "../config.hpp"

namespace sluice {
inline namespace SLUICE_ABI {
namespace detail {

#if SLUICE_MODEL_CHECK
using mutex = ::sluice_model::mutex;
using condition_variable = ::sluice_model::condition_variable;
#else
using mutex = std::mutex;
using condition_variable = std::condition_variable;
#endif

// Spin, then yield, then sleep: for waits that are normally short.
class backoff {
 public:
  void pause() noexcept {
    SLUICE_SCHEDULE_POINT();
#if !SLUICE_MODEL_CHECK
    if (n_ < 64) {
      SLUICE_PAUSE();
    } else if (n_ < 256) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
#endif
    ++n_;
  }

 private:
  unsigned n_ = 0;
};

}  // namespace detail
}  // namespace SLUICE_ABI
}  // namespace sluice
