// sluice — producers: the fast path into a bus.
//
// A producer holds one queue token per lane, places reserved in each lane a
// chunk at a time (bus_options::reserve_chunk) and its own counters, so a
// publish is one enqueue, with no shared atomic but once per chunk, and no
// allocation for events that fit inline. Keys choose the lane: events one
// producer publishes with the same key (of any type) reach every subscriber
// in publication order. Events without a key go to the producer's home lane
// and keep the producer's order.
//
// Thread-safety: a producer is used by one thread at a time (make one per
// thread; bus::publish is the shared, slower convenience). It may be used
// inside a handler. Lifetime: destroy producers before their bus.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

#include "config.hpp"
#include "detail/clock.hpp"
#include "detail/core.hpp"
#include "detail/stamp_clock.hpp"
#include "detail/tracking.hpp"
#include "errors.hpp"
#include "event.hpp"
#include "options.hpp"

namespace sluice {
inline namespace SLUICE_ABI {

class bus;

namespace detail {

// Out of memory where the queue reports it by a null pointer: as an
// allocation that throws (std::bad_alloc), or, without exceptions, as the
// standard library does: the process ends.
[[noreturn]] inline void out_of_memory() {
#if SLUICE_HAS_EXCEPTIONS
  throw std::bad_alloc();
#else
  std::fputs("sluice: out of memory\n", stderr);
  std::abort();
#endif
}

// The event whose handler, stage or scope runs on this thread, if any: the
// cause of what the thread publishes on `bus` (flows; see
// docs/monitoring.md). Ids are a bus's own: an event a drainer of another
// bus delivers is no cause here (a caused_by scope is, on any bus).
[[nodiscard]] inline const metadata* current_cause(const void* bus) noexcept {
  const thread_state& t = this_thread();
  if (SLUICE_UNLIKELY(t.cause != nullptr)) return t.cause;
  const retry_context* ctx = t.retry;
  if (ctx == nullptr || ctx->bus != bus) return nullptr;
  const envelope* e = *ctx->current;
  return e != nullptr ? &e->meta() : nullptr;
}

// Fills w's correlation and cause for an event of `producer` published now.
inline void stamp_flow(stamp_words& w, std::uint32_t producer, const void* bus) noexcept {
  const metadata* c = current_cause(bus);
  const std::uint64_t cause = c != nullptr ? event_id(*c) : 0;
  if (cause == 0) {  // it begins a flow of its own
    w.cause = 0;
    w.correlation = event_id(producer, w.sequence);
  } else {
    w.cause = cause;
    w.correlation = c->correlation != 0 ? c->correlation : cause;
  }
}

// Wraps a range of events as a range of envelopes for one enqueue_bulk.
template <class It>
class bulk_envelopes {
 public:
  bulk_envelopes(It it, const stamp_words& w, std::uint32_t producer)
      : it_(it), words_(&w), producer_(producer) {}
  envelope operator*() {
    stamp_words w = *words_;
    w.sequence += index_;
    if (w.cause == 0) w.correlation = event_id(producer_, w.sequence);
    return envelope(std::move(*it_), w);
  }
  bulk_envelopes& operator++() {
    ++it_;
    ++index_;
    return *this;
  }
  bulk_envelopes operator++(int) {
    bulk_envelopes old = *this;
    ++*this;
    return old;
  }

 private:
  It it_;
  const stamp_words* words_;
  std::uint32_t producer_;
  std::uint64_t index_ = 0;
};

class producer_core {
 public:
  producer_core(bus_core& core, std::uint32_t id, full_policy policy, bool shared = false,
                bool replayed = false, bool bridged = false, bool redriven = false)
      : core_(&core),
        id_(id),
        policy_(policy),
        tails_{metadata_tail(id, false, replayed, bridged, redriven),
               metadata_tail(id, true, replayed, bridged, redriven)},
        home_(id % core.lane_count()),
        chunk_(core.reserve_chunk()) {
    tokens_.reserve(core.lane_count());
    credits_.reserve(core.lane_count());
    for (std::size_t i = 0; i < core.lane_count(); ++i) {
      tokens_.emplace_back(core.lane_at(i).q());
      // The queue allocates a token's producer without throwing: a token
      // without one would be dereferenced by the first publish.
      if (!tokens_.back().valid()) out_of_memory();
    }
    if (chunk_ > 1) {
      SLUICE_TRY {
        for (std::size_t i = 0; i < core.lane_count(); ++i) {
          credit_slot c;
          c.cell = core.lane_at(i).take_credit_cell();
          credits_.push_back(c);  // reserved above: does not throw
        }
      }
      SLUICE_CATCH(...) {  // out of memory: the cells taken so far are given back
        for (std::size_t i = 0; i < credits_.size(); ++i)
          core.lane_at(i).return_credit_cell(*credits_[i].cell);
        SLUICE_THROW();
      }
    }
    core.producer_made(shared);
  }
  producer_core(const producer_core&) = delete;
  producer_core& operator=(const producer_core&) = delete;
  ~producer_core() {
    for (counter_cell* c : cells_)
      if (c != nullptr) c->in_use.store(false, std::memory_order_release);
    // Places reserved and not used go back (producers waiting for room wake).
    for (std::size_t i = 0; i < credits_.size(); ++i)
      if (!core_->forked()) core_->lane_at(i).return_credit_cell(*credits_[i].cell);
    tokens_.clear();
    core_->producer_gone();
  }

  [[nodiscard]] std::uint32_t id() const noexcept { return id_; }
  [[nodiscard]] std::uint64_t last_sequence() const noexcept { return seq_; }

  // bus::publish's blocking path found nobody to drain (see on_full): counts
  // the refusal while the shared producer is held, and reports it once it is
  // not (an observer may publish, through the same shared producer).
  template <class T>
  void count_no_drainer() {
    counter_cell::bump(cell(type_index<T>()).rejected);
  }
  template <class T>
  void report_no_drainer(bool has_key, key_type key) {
    report_no_drainer(cell(type_index<T>()));
    if (core_->watches_publish())
      observe(type_index<T>(), publish_result::full, has_key, key, 1, 0, false);
  }

  // How publish treats a full lane. `probe` is bus::publish's blocking path:
  // it reports a wait it would have done (`*would_block`) instead of waiting,
  // so that the shared producer is not held while waiting.
  enum class attempt : std::uint8_t { normal, try_once, probe };

  template <class E>
  publish_result publish(E&& e, bool has_key, key_type key, attempt mode,
                         bool* would_block = nullptr) {
    if (SLUICE_LIKELY(!core_->watches_publish()))
      return publish_one(std::forward<E>(e), has_key, key, mode, would_block);
    const std::uint64_t first = seq_ + 1;
    const publish_result r = publish_one(std::forward<E>(e), has_key, key, mode, would_block);
    // (A probe that would have waited is tried again by its caller.)
    if ((mode != attempt::probe || !*would_block) && core_->tells_publish(r, last_flow_))
      observe(type_index<std::decay_t<E>>(), r, has_key, key, 1, first, false);
    return r;
  }

  // Tells the observer, if the bus has one, what became of one publish of
  // T (for bus::publish, once its shared producer is released).
  template <class T>
  void observe_one(publish_result r, bool has_key, key_type key, std::uint64_t first, bool delayed,
                   std::uint64_t flow) const noexcept {
    if (core_->watches_publish() && core_->tells_publish(r, flow))
      observe(type_index<T>(), r, has_key, key, 1, first, delayed);
  }
  // The correlation of the last event this producer stamped.
  [[nodiscard]] std::uint64_t last_flow() const noexcept { return last_flow_; }

  // publish() without telling the observer.
  template <class E>
  publish_result publish_one(E&& e, bool has_key, key_type key, attempt mode, bool* would_block) {
    using T = std::decay_t<E>;
    static_assert(check_event_type<T>(), "");
    const std::uint32_t type = type_index<T>();
    counter_cell& c = cell(type);
    if (!has_key && c.owner->key_of != nullptr) {
      // A key extractor configured for the type keys the event.
      key = c.owner->key_of(c.owner->key_fn, static_cast<const void*>(&e));
      has_key = true;
    }
    const std::size_t li = has_key ? core_->lane_for(key) : home_;
    lane& l = core_->lane_at(li);
    const bool in_handler = inside(core_);
    if (chunk_ > 1 && credits_[li].left != 0)
      return publish_on_credit(std::forward<E>(e), has_key, key, li, c, in_handler);
    // Refused before reserving as well: a reservation advances the lane's
    // generation, and a stream of refused publishes must not keep a draining
    // stop() from seeing the bus idle. (Checked again after reserving.)
    if (SLUICE_UNLIKELY(core_->surely_refusing(in_handler))) {
      counter_cell::bump(c.rejected);
      return publish_result::stopped;
    }
    std::size_t taken = l.try_reserve(chunk_);
    if (SLUICE_UNLIKELY(taken == 0)) {
      const publish_result r = on_full(l, c, 1, in_handler, mode, would_block);
      if (r != publish_result::ok) return r;
      taken = 1;
    }
    // Places beyond this event's are credit for the next publishes here.
    if (taken > 1) keep_credit(li, taken - 1);
    reservation held(l, 1);
    const publish_result r =
        accept_and_enqueue(std::forward<E>(e), has_key, key, li, c, in_handler);
    if (r != publish_result::ok) return r;
    held.dismiss();
    core_->wake_workers();
    return publish_result::ok;
  }

  // Holds the event in its lane's timing wheel until `delay_ns` from now;
  // then the lane's drainer delivers it. Never waits: a full wheel (or
  // bus_options::delayed_capacity 0) gives `full`, counted rejected.
  template <class E>
  publish_result publish_after(std::int64_t delay_ns, E&& e, bool has_key, key_type key) {
    if (SLUICE_LIKELY(!core_->watches_publish()))
      return publish_after_one(delay_ns, std::forward<E>(e), has_key, key);
    const std::uint64_t first = seq_ + 1;
    const publish_result r = publish_after_one(delay_ns, std::forward<E>(e), has_key, key);
    if (core_->tells_publish(r, last_flow_))
      observe(type_index<std::decay_t<E>>(), r, has_key, key, 1, first, true);
    return r;
  }

  template <class E>
  publish_result publish_after_one(std::int64_t delay_ns, E&& e, bool has_key, key_type key) {
    using T = std::decay_t<E>;
    static_assert(check_event_type<T>(), "");
    counter_cell& c = cell(type_index<T>());
    if (!has_key && c.owner->key_of != nullptr) {
      key = c.owner->key_of(c.owner->key_fn, static_cast<const void*>(&e));
      has_key = true;
    }
    const bool in_handler = inside(core_);
    if (SLUICE_UNLIKELY(core_->surely_refusing(in_handler))) {
      counter_cell::bump(c.rejected);
      return publish_result::stopped;
    }
    const std::size_t capacity = core_->options().delayed_capacity;
    if (capacity == 0) {
      counter_cell::bump(c.rejected);
      return publish_result::full;
    }
    lane& l = core_->lane_at(has_key ? core_->lane_for(key) : home_);
    bool earlier = false;
    const lane::schedule_result r = l.schedule(
        deadline_after(now_ns(), delay_ns), capacity, [&] { return core_->accepting(in_handler); },
        [&] {
          envelope rec(std::forward<E>(e), stamp(has_key, key));
          counter_cell::bump(c.published);  // (the move into the wheel cannot fail)
          return rec;
        },
        earlier);
    if (r != lane::schedule_result::ok) {
      counter_cell::bump(c.rejected);
      return r == lane::schedule_result::full ? publish_result::full : publish_result::stopped;
    }
    // Every parked worker parks again with the earlier deadline (one woken
    // worker may be busy elsewhere when the event falls due).
    if (earlier) core_->wake_workers(true);
    return publish_result::ok;
  }

  template <class It>
  std::size_t publish_bulk(It first, It last, bool has_key, key_type key, attempt mode) {
    if (SLUICE_LIKELY(!core_->watches_publish()))
      return publish_bulk_all(first, last, has_key, key, mode);
    // What became of the events, read from this producer's own counters
    // for the type (it is their one writer), and told also when an event's
    // copy throws part-way.
    struct teller {
      producer_core& p;
      counter_cell& c;
      bool has_key;
      key_type key;
      std::uint64_t seq, published, dropped, rejected;
      ~teller() {
        auto since = [](const std::atomic<std::uint64_t>& now, std::uint64_t then) {
          return now.load(std::memory_order_relaxed) - then;
        };
        const std::uint64_t d = since(c.dropped, dropped);
        const std::uint64_t ok = since(c.published, published) - d;
        const std::uint64_t r = since(c.rejected, rejected);
        const std::uint32_t type = c.owner->type;
        if (ok != 0) p.observe(type, publish_result::ok, has_key, key, ok, seq, false);
        if (d != 0) p.observe(type, publish_result::dropped, has_key, key, d, 0, false);
        if (r != 0)
          p.observe(
              type,
              p.core_->accepting(inside(p.core_)) ? publish_result::full : publish_result::stopped,
              has_key, key, r, 0, false);
      }
    };
    counter_cell& c = cell(type_index<typename std::iterator_traits<It>::value_type>());
    const teller tell{*this,
                      c,
                      has_key,
                      key,
                      seq_ + 1,
                      c.published.load(std::memory_order_relaxed),
                      c.dropped.load(std::memory_order_relaxed),
                      c.rejected.load(std::memory_order_relaxed)};
    return publish_bulk_all(first, last, has_key, key, mode);
  }

  template <class It>
  std::size_t publish_bulk_all(It first, It last, bool has_key, key_type key, attempt mode) {
    using T = typename std::iterator_traits<It>::value_type;
    static_assert(check_event_type<T>(), "");
    // moodycamel's bulk enqueue assumes that making an element cannot throw
    // when the element's move cannot: boxed events (an allocation) and events
    // whose copy may throw go one by one, so a throw loses nothing accepted.
    // A key extractor keys each event on its own (so each may go to another
    // lane): one by one as well.
    counter_cell& c = cell(type_index<T>());
    const bool extract = !has_key && c.owner->key_of != nullptr;
    if (extract || !stored_inline<T> ||
        !std::is_nothrow_constructible_v<T, decltype(std::move(*first))>) {
      std::size_t done = 0;
      for (; first != last; ++first) {
        const publish_result r = publish_one(std::move(*first), has_key, key, mode, nullptr);
        if (r == publish_result::ok) ++done;
        if (r == publish_result::stopped || r == publish_result::full) {
          counter_cell::bump(c.rejected, static_cast<std::size_t>(std::distance(first, last)) - 1);
          break;
        }
      }
      return done;
    }
    const std::size_t li = has_key ? core_->lane_for(key) : home_;
    lane& l = core_->lane_at(li);
    const bool in_handler = inside(core_);
    const auto n = static_cast<std::size_t>(std::distance(first, last));
    if (SLUICE_UNLIKELY(core_->surely_refusing(in_handler))) {  // as in publish
      counter_cell::bump(c.rejected, n);
      return 0;
    }
    std::size_t done = 0;
    while (done < n) {
      std::size_t k = l.try_reserve(n - done);
      if (k == 0) {
        if (on_full(l, c, n - done, in_handler, mode, nullptr) != publish_result::ok) break;
        k = 1;  // on_full reserved one place
      }
      if (!core_->accepting(in_handler)) {
        l.release(k);
        counter_cell::bump(c.rejected, n - done);
        break;
      }
      const stamp_words m = stamp(has_key, key);
      seq_ += k - 1;
      counter_cell::bump(c.published, k);
      // Undone if enqueue_bulk fails or a boxed event's allocation throws.
      reservation held(l, k);
      published_guard counted(c, k);
      if (!queue_io::enqueue_bulk(l.q(), tokens_[li], bulk_envelopes<It>(first, m, id_), k)) {
        seq_ -= k;
        counter_cell::bump(c.rejected, n - done - k);
        break;
      }
      held.dismiss();
      counted.dismiss();
      std::advance(first, static_cast<typename std::iterator_traits<It>::difference_type>(k));
      done += k;
      core_->wake_workers(true);
    }
    return done;
  }

 private:
  // Credit in one lane: places reserved and not used yet (`left`, this
  // producer's own count) and the cell that shows it to others.
  struct credit_slot {
    credit_cell* cell = nullptr;
    std::uint32_t left = 0;
  };

  void keep_credit(std::size_t li, std::size_t k) noexcept {
    credit_slot& cs = credits_[li];
    cs.left = static_cast<std::uint32_t>(k);
    // After the count rose (the reservation), never before: see lane::size().
    cs.cell->held.store(cs.left, std::memory_order_seq_cst);
  }

  // With a place reserved: refuses the event if the bus no longer accepts
  // it, else consumes it (only now that it is accepted) into the queue.
  template <class E>
  publish_result accept_and_enqueue(E&& e, bool has_key, key_type key, std::size_t li,
                                    counter_cell& c, bool in_handler) {
    if (SLUICE_UNLIKELY(!core_->accepting(in_handler))) {
      counter_cell::bump(c.rejected);
      return publish_result::stopped;
    }
    envelope rec(std::forward<E>(e), stamp(has_key, key));
    counter_cell::bump(c.published);
    SLUICE_SCHEDULE_POINT();
    if (SLUICE_UNLIKELY(!queue_io::enqueue(core_->lane_at(li).q(), tokens_[li], std::move(rec)))) {
      undo(c, 1);
      return publish_result::full;
    }
    return publish_result::ok;
  }

  // A publish into a place reserved earlier: no shared atomic is written.
  // The cell's busy flag is set before the bus's state is read, and stop()
  // sets the state, fences every thread (heavy_fence) and then waits for the
  // flags: either this publish sees the bus stopping, or stop() waits for
  // it, and then sees the event (asymmetric store-load pairing, as in
  // tracking.hpp).
  template <class E>
  publish_result publish_on_credit(E&& e, bool has_key, key_type key, std::size_t li,
                                   counter_cell& c, bool in_handler) {
    credit_slot& cs = credits_[li];
    credit_cell& cell = *cs.cell;
    const bool asym = asymmetric_mode();
    // Cleared on every way out (a boxed event's allocation may throw).
    struct busy_guard {
      credit_cell& cell;
      bool asym;
      ~busy_guard() { announce_busy(cell, 0, asym); }
    };
    announce_busy(cell, 1, asym);
    {
      busy_guard busy{cell, asym};
      // Not full: the place stays this producer's credit.
      const publish_result r =
          accept_and_enqueue(std::forward<E>(e), has_key, key, li, c, in_handler);
      if (r != publish_result::ok) return r;
      --cs.left;
      // Held falls (and the publish is counted) after the event is in the
      // queue: a reader never sees the place as neither credit nor queued.
      SLUICE_SCHEDULE_POINT();
      const auto order = asym ? std::memory_order_release : std::memory_order_seq_cst;
      cell.held.store(cs.left, order);
      cell.published.store(cell.published.load(std::memory_order_relaxed) + 1, order);
    }
    core_->wake_workers();
    return publish_result::ok;
  }

  static void announce_busy(credit_cell& cell, std::uint32_t v, bool asym) noexcept {
    SLUICE_SCHEDULE_POINT();
    if (asym) {
      cell.busy.store(v, v != 0 ? std::memory_order_relaxed : std::memory_order_release);
      std::atomic_signal_fence(std::memory_order_seq_cst);
    } else {
      cell.busy.store(v, std::memory_order_seq_cst);
    }
  }

  counter_cell& cell(std::uint32_t type) {
    counter_cell* c = cells_[type];
    if (SLUICE_LIKELY(c != nullptr)) return *c;
    c = core_->take_cell(type);
    cells_[type] = c;
    return *c;
  }

  stamp_words stamp(bool has_key, key_type key) noexcept {
    stamp_words w;
    w.sequence = ++seq_;
    if (core_->options().stamp_time) {
      // Never below this producer's last stamp (see stamp_clock.hpp).
      const std::int64_t t = stamp_now();
      last_stamp_ = t > last_stamp_ ? t : last_stamp_;
      w.timestamp = last_stamp_;
    } else {
      w.timestamp = 0;
    }
    w.key = key;
    w.tail = tails_[has_key ? 1 : 0];
    stamp_flow(w, id_, core_);
    last_flow_ = w.correlation;
    return w;
  }

  // Gives a reserved place back unless dismissed (also when a boxed event's
  // allocation throws).
  class reservation {
   public:
    reservation(lane& l, std::size_t n) noexcept : lane_(&l), n_(n) {}
    reservation(const reservation&) = delete;
    reservation& operator=(const reservation&) = delete;
    ~reservation() {
      if (lane_ != nullptr) lane_->release(n_);
    }
    void dismiss() noexcept { lane_ = nullptr; }

   private:
    lane* lane_;
    std::size_t n_;
  };

  // Takes back `published` (and counts the events as rejected) unless dismissed.
  class published_guard {
   public:
    published_guard(counter_cell& c, std::size_t n) noexcept : c_(&c), n_(n) {}
    published_guard(const published_guard&) = delete;
    published_guard& operator=(const published_guard&) = delete;
    ~published_guard() {
      if (c_ != nullptr) undo(*c_, n_);
    }
    void dismiss() noexcept { c_ = nullptr; }

   private:
    counter_cell* c_;
    std::size_t n_;
  };

  // Tells the observer what became of a publish's events.
  SLUICE_NOINLINE void observe(std::uint32_t type, publish_result r, bool has_key, key_type key,
                               std::size_t n, std::uint64_t first, bool delayed) const noexcept {
    publish_info info;
    info.type = type;
    info.producer = id_;
    info.sequence = r == publish_result::ok ? first : 0;
    if (const metadata* c = current_cause(core_); c != nullptr && event_id(*c) != 0) {
      info.cause = event_id(*c);
      info.correlation = c->correlation != 0 ? c->correlation : info.cause;
    } else if (info.sequence != 0) {
      info.correlation = event_id(id_, info.sequence);
    }
    info.key = key;
    info.has_key = has_key;
    info.delayed = delayed;
    info.count = n;
    info.result = r;
    core_->observe_publish(info);
  }

  static void undo(counter_cell& c, std::size_t k) noexcept {
    // enqueue failed: only when the queue could not allocate a block.
    c.published.store(c.published.load(std::memory_order_relaxed) - k, std::memory_order_relaxed);
    counter_cell::bump(c.rejected, k);
  }

  publish_result refuse_no_drainer(counter_cell& c, std::size_t n) {
    counter_cell::bump(c.rejected, n);
    report_no_drainer(c);
    return publish_result::full;
  }

  void report_no_drainer(counter_cell& c) {
    core_->report_problem(failure_kind::no_drainer, c.owner->type, 0,
                          "sluice: a blocking publish found its lane full, and nobody drains "
                          "the bus (no worker runs, and no other thread has polled it): it "
                          "returned full instead of waiting for ever; poll() before the lane "
                          "fills, or run() workers");
  }

  // The lane had no room for `n` events. Applies the policy; on `ok` one place
  // has been reserved.
  publish_result on_full(lane& l, counter_cell& c, std::size_t n, bool in_handler, attempt mode,
                         bool* would_block) {
    if (!core_->accepting(in_handler)) {
      counter_cell::bump(c.rejected, n);
      return publish_result::stopped;
    }
    // A handler must not wait for room: its own thread may be the drainer.
    if (mode == attempt::try_once || policy_ == full_policy::reject ||
        (policy_ == full_policy::block && in_handler)) {
      counter_cell::bump(c.rejected, n);
      return publish_result::full;
    }
    if (policy_ == full_policy::drop_newest) {
      counter_cell::bump(c.published, n);
      counter_cell::bump(c.dropped, n);
      return publish_result::dropped;
    }
    if (mode == attempt::probe) {
      *would_block = true;  // not counted: the caller waits and tries again
      return publish_result::full;
    }
    // Nobody else drains (no worker, no other thread polls): waiting would
    // wait for this thread itself, for ever.
    if (!core_->drained_by_others()) return refuse_no_drainer(c, n);
    if (l.reserve_blocking(1, [&] { return !core_->accepting(in_handler); }) == 0) {
      counter_cell::bump(c.rejected, n);
      return publish_result::stopped;
    }
    return publish_result::ok;
  }

  bus_core* core_;
  std::uint32_t id_;
  std::uint64_t seq_ = 0;
  std::uint64_t last_flow_ = 0;  // the correlation stamped last (see tells_publish)
  std::int64_t last_stamp_ = 0;
  full_policy policy_;
  // The metadata's last word (producer and flags; see stamp_words), without
  // and with a key.
  std::uint64_t tails_[2];
  std::size_t home_;
  std::size_t chunk_;  // places reserved at once (1: one per publish, no credit)
  std::vector<producer_token> tokens_;
  std::vector<credit_slot> credits_;  // per lane; empty when chunk_ is 1
  counter_cell* cells_[SLUICE_MAX_EVENT_TYPES] = {};
};

}  // namespace detail

namespace detail {
struct producer_access;
}

class producer {
 public:
  producer() noexcept = default;
  producer(producer&&) noexcept = default;
  producer& operator=(producer&&) noexcept = default;

  // Blocks, drops or rejects when the lane is full, as the policy says.
  template <class Event>
  publish_result publish(Event&& e) {
    if (SLUICE_UNLIKELY(!core_)) return publish_result::stopped;
    return core_->publish(std::forward<Event>(e), false, 0, mode::normal);
  }
  template <class Event>
  publish_result publish(Event&& e, key_type key) {
    if (SLUICE_UNLIKELY(!core_)) return publish_result::stopped;
    return core_->publish(std::forward<Event>(e), true, key, mode::normal);
  }
  // Never blocks and never drops: a full lane gives publish_result::full
  // (counted as rejected), whatever the policy.
  template <class Event>
  [[nodiscard]] publish_result try_publish(Event&& e) {
    if (SLUICE_UNLIKELY(!core_)) return publish_result::stopped;
    return core_->publish(std::forward<Event>(e), false, 0, mode::try_once);
  }
  template <class Event>
  [[nodiscard]] publish_result try_publish(Event&& e, key_type key) {
    if (SLUICE_UNLIKELY(!core_)) return publish_result::stopped;
    return core_->publish(std::forward<Event>(e), true, key, mode::try_once);
  }
  // Delivers the event once `delay` has passed (at the earliest), from its
  // lane, in the lane's order from the moment it falls due (a game's timer,
  // scheduled work). Accepted events count as published and are settled
  // like any other; while they wait they are pending (bus::queued(),
  // wait_idle() and stop(drain) wait for them; stop(discard) discards
  // them). Never waits and never drops: a full timing wheel
  // (bus_options::delayed_capacity per lane) gives publish_result::full,
  // counted as rejected. Allocates once per lane, on the first use.
  // docs/delayed-delivery.md.
  template <class Rep, class Period, class Event>
  publish_result publish_after(std::chrono::duration<Rep, Period> delay, Event&& e) {
    if (SLUICE_UNLIKELY(!core_)) return publish_result::stopped;
    return core_->publish_after(detail::saturated_ns(delay), std::forward<Event>(e), false, 0);
  }
  template <class Rep, class Period, class Event>
  publish_result publish_after(std::chrono::duration<Rep, Period> delay, Event&& e, key_type key) {
    if (SLUICE_UNLIKELY(!core_)) return publish_result::stopped;
    return core_->publish_after(detail::saturated_ns(delay), std::forward<Event>(e), true, key);
  }

  // Publishes a range (moving from its elements) with one reservation and one
  // bulk enqueue per run of free places. Returns how many were queued; the rest
  // were dropped, rejected or refused as the policy says, and counted.
  template <class It>
  std::size_t publish_bulk(It first, It last) {
    return core_ ? core_->publish_bulk(first, last, false, 0, mode::normal) : 0;
  }
  template <class It>
  std::size_t publish_bulk(It first, It last, key_type key) {
    return core_ ? core_->publish_bulk(first, last, true, key, mode::normal) : 0;
  }
  template <class It>
  [[nodiscard]] std::size_t try_publish_bulk(It first, It last) {
    return core_ ? core_->publish_bulk(first, last, false, 0, mode::try_once) : 0;
  }
  template <class It>
  [[nodiscard]] std::size_t try_publish_bulk(It first, It last, key_type key) {
    return core_ ? core_->publish_bulk(first, last, true, key, mode::try_once) : 0;
  }

  // The id in metadata::producer of its events (unique within its bus; 0
  // for an empty producer).
  [[nodiscard]] std::uint32_t id() const noexcept { return core_ ? core_->id() : 0; }
  // The sequence number (metadata::sequence) of the last event this producer
  // published; 0 before the first.
  [[nodiscard]] std::uint64_t last_sequence() const noexcept {
    return core_ ? core_->last_sequence() : 0;
  }
  [[nodiscard]] explicit operator bool() const noexcept { return core_ != nullptr; }

 private:
  friend class bus;
  friend struct detail::producer_access;
  using mode = detail::producer_core::attempt;
  explicit producer(std::unique_ptr<detail::producer_core> c) noexcept : core_(std::move(c)) {}
  std::unique_ptr<detail::producer_core> core_;
};

namespace detail {
// For the storage layer's replay: publishes without waiting and without
// counting a full lane (`would_block` says to drain and try again).
struct producer_access {
  template <class Event>
  static publish_result probe(producer& p, Event&& e, bool has_key, key_type key,
                              bool& would_block) {
    if (!p.core_) return publish_result::stopped;
    return p.core_->publish(std::forward<Event>(e), has_key, key, producer_core::attempt::probe,
                            &would_block);
  }
};
}  // namespace detail

// Within its scope, what this thread publishes is caused by the event whose
// metadata is `m` (it takes m's correlation, and m's event_id as its cause),
// as if it were published by that event's handler: for work a handler hands
// to another thread (copy the metadata into the work item). The scope keeps
// its own copy of m. A drain or a handler call inside the scope has causes
// of its own; scopes nest, and end on the thread that made them (a scope is
// neither copied nor moved).
//
//   pool.submit([m = view.meta(), &prod] { sluice::caused_by scope(m); prod.publish(done{}); });
class caused_by {
 public:
  explicit caused_by(const metadata& m) noexcept : meta_(m), scope_(&meta_) {}

 private:
  metadata meta_;
  detail::cause_scope scope_;
};

}  // namespace SLUICE_ABI
}  // namespace sluice
