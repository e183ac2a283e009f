// sluice — a lane: one bounded moodycamel queue with an exact count of its
// own, a try-lock that keeps one drainer at a time (per-key order), the batch
// its drainer is delivering, a parking spot for producers that block when
// it is full, and the events published into it with a delay (publish_after),
// held in a timing wheel until they fall due.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <new>

#include "../config.hpp"
#include "clock.hpp"
#include "envelope.hpp"
#include "numeric.hpp"
#include "queue.hpp"
#include "retry.hpp"
#include "sync.hpp"
#include "timer_wheel.hpp"

namespace sluice {
inline namespace SLUICE_ABI {
namespace detail {

// Places one producer reserved in a lane and has not used yet (its credit),
// with what others need to see of its publishes into the lane. Written by
// its producer only (plain stores, no locked instruction); read by whoever
// asks whether the lane has work or the bus is idle, and by stop(). Never
// freed before the lane; reused by later producers.
struct alignas(SLUICE_CACHE_LINE) credit_cell {
  std::atomic<std::uint32_t> held{0};       // reserved, unused places
  std::atomic<std::uint32_t> busy{0};       // 1 while a publish through credit is under way
  std::atomic<std::uint64_t> published{0};  // publishes through credit, ever
  std::atomic<bool> in_use{false};
  credit_cell* next = nullptr;
};

class alignas(SLUICE_CACHE_LINE) lane {
 public:
  lane(std::size_t capacity, std::size_t expected_producers)
      : capacity_(capacity),
        // One block pool for the lane: its capacity, plus two partly used
        // blocks per expected producer.
        queue_(capacity + 2 * queue_block * (expected_producers + 1)),
        consumer_(queue_) {}
  lane(const lane&) = delete;
  lane& operator=(const lane&) = delete;
  ~lane() {
    // Retries left only when the bus was never stopped (a fork() child).
    if (retries_ != nullptr)
      retries_->drain_all([](retry_record*&& r, std::uint64_t) noexcept { r->destroy(r); });
    credit_cell* c = credits_.load(std::memory_order_relaxed);
    while (c != nullptr) {
      credit_cell* next = c->next;
      delete c;
      c = next;
    }
  }

  // A credit cell for a producer (made, or one a gone producer left).
  credit_cell* take_credit_cell() {
    for (credit_cell* c = credits_.load(std::memory_order_acquire); c != nullptr; c = c->next) {
      bool expected = false;
      if (!c->in_use.load(std::memory_order_relaxed) &&
          c->in_use.compare_exchange_strong(expected, true, std::memory_order_acquire))
        return c;
    }
    auto* c = new credit_cell;
    c->in_use.store(true, std::memory_order_relaxed);
    credit_cell* head = credits_.load(std::memory_order_relaxed);
    do {
      c->next = head;
    } while (!credits_.compare_exchange_weak(head, c, std::memory_order_seq_cst,
                                             std::memory_order_relaxed));
    return c;
  }
  // The producer is gone: its unused places go back to the lane. Counted
  // as begun and ended around the change (see size()).
  void return_credit_cell(credit_cell& c) {
    const std::uint32_t h = c.held.load(std::memory_order_relaxed);
    if (h != 0) {
      SLUICE_SCHEDULE_POINT();
      returns_begun_.fetch_add(1, std::memory_order_seq_cst);
      SLUICE_SCHEDULE_POINT();
      c.held.store(0, std::memory_order_seq_cst);
      release(h);
      SLUICE_SCHEDULE_POINT();
      returns_ended_.fetch_add(1, std::memory_order_seq_cst);
    }
    c.in_use.store(false, std::memory_order_release);
  }
  [[nodiscard]] credit_cell* credit_cells() const noexcept {
    return credits_.load(std::memory_order_acquire);
  }
  // Unused places producers hold.
  [[nodiscard]] std::size_t credit_held() const noexcept {
    return to_size(sum_cells(&credit_cell::held));
  }
  // Publishes through credit so far (with generation(): something was published).
  [[nodiscard]] std::uint64_t credit_published() const noexcept {
    return sum_cells(&credit_cell::published);
  }
  template <class T>
  [[nodiscard]] std::uint64_t sum_cells(std::atomic<T> credit_cell::*field) const noexcept {
    std::uint64_t n = 0;
    for (credit_cell* c = credit_cells(); c != nullptr; c = c->next) {
      SLUICE_SCHEDULE_POINT();
      n += (c->*field).load(std::memory_order_seq_cst);
    }
    return n;
  }
  // Waits until no publish through credit is under way in this lane.
  void wait_credit_publishes() const noexcept {
    for (credit_cell* c = credit_cells(); c != nullptr; c = c->next) {
      backoff b;
      for (;;) {
        SLUICE_SCHEDULE_POINT();
        // (Mutation 5: stop() does not wait for publishes through credit.)
        if (c->busy.load(std::memory_order_seq_cst) == 0 || SLUICE_MODEL_MUTATION(5)) break;
        b.pause();
      }
    }
  }

  // Takes up to `n` places (at least one unless full). Memory ordering: the
  // successful CAS is seq_cst so that stop() and idle workers, which store a
  // flag and then read sizes, see it (store-load pairing).
  [[nodiscard]] std::size_t try_reserve(std::size_t n = 1) noexcept {
    // seq_cst: a parked producer increments waiters_ and then reads the
    // count here; the drainer decrements the count and then reads waiters_.
    // Each reservation also advances the generation (see generation()).
    SLUICE_SCHEDULE_POINT();
    std::uint64_t s = size_.load(std::memory_order_seq_cst);
    for (;;) {
      const std::size_t count = to_size(s & count_mask);
      if (count >= capacity_) return 0;
      const std::size_t k = std::min(n, capacity_ - count);
      if (size_.compare_exchange_weak(s, s + k + generation_one, std::memory_order_seq_cst,
                                      std::memory_order_relaxed)) {
        note_high_water(count + k);
        return k;
      }
    }
  }

  // Gives back places taken but not used, or freed by a drainer.
  void release(std::size_t n) {
    SLUICE_SCHEDULE_POINT();
    size_.fetch_sub(n, std::memory_order_seq_cst);
    SLUICE_SCHEDULE_POINT();
    if (waiters_.load(std::memory_order_seq_cst) != 0) {
      std::lock_guard<mutex> lock(park_mutex_);
      park_cv_.notify_all();
    }
  }

  // Blocks until at least one place is taken (returns how many) or `give_up()`
  // turns true (returns 0).
  template <class GiveUp>
  std::size_t reserve_blocking(std::size_t n, GiveUp&& give_up) {
    backoff spin;
    for (int i = 0; i < 128; ++i) {
      if (std::size_t k = try_reserve(n)) return k;
      if (give_up()) return 0;
      spin.pause();
    }
    std::unique_lock<mutex> lock(park_mutex_);
    waiters_.fetch_add(1, std::memory_order_seq_cst);
    std::size_t k = 0;
    while ((k = try_reserve(n)) == 0 && !give_up()) park_cv_.wait(lock);  // woken by release()
    waiters_.fetch_sub(1, std::memory_order_seq_cst);
    return k;
  }

  // Wakes producers parked on this lane (stop() calls it).
  void wake_all() {
    std::lock_guard<mutex> lock(park_mutex_);
    park_cv_.notify_all();
  }

  [[nodiscard]] bool try_lock() noexcept {
    SLUICE_SCHEDULE_POINT();
    return !locked_.load(std::memory_order_relaxed) &&
           !locked_.exchange(true, std::memory_order_acquire);
  }
  // seq_cst: an idle worker parks only after seeing each lane with work
  // locked; the unlocker then reads the worker's sleeper count (store-load).
  void unlock() noexcept {
    SLUICE_SCHEDULE_POINT();
    locked_.store(false, std::memory_order_seq_cst);
  }
  [[nodiscard]] bool locked() const noexcept {
    SLUICE_SCHEDULE_POINT();
    return locked_.load(std::memory_order_seq_cst);
  }

  // Events taken off the queue but not yet settled (being delivered). The
  // places are given back at once (handlers may publish into the lane); this
  // count keeps the events visible to stop() and queued() meanwhile.
  void begin_delivery(std::size_t n) noexcept {
    SLUICE_SCHEDULE_POINT();
    inflight_.fetch_add(n, std::memory_order_seq_cst);
  }
  void end_delivery(std::size_t n) noexcept {
    SLUICE_SCHEDULE_POINT();
    inflight_.fetch_sub(n, std::memory_order_seq_cst);
  }

  // Waiting for their time, queued, being delivered, or waiting for a
  // retry. Reads the delayed count, then the queue's count, then the events
  // in flight, then the retries: a due event enters the flight before it
  // leaves the delayed count (take_due), begin_delivery adds before release
  // subtracts, and a failed event's retry is counted before the event
  // leaves the flight, so an event is never missed by two reads. (A
  // handler's publish_after raises the delayed count before its own event
  // leaves the flight; idle() catches that one through the generation,
  // which publish_after advances.)
  [[nodiscard]] std::size_t pending() const noexcept {
    const std::size_t waiting = delayed();
    const std::size_t queued_now = size();
    SLUICE_SCHEDULE_POINT();
    const std::size_t flying = inflight_.load(std::memory_order_seq_cst);
    return waiting + queued_now + flying + retrying();
  }

  // Events queued: places taken less the credit producers hold. Credit is
  // read first: a producer taking places raises the count before its credit,
  // so a read between the two overestimates, never underestimates. A
  // producer giving places back lowers both, in an order no single reading
  // order survives: the reading is taken again if a return overlapped it
  // (returns are counted when they begin and when they end; equal counts
  // read after and before mean none did).
  [[nodiscard]] std::size_t size() const noexcept {
    for (;;) {
      SLUICE_SCHEDULE_POINT();
      const std::uint64_t ended = returns_ended_.load(std::memory_order_seq_cst);
      const std::size_t held = credit_held();
      const std::size_t taken = places_taken();
      SLUICE_SCHEDULE_POINT();
      if (returns_begun_.load(std::memory_order_seq_cst) == ended || SLUICE_MODEL_MUTATION(6))
        return taken > held ? taken - held : 0;
      SLUICE_PAUSE();
    }
  }
  // Places taken: queued events plus the credit producers hold.
  [[nodiscard]] std::size_t places_taken() const noexcept {
    SLUICE_SCHEDULE_POINT();
    return to_size(size_.load(std::memory_order_seq_cst) & count_mask);
  }
  // Changes with every reservation (a publish into the lane): pending() of
  // every lane reading 0 between two equal sums of generations means that no
  // event was published meanwhile, so nothing was missed by reading the
  // lanes one after another (a handler that publishes and then ends).
  [[nodiscard]] std::uint64_t generation() const noexcept {
    SLUICE_SCHEDULE_POINT();
    return (size_.load(std::memory_order_seq_cst) >> 32) + credit_published();
  }
  // Events a drainer took off the queue and left undelivered for the next
  // one (a poll_for whose budget ran out, a thread that ended in a handler).
  [[nodiscard]] std::size_t carried() const noexcept {
    SLUICE_SCHEDULE_POINT();
    return carried_.load(std::memory_order_seq_cst);
  }
  // Something to deliver: queued, carried, or a delayed event that is due.
  [[nodiscard]] bool has_work() const noexcept {
    return size() != 0 || carried() != 0 || timer_due(std::memory_order_seq_cst);
  }
  // has_work() without reading the producers' credit cells (whose cache
  // lines their producers write per publish): never false when there is
  // work, but true while producers hold credit in an empty lane. For a
  // drainer deciding whether to try; whoever decides to sleep asks has_work().
  [[nodiscard]] bool may_have_work() const noexcept {
    return places_taken() != 0 || carried() != 0 || timer_due(std::memory_order_relaxed);
  }
  [[nodiscard]] std::size_t high_water() const noexcept {
    return high_water_.load(std::memory_order_relaxed);
  }
  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }

  queue<envelope>& q() noexcept { return queue_; }
  consumer_token& consumer() noexcept { return consumer_; }  // only under the lock

  // The batch being delivered, under the lock: envelopes [batch_pos, batch_end)
  // of batch() are taken from the queue (and counted in flight) but not yet
  // settled. The next drainer delivers them before it dequeues again, so the
  // lane's order holds.
  [[nodiscard]] envelope* batch() noexcept { return batch_; }
  std::size_t batch_pos = 0;
  std::size_t batch_end = 0;
  // Envelopes [0, not_durable_end) of the batch are not to be delivered: a
  // write-ahead recorder could not make them durable.
  std::size_t not_durable_end = 0;
  // Publishes batch_end - batch_pos for carried() (before unlock()).
  void note_carried() noexcept {
    SLUICE_SCHEDULE_POINT();
    carried_.store(batch_end - batch_pos, std::memory_order_seq_cst);
  }

  // ---- delayed events (publish_after) -----------------------------------------
  //
  // A timing wheel per lane, made on the first publish_after into the lane
  // (`capacity` events at most), one tick per microsecond. Producers schedule
  // into it under its own mutex; the lane's drainer takes the events that
  // are due into its batch (take_due), so a delayed event is delivered by
  // the lane's drainer, in the lane's order from the moment it falls due,
  // and never enters the queue: it takes no place in it.

  static constexpr std::int64_t no_due = std::numeric_limits<std::int64_t>::max();
  static constexpr std::int64_t tick_ns = 1000;

  // Events waiting for their time.
  [[nodiscard]] std::size_t delayed() const noexcept {
    SLUICE_SCHEDULE_POINT();
    return delayed_.load(std::memory_order_seq_cst);
  }
  // When the earliest delayed event may fall due (steady-clock ns), or no_due.
  // May be early (the wheel then only moves values down a level), never late.
  [[nodiscard]] std::int64_t next_due(
      std::memory_order order = std::memory_order_seq_cst) const noexcept {
    return next_due_.load(order);
  }
  // Some delayed event may be due now (one load unless one is held).
  [[nodiscard]] bool timer_due(std::memory_order order) const noexcept {
    const std::int64_t d = next_due_.load(order);
    return d != no_due && d <= now_ns();
  }

  enum class schedule_result : std::uint8_t { ok, full, refused };

  // Holds the envelope make() returns until `due_ns` (steady clock). The
  // event counts as pending before accept() is asked (so that stop(), which
  // changes the state and then reads the pending counts, either sees it or
  // makes accept() refuse it). Refused (`refused`, nothing made) when
  // accept() says no; `full` when `capacity` events are held (or the wheel
  // could not be made without exceptions). make() may throw (a boxed event's
  // allocation): nothing is then held. `earlier` tells whether the lane's
  // next_due() moved earlier (idle workers must wake to wait less).
  template <class Accept, class Make>
  schedule_result schedule(std::int64_t due_ns, std::size_t capacity, Accept&& accept, Make&& make,
                           bool& earlier) {
    std::lock_guard<mutex> lock(timer_mutex_);
    if (timers_ == nullptr) {
      // Without exceptions an allocation that fails refuses the event
      // (`full`) instead of ending the process.
      timers_.reset(new (std::nothrow) timer_wheel<envelope>(capacity, tick_of(now_ns())));
      if (timers_ == nullptr) {
#if SLUICE_HAS_EXCEPTIONS
        throw std::bad_alloc();
#else
        return schedule_result::full;
#endif
      }
      if (!timers_->valid()) {
        timers_.reset();
        return schedule_result::full;
      }
    }
    if (timers_->size() >= timers_->capacity()) return schedule_result::full;
    SLUICE_SCHEDULE_POINT();
    delayed_.fetch_add(1, std::memory_order_seq_cst);
    struct undo_guard {
      std::atomic<std::size_t>* count;
      ~undo_guard() {
        if (count != nullptr) count->fetch_sub(1, std::memory_order_seq_cst);
      }
    } undo{&delayed_};
    if (!accept()) return schedule_result::refused;
    // The tick is rounded up: never delivered before its time.
    const std::uint64_t due = tick_of(due_ns) + (due_ns % tick_ns != 0 ? 1 : 0);
    (void)timers_->schedule(due, make());  // room was checked; the move does not throw
    undo.count = nullptr;
    // A publish: idle() reads the generations around the pending counts.
    size_.fetch_add(generation_one, std::memory_order_seq_cst);
    const std::int64_t before = next_due_.load(std::memory_order_relaxed);
    update_next_due();
    earlier = next_due_.load(std::memory_order_relaxed) < before;
    return schedule_result::ok;
  }

  // Under the lane's lock, with the batch empty: moves up to `max` delayed
  // events that are due (every one held, with `all`: a stop that discards)
  // into out[0..n), counted in flight. Returns n.
  std::size_t take_due(envelope* out, std::size_t max, bool all) {
    if (delayed_.load(std::memory_order_relaxed) == 0) return 0;
    if (!all && !timer_due(std::memory_order_relaxed)) return 0;
    std::lock_guard<mutex> lock(timer_mutex_);
    if (timers_ == nullptr) return 0;
    std::size_t n = 0;
    auto take = [&](envelope&& e, std::uint64_t) noexcept { out[n++] = std::move(e); };
    const std::uint64_t to = all ? timer_wheel<envelope>::none_due - 1 : tick_of(now_ns());
    timers_->advance(to, take, max);
    if (n != 0) {
      begin_delivery(n);  // in flight before it leaves the delayed count (see pending())
      SLUICE_SCHEDULE_POINT();
      delayed_.fetch_sub(n, std::memory_order_seq_cst);
    }
    update_next_due();
    return n;
  }
  // The last batch came from the timing wheel: the next one comes from the
  // queue if it has events (neither starves the other). Under the lock.
  bool last_from_timers = false;
  // Per event type, events drained until the next one is timed (latency
  // metrics, an observer; bus_core::take_sample): made with the lane when
  // timing is on (1 KiB), all 1 so that each type's first is timed. Under
  // the lock.
  void start_sampling() {
    sample_left_.reset(new std::uint32_t[SLUICE_MAX_EVENT_TYPES]);
    std::fill_n(sample_left_.get(), SLUICE_MAX_EVENT_TYPES, std::uint32_t{1});
  }
  [[nodiscard]] std::uint32_t* sample_left() noexcept {
    return sample_left_.get();
  }

  // ---- retries (failure policies) ---------------------------------------------
  //
  // A second wheel, of retry records, made on the first retry in the lane
  // (`capacity` records at most). Records are scheduled and taken by the
  // lane's drainer only (under the lane's lock), which runs them; they
  // count as pending from their first scheduling until they end.

  // Events waiting for a retry (or being retried).
  [[nodiscard]] std::size_t retrying() const noexcept {
    SLUICE_SCHEDULE_POINT();
    return retrying_.load(std::memory_order_seq_cst);
  }

  // Holds `rec` until `due_ns`. `fresh`: a new record (counted pending);
  // else one taken by take_retries and scheduled again. False when the
  // wheel is full or cannot be made (nothing changed).
  bool schedule_retry(std::int64_t due_ns, retry_record* rec, std::size_t capacity, bool fresh,
                      bool& earlier) noexcept {
    std::lock_guard<mutex> lock(timer_mutex_);
    if (retries_ == nullptr) {
      SLUICE_TRY {
        retries_.reset(new (std::nothrow) timer_wheel<retry_record*>(capacity, tick_of(now_ns())));
      }
      SLUICE_CATCH(const std::bad_alloc&) {  // its pool could not be allocated
        return false;
      }
      if (retries_ == nullptr) return false;
      if (!retries_->valid()) {
        retries_.reset();
        return false;
      }
    }
    if (retries_->size() >= retries_->capacity()) return false;
    const std::uint64_t due = tick_of(due_ns) + (due_ns % tick_ns != 0 ? 1 : 0);
    (void)retries_->schedule(due, rec);
    if (fresh) {
      SLUICE_SCHEDULE_POINT();
      retrying_.fetch_add(1, std::memory_order_seq_cst);
      size_.fetch_add(generation_one, std::memory_order_seq_cst);  // for idle(), as a publish
    }
    const std::int64_t before = next_due_.load(std::memory_order_relaxed);
    update_next_due();
    earlier = next_due_.load(std::memory_order_relaxed) < before;
    return true;
  }

  // Under the lane's lock: takes one retry record that is due (any, with
  // `all`), or returns nullptr: first the held records whose turn came, then
  // the wheel's. It stays counted pending.
  retry_record* take_retry(bool all) noexcept {
    if (retrying_.load(std::memory_order_relaxed) == 0) return nullptr;
    if (retry_record* r = holds_.pop_ready(); r != nullptr) {
      if (!holds_.any_ready()) {
        std::lock_guard<mutex> lock(timer_mutex_);
        update_next_due();
      }
      return r;
    }
    if (!all && !timer_due(std::memory_order_relaxed)) return nullptr;
    std::lock_guard<mutex> lock(timer_mutex_);
    if (retries_ == nullptr) return nullptr;
    retry_record* out = nullptr;
    const std::uint64_t to = all ? timer_wheel<retry_record*>::none_due - 1 : tick_of(now_ns());
    retries_->advance(
        to, [&](retry_record*&& r, std::uint64_t) noexcept { out = r; }, 1);
    update_next_due();
    return out;
  }
  // A record taken by take_retry ended: it is no longer pending.
  void retry_done() noexcept {
    SLUICE_SCHEDULE_POINT();
    retrying_.fetch_sub(1, std::memory_order_seq_cst);
  }

  // ---- held keys (retry_order::hold_key), under the lane's lock ------------

  hold_table& holds() noexcept {
    return holds_;
  }
  // A record was held: it counts as pending (before its event leaves the
  // flight, as a retry's).
  void hold_added() noexcept {
    SLUICE_SCHEDULE_POINT();
    retrying_.fetch_add(1, std::memory_order_seq_cst);
    size_.fetch_add(generation_one, std::memory_order_seq_cst);  // for idle(), as a publish
  }
  // A held record's turn came: it is run by the next take_retry (the lane
  // shows work due now until then).
  void make_ready(retry_record* rec) noexcept {
    holds_.push_ready(rec);
    std::lock_guard<mutex> lock(timer_mutex_);
    update_next_due();
  }

 private:
  std::unique_ptr<std::uint32_t[]> sample_left_;  // see start_sampling

  void note_high_water(std::size_t s) noexcept {
    std::size_t hw = high_water_.load(std::memory_order_relaxed);
    while (s > hw && !high_water_.compare_exchange_weak(hw, s, std::memory_order_relaxed)) {
    }
  }

  static std::uint64_t tick_of(std::int64_t ns) noexcept {
    return ns <= 0 ? 0 : static_cast<std::uint64_t>(ns / tick_ns);
  }
  // Under timer_mutex_: the earlier of the two wheels' next due ticks (now,
  // while held records are ready).
  void update_next_due() noexcept {
    std::uint64_t t = timers_ != nullptr ? timers_->next_due() : timer_wheel<envelope>::none_due;
    if (retries_ != nullptr) t = std::min(t, retries_->next_due());
    if (holds_.any_ready()) t = 0;
    const std::uint64_t most = static_cast<std::uint64_t>(no_due / tick_ns);
    next_due_.store(t == timer_wheel<envelope>::none_due
                        ? no_due
                        : static_cast<std::int64_t>(t >= most ? most : t) * tick_ns,
                    std::memory_order_seq_cst);
  }

  const std::size_t capacity_;
  // The count of places taken (low 32 bits) and a generation that each
  // reservation advances (high 32 bits): one atomic, one update per publish.
  static constexpr std::uint64_t count_mask = 0xFFFFFFFFULL;
  static constexpr std::uint64_t generation_one = std::uint64_t{1} << 32;
  alignas(SLUICE_CACHE_LINE) std::atomic<std::uint64_t> size_{0};
  std::atomic<std::size_t> high_water_{0};
  std::atomic<std::uint32_t> waiters_{0};
  std::atomic<std::size_t> inflight_{0};
  std::atomic<std::size_t> carried_{0};
  std::atomic<credit_cell*> credits_{nullptr};
  std::atomic<std::uint64_t> returns_begun_{0};
  std::atomic<std::uint64_t> returns_ended_{0};
  alignas(SLUICE_CACHE_LINE) std::atomic<bool> locked_{false};
  queue<envelope> queue_;
  consumer_token consumer_;
  mutex park_mutex_;
  condition_variable park_cv_;
  envelope batch_[SLUICE_DRAIN_BATCH];
  // Delayed events: read on every drain of an empty lane, written only by
  // publish_after and by drainers taking due events.
  alignas(SLUICE_CACHE_LINE) std::atomic<std::int64_t> next_due_{no_due};
  std::atomic<std::size_t> delayed_{0};
  std::atomic<std::size_t> retrying_{0};
  mutex timer_mutex_;
  std::unique_ptr<timer_wheel<envelope>> timers_;        // under timer_mutex_
  std::unique_ptr<timer_wheel<retry_record*>> retries_;  // under timer_mutex_
  hold_table holds_;                                     // under the lane's lock
};

}  // namespace detail
}  // namespace SLUICE_ABI
}  // namespace sluice
