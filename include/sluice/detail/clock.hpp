// sluice — clocks, deadlines that cannot overflow, and the budget of a
// poll_for.
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>

#include "../config.hpp"

namespace sluice {
inline namespace SLUICE_ABI {
namespace detail {

template <class Clock>
[[nodiscard]] inline std::int64_t clock_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

[[nodiscard]] inline std::int64_t now_ns() noexcept {
  return clock_ns<std::chrono::steady_clock>();
}

// A duration in nanoseconds, saturated to [0, INT64_MAX] (negative and NaN
// give 0; nanoseconds::max(), hours::max() and the like give INT64_MAX).
template <class Rep, class Period>
[[nodiscard]] inline std::int64_t saturated_ns(std::chrono::duration<Rep, Period> d) noexcept {
  const long double ns =
      std::chrono::duration_cast<std::chrono::duration<long double, std::nano>>(d).count();
  if (!(ns > 0)) return 0;
  constexpr auto most = std::numeric_limits<std::int64_t>::max();
  if (ns >= static_cast<long double>(most)) return most;
  return static_cast<std::int64_t>(ns);
}

// now + d, without overflow.
[[nodiscard]] inline std::int64_t deadline_after(std::int64_t now, std::int64_t d) noexcept {
  constexpr auto most = std::numeric_limits<std::int64_t>::max();
  return d > most - now ? most : now + d;
}

// The budget of a poll_for: tells the drainer after each event whether to
// stop. It reads the clock after every event while it knows nothing, then
// only as often as the events' measured cost allows: never letting more
// events go unchecked than fit in half the time that is left, so that with
// steady handler times the budget is overrun by at most about one handler
// call, at the price of a clock read per few events.
class budget {
 public:
  budget(std::int64_t (*now)() noexcept, std::int64_t end) noexcept : now_(now), end_(end) {
    last_ = now_();
  }

  // One more event was delivered: false to go on, true to stop here.
  [[nodiscard]] bool spent() noexcept {
    ++since_;
    if (skip_ != 0) {
      --skip_;
      return false;
    }
    const std::int64_t now = now_();
    if (now >= end_) {
      over_ = true;
      return true;
    }
    const std::int64_t per = (now - last_) / static_cast<std::int64_t>(since_);
    const std::int64_t left = end_ - now;
    last_ = now;
    since_ = 0;
    if (per <= 0) {
      skip_ = 0;  // no measurable cost yet: keep reading
    } else {
      const std::int64_t fit = left / (2 * per);
      skip_ = static_cast<unsigned>(fit > 64 ? 64 : (fit > 0 ? fit - 1 : 0));
    }
    return false;
  }
  // The deadline has passed (as of the last clock read, or now).
  [[nodiscard]] bool over() noexcept {
    if (!over_ && now_() >= end_) over_ = true;
    return over_;
  }

 private:
  std::int64_t (*now_)() noexcept;
  std::int64_t end_;
  std::int64_t last_ = 0;
  unsigned since_ = 0;
  unsigned skip_ = 0;
  bool over_ = false;
};

}  // namespace detail
}  // namespace SLUICE_ABI
}  // namespace sluice
