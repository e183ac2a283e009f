// sluice — a lane: one bounded moodycamel queue with an exact count of its
// own, a try-lock that keeps one drainer at a time (per-key order), the batch
// its drainer is delivering, and a parking spot for producers that block when
// it is full.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "../config.hpp"
#include "envelope.hpp"
#include "numeric.hpp"
#include "queue.hpp"
#include "sync.hpp"

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

  // Queued plus being delivered. Reads the count first: begin_delivery adds
  // before release subtracts, so an event is never missed by both reads.
  [[nodiscard]] std::size_t pending() const noexcept {
    const std::size_t queued_now = size();
    SLUICE_SCHEDULE_POINT();
    return queued_now + inflight_.load(std::memory_order_seq_cst);
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
  // Something to deliver: queued, or carried.
  [[nodiscard]] bool has_work() const noexcept { return size() != 0 || carried() != 0; }
  // has_work() without reading the producers' credit cells (whose cache
  // lines their producers write per publish): never false when there is
  // work, but true while producers hold credit in an empty lane. For a
  // drainer deciding whether to try; whoever decides to sleep asks has_work().
  [[nodiscard]] bool may_have_work() const noexcept {
    return places_taken() != 0 || carried() != 0;
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

 private:
  void note_high_water(std::size_t s) noexcept {
    std::size_t hw = high_water_.load(std::memory_order_relaxed);
    while (s > hw && !high_water_.compare_exchange_weak(hw, s, std::memory_order_relaxed)) {
    }
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
};

}  // namespace detail
}  // namespace SLUICE_ABI
}  // namespace sluice
