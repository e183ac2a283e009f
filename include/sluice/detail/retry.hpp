// sluice — the pieces of a subscription's failure policy (resilience.hpp)
// that the delivery path carries: a subscription's retry spec and circuit
// breaker, a retry record (a copy of the event waiting in its lane's retry
// wheel, or held behind a retry of its key, for one subscriber), the block
// that settles an event once its retries end, a lane's table of held keys,
// and the context a drainer gives the failure path. docs/resilience.md.
#pragma once

#include <atomic>
#include <cstdint>
#include <new>
#include <string>
#include <utility>

#include "../config.hpp"
#include "../errors.hpp"
#include "../event.hpp"
#include "../resilience.hpp"
#include "stages.hpp"

namespace sluice {
inline namespace SLUICE_ABI {
namespace detail {

class bus_core;
class envelope;
struct sub_node;
struct registry;
struct retry_record;

// One event's retries, across the subscriptions retrying it: the event is
// settled (delivered, or dead-lettered if any of them gave up with a dead
// letter) when the last one ends. Every retry of one event runs under its
// lane's lock, so the block needs no atomics.
struct settle_block {
  std::uint32_t chains = 0;  // subscriptions still retrying the event
  bool dead = false;         // some subscription dead-lettered it
};

// A subscription's circuit breaker (circuit_breaker in resilience.hpp): one
// word, changed by compare-and-swap, as the drainers of several lanes may
// call the subscription at once. Time is given by the caller (steady-clock
// ns), so that it can be tested with a clock of its own. "Watched" means a
// success must be noted (some failure is counted, or it is not closed):
// the delivery path then asks it about every call (see bus_core::gate).
class breaker {
 public:
  // What a call's result changed.
  struct change {
    bool opened = false;
    bool closed = false;
    int watched = 0;             // +1: now watched, -1: no longer, 0: as before
    std::uint32_t in_a_row = 0;  // failures in a row that opened it (0: a probe failed)
  };

  [[nodiscard]] breaker_state state() const noexcept {
    return static_cast<breaker_state>(word_.load(std::memory_order_acquire) & state_mask);
  }
  // Its subscription is gone: nothing changes it any more. Whether it was
  // watched (its registry's count of watched breakers is then one less).
  bool retire() noexcept {
    return watched(word_.exchange(retired_bit, std::memory_order_acq_rel)) != 0;
  }
  [[nodiscard]] bool watched() const noexcept {
    return watched(word_.load(std::memory_order_acquire));
  }

  // Before a call: whether to make it (closed; or half open, as one of the
  // probes). An open breaker whose cool-down ended turns half open here.
  // (Half open with every probe taken and none answered for a cool-down, as
  // when a probe's thread ended inside the handler: the probes start over.)
  bool allow(std::int64_t now, const circuit_breaker& cfg) noexcept {
    std::uint64_t w = word_.load(std::memory_order_acquire);
    for (;;) {
      const auto st = static_cast<breaker_state>(w & state_mask);
      std::uint64_t to = 0;
      if (st == breaker_state::closed || (w & retired_bit) != 0) return true;
      const bool cooled = now - opened_at_.load(std::memory_order_acquire) >= cfg.cool_down.count();
      if (st == breaker_state::open || probes(w) >= cfg.probes) {
        if (!cooled) return false;
        to = pack(breaker_state::half_open, 0, 1);
      } else {
        to = pack(breaker_state::half_open, 0, probes(w) + 1);
      }
      if (word_.compare_exchange_weak(w, to, std::memory_order_acq_rel)) {
        if (probes(to) == 1) raise_opened_at(now);  // the probes' cool-down starts now
        return true;
      }
    }
  }

  // A call succeeded.
  change on_success() noexcept {
    change c;
    std::uint64_t w = word_.load(std::memory_order_acquire);
    for (;;) {
      const auto st = static_cast<breaker_state>(w & state_mask);
      // Open: a call let through before it opened ends late; it changes nothing.
      if (st == breaker_state::open || (st == breaker_state::closed && in_a_row(w) == 0) ||
          (w & retired_bit) != 0)
        return c;
      const std::uint64_t to = pack(breaker_state::closed, 0, 0);
      if (word_.compare_exchange_weak(w, to, std::memory_order_acq_rel)) {
        c.closed = st == breaker_state::half_open;
        c.watched = -1;
        return c;
      }
    }
  }

  // A call failed (or, open, was not made: nothing changes then).
  change on_failure(std::int64_t now, const circuit_breaker& cfg) noexcept {
    change c;
    std::uint64_t w = word_.load(std::memory_order_acquire);
    for (;;) {
      const auto st = static_cast<breaker_state>(w & state_mask);
      if (st == breaker_state::open || (w & retired_bit) != 0) return c;
      std::uint64_t to = 0;
      bool opens = false;
      if (st == breaker_state::half_open) {
        opens = true;
        to = pack(breaker_state::open, 0, 0);
      } else {
        const std::uint64_t n = in_a_row(w) + 1;
        opens = n >= cfg.failures;
        to = opens ? pack(breaker_state::open, 0, 0) : pack(breaker_state::closed, n, 0);
      }
      // Stored before the state it belongs to (a racing failure that also
      // opens stores a time as recent; a time is never moved back).
      if (opens) raise_opened_at(now);
      if (word_.compare_exchange_weak(w, to, std::memory_order_acq_rel)) {
        c.opened = opens;
        c.in_a_row =
            opens && st == breaker_state::closed ? static_cast<std::uint32_t>(in_a_row(w) + 1) : 0;
        c.watched = watched(to) - watched(w);
        return c;
      }
    }
  }

 private:
  static constexpr std::uint64_t state_mask = 3;
  static constexpr std::uint64_t retired_bit = std::uint64_t{1} << 63;
  static std::uint64_t pack(breaker_state s, std::uint64_t in_a_row,
                            std::uint64_t probes) noexcept {
    return static_cast<std::uint64_t>(s) | (in_a_row << 2) | (probes << 40);
  }
  static std::uint64_t in_a_row(std::uint64_t w) noexcept { return (w >> 2) & 0x3FFFFFFFFULL; }
  static std::uint64_t probes(std::uint64_t w) noexcept { return (w >> 40) & 0xFFFFFF; }
  static int watched(std::uint64_t w) noexcept {
    return (w & retired_bit) == 0 && ((w & state_mask) != 0 || in_a_row(w) != 0) ? 1 : 0;
  }
  void raise_opened_at(std::int64_t now) noexcept {
    std::int64_t t = opened_at_.load(std::memory_order_relaxed);
    while (t < now && !opened_at_.compare_exchange_weak(t, now, std::memory_order_acq_rel)) {
    }
  }

  std::atomic<std::uint64_t> word_{0};  // state (2 bits), failures in a row, probes taken
  std::atomic<std::int64_t> opened_at_{0};
};

// A subscription's failure policy, with what the failure path needs of the
// event type (made by bus::subscribe<Event>).
struct retry_spec {
  failure_policy policy;
  std::string name;
  mutable breaker brk;  // used when policy.breaker.failures != 0
  // A record holding a copy of the event (throws std::bad_alloc).
  retry_record* (*make)(const void* event, const metadata& m) = nullptr;
  // Hands a dead_letter<Event> made of the event to its subscribers on this
  // thread (bus.hpp).
  void (*dead_letter)(bus_core& core, const void* event, const metadata& m, failure_kind kind,
                      int code, const char* message, std::uint32_t attempts,
                      const std::string& name) = nullptr;
};

struct hold;

// A copy of an event waiting for its next call of one subscriber (in the
// lane's retry wheel, on its ready list, or held behind a retry of its key).
struct retry_record {
  sub_node* node = nullptr;
  registry* reg = nullptr;
  settle_block* block = nullptr;
  hold* in_hold = nullptr;       // the hold it runs for or waits in (hold_key)
  retry_record* next = nullptr;  // behind it in its hold, or on the ready list
  const void* event = nullptr;   // the copy (in the derived record)
  metadata meta;
  std::uint32_t calls = 0;  // calls made so far (0: held before its first call)
  failure_kind kind = failure_kind::exception;
  int code = 0;
  std::string message;  // of the last failure
  void (*destroy)(retry_record*) noexcept = nullptr;

  retry_record() = default;
  retry_record(const retry_record&) = delete;
  retry_record& operator=(const retry_record&) = delete;
};

template <class Event>
struct retry_record_of final : retry_record {
  Event copy;
  retry_record_of(const Event& e, const metadata& m) : copy(e) {
    event = &copy;
    meta = m;
    destroy = [](retry_record* r) noexcept { delete static_cast<retry_record_of*>(r); };
  }
  static retry_record* make(const void* e, const metadata& m) {
    return new retry_record_of(*static_cast<const Event*>(e), m);
  }
};

// Which events of a lane a hold_key subscription holds: those of one key
// (keyed events), or of one producer's events without a key (they keep that
// producer's order, in its home lane).
struct hold_key {
  std::uint64_t key = 0;
  bool keyed = false;
  [[nodiscard]] static hold_key of(const metadata& m) noexcept {
    return {m.has_key ? m.key : m.producer, m.has_key};
  }
  [[nodiscard]] bool operator==(const hold_key& o) const noexcept {
    return key == o.key && keyed == o.keyed;
  }
};

// One (subscription, key) whose later events wait: `active` is the record
// being retried (in the wheel, ready, or running); the held ones follow it,
// in order.
struct hold {
  sub_node* node = nullptr;
  hold_key key;
  retry_record* active = nullptr;
  retry_record* first = nullptr;
  retry_record* last = nullptr;
  hold* next = nullptr;
};

// A lane's holds, and its ready list (held records whose turn came), both
// under the lane's lock. The holds are kept in 64 buckets by key hash, and a
// 64-bit filter says which buckets have any: most events of other keys pass
// with one test, and a lookup walks one bucket.
class hold_table {
 public:
  hold_table() = default;
  hold_table(const hold_table&) = delete;
  hold_table& operator=(const hold_table&) = delete;
  ~hold_table() {
    // Only a bus that was never stopped leaves records here (see ~lane).
    for (hold*& b : buckets_) {
      while (b != nullptr) {
        hold* h = b;
        b = h->next;
        free_chain(h->first);
        delete h;
      }
    }
    free_chain(ready_first_);
  }

  [[nodiscard]] std::size_t count() const noexcept { return count_; }
  [[nodiscard]] bool may_hold(const hold_key& k) const noexcept {
    return count_ != 0 && (mask_ & (std::uint64_t{1} << bucket(k))) != 0;
  }
  [[nodiscard]] hold* find(const sub_node* n, const hold_key& k) const noexcept {
    const unsigned b = bucket(k);
    if ((mask_ & (std::uint64_t{1} << b)) == 0) return nullptr;
    for (hold* h = buckets_[b]; h != nullptr; h = h->next)
      if (h->node == n && h->key == k) return h;
    return nullptr;
  }
  // A new hold whose retry is `active`; nullptr without memory.
  hold* add(sub_node* n, const hold_key& k, retry_record* active) noexcept {
    hold* h = new (std::nothrow) hold;
    if (h == nullptr) return nullptr;
    h->node = n;
    h->key = k;
    h->active = active;
    const unsigned b = bucket(k);
    h->next = buckets_[b];
    buckets_[b] = h;
    ++count_;
    mask_ |= std::uint64_t{1} << b;
    active->in_hold = h;
    return h;
  }
  // `rec` waits behind the hold's records.
  static void append(hold* h, retry_record* rec) noexcept {
    rec->in_hold = h;
    rec->next = nullptr;
    (h->last != nullptr ? h->last->next : h->first) = rec;
    h->last = rec;
  }
  // The active record of h ended: the next one becomes active (returned: it
  // is to be run), or the hold ends (nullptr).
  retry_record* release(hold* h) noexcept {
    retry_record* n = h->first;
    if (n != nullptr) {
      h->first = n->next;
      if (h->first == nullptr) h->last = nullptr;
      n->next = nullptr;
      h->active = n;
      return n;
    }
    const unsigned b = bucket(h->key);
    hold** p = &buckets_[b];
    while (*p != h) p = &(*p)->next;
    *p = h->next;
    delete h;
    --count_;
    if (buckets_[b] == nullptr) mask_ &= ~(std::uint64_t{1} << b);
    return nullptr;
  }

  void push_ready(retry_record* rec) noexcept {
    rec->next = nullptr;
    (ready_last_ != nullptr ? ready_last_->next : ready_first_) = rec;
    ready_last_ = rec;
    ready_.fetch_add(1, std::memory_order_release);
  }
  retry_record* pop_ready() noexcept {
    retry_record* r = ready_first_;
    if (r == nullptr) return nullptr;
    ready_first_ = r->next;
    if (ready_first_ == nullptr) ready_last_ = nullptr;
    r->next = nullptr;
    ready_.fetch_sub(1, std::memory_order_release);
    return r;
  }
  // Read without the lane's lock (by whoever computes the lane's next due time).
  [[nodiscard]] bool any_ready() const noexcept {
    return ready_.load(std::memory_order_acquire) != 0;
  }

 private:
  static unsigned bucket(const hold_key& k) noexcept {
    return static_cast<unsigned>((k.key * 0x9E3779B97F4A7C15ULL) >> 58);
  }
  static void free_chain(retry_record* r) noexcept {
    while (r != nullptr) {
      retry_record* n = r->next;
      r->destroy(r);
      r = n;
    }
  }

  hold* buckets_[64] = {};
  std::size_t count_ = 0;
  std::uint64_t mask_ = 0;
  retry_record* ready_first_ = nullptr;
  retry_record* ready_last_ = nullptr;
  std::atomic<std::size_t> ready_{0};
};

// What a drainer tells the failure path about the event it is delivering
// (this_thread().retry, owner thread only): a failure of a handler called
// for that event, at that depth, may schedule a retry into that lane; the
// drainer then leaves the event's settling to `block`.
struct retry_context {
  envelope* const* current = nullptr;  // where the drainer keeps the event it delivers
  const fate* current_fate = nullptr;  // how it counts if its thread ends (delivered: it is
                                       // being delivered; else an observer runs for it)
  unsigned depth = 0;                  // the slot's depth outside its frame
  std::size_t lane = 0;
  const void* bus = nullptr;      // the drainer's bus (its events are causes on this bus only)
  settle_block* block = nullptr;  // set by the failure path: the event's fate moved there
};

}  // namespace detail
}  // namespace SLUICE_ABI
}  // namespace sluice
