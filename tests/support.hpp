// Helpers shared by the tests: a watchdog so that a hang fails loudly, and a
// bounded wait.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>

namespace test {

// Aborts the process (a failed test, with a message) if not destroyed in time.
class watchdog {
 public:
  explicit watchdog(std::chrono::seconds limit, const char* what = "test")
      : thread_([this, limit, what] {
          std::unique_lock<std::mutex> lock(m_);
          if (!cv_.wait_for(lock, limit, [this] { return done_; })) {
            std::fprintf(stderr, "watchdog: %s did not finish within %lld s (hang?)\n", what,
                         static_cast<long long>(limit.count()));
            std::abort();
          }
        }) {}
  ~watchdog() {
    {
      std::lock_guard<std::mutex> lock(m_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  watchdog(const watchdog&) = delete;
  watchdog& operator=(const watchdog&) = delete;

 private:
  std::mutex m_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

template <class Pred>
bool wait_until(Pred&& pred, std::chrono::milliseconds limit = std::chrono::milliseconds(10000)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return true;
}

// Polls `bus` until `pred()`, for at most `limit`.
template <class Bus, class Pred>
bool poll_until(Bus& bus, Pred&& pred,
                std::chrono::milliseconds limit = std::chrono::milliseconds(20000)) {
  return wait_until(
      [&] {
        bus.poll();
        return pred();
      },
      limit);
}

// The steady clock in nanoseconds (what metadata timestamps and delays use).
inline std::int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Threads of this process (Linux), to check that no worker survives a bus.
inline int thread_count() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("Threads:", 0) == 0) return std::atoi(line.c_str() + 8);
  return -1;
}

// An event that counts its constructions and destructions. Larger than the
// inline size, so it is boxed on the heap.
struct counted {
  char padding[64] = {};
  static inline std::atomic<long> live{0};
  static inline std::atomic<long> copies{0};
  int value = 0;
  explicit counted(int v = 0) noexcept : value(v) { ++live; }
  counted(const counted& o) noexcept : padding{}, value(o.value) {
    ++live;
    ++copies;
  }
  counted(counted&& o) noexcept : padding{}, value(o.value) { ++live; }
  counted& operator=(const counted&) = default;
  counted& operator=(counted&&) = default;
  ~counted() { --live; }
};

}  // namespace test
