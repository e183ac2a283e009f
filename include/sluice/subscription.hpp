// sluice — subscriptions: the RAII handle of a handler.
//
// Lifetime: when reset() (or the destructor) returns, the handler is not
// running on any thread and will never run again, so whatever it captured may
// be destroyed. Called from inside that same handler, reset() does not block
// (it cannot wait for itself): no later call begins, calls already running on
// other threads may still finish. The handler object is then destroyed by the
// next subscribe or reset of that event type on that bus that finds no call
// running, or with the bus. A subscription may outlive its bus; reset() is
// then free. It must not run while the bus is being destroyed (reset before,
// or after: as with any object, a call may not overlap its destruction).
// reset() allocates nothing and cannot fail.
//
// Thread-safety: one handle is used by one thread at a time; different
// handles may be reset concurrently, from any thread, including from handlers.
// Deadlock: two handlers that each reset the other's subscription while both
// run wait for each other, as two threads taking two mutexes in opposite
// orders would. Reset your own subscription, or reset from outside handlers.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

#include "config.hpp"
#include "detail/process.hpp"
#include "detail/registry.hpp"
#include "detail/tracking.hpp"
#include "errors.hpp"
#include "event.hpp"
#include "resilience.hpp"

namespace sluice {
inline namespace SLUICE_ABI {

namespace detail {

template <class Event, class Handler>
struct handler_traits {
  static constexpr bool by_ref = std::is_invocable_v<Handler&, const Event&>;
  // conjunction: a generic lambda taking `const auto&` is never instantiated
  // with an event_view when it already takes the event itself.
  static constexpr bool by_view =
      std::conjunction_v<std::negation<std::is_invocable<Handler&, const Event&>>,
                         std::is_invocable<Handler&, event_view<Event>>>;
  static constexpr bool callable = by_ref || by_view;

  template <bool Ref, class = void>
  struct result {
    using type = std::invoke_result_t<Handler&, const Event&>;
  };
  template <class V>
  struct result<false, V> {
    using type =
        std::conditional_t<by_view, std::invoke_result_t<Handler&, event_view<Event>>, void>;
  };
  using result_type = typename result<by_ref>::type;
  static constexpr bool good_result =
      std::is_void_v<result_type> || std::is_same_v<std::decay_t<result_type>, outcome>;

  static outcome invoke(void* callable_ptr, const void* event, const metadata& m) {
    Handler& h = *static_cast<Handler*>(callable_ptr);
    const Event& e = *std::launder(static_cast<const Event*>(event));
    if constexpr (by_ref) {
      if constexpr (std::is_void_v<result_type>) {
        h(e);
        return outcome::success();
      } else {
        return h(e);
      }
    } else {
      if constexpr (std::is_void_v<result_type>) {
        h(event_view<Event>(e, m));
        return outcome::success();
      } else {
        return h(event_view<Event>(e, m));
      }
    }
  }
  static void destroy(void* callable_ptr) noexcept { delete static_cast<Handler*>(callable_ptr); }
};

// The event type a handler takes, for subscribe(handler) without <Event>:
// from the one parameter of a function pointer or of a class's one,
// non-template call operator, as const T&, T, or event_view<T>.
template <class T>
struct unview {
  using type = T;
};
template <class E>
struct unview<event_view<E>> {
  using type = E;
};
template <class A>
struct event_of_arg : unview<std::remove_cv_t<std::remove_reference_t<A>>> {};

template <class Sig>
struct signature_arg {
  static constexpr bool deduced = false;
};
#define SLUICE_SIGNATURE_ARG(qualifiers)                  \
  template <class R, class C, class A>                    \
  struct signature_arg<R (C::*)(A) qualifiers> {          \
    static constexpr bool deduced = true;                 \
    using type = typename event_of_arg<A>::type;          \
  };                                                      \
  template <class R, class C, class A>                    \
  struct signature_arg<R (C::*)(A) qualifiers noexcept> { \
    static constexpr bool deduced = true;                 \
    using type = typename event_of_arg<A>::type;          \
  };
SLUICE_SIGNATURE_ARG()
SLUICE_SIGNATURE_ARG(const)
SLUICE_SIGNATURE_ARG(&)
SLUICE_SIGNATURE_ARG(const&)
SLUICE_SIGNATURE_ARG(&&)
SLUICE_SIGNATURE_ARG(const&&)
#undef SLUICE_SIGNATURE_ARG
template <class R, class A>
struct signature_arg<R (*)(A)> {
  static constexpr bool deduced = true;
  using type = typename event_of_arg<A>::type;
};
template <class R, class A>
struct signature_arg<R (*)(A) noexcept> {
  static constexpr bool deduced = true;
  using type = typename event_of_arg<A>::type;
};

template <class F, class = void>
struct deduced_event : signature_arg<F> {};  // function pointers (and nothing else)
template <class F>
struct deduced_event<F, std::void_t<decltype(&F::operator())>>
    : signature_arg<decltype(&F::operator())> {};

// Adds `handler` to r's subscribers on `channel_id` (0: every channel) and
// returns its node, for a subscription handle to own. Strong exception
// guarantee: if it throws (out of memory), the handler is destroyed and r
// is unchanged.
template <class Event, class Handler>
sub_node* add_handler(registry& r, std::uint32_t channel_id, Handler&& handler,
                      std::unique_ptr<const retry_spec> retry = nullptr,
                      const std::string* name = nullptr) {
  using H = std::decay_t<Handler>;
  using traits = handler_traits<Event, H>;
  auto callable = std::make_unique<H>(std::forward<Handler>(handler));
  auto node = std::make_unique<sub_node>();
  node->invoke = &traits::invoke;
  node->destroy = &traits::destroy;
  node->callable = callable.get();
  node->channel = channel_id;
  node->retry = std::move(retry);
  if (name != nullptr) node->name = *name;
  r.add(node.get());  // if it throws, both are still owned here
  (void)callable.release();
  return node.release();
}

// A node's counts (subscription::stats(), bus::subscriptions()).
inline subscription_stats stats_of(const sub_node& n) noexcept {
  subscription_stats st;
  st.failed = n.failed.load(std::memory_order_relaxed);
  st.retried = n.retried.load(std::memory_order_relaxed);
  st.recovered = n.recovered.load(std::memory_order_relaxed);
  st.dead_lettered = n.dead_lettered.load(std::memory_order_relaxed);
  st.retrying = n.retrying.load(std::memory_order_relaxed);
  st.held = n.held.load(std::memory_order_relaxed);
  st.short_circuited = n.short_circuited.load(std::memory_order_relaxed);
  st.breaker_opens = n.breaker_opens.load(std::memory_order_relaxed);
  if (n.retry != nullptr) st.breaker = n.retry->brk.state();
  return st;
}

// The checks every subscribe makes of a handler, with the messages a user
// should read.
template <class Event, class Handler>
constexpr bool check_handler() noexcept {
  using traits = handler_traits<Event, std::decay_t<Handler>>;
  static_assert(traits::callable,
                "sluice: a handler must be callable as f(const Event&) or "
                "f(sluice::event_view<Event>)");
  static_assert(traits::good_result, "sluice: a handler must return void or sluice::outcome");
  return true;
}
template <class Handler>
constexpr bool check_deduced() noexcept {
  static_assert(deduced_event<std::decay_t<Handler>>::deduced,
                "sluice: cannot tell the event type from this handler (a generic lambda, or an "
                "overloaded or templated call operator): write subscribe<Event>(handler)");
  return true;
}

}  // namespace detail

class [[nodiscard]] subscription {
 public:
  subscription() noexcept = default;
  subscription(subscription&& o) noexcept : node_(std::exchange(o.node_, nullptr)) {}
  // Resets the subscription this held (as reset(): waits for its handler)
  // and takes o's.
  subscription& operator=(subscription&& o) noexcept {
    if (this != &o) {
      reset();
      node_ = std::exchange(o.node_, nullptr);
    }
    return *this;
  }
  subscription(const subscription&) = delete;
  subscription& operator=(const subscription&) = delete;
  ~subscription() { reset(); }

  // Unsubscribes and waits for running calls of the handler (see above).
  // Allocates nothing, so it cannot fail.
  void reset() noexcept {
    detail::sub_node* n = std::exchange(node_, nullptr);
    if (n == nullptr) return;
    if (n->bus_gone.load(std::memory_order_acquire)) {
      delete n;  // the bus already closed it and destroyed its handler
      return;
    }
    detail::registry* r = n->owner;
    // A bus made before fork(), in the child: inert, and its locks may be
    // held by threads that do not exist here. Let the handle go.
    if (r->epoch != detail::process().forks.load(std::memory_order_relaxed)) return;
    const bool self = detail::running_here(n);
    r->close(n);
    if (!self && !SLUICE_MODEL_MUTATION(2)) detail::wait_not_running(n);
    r->release(n, !self);
  }

  // This subscription's failure counts (all zero for an empty handle).
  [[nodiscard]] subscription_stats stats() const noexcept {
    return node_ == nullptr ? subscription_stats{} : detail::stats_of(*node_);
  }

  // This handler's call durations in ns (latency metrics; empty when off,
  // or for an empty handle), merged over lanes: its timed calls (one event
  // in bus_options::latency_sample_every per lane; every call when
  // sampling is 1). Read at any time (word by word while the bus runs).
  [[nodiscard]] duration_histogram handler_time() const noexcept {
    duration_histogram h;
    if (node_ == nullptr) return h;
    if (const detail::lane_histograms* l = node_->handler_time.load(std::memory_order_acquire))
      l->add_to(h);
    return h;
  }

  // True while this holds a handler that is still subscribed: false after
  // reset() and once its bus or dispatcher has closed it.
  [[nodiscard]] bool active() const noexcept {
    return node_ != nullptr && !node_->closed.load(std::memory_order_acquire);
  }
  [[nodiscard]] explicit operator bool() const noexcept { return active(); }

 private:
  friend class bus;
  friend class dispatcher;
  explicit subscription(detail::sub_node* n) noexcept : node_(n) {}
  detail::sub_node* node_ = nullptr;
};

}  // namespace SLUICE_ABI
}  // namespace sluice
