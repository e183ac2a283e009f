// sluice — the bus.
//
// A bus owns bounded lanes (moodycamel queues with exact counts), per-type
// subscriber registries and, when run(), a pool of workers. Three ways to run:
//   dispatch(e)        immediate: handlers run now, on the caller's thread;
//   poll() / poll_for  queued: the caller drains the lanes (a game's frame);
//   run(n)             queued: n worker threads drain the lanes.
// stop(drain) delivers everything accepted; stop(discard) counts what it drops.
//
// Thread-safety: every member may be called from any thread. From one of this
// bus's handlers: publish, dispatch, poll, subscribe and reset are allowed
// (see docs/reentrancy.md); stop() and run() are refused (return false);
// destroying this bus is not allowed (another bus may be stopped or destroyed). Lifetime:
// destroying the bus stops it with stop(drain) and joins its workers first; destroy producers
// before their bus (subscriptions may outlive it). Failures: a handler's exception or failed
// outcome is caught, counted and reported to bus_options::on_failure; delivery goes on.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "channel.hpp"
#include "config.hpp"
#include "detail/core.hpp"
#include "detail/type_id.hpp"
#include "errors.hpp"
#include "event.hpp"
#include "options.hpp"
#include "pipeline.hpp"
#include "producer.hpp"
#include "resilience.hpp"
#include "runner.hpp"
#include "stats.hpp"
#include "subscription.hpp"

#if SLUICE_HAS_EXCEPTIONS
#include <stdexcept>
#endif

