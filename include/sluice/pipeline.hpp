// sluice — the processing layer: per-type stage chains and key extractors.
//
//   bus.stages<reading>()
//       .filter([](const reading& r) { return r.valid; })        // drop: counted filtered
//       .tap([](const reading& r) { log(r); })                    // observe
//       .transform([](const reading& r) { return r.calibrated(); })  // T -> T: enrich, go on
//       .transform([](const reading& r) -> std::optional<alert> {    // T -> U: ends the chain;
//         ...                                                         // U goes through U's
//       });                                                           // chain and subscribers
//   bus.stages<alert>().route([](const alert& a) { return a.urgent ? pager : dashboard; });
//   bus.key<order_placed>([](const order_placed& o) { return o.order_id; });
//
// Semantics: stages run on the thread that drains the event (a worker, a
// poll() caller, or a dispatch() caller), in the order they were added, before
// the type's subscribers. A transform's output keeps its cause's metadata (key,
// sequence, timestamp, producer, correlation; its metadata::cause is the
// input's event_id) and is handled at once on the same thread, so
// per-key order holds through transforms. A route picks the channel; handlers
// subscribed on that channel and those subscribed without one are called;
// none: unrouted. A stage that throws is reported (failure_kind::stage) and
// counted in failed; a throwing filter, transform or route drops the event
// (counted filtered), a throwing tap does not (like a failing handler, it
// does not stop the event).
//
// Configuration: stages and key extractors are set before the bus starts (its
// first producer, publish, dispatch or run()); afterwards they are refused, as
// are a stage after a route or a type-changing transform, a transform that
// would close a cycle of types, and a 65th stage in one chain. Refusals throw std::logic_error;
// without exceptions the stage is not added and error() says why.
//
// Thread-safety: configure from one thread, before the bus starts.
#pragma once

#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <type_traits>
#include <utility>

#include "channel.hpp"
#include "config.hpp"
#include "detail/core.hpp"
#include "detail/stages.hpp"
#include "detail/type_id.hpp"
#include "event.hpp"

#if SLUICE_HAS_EXCEPTIONS
#include <exception>
#include <stdexcept>
#endif

