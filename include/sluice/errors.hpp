// sluice — results, handler outcomes and failure reports.
#pragma once

#include <cstdint>

#include "config.hpp"

namespace sluice {
inline namespace SLUICE_ABI {

// What publish / try_publish did with an event. Only `ok` means the bus took
// it; `dropped` means it was counted and discarded by the drop_newest policy.
enum class publish_result : std::uint8_t {
  ok,       // accepted: it will be delivered, filtered, unrouted, ... (accounted)
  dropped,  // accepted and discarded at once: the lane was full (drop_newest)
  full,     // refused: the lane was full (reject, try_publish, or a blocking
            //   publish from inside a handler that would have waited on itself)
  stopped,  // refused: the bus is stopping or stopped
};

[[nodiscard]] constexpr const char* to_string(publish_result r) noexcept {
  switch (r) {
    case publish_result::ok:
      return "ok";
    case publish_result::dropped:
      return "dropped";
    case publish_result::full:
      return "full";
    case publish_result::stopped:
      return "stopped";
  }
  return "unknown";
}

// A handler may return an outcome instead of void, which is how it reports a
// failure without exceptions (-fno-exceptions builds).
class outcome {
 public:
  constexpr outcome() noexcept = default;
  [[nodiscard]] static constexpr outcome success() noexcept { return outcome{}; }
  [[nodiscard]] static constexpr outcome failure(int code, const char* message = "") noexcept {
    outcome o;
    o.code_ = code == 0 ? -1 : code;
    o.message_ = message;
    return o;
  }
  [[nodiscard]] constexpr bool ok() const noexcept { return code_ == 0; }
  [[nodiscard]] constexpr explicit operator bool() const noexcept { return ok(); }
  [[nodiscard]] constexpr int code() const noexcept { return code_; }
  [[nodiscard]] constexpr const char* message() const noexcept { return message_; }

 private:
  int code_ = 0;
  const char* message_ = "";
};

// Why a handler call failed.
enum class failure_kind : std::uint8_t {
  exception,  // the handler threw (the message is what() for std::exception)
  outcome,    // the handler returned a failed outcome
  too_deep,   // a dispatch nested deeper than SLUICE_MAX_DEPTH was refused
  stage,      // a stage threw (a filter, transform or route: the event is dropped;
              // a tap: the event goes on), or a chain exceeded SLUICE_MAX_HOPS
  // Not failed calls (not counted in `failed`), but mistakes the bus caught:
  no_drainer,              // a blocking publish found its lane full and nobody to drain it
                           // (no worker, and no other thread has polled): it returned
                           // publish_result::full (counted rejected) instead of waiting for ever
  unrouted_in_destructor,  // the bus's destructor delivered `code` events of this
                           // type to no handler: subscriptions destroyed before the bus?
  not_durable,             // a write-ahead recorder (durable_before_delivery) could not make the
                           // event durable: it was not delivered (counted filtered)
  breaker_open,            // the handler was not called: its subscription's circuit breaker
                           // was open (an attempt not made: the event is retried later or
                           // dead-lettered, as the policy says)
  breaker_opened,          // a subscription's circuit breaker opened (`code`: the failed
                           // calls in a row that opened it, or 0 when a probe failed)
  breaker_closed,          // a subscription's circuit breaker closed again (a probe succeeded)
  hold_full,               // an event of a held key found its subscription's hold full: it
                           // was dead-lettered or delivered ahead (failure_policy::when_hold_full)
};

[[nodiscard]] constexpr const char* to_string(failure_kind k) noexcept {
  switch (k) {
    case failure_kind::exception:
      return "exception";
    case failure_kind::outcome:
      return "outcome";
    case failure_kind::too_deep:
      return "too_deep";
    case failure_kind::stage:
      return "stage";
    case failure_kind::no_drainer:
      return "no_drainer";
    case failure_kind::unrouted_in_destructor:
      return "unrouted_in_destructor";
    case failure_kind::not_durable:
      return "not_durable";
    case failure_kind::breaker_open:
      return "breaker_open";
    case failure_kind::breaker_opened:
      return "breaker_opened";
    case failure_kind::breaker_closed:
      return "breaker_closed";
    case failure_kind::hold_full:
      return "hold_full";
  }
  return "unknown";
}

struct metadata;

// Reported to the bus's failure observer (bus_options::on_failure). The
// pointers are valid only during the call (`event` and `meta` are null for
// no_drainer and unrouted_in_destructor). `attempt` is 1 for a first call,
// 2 for its first retry, and so on (resilience.hpp).
struct failure_info {
  failure_kind kind = failure_kind::exception;
  std::uint32_t type = 0;  // the event type's dense index
  int code = 0;
  const char* message = "";
  const void* event = nullptr;
  std::uint32_t attempt = 1;
  const metadata* meta = nullptr;  // the event's metadata (all zero when dispatched)
  // The subscription's name (subscribe_options::name) for what a failure
  // policy reports (retries, breakers, holds); "" otherwise.
  const char* subscription = "";
};

}  // namespace SLUICE_ABI
}  // namespace sluice