namespace sluice {
inline namespace SLUICE_ABI {

namespace detail {
struct bus_access;
}

// The number that failure_info::type, publish_info::type and
// delivery_info::type give Event: dense, from 0, in the order the process
// first used each type (so not stable from one run to the next).
template <class Event>
[[nodiscard]] std::uint32_t type_number() noexcept {
  return detail::type_index<Event>();
}

class bus {
 public:
  // Invalid options throw std::invalid_argument; without exceptions the bus
  // is made stopped, valid() is false and error() says why.
  explicit bus(bus_options options = {}) : core_(checked(std::move(options), error_)) {
    if (error_ != nullptr) {
      core_.set_state(detail::run_state::stopped);
#if SLUICE_HAS_EXCEPTIONS
      throw std::invalid_argument(error_);
#endif
    }
    const std::size_t n = shared_count;
    for (std::size_t i = 0; i < n; ++i)
      shared_[i].core = std::make_unique<detail::producer_core>(core_, core_.next_producer_id(),
                                                                core_.options().policy, true);
  }
  bus(const bus&) = delete;
  bus& operator=(const bus&) = delete;
  // Drains what is queued (stop(drain)) and joins the workers. Events that
  // this drain delivers to no handler are reported to on_failure
  // (failure_kind::unrouted_in_destructor; debug builds also say so on
  // stderr): the usual cause is a subscription destroyed before its bus.
  ~bus() {
    if (core_.forked()) {
      abandon();  // a bus of the parent, in a fork() child: see docs/run-modes.md#fork
      return;
    }
    SLUICE_ASSERT(!detail::inside(&core_),
                  "a bus must not be destroyed from inside one of its handlers");
    if (!stopped()) {
      std::uint64_t before[SLUICE_MAX_EVENT_TYPES];
      core_.unrouted_counts(before);
      stop(stop_mode::drain);
      core_.report_unrouted_since(before);
    }
  }

  // False when the options were refused (only without exceptions: with
  // them the constructor throws); such a bus accepts nothing.
  [[nodiscard]] bool valid() const noexcept {
    return error_ == nullptr;
  }
  // Why the options were refused (bus_options::validate()), or nullptr.
  [[nodiscard]] const char* error() const noexcept {
    return error_;
  }
  // The options the bus was made with (fixed for its life).
  [[nodiscard]] const bus_options& options() const noexcept {
    return core_.options();
  }

  // ---- producing -------------------------------------------------------------

  // A producer: one publishing thread at a time, with its own sequence
  // numbers and queue tokens (docs/concepts.md). Allocates; may be called
  // from handlers and from any thread.
  [[nodiscard]] producer make_producer(producer_options po = {}) {
    return producer(std::make_unique<detail::producer_core>(
        core_, core_.next_producer_id(), po.override_policy ? po.policy : core_.options().policy,
        false, po.replayed, po.bridged, po.redriven));
  }

  // Convenience publish through a small pool of shared producers (a thread
  // always uses the same one, so its own order is kept). Slower than a
  // producer of one's own under contention. With the block policy it waits
  // for room without holding the shared producer (spin, yield, then sleep in
  // short steps), so other threads and handlers are never stuck behind it.
  template <class Event>
  publish_result publish(Event&& e) {
    return shared_publish(std::forward<Event>(e), false, 0, false);
  }
  template <class Event>
  publish_result publish(Event&& e, key_type key) {
    return shared_publish(std::forward<Event>(e), true, key, false);
  }
  template <class Event>
  [[nodiscard]] publish_result try_publish(Event&& e) {
    return shared_publish(std::forward<Event>(e), false, 0, true);
  }
  template <class Event>
  [[nodiscard]] publish_result try_publish(Event&& e, key_type key) {
    return shared_publish(std::forward<Event>(e), true, key, true);
  }

  // Delivers the event once `delay` has passed, as producer::publish_after
  // (docs/delayed-delivery.md).
  template <class Rep, class Period, class Event>
  publish_result publish_after(std::chrono::duration<Rep, Period> delay, Event&& e) {
    return shared_publish_after(detail::saturated_ns(delay), std::forward<Event>(e), false, 0);
  }
  template <class Rep, class Period, class Event>
  publish_result publish_after(std::chrono::duration<Rep, Period> delay, Event&& e, key_type key) {
    return shared_publish_after(detail::saturated_ns(delay), std::forward<Event>(e), true, key);
  }

  // Immediate delivery on this thread, bypassing the lanes. Returns the number
  // of handler calls. Not counted in published/delivered (it is a function
  // call, not a publication); failures are counted. A stopped bus calls no
  // handler and returns 0.
  template <class Event>
  std::size_t dispatch(const Event& e) {
    static_assert(check_event_type<Event>(), "");
    if (core_.state() == detail::run_state::stopped) return 0;
    core_.mark_started();
    detail::registry* r = core_.find_reg(detail::type_index<Event>());
    if (detail::recorder_hook* h = core_.hook()) {
      if (!h->on_event(detail::type_index<Event>(), &e, no_metadata)) {
        if (r != nullptr)
          core_.report_failure(*r, failure_kind::not_durable, 0,
                               "sluice: the recorder could not make the event durable "
                               "(durable_before_delivery): it was not delivered",
                               &e, &no_metadata);
        return 0;
      }
    }
    if (r == nullptr) return 0;
    detail::reader_slot& slot = *detail::my_slot();
    if (r->chain.load(std::memory_order_acquire) == nullptr)
      return core_.deliver(*r, &e, no_metadata, slot);  // no stages: straight to the handlers
    std::size_t calls = 0;
    (void)core_.process(*r, &e, no_metadata, slot, 0, calls);
    return calls;
  }

  // ---- consuming -------------------------------------------------------------

  // Handler: callable as f(const Event&) or f(sluice::event_view<Event>),
  // returning void or sluice::outcome. Allowed while the bus runs and from
  // handlers; a handler subscribed during a delivery sees later events.
  // Strong exception guarantee: if subscribing throws (out of memory), the
  // handler is destroyed and nothing changed.
  template <class Event, class Handler>
  subscription subscribe(Handler&& handler) {
    return subscribe<Event>(channel{}, std::forward<Handler>(handler));
  }

  // The same, with the event type taken from the handler's parameter
  // (const Event&, Event, or event_view<Event>): bus.subscribe([](const order& o) {...}).
  // Generic lambdas and overloaded call operators need subscribe<Event>.
  template <class Handler,
            class = std::enable_if_t<!std::is_same_v<std::decay_t<Handler>, channel>>>
  subscription subscribe(Handler&& handler) {
    static_assert(detail::check_deduced<Handler>(), "");
    return subscribe<typename detail::deduced_event<std::decay_t<Handler>>::type>(
        channel{}, std::forward<Handler>(handler));
  }
  template <class Handler>
  subscription subscribe(channel on, Handler&& handler) {
    static_assert(detail::check_deduced<Handler>(), "");
    return subscribe<typename detail::deduced_event<std::decay_t<Handler>>::type>(
        on, std::forward<Handler>(handler));
  }

  // The same, listening only on channel `on` (picked by a route stage). A
  // subscription without a channel (above) listens on every channel.
  template <class Event, class Handler>
  subscription subscribe(channel on, Handler&& handler) {
    return subscribe<Event>(on, std::forward<Handler>(handler), no_options());
  }

  // With a name and a failure policy (resilience.hpp, docs/resilience.md):
  //   bus.subscribe(handler, sluice::subscribe_options::named("billing")
  //                              .with_failure_policy(sluice::failure_policy::retry(5)));
  // A policy that retries or dead-letters needs a copyable event type (the
  // bus's default policy does not apply to other types). An invalid policy
  // throws std::invalid_argument (without exceptions: an empty subscription).
  template <class Event, class Handler>
  subscription subscribe(Handler&& handler, const subscribe_options& options) {
    return subscribe<Event>(channel{}, std::forward<Handler>(handler), options);
  }
  template <class Handler,
            class = std::enable_if_t<!std::is_same_v<std::decay_t<Handler>, channel>>>
  subscription subscribe(Handler&& handler, const subscribe_options& options) {
    static_assert(detail::check_deduced<Handler>(), "");
    return subscribe<typename detail::deduced_event<std::decay_t<Handler>>::type>(
        channel{}, std::forward<Handler>(handler), options);
  }
  template <class Event, class Handler>
  subscription subscribe(channel on, Handler&& handler, const subscribe_options& options) {
    static_assert(check_event_type<Event>(), "");
    static_assert(detail::check_handler<Event, Handler>(), "");
    if (core_.forked()) return subscription{};  // a bus of the parent, in a fork() child
    const failure_policy& policy =
        options.has_policy ? options.on_failure : core_.options().default_failure_policy;
    std::unique_ptr<const detail::retry_spec> spec;
    // The bus's default leaves move-only types alone (it cannot copy them).
    const char* invalid = options.has_policy ? policy.validate() : nullptr;
    if (invalid != nullptr ||
        (policy.active() && (options.has_policy || std::is_copy_constructible_v<Event>))) {
      const char* why = invalid != nullptr ? invalid : policy.validate();
      if (why == nullptr && !std::is_copy_constructible_v<Event>)
        why =
            "sluice: a failure policy that retries or dead-letters keeps a copy of the event: "
            "the event type must be copy constructible";
      if (why != nullptr) {
#if SLUICE_HAS_EXCEPTIONS
        throw std::invalid_argument(why);
#else
        return subscription{};
#endif
      }
      spec = make_retry_spec<Event>(policy, options.name);
    }
    return subscription(detail::add_handler<Event>(core_.reg(detail::type_index<Event>()), on.id(),
                                                   std::forward<Handler>(handler), std::move(spec),
                                                   &options.name));
  }

  // ---- processing layer (see pipeline.hpp) ------------------------------------

  // The stage chain of Event, to extend before the bus starts.
  template <class Event>
  [[nodiscard]] stage_builder<Event> stages() {
    static_assert(check_event_type<Event>(), "");
    return stage_builder<Event>(core_);
  }

  // Keys every Event published without a key: fn(const Event&) -> key_type.
  // Set before the bus starts; returns nullptr, or why it was refused (and
  // throws std::logic_error with exceptions).
  template <class Event, class Fn>
  const char* key(Fn&& fn) {
    static_assert(check_event_type<Event>(), "");
    using F = std::decay_t<Fn>;
    static_assert(std::is_invocable_r_v<key_type, F&, const Event&>,
                  "sluice: a key extractor must be callable as key_type(const Event&)");
    const char* why = nullptr;
    {
      std::lock_guard<std::mutex> lock(core_.config_mutex());
      detail::registry& r = core_.reg(detail::type_index<Event>());
      if (core_.started()) {
        why =
            "sluice: key extractors must be set before the bus starts (its first producer, "
            "publish, dispatch or run)";
      } else if (r.key_of != nullptr) {
        why = "sluice: this event type already has a key extractor";
      } else {
        r.key_fn = new F(std::forward<Fn>(fn));
        r.key_destroy = [](void* f) noexcept { delete static_cast<F*>(f); };
        r.key_of = [](const void* f, const void* ev) -> key_type {
          return static_cast<key_type>(
              (*static_cast<F*>(const_cast<void*>(f)))(*static_cast<const Event*>(ev)));
        };
        return nullptr;
      }
    }
#if SLUICE_HAS_EXCEPTIONS
    throw std::logic_error(why);
#else
    return why;
#endif
  }

  // ---- storage (see storage/recorder.hpp) -------------------------------------

  // Records every event this bus takes from a lane for delivery (in lane
  // order, before any stage or handler sees it) and every dispatched event,
  // except replayed ones. Before the bus starts; stop() then writes and syncs
  // what was recorded. Returns nullptr, or why it was refused (and throws
  // std::logic_error with exceptions).
  template <class Recorder>
  const char* record(std::shared_ptr<Recorder> rec) {
    static_assert(std::is_base_of_v<detail::recorder_hook, Recorder>,
                  "sluice: bus::record takes a std::shared_ptr<sluice::recorder>");
    const char* why =
        rec == nullptr ? "sluice: bus::record needs a recorder" : core_.set_hook(std::move(rec));
#if SLUICE_HAS_EXCEPTIONS
    if (why != nullptr) throw std::logic_error(why);
#endif
    return why;
  }

  // ---- running ---------------------------------------------------------------

  // Drains queued events on this thread; returns how many were delivered
  // (or otherwise settled: filtered, unrouted, ...), plus the retries it
  // ran (docs/resilience.md).
  std::size_t poll(std::size_t max = static_cast<std::size_t>(-1)) {
    if (core_.forked()) return 0;  // the parent's events are the parent's
    core_.note_poller();
    const std::size_t start = next_start();
    std::size_t done = 0;
    while (done < max) {
      const std::size_t n = core_.drain_pass(start, max - done);
      if (n == 0) break;
      done += n;
    }
    return done;
  }

  // Drains until the queues are empty or the budget is spent, then returns
  // the events delivered. The clock is checked between events (as often as
  // their measured cost requires), so with steady handler times the budget
  // is overrun by about one handler call; at least one event is delivered
  // when one is there. Events a spent budget leaves in a lane's batch stay
  // first in line. Any budget is fine: negative is zero, and
  // nanoseconds::max() (or hours::max()) means "until empty". `Clock` is
  // what the budget is measured by (a steady clock).
  template <class Clock = std::chrono::steady_clock, class Rep, class Period>
  std::size_t poll_for(std::chrono::duration<Rep, Period> budget) {
    if (core_.forked()) return 0;
    core_.note_poller();
    detail::budget b(
        &detail::clock_ns<Clock>,
        detail::deadline_after(detail::clock_ns<Clock>(), detail::saturated_ns(budget)));
    const std::size_t lanes = core_.lane_count();
    std::size_t lane = next_start();
    std::size_t done = 0;
    std::size_t idle = 0;  // lanes in a row that gave nothing
    while (idle < lanes) {
      const std::size_t n = core_.drain_lane(lane, SLUICE_DRAIN_BATCH, false, &b);
      if (n == 0) {
        lane = (lane + 1) % lanes;
        ++idle;
        continue;
      }
      idle = 0;
      done += n;
      if (b.over()) break;
      lane = (lane + 1) % lanes;
    }
    return done;
  }

  // Waits until the bus is idle: every event accepted so far, and every event
  // handlers publish meanwhile, has been delivered (or otherwise settled), and
  // nothing is queued or being delivered. With workers it waits for them;
  // without, it drains on this thread, as poll() would. True when idle;
  // false when the timeout passed first (a handler that publishes for every
  // event it gets keeps the bus busy for ever), when the bus is stopped, or
  // when called from one of this bus's handlers (it would wait for itself).
  template <class Rep, class Period>
  bool wait_idle(std::chrono::duration<Rep, Period> timeout) {
    if (detail::inside(&core_) || core_.forked()) return false;
    const std::int64_t end =
        detail::deadline_after(detail::now_ns(), detail::saturated_ns(timeout));
    auto expired = [end] { return detail::now_ns() >= end; };
    detail::backoff wait;
    while (core_.live_workers() == 0) {
      core_.note_poller();
      const std::size_t n = core_.drain_pass(next_start(), static_cast<std::size_t>(-1));
      if (core_.idle()) return true;
      if (expired()) return false;
      if (n == 0) wait.pause();  // another thread holds the lanes
    }
    return core_.wait_idle(expired);
  }
  bool wait_idle() {
    return wait_idle(std::chrono::nanoseconds::max());
  }

  // Starts `threads` workers. False if already running, stopped, threads == 0,
  // or called from one of this bus's handlers.
  bool run(std::size_t threads,
           std::chrono::microseconds idle_spin = std::chrono::microseconds(200)) {
    if (detail::inside(&core_)) return false;  // from a handler: refused
    if (core_.forked()) return false;          // its lock may be held by a vanished thread
    std::lock_guard<std::mutex> lock(run_mutex_);
    if (threads == 0 || !workers_.empty() || core_.state() != detail::run_state::running)
      return false;
    core_.mark_started();
    workers_.reserve(threads);
    for (std::size_t i = 0; i < threads; ++i) {
      core_.worker_started();  // counted before it runs: publishers know a drainer comes
      try_start_worker(i, idle_spin);
      worker_count_.store(workers_.size(), std::memory_order_relaxed);
    }
    return true;
  }

  // Stops the bus for good: refuses new events from outside handlers, then
  // drains (delivers) or discards what is queued, and joins the workers.
  // Returns false when called from a handler (refused) or already stopped.
  bool stop(stop_mode mode = stop_mode::drain) {
    if (detail::inside(&core_)) return false;
    if (core_.forked()) return false;  // its lock may be held by a vanished thread
    std::lock_guard<std::mutex> lock(run_mutex_);
    if (core_.state() == detail::run_state::stopped) return false;
    const bool discard = mode == stop_mode::discard;
    core_.set_state(discard ? detail::run_state::discarding : detail::run_state::draining);
    core_.settle_credit_publishes();
    core_.wake_everyone();
    for (auto& t : workers_) t.join();
    workers_.clear();
    worker_count_.store(0, std::memory_order_relaxed);
    core_.drain_all(discard);
    core_.set_state(detail::run_state::stopped);
    core_.wake_everyone();
    core_.drain_all(discard);  // events accepted just before the state changed
    core_.stop_hooks();
    return true;
  }

  // True once stop() has ended (publishes from outside handlers are refused
  // from the moment it begins).
  [[nodiscard]] bool stopped() const noexcept {
    return core_.state() == detail::run_state::stopped;
  }
  // Worker threads started by run() and not yet joined.
  [[nodiscard]] std::size_t workers() const noexcept {
    return worker_count_.load(std::memory_order_relaxed);
  }
  // Workers parked (asleep, waiting for events) right now, or about to park.
  [[nodiscard]] std::size_t parked_workers() const noexcept {
    return core_.parked_workers();
  }

  // ---- observing -------------------------------------------------------------

  // Event's counters, each read on its own while the bus runs (the fates
  // add up to `published` once it is stopped; docs/contracts.md).
  template <class Event>
  [[nodiscard]] type_stats stats() const {
    return core_.stats_of(detail::type_index<Event>());
  }
  // Event's latency histograms (bus_options::latency_sample_every; empty
  // when off): queue wait, and handler calls over its subscriptions. Read
  // at any time; each histogram's words are read one by one while the bus
  // runs. Copies about 35 KiB; takes the type's subscriber lock briefly.
  template <class Event>
  [[nodiscard]] type_latency latency() const {
    type_latency out;
    core_.latency_of(detail::type_index<Event>(), out);
    return out;
  }
  // Event's subscriptions on this bus, newest first, with their names and
  // counts (an unsubscribed one stays listed, inactive, until the bus
  // frees it). Takes the
  // type's subscriber lock briefly; allocates the list.
  template <class Event>
  [[nodiscard]] std::vector<subscription_info> subscriptions() const {
    std::vector<subscription_info> out;
    core_.each_subscription(detail::type_index<Event>(), [&](const detail::sub_node& n) {
      out.push_back({n.name, detail::stats_of(n), !n.closed.load(std::memory_order_acquire)});
    });
    return out;
  }

  // Timed values left out because their histogram could not be allocated.
  [[nodiscard]] std::uint64_t latency_lost() const noexcept {
    return core_.metrics_lost();
  }

  // bus_options::lanes.
  [[nodiscard]] std::size_t lane_count() const noexcept {
    return core_.lane_count();
  }
  // Lane i's depth, high-water mark and bound (i < lane_count()).
  [[nodiscard]] lane_stats lane(std::size_t i) const noexcept {
    return core_.lane_info(i);
  }
  // The lane that events published with `key` go to (fixed for a bus).
  [[nodiscard]] std::size_t lane_of(key_type key) const noexcept {
    return core_.lane_for(key);
  }
  // Events the lanes hold at most, in all. Exact per lane: a lane never
  // holds more than lane_capacity; places a producer reserved and has not
  // used yet count as taken (docs/performance.md, "What 'exact' means now").
  [[nodiscard]] std::size_t capacity() const noexcept {
    return core_.lane_count() * core_.options().lane_capacity;
  }
  // Events accepted and not yet settled: queued, waiting for their time
  // (publish_after), or taken by a drainer and not yet delivered. 0 after
  // stop().
  [[nodiscard]] std::size_t queued() const noexcept {
    return core_.queued();
  }
  // Events published with a delay and waiting for their time, in all lanes.
  [[nodiscard]] std::size_t delayed() const noexcept {
    return core_.delayed();
  }

 private:
  static constexpr std::size_t shared_count = 4;

  struct shared_producer {
    std::atomic<bool> busy{false};
    std::unique_ptr<detail::producer_core> core;
  };

  static bus_options checked(bus_options o, const char*& error) {
    error = o.validate();
    if (error != nullptr) {
      o.lanes = 1;
      o.lane_capacity = 1;
      o.expected_producers = 0;
    }
    return o;
  }

#if SLUICE_HAS_EXCEPTIONS
  void try_start_worker(std::size_t i, std::chrono::microseconds idle_spin) {
    try {
      workers_.emplace_back([this, i, idle_spin] { detail::worker_loop(core_, i, idle_spin); });
    } catch (...) {
      core_.worker_ended();
      throw;
    }
  }
#else
  void try_start_worker(std::size_t i, std::chrono::microseconds idle_spin) {
    workers_.emplace_back([this, i, idle_spin] { detail::worker_loop(core_, i, idle_spin); });
  }
#endif

  // In a fork() child: leaves everything of the parent's bus alone (its
  // workers do not exist here, its locks may be held by threads that do not
  // exist here, and its queued events are the parent's to deliver).
  void abandon() noexcept {
    for (auto& sp : shared_) (void)sp.core.release();
    // Ends the thread handles without join or detach: they name threads of
    // the parent.
    for (auto& t : workers_) ::new (static_cast<void*>(&t)) std::thread();
  }

  template <class Event>
  publish_result shared_publish(Event&& e, bool has_key, key_type key, bool try_only) {
    using mode = detail::producer_core::attempt;
    // In a fork() child a shared producer may be held by a vanished thread.
    if (core_.forked()) return publish_result::stopped;
    core_.mark_started();
    shared_producer& sp = shared_[detail::thread_number() % shared_count];
    detail::backoff wait;
    for (;;) {
      detail::backoff spin;
      while (sp.busy.load(std::memory_order_relaxed) ||
             sp.busy.exchange(true, std::memory_order_acquire))
        spin.pause();
      bool would_block = false;
      bool refused = false;
      publish_result r;
      std::uint64_t first = 0;  // the sequence the event gets if accepted
      std::uint64_t flow = 0;   // its correlation, if accepted
      {
        // Released even if the event's copy or a key extractor throws.
        struct release_busy {
          std::atomic<bool>& busy;
          ~release_busy() { busy.store(false, std::memory_order_release); }
        } held{sp.busy};
        // Only the attempt that is accepted consumes the event.
        // (Not observed here: an observer may publish, through the same
        // shared producer; told below, once it is released.)
        first = sp.core->last_sequence() + 1;
        r = sp.core->publish_one(std::forward<Event>(e), has_key, key,
                                 try_only ? mode::try_once : mode::probe, &would_block);
        flow = sp.core->last_flow();
        // Nobody else can make room: refused (counted while the shared
        // producer is still held: its counters have one writer at a time;
        // reported after, as the observer may publish).
        if (would_block && !core_.drained_by_others()) {
          sp.core->count_no_drainer<std::decay_t<Event>>();
          refused = true;
        }
      }
      if (refused) {
        sp.core->report_no_drainer<std::decay_t<Event>>(has_key, key);
        return publish_result::full;
      }
      if (!would_block) {
        sp.core->observe_one<std::decay_t<Event>>(r, has_key, key, first, false, flow);
        return r;
      }
      wait.pause();
    }
  }

  static const subscribe_options& no_options() {
    static const subscribe_options none;
    return none;
  }

  template <class Event>
  static std::unique_ptr<const detail::retry_spec> make_retry_spec(const failure_policy& policy,
                                                                   const std::string& name) {
    auto spec = std::make_unique<detail::retry_spec>();
    spec->policy = policy;
    spec->name = name;
    if constexpr (std::is_copy_constructible_v<Event>) {
      spec->make = &detail::retry_record_of<Event>::make;
      spec->dead_letter = &hand_dead_letter<Event>;
    }
    return spec;
  }

  // Hands a dead_letter<Event> to its subscribers on this thread, as a
  // dispatch (not counted as published). Nothing escapes: with no memory
  // for it, or no subscriber, the event stays counted dead-lettered.
  template <class Event>
  static void hand_dead_letter(detail::bus_core& core, const void* ev, const metadata& m,
                               failure_kind kind, int code, const char* message,
                               std::uint32_t attempts, const std::string& name) {
    detail::registry* r = core.find_reg(detail::type_index<dead_letter<Event>>());
    if (r == nullptr) return;
    SLUICE_TRY {
      dead_letter<Event> d{*std::launder(static_cast<const Event*>(ev)),
                           m,
                           kind,
                           code,
                           message != nullptr ? message : "",
                           attempts,
                           name};
      (void)core.deliver(*r, &d, m, *detail::my_slot());
    }
    SLUICE_CATCH(...) {
      SLUICE_PASS_FORCED_UNWIND();
    }
  }

  template <class Event>
  publish_result shared_publish_after(std::int64_t delay_ns, Event&& e, bool has_key,
                                      key_type key) {
    if (core_.forked()) return publish_result::stopped;
    core_.mark_started();
    shared_producer& sp = shared_[detail::thread_number() % shared_count];
    detail::backoff spin;
    while (sp.busy.load(std::memory_order_relaxed) ||
           sp.busy.exchange(true, std::memory_order_acquire))
      spin.pause();
    publish_result r;
    std::uint64_t first = 0;
    std::uint64_t flow = 0;
    {
      struct release_busy {
        std::atomic<bool>& busy;
        ~release_busy() { busy.store(false, std::memory_order_release); }
      } held{sp.busy};
      first = sp.core->last_sequence() + 1;
      r = sp.core->publish_after_one(delay_ns, std::forward<Event>(e), has_key, key);
      flow = sp.core->last_flow();
    }
    // Told once the shared producer is released (an observer may publish).
    sp.core->observe_one<std::decay_t<Event>>(r, has_key, key, first, true, flow);
    return r;
  }

  friend struct detail::bus_access;

  std::size_t next_start() noexcept {
    return poll_cursor_.fetch_add(1, std::memory_order_relaxed) % core_.lane_count();
  }

  const char* error_ = nullptr;
  detail::bus_core core_;
  shared_producer shared_[shared_count];
  std::atomic<std::size_t> poll_cursor_{0};
  mutable std::mutex run_mutex_;
  std::vector<std::thread> workers_;
  std::atomic<std::size_t> worker_count_{0};
};

namespace detail {
// For sluice's own tests (the interleaving checker drives a bus's worker loop).
struct bus_access {
  static bus_core& core(bus& b) noexcept { return b.core_; }
};
}  // namespace detail

}  // namespace SLUICE_ABI
}  // namespace sluice
