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

// What later events of the same key do, for one subscription, while an
// event of that key waits for its retry (docs/resilience.md).
enum class retry_order : std::uint8_t {
  hold_key,    // they wait for this subscription until the retry ends (its other
               // subscribers and other keys go on): the key's order is kept
  skip_ahead,  // they are delivered meanwhile: the retried event arrives after them
};

[[nodiscard]] constexpr const char* to_string(retry_order o) noexcept {
  return o == retry_order::hold_key     ? "hold_key"
         : o == retry_order::skip_ahead ? "skip_ahead"
                                        : "unknown";
}

// What happens to an event that would be held when its subscription already
// holds failure_policy::hold_capacity events.
enum class hold_full : std::uint8_t {
  dead_letter,  // it is dead-lettered at once, without a call (order kept: it is not delivered)
  skip_ahead,   // it is delivered now, before the events held of its key (order not kept)
};

[[nodiscard]] constexpr const char* to_string(hold_full h) noexcept {
  return h == hold_full::dead_letter  ? "dead_letter"
         : h == hold_full::skip_ahead ? "skip_ahead"
                                      : "unknown";
}

// A subscription's circuit breaker: after `failures` failed calls in a row it
// opens, and its events are not handed to the handler (each counts as a
// failed attempt: retried later or dead-lettered, as the policy says); after
// `cool_down` it lets `probes` calls through (half open): a success closes
// it, a failure opens it again.
struct circuit_breaker {
  std::uint32_t failures = 0;  // 0: no breaker
  std::chrono::nanoseconds cool_down = std::chrono::seconds(1);
  std::uint32_t probes = 1;
};

enum class breaker_state : std::uint8_t {
  closed,     // calls are made
  open,       // calls are not made until the cool-down ends
  half_open,  // a few probe calls are made; their results decide
};

[[nodiscard]] constexpr const char* to_string(breaker_state s) noexcept {
  return s == breaker_state::closed      ? "closed"
         : s == breaker_state::open      ? "open"
         : s == breaker_state::half_open ? "half_open"
                                         : "unknown";
}

// A subscription's failure policy. The default (one attempt, then ignore)
// is a bus's behaviour without policies: the failure is counted and
// reported, and the event goes on.
struct failure_policy {
  std::uint32_t attempts = 1;  // handler calls at most for one event, the first included
  retry_backoff backoff;
  after_retries then = after_retries::ignore;
  // While an event waits for a retry, later events of its key (for this
  // subscription): held, at most `hold_capacity` across keys, else
  // `when_hold_full`.
  retry_order order = retry_order::hold_key;
  std::uint32_t hold_capacity = 1024;
  hold_full when_hold_full = hold_full::dead_letter;
  circuit_breaker breaker;

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

  // Later events of a retrying key are held (at most `capacity` for the
  // subscription, else `full`).
  failure_policy& holding_keys(std::uint32_t capacity = 1024,
                               hold_full full = hold_full::dead_letter) noexcept {
    order = retry_order::hold_key;
    hold_capacity = capacity;
    when_hold_full = full;
    return *this;
  }
  // Later events overtake a retrying one (the key's order is not kept).
  failure_policy& skipping_ahead() noexcept {
    order = retry_order::skip_ahead;
    return *this;
  }
  // Opens after `failures` failed calls in a row, for `cool_down`, then lets
  // `probes` calls through.
  failure_policy& with_breaker(std::uint32_t failures, std::chrono::nanoseconds cool_down,
                               std::uint32_t probes = 1) noexcept {
    breaker.failures = failures;
    breaker.cool_down = cool_down;
    breaker.probes = probes;
    return *this;
  }

  // Whether a failure does more than being counted and reported.
  [[nodiscard]] bool active() const noexcept {
    return attempts > 1 || then == after_retries::dead_letter || breaker.failures != 0;
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
    if (order != retry_order::hold_key && order != retry_order::skip_ahead)
      return "sluice: failure_policy::order is not a retry_order value";
    if (order == retry_order::hold_key && hold_capacity == 0)
      return "sluice: failure_policy::hold_capacity must be at least 1 with hold_key";
    if (when_hold_full != hold_full::dead_letter && when_hold_full != hold_full::skip_ahead)
      return "sluice: failure_policy::when_hold_full is not a hold_full value";
    if (breaker.failures > 1000000)
      return "sluice: circuit_breaker::failures must be at most 1000000";
    if (breaker.failures != 0 && breaker.cool_down.count() < 0)
      return "sluice: circuit_breaker::cool_down must not be negative";
    if (breaker.failures != 0 && (breaker.probes == 0 || breaker.probes > 65535))
      return "sluice: circuit_breaker::probes must be in [1, 65535]";
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
  std::uint64_t failed = 0;           // failed calls of this handler (first calls and retries)
  std::uint64_t retried = 0;          // calls that were retries
  std::uint64_t recovered = 0;        // events that failed, then succeeded on a retry
  std::uint64_t dead_lettered = 0;    // events this subscription dead-lettered
  std::uint64_t retrying = 0;         // events waiting for a retry now
  std::uint64_t held = 0;             // events held behind a retry of their key now (hold_key)
  std::uint64_t short_circuited = 0;  // attempts not made: the breaker was open
  std::uint64_t breaker_opens = 0;    // times the breaker opened
  breaker_state breaker = breaker_state::closed;
};

// One subscription of a type as bus::subscriptions<Event>() lists it.
struct subscription_info {
  std::string name;  // subscribe_options::name ("" when unnamed)
  subscription_stats stats;
  bool active = true;  // false: unsubscribed, its handle not yet destroyed
};

}  // namespace SLUICE_ABI
}  // namespace sluice
