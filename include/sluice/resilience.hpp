// sluice — what a subscription does when its handler fails: retry with
// backoff, then dead-letter or ignore (docs/resilience.md). Plain values,
// checked when a subscription is made.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "config.hpp"
#include "errors.hpp"
#include "event.hpp"

namespace sluice {
inline namespace SLUICE_ABI {

// How long to wait before each retry: `first` before the second call,
// multiplied by `factor` for each call after, never more than `most`; with
// `jitter`, each wait is drawn at random from [wait / 2, wait] (so that
// subscribers failing together do not retry together).
struct retry_backoff {
  std::chrono::nanoseconds first = std::chrono::milliseconds(10);
  std::chrono::nanoseconds most = std::chrono::seconds(1);
  double factor = 2.0;  // 1: the same wait every time
  bool jitter = false;

  [[nodiscard]] static retry_backoff fixed(std::chrono::nanoseconds wait) noexcept {
    retry_backoff b;
    b.first = wait;
    b.most = wait;
    b.factor = 1.0;
    return b;
  }
  [[nodiscard]] static retry_backoff exponential(std::chrono::nanoseconds first,
                                                 std::chrono::nanoseconds most,
                                                 double factor = 2.0) noexcept {
    retry_backoff b;
    b.first = first;
    b.most = most;
    b.factor = factor;
    return b;
  }
  retry_backoff& with_jitter(bool on = true) noexcept {
    jitter = on;
    return *this;
  }

  // The wait before call number `call` (2 for the first retry), in
  // nanoseconds; `random` is a uniformly random 64-bit value (used only with
  // jitter).
  [[nodiscard]] std::int64_t wait_before(std::uint32_t call, std::uint64_t random) const noexcept {
    const double top = static_cast<double>(most.count());
    double w = static_cast<double>(first.count());
    for (std::uint32_t k = 2; k < call && w < top; ++k) w *= factor;
    if (w > top) w = top;
    if (w < 0) w = 0;
    if (jitter) {
      const double u = static_cast<double>(random >> 11) * (1.0 / 9007199254740992.0);  // [0, 1)
      w = w / 2 + u * (w / 2);
    }
    // (2^63 as a double: a cap of nanoseconds::max() is not converted back.)
    if (w >= 9223372036854775807.0) return INT64_MAX;
    return static_cast<std::int64_t>(w);
  }
};

// What happens to an event once its handler has failed `attempts` times.
enum class after_retries : std::uint8_t {
  ignore,       // counted as failed; the event ends as delivered (what a bus does by default)
  dead_letter,  // the event ends as dead-lettered, handed to dead_letter<Event> subscribers
};

[[nodiscard]] constexpr const char* to_string(after_retries a) noexcept {
  return a == after_retries::ignore        ? "ignore"
         : a == after_retries::dead_letter ? "dead_letter"
                                           : "unknown";
}

// A subscription's failure policy. The default (one attempt, then ignore)
// is a bus's behaviour without policies: the failure is counted and
// reported, and the event goes on.
struct failure_policy {
  std::uint32_t attempts = 1;  // handler calls at most for one event, the first included
  retry_backoff backoff;
  after_retries then = after_retries::ignore;

  // Calls the failed handler again (only that one) up to `attempts` calls in
  // all, waiting as `backoff` says; then `then`.
  [[nodiscard]] static failure_policy retry(std::uint32_t attempts, retry_backoff backoff = {},
                                            after_retries then = after_retries::dead_letter) {
    failure_policy p;
    p.attempts = attempts;
    p.backoff = backoff;
    p.then = then;
    return p;
  }
  // No retry: the first failure dead-letters the event.
  [[nodiscard]] static failure_policy dead_letter() {
    failure_policy p;
    p.then = after_retries::dead_letter;
    return p;
  }
  // No retry, no dead letter (the default).
  [[nodiscard]] static failure_policy ignore() { return failure_policy{}; }

  // Whether a failure does more than being counted and reported.
  [[nodiscard]] bool active() const noexcept {
    return attempts > 1 || then == after_retries::dead_letter;
  }
  // nullptr when usable, else what is wrong.
  [[nodiscard]] const char* validate() const noexcept {
    if (attempts == 0) return "sluice: failure_policy::attempts must be at least 1";
    if (attempts > 1000000) return "sluice: failure_policy::attempts must be at most 1000000";
    if (backoff.first.count() < 0 || backoff.most.count() < 0)
      return "sluice: retry_backoff waits must not be negative";
    if (backoff.most < backoff.first)
      return "sluice: retry_backoff::most must not be less than retry_backoff::first";
    if (!(backoff.factor >= 1.0) || backoff.factor > 1000.0)
      return "sluice: retry_backoff::factor must be in [1, 1000]";
    if (then != after_retries::ignore && then != after_retries::dead_letter)
      return "sluice: failure_policy::then is not an after_retries value";
    return nullptr;
  }
};

// Settings of one subscription.
struct subscribe_options {
  std::string name;  // reported in dead letters (empty: unnamed)
  failure_policy on_failure;
  bool has_policy = false;  // false: the bus's default (bus_options::default_failure_policy)

  [[nodiscard]] static subscribe_options named(std::string n) {
    subscribe_options o;
    o.name = std::move(n);
    return o;
  }
  subscribe_options& with_name(std::string n) {
    name = std::move(n);
    return *this;
  }
  subscribe_options& with_failure_policy(failure_policy p) {
    on_failure = p;
    has_policy = true;
    return *this;
  }
};

// What a subscriber of dead letters receives: the event its handler gave up
// on, with why. Dead letters are handed to the subscribers of
// dead_letter<Event> at once, on the thread that gave up (in the lane's
// order), as a dispatch is: they are not counted as published.
template <class Event>
struct dead_letter {
  Event event;
  metadata meta;  // the event's own
  failure_kind kind = failure_kind::exception;
  int code = 0;
  std::string message;         // of the last failure
  std::uint32_t attempts = 0;  // handler calls made for it
  std::string subscription;    // the name of the subscription that gave up
};

// One subscription's counts (subscription::stats()). Read while the bus
// runs, field by field.
struct subscription_stats {
  std::uint64_t failed = 0;         // failed calls of this handler (first calls and retries)
  std::uint64_t retried = 0;        // calls that were retries
  std::uint64_t recovered = 0;      // events that failed, then succeeded on a retry
  std::uint64_t dead_lettered = 0;  // events this subscription dead-lettered
  std::uint64_t retrying = 0;       // events waiting for a retry now
};

}  // namespace SLUICE_ABI
}  // namespace sluice
