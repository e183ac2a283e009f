// sluice — immediate delivery alone: typed handlers called on the caller's
// thread, with none of a bus's lanes, threads, stage runs or storage compiled in.
//
//   sluice::dispatcher d;
//   sluice::subscription s = d.subscribe([](const moved& m) { ... });
//   d.dispatch(moved{3, 4});   // runs the handler now; returns 1
//
// It keeps the bus's contracts for handlers (docs/dispatcher.md):
//  - lifetime: when a subscription's reset() returns, its handler is not
//    running on any thread and never runs again (subscription.hpp);
//  - reentrancy: a handler may dispatch, subscribe and reset, on this
//    dispatcher or any other, to a nesting depth of SLUICE_MAX_DEPTH;
//  - failure isolation: a handler that throws or returns a failed outcome is
//    counted in failures<Event>() and reported to the observer; the other
//    handlers still run;
//  - threads: dispatch, subscribe and reset may run on any threads at once;
//  - memory: dispatch allocates nothing (but for a thread's first delivery,
//    which makes its tracking slot once); subscribe allocates, and if that
//    fails it throws std::bad_alloc (with exceptions) and changes nothing.
// Handlers see sluice::no_metadata (an event_view's metadata is all zero).
// Made before fork(), a dispatcher is inert in the child: it calls nothing.
// Destroying it while a dispatch runs is a bug, as for any object.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "config.hpp"
#include "detail/delivery.hpp"
#include "detail/failures.hpp"
#include "detail/process.hpp"
#include "detail/registry.hpp"
#include "detail/tracking.hpp"
#include "detail/type_id.hpp"
#include "errors.hpp"
#include "event.hpp"
#include "subscription.hpp"

namespace sluice {
inline namespace SLUICE_ABI {

class dispatcher {
 public:
  dispatcher() : dispatcher(nullptr) {}
  // `on_failure` (a callable as void(const sluice::failure_info&), or
  // nullptr) sees every failed handler call; failure_info::kind says how it
  // failed. It is called on the dispatching thread and must not throw.
  template <class Observer,
            class = std::enable_if_t<!std::is_same_v<std::decay_t<Observer>, dispatcher>>>
  explicit dispatcher(Observer&& on_failure) : epoch_(fork_epoch()), regs_(epoch_) {
    using O = std::decay_t<Observer>;
    if constexpr (std::is_same_v<O, std::nullptr_t>) {
      (void)on_failure;
    } else {
      static_assert(
          std::is_invocable_v<O&, const failure_info&>,
          "sluice: a failure observer must be callable as f(const sluice::failure_info&)");
      if constexpr (std::is_constructible_v<bool, const O&>) {
        if (!static_cast<bool>(on_failure)) return;  // an empty std::function, a null pointer
      }
      observer_ = new O(std::forward<Observer>(on_failure));
      drop_observer_ = [](void* o) noexcept { delete static_cast<O*>(o); };
      // The dispatcher owns the object, which is not const.
      failures_ = detail::failure_reporter(observer_, [](const void* o, const failure_info& i) {
        (*static_cast<O*>(const_cast<void*>(o)))(i);
      });
    }
  }
  dispatcher(const dispatcher&) = delete;
  dispatcher& operator=(const dispatcher&) = delete;
  // Subscriptions may outlive it (their reset() is then free). Not from one
  // of its own handlers.
  ~dispatcher() {
    SLUICE_ASSERT(!detail::inside(this), "a dispatcher destroyed by one of its own handlers");
    if (forked()) {
      regs_.abandon();  // its locks may be held by threads gone with the fork
      return;
    }
    if (drop_observer_ != nullptr) drop_observer_(observer_);
  }

  // Handler: callable as f(const Event&) or f(sluice::event_view<Event>),
  // returning void or sluice::outcome. Allowed from handlers; a handler
  // subscribed during a dispatch sees later dispatches.
  template <class Event, class Handler>
  subscription subscribe(Handler&& handler) {
    static_assert(check_event_type<Event>(), "");
    static_assert(detail::check_handler<Event, Handler>(), "");
    if (forked()) return subscription{};
    return subscription(detail::add_handler<Event>(regs_.get(detail::type_index<Event>()), 0,
                                                   std::forward<Handler>(handler)));
  }
  // The same, with the event type taken from the handler's parameter.
  template <class Handler>
  subscription subscribe(Handler&& handler) {
    static_assert(detail::check_deduced<Handler>(), "");
    return subscribe<typename detail::deduced_event<std::decay_t<Handler>>::type>(
        std::forward<Handler>(handler));
  }

  // Calls every handler of Event subscribed now, on this thread, in the
  // order they subscribed. Returns the number of handler calls (0 when
  // nested deeper than SLUICE_MAX_DEPTH: reported as failure_kind::too_deep).
  template <class Event>
  std::size_t dispatch(const Event& e) {
    static_assert(check_event_type<Event>(), "");
    detail::registry* r = regs_.find(detail::type_index<Event>());
    if (r == nullptr || SLUICE_UNLIKELY(forked())) return 0;
    return detail::deliver(this, failures_, *r, &e, no_metadata, *detail::my_slot());
  }

  // Failed handler calls of Event so far (thrown, failed outcome, too deep).
  template <class Event>
  [[nodiscard]] std::uint64_t failures() const noexcept {
    const detail::registry* r = regs_.find(detail::type_index<Event>());
    return r == nullptr ? 0 : r->failed.load(std::memory_order_relaxed);
  }

 private:
  // The fork count now, with the fork handlers in place first: a fork right
  // after this constructor must already make the child's count differ.
  static std::uint64_t fork_epoch() noexcept {
    detail::need_fork_handlers();
    return detail::process().forks.load(std::memory_order_relaxed);
  }
  [[nodiscard]] bool forked() const noexcept {
    return epoch_ != detail::process().forks.load(std::memory_order_relaxed);
  }

  const std::uint64_t epoch_;
  detail::registry_table regs_;
  void* observer_ = nullptr;
  void (*drop_observer_)(void*) noexcept = nullptr;
  detail::failure_reporter failures_;
};

}  // namespace SLUICE_ABI
}  // namespace sluice