namespace sluice {
inline namespace SLUICE_ABI {

class bus;

namespace detail {

template <class T>
struct optional_of {
  static constexpr bool value = false;
  using event = T;
};
template <class T>
struct optional_of<std::optional<T>> {
  static constexpr bool value = true;
  using event = T;
};

// Calls f, turning an exception into `false` (its message kept for the report).
// A thread's forced unwind (pthread_exit in a stage) goes through.
template <class F>
bool guarded(F&& f) noexcept(!SLUICE_HAS_EXCEPTIONS) {
#if SLUICE_HAS_EXCEPTIONS
  try {
    f();
    return true;
  } catch (const std::exception& e) {
    set_stage_error(e.what());
  } catch (...) {
    SLUICE_PASS_FORCED_UNWIND();
    set_stage_error("unknown exception");
  }
  return false;
#else
  f();
  return true;
#endif
}

// The steps of one stage of type T's chain calling an F (stages.hpp): each
// runs the user's function, then hands the event on (next_step) or says what
// became of it.
template <class T, class F>
struct stage_fns {
  static void destroy(void* fn) noexcept { delete static_cast<F*>(fn); }
  static F& fn_of(const stage* self) noexcept { return *static_cast<F*>(self->fn); }
  static const T& ev_of(const void* ev) noexcept {
    return *std::launder(static_cast<const T*>(ev));
  }

  // Keeps the event if the predicate holds; a throwing one drops it.
  static fate filter(const stage* self, const void* ev, const metadata& m, chain_run& run) {
    bool pass = false;
    const bool ran = guarded([&] { pass = static_cast<bool>(fn_of(self)(ev_of(ev))); });
    if (SLUICE_UNLIKELY(!ran)) {
      stage_failed(run, ev, m);
      return fate::filtered;
    }
    if (!pass) return fate::filtered;
    return next_step(self, ev, m, run);
  }
  // Observes; a throwing tap is reported and the event goes on.
  static fate tap(const stage* self, const void* ev, const metadata& m, chain_run& run) {
    const bool ran = guarded([&] { fn_of(self)(ev_of(ev)); });
    if (SLUICE_UNLIKELY(!ran)) stage_failed(run, ev, m);
    return next_step(self, ev, m, run);
  }
  // Picks the channel (the next step delivers); a throwing route drops the event.
  static fate route(const stage* self, const void* ev, const metadata& m, chain_run& run) {
    std::uint32_t channel_id = 0;
    const bool ran = guarded([&] { channel_id = fn_of(self)(ev_of(ev)).id(); });
    if (SLUICE_UNLIKELY(!ran)) {
      stage_failed(run, ev, m);
      return fate::filtered;
    }
    run.channel = channel_id;
    return next_step(self, ev, m, run);
  }
  // Runs a converting stage's function into `made` (left empty when it
  // returns an empty optional); false if it threw.
  template <class Out, bool Optional>
  static bool make(const stage* self, const void* ev, std::optional<Out>& made) {
    if constexpr (Optional) {
      return guarded([&] {
        if (auto o = fn_of(self)(ev_of(ev))) made.emplace(std::move(*o));
      });
    } else {
      return guarded([&] { made.emplace(fn_of(self)(ev_of(ev))); });
    }
  }
  // T -> T (or optional<T>: empty drops it): the rest of this chain gets the
  // new value.
  template <bool Optional>
  static fate enrich(const stage* self, const void* ev, const metadata& m, chain_run& run) {
    std::optional<T> made;
    const bool ran = make<T, Optional>(self, ev, made);
    if (SLUICE_UNLIKELY(!ran)) {
      stage_failed(run, ev, m);
      return fate::filtered;
    }
    if (!made) return fate::filtered;
    return next_step(self, &*made, m, run);
  }
  // T -> U or optional<U>: U's chain and subscribers get the output.
  template <class U, bool Optional>
  static fate transform(const stage* self, const void* ev, const metadata& m, chain_run& run) {
    std::optional<U> made;
    const bool ran = make<U, Optional>(self, ev, made);
    if (SLUICE_UNLIKELY(!ran)) {
      stage_failed(run, ev, m);
      return fate::filtered;
    }
    if (!made) return fate::filtered;  // an empty optional drops the event
    bus_core& core = *run.core;
    reader_slot& slot = *run.slot;
    registry& ru = *core.find_reg(type_index<U>());  // made when the stage was added
    if (run.hops + 1 > SLUICE_MAX_HOPS) {
      core.report_failure(ru, failure_kind::stage, 0,
                          "an event went through more than SLUICE_MAX_HOPS transforms", &*made, &m);
      return fate::filtered;
    }
    // Counted in this thread's cell (no locked instruction), or, without
    // memory for one, in the registry's atomics.
    derived_cell* cell = derived_cell_for(ru, slot);
    if (cell != nullptr) {
      counter_cell::bump(cell->made);
    } else {
      ru.derived.fetch_add(1, std::memory_order_relaxed);
    }
    // A thread that ends in U's handler (a forced unwind) still settles U:
    // it was handed over, as the input is (drain_guard).
    struct settle_on_unwind {
      registry& r;
      bool done = false;
      ~settle_on_unwind() {
        if (!done) detail::settle(r, fate::delivered, 1);
      }
    } unwind{ru};
    std::size_t calls = 0;
    // The output keeps its input's metadata, with the input as its cause.
    metadata mu = m;
    mu.cause = event_id(m);
    const fate fu = core.process(ru, &*made, mu, slot, run.hops + 1, calls);
    unwind.done = true;
    if (cell != nullptr) {
      detail::settle(*cell, fu, calls);
    } else {
      detail::settle(ru, fu, calls);
    }
    return fate::transformed;
  }
};

}  // namespace detail

// Builds the stage chain of event type T. Obtained from bus::stages<T>().
template <class T>
class stage_builder {
 public:
  // Keeps events for which pred(const T&) is true; the others are filtered.
  template <class Pred>
  stage_builder& filter(Pred&& pred) {
    using P = std::decay_t<Pred>;
    static_assert(std::is_invocable_r_v<bool, P&, const T&>,
                  "sluice: a filter must be callable as bool(const T&) for the chain's type T");
    detail::stage st;
    st.kind = detail::stage_kind::filter;
    st.step = &detail::stage_fns<T, P>::filter;
    add(st, new P(std::forward<Pred>(pred)), &detail::stage_fns<T, P>::destroy, nullptr);
    return *this;
  }

  // Calls fn(const T&) and passes the event on unchanged.
  template <class Fn>
  stage_builder& tap(Fn&& fn) {
    using F = std::decay_t<Fn>;
    static_assert(std::is_invocable_v<F&, const T&>,
                  "sluice: a tap must be callable as f(const T&) for the chain's type T");
    detail::stage st;
    st.kind = detail::stage_kind::tap;
    st.step = &detail::stage_fns<T, F>::tap;
    add(st, new F(std::forward<Fn>(fn)), &detail::stage_fns<T, F>::destroy, nullptr);
    return *this;
  }

  // Stores the event (with its metadata) in a recorder (storage/recorder.hpp)
  // and passes it on: placed after filters, it stores only what passed them.
  // Events a replay publishes are not stored again.
  template <class Recorder>
  stage_builder& store(std::shared_ptr<Recorder> rec) {
    static_assert(std::is_base_of_v<detail::recorder_hook, Recorder>,
                  "sluice: store takes a std::shared_ptr<sluice::recorder>");
    struct store_fn {
      std::shared_ptr<detail::recorder_hook> hook;
      // Passes everything on, unless a write-ahead recorder could not make
      // the event durable: then it is dropped, and reported as a failed stage.
      static detail::fate step(const detail::stage* self, const void* ev, const metadata& m,
                               detail::chain_run& run) {
        if (SLUICE_UNLIKELY(!static_cast<store_fn*>(self->fn)->hook->on_event(
                detail::type_index<T>(), ev, m))) {
          detail::set_stage_error(
              "sluice: the recorder could not make the event durable "
              "(durable_before_delivery): it was not delivered");
          detail::stage_failed(run, ev, m);
          return detail::fate::filtered;
        }
        return detail::next_step(self, ev, m, run);
      }
      static void destroy(void* fn) noexcept { delete static_cast<store_fn*>(fn); }
    };
    core_->add_store_hook(rec);  // stop() has it write and sync
    detail::stage st;
    st.kind = detail::stage_kind::filter;
    st.step = &store_fn::step;
    add(st, new store_fn{std::move(rec)}, &store_fn::destroy, nullptr);
    return *this;
  }

  // fn(const T&) returning T or std::optional<T> (enrichment: the chain goes
  // on with the result; empty: filtered), U (the event becomes a U: this chain
  // ends, U's chain and subscribers take over), or std::optional<U> (empty:
  // filtered). Returns *this for T -> T.
  template <class Fn>
  decltype(auto) transform(Fn&& fn) {
    using F = std::decay_t<Fn>;
    static_assert(std::is_invocable_v<F&, const T&>,
                  "sluice: a transform must be callable as f(const T&) for the chain's type T");
    using R = std::decay_t<std::invoke_result_t<F&, const T&>>;
    constexpr bool optional = detail::optional_of<R>::value;
    using U = typename detail::optional_of<R>::event;
    static_assert(!std::is_void_v<U>, "sluice: a transform must return an event or an optional");
    static_assert(check_event_type<U>(), "");
    detail::stage st;
    if constexpr (std::is_same_v<U, T>) {
      st.kind = detail::stage_kind::enrich;
      st.step = &detail::stage_fns<T, F>::template enrich<optional>;
      add(st, new F(std::forward<Fn>(fn)), &detail::stage_fns<T, F>::destroy, nullptr);
      return (*this);
    } else {
      st.kind = detail::stage_kind::transform;
      st.step = &detail::stage_fns<T, F>::template transform<U, optional>;
      const std::uint32_t out = detail::type_index<U>();
      add(st, new F(std::forward<Fn>(fn)), &detail::stage_fns<T, F>::destroy, &out);
    }
  }

  // fn(const T&) returning a sluice::channel: handlers on that channel (and
  // those subscribed without a channel) get the event. Ends the chain.
  template <class Fn>
  void route(Fn&& fn) {
    using F = std::decay_t<Fn>;
    static_assert(std::is_invocable_v<F&, const T&>,
                  "sluice: a route must be callable as f(const T&) for the chain's type T");
    static_assert(std::is_same_v<std::decay_t<std::invoke_result_t<F&, const T&>>, channel>,
                  "sluice: a route function must return a sluice::channel");
    detail::stage st;
    st.kind = detail::stage_kind::route;
    st.step = &detail::stage_fns<T, F>::route;
    add(st, new F(std::forward<Fn>(fn)), &detail::stage_fns<T, F>::destroy, nullptr);
  }

  // The first refusal of this builder (no exceptions), or nullptr.
  [[nodiscard]] const char* error() const noexcept { return error_; }

 private:
  friend class bus;
  explicit stage_builder(detail::bus_core& core) noexcept : core_(&core) {}

  // Adds a stage (taking ownership of fn) or refuses it.
  void add(detail::stage st, void* fn, void (*destroy)(void*) noexcept, const std::uint32_t* out) {
    std::unique_ptr<void, void (*)(void*) noexcept> owned(fn, destroy);
    st.fn = fn;
    st.destroy = destroy;
    const char* why = nullptr;
    {
      std::lock_guard<std::mutex> lock(core_->config_mutex());
      detail::registry& r = core_->reg(detail::type_index<T>());
      detail::stage_chain* c = r.chain_owner.get();
      if (core_->started()) {
        why =
            "sluice: stages must be added before the bus starts (its first producer, "
            "publish, dispatch or run)";
      } else if (c != nullptr && c->closed) {
        why = "sluice: this chain already ends in a route or a type-changing transform";
      } else if (c != nullptr && c->stages.size() > detail::max_stages) {
        static_assert(detail::max_stages == 64, "sluice: the refusal below names the bound");
        why = "sluice: a chain takes at most 64 stages";
      } else if (out != nullptr && reaches(*out, detail::type_index<T>())) {
        why = "sluice: this transform would close a cycle of event types";
      } else {
        if (out != nullptr) (void)core_->reg(*out);  // drainers only look it up
        // A new chain ends in the delivery step from the start.
        std::unique_ptr<detail::stage_chain> made;
        if (c == nullptr) {
          made = std::make_unique<detail::stage_chain>();
          made->stages.reserve(2);
          made->stages.push_back(detail::delivery_stage());
        }
        detail::stage_chain& chain = c != nullptr ? *c : *made;
        // Reserve first: nothing below may throw once the stage is in.
        chain.stages.reserve(chain.stages.size() + 1);
        chain.outputs.reserve(chain.outputs.size() + 1);
        chain.stages.insert(chain.stages.end() - 1, st);  // before the delivery step
        owned.release();
        if (out != nullptr) chain.outputs.push_back(*out);
        if (st.kind == detail::stage_kind::route || st.kind == detail::stage_kind::transform)
          chain.closed = true;
        if (made != nullptr) {
          r.chain_owner = std::move(made);
          c = r.chain_owner.get();
        }
        r.chain.store(c, std::memory_order_release);
        return;
      }
    }
    owned.reset();
    if (error_ == nullptr) error_ = why;
#if SLUICE_HAS_EXCEPTIONS
    throw std::logic_error(why);
#endif
  }

  // Whether type `from` leads to type `to` through configured transforms.
  bool reaches(std::uint32_t from, std::uint32_t to) const {
    if (from == to) return true;
    std::vector<std::uint32_t> todo{from};
    std::vector<bool> seen(SLUICE_MAX_EVENT_TYPES, false);
    while (!todo.empty()) {
      const std::uint32_t t = todo.back();
      todo.pop_back();
      if (t == to) return true;
      if (seen[t]) continue;
      seen[t] = true;
      const detail::registry* r = core_->find_reg(t);
      if (r != nullptr && r->chain_owner != nullptr)
        for (std::uint32_t o : r->chain_owner->outputs) todo.push_back(o);
    }
    return false;
  }

  detail::bus_core* core_;
  const char* error_ = nullptr;
};

}  // namespace SLUICE_ABI
}  // namespace sluice
