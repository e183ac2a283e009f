// sluice — a hierarchical timing wheel: values that become due at a time,
// held in a fixed pool (no allocation after construction) and handed out in
// the order they fall due: what the delayed deliveries of retries and of
// publish_after are built on (docs/decisions.md, "Delayed delivery: a
// hierarchical timing wheel").
//
// Time is counted in ticks (the owner chooses how long one is). Six levels
// of 64 slots cover 2^36 ticks; a value further away is held in the last
// level and placed again when its slot comes round, so any delay works.
// Values due in the same tick come out in the order they were scheduled;
// values due in different ticks, in the order of their ticks.
//
// One thread at a time (the owner locks). Every operation is O(1) but
// advance(), which is O(ticks with something due + slots placed again), and
// skips empty spans of time in O(levels) per step, using a bitmap of the
// occupied slots of each level.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>
#include <utility>

#include "../config.hpp"

namespace sluice {
inline namespace SLUICE_ABI {
namespace detail {

template <class T>
class timer_wheel {
  static_assert(std::is_nothrow_move_constructible_v<T> && std::is_nothrow_destructible_v<T>,
                "sluice: a timer wheel holds values that move and destroy without throwing");
  static_assert(alignof(T) <= alignof(std::max_align_t),
                "sluice: a timer wheel holds values of at most fundamental alignment");

 public:
  static constexpr unsigned slot_bits = 6;
  static constexpr unsigned slots = 1u << slot_bits;  // per level
  static constexpr unsigned levels = 6;

  // Room for `capacity` values (at least 1, at most 2^32 - 2), starting at
  // tick `now`. Allocates the pool here (std::bad_alloc with exceptions;
  // without them, valid() is false and every schedule() is refused).
  timer_wheel(std::size_t capacity, std::uint64_t now)
      : capacity_(clamp_capacity(capacity)), now_(now) {
    nodes_ = static_cast<node*>(::operator new(sizeof(node) * capacity_, std::nothrow));
    if (nodes_ == nullptr) {
#if SLUICE_HAS_EXCEPTIONS
      throw std::bad_alloc();
#else
      capacity_ = 0;
      return;
#endif
    }
    for (std::size_t i = 0; i < capacity_; ++i)
      ::new (static_cast<void*>(nodes_ + i)) node{{}, 0, static_cast<std::uint32_t>(i + 1)};
    nodes_[capacity_ - 1].next = none;
    free_ = 0;
  }
  timer_wheel(const timer_wheel&) = delete;
  timer_wheel& operator=(const timer_wheel&) = delete;
  ~timer_wheel() {
    clear();
    ::operator delete(nodes_);
  }

  [[nodiscard]] bool valid() const noexcept {
    return nodes_ != nullptr;
  }
  [[nodiscard]] std::size_t size() const noexcept {
    return size_;
  }
  [[nodiscard]] std::size_t capacity() const noexcept {
    return capacity_;
  }
  [[nodiscard]] bool empty() const noexcept {
    return size_ == 0;
  }
  // The tick the wheel has advanced to.
  [[nodiscard]] std::uint64_t now() const noexcept {
    return now_;
  }

  // Holds v until tick `due` (a tick not after now() makes it due at once:
  // the next advance() hands it out). False, with v untouched, when the
  // pool is full.
  template <class V>
  bool schedule(std::uint64_t due, V&& v) noexcept(std::is_nothrow_constructible_v<T, V&&>) {
    if (free_ == none) return false;
    const std::uint32_t i = free_;
    node& n = nodes_[i];
    ::new (static_cast<void*>(n.storage)) T(std::forward<V>(v));  // may throw: nothing changed yet
    free_ = n.next;
    n.due = due;
    ++size_;
    place(i);
    return true;
  }

  // Moves time on to tick `to` (if after now()) and calls f(T&&, due) for
  // every value due by then, in order; stops early, with time at the tick
  // of the last value handed out, after `max` values.
  // Returns how many were handed out. f must not throw or touch the wheel.
  template <class F>
  std::size_t advance(std::uint64_t to, F&& f, std::size_t max = ~std::size_t{0}) noexcept {
    std::size_t out = take_ready(f, max);
    while (out < max && now_ < to) {
      const std::uint64_t next = next_event(to);
      now_ = next;
      cascade();
      out += take_ready(f, max - out);
    }
    return out;
  }

  // The tick at which advance() would next hand a value out or place values
  // again, or `none_due` when the wheel is empty. Never before now() (now()
  // when values are due already).
  static constexpr std::uint64_t none_due = ~std::uint64_t{0};
  [[nodiscard]] std::uint64_t next_due() const noexcept {
    if (size_ == 0) return none_due;
    if (ready_.head != none) return now_;
    return next_event(none_due);
  }

  // Calls f(T&&, due) for every value held, whatever its tick (in no
  // particular order), and empties the wheel (for a bus that stops).
  template <class F>
  std::size_t drain_all(F&& f) noexcept {
    std::size_t out = take_ready(f, ~std::size_t{0});
    for (unsigned l = 0; l < levels; ++l) {
      for (unsigned s = 0; s < slots; ++s) {
        list& q = wheel_[l][s];
        while (q.head != none) {
          const std::uint32_t i = pop(q);
          hand_out(i, f);
          ++out;
        }
      }
      occupied_[l] = 0;
    }
    return out;
  }

  // Destroys every value held.
  void clear() noexcept {
    drain_all([](T&&, std::uint64_t) noexcept {});
  }

 private:
  static constexpr std::uint32_t none = ~std::uint32_t{0};
  struct node {
    alignas(T) unsigned char storage[sizeof(T)];
    std::uint64_t due;
    std::uint32_t next;
    T& value() noexcept { return *std::launder(reinterpret_cast<T*>(storage)); }
  };
  struct list {
    std::uint32_t head = none, tail = none;
  };

  static std::size_t clamp_capacity(std::size_t c) noexcept {
    if (c == 0) return 1;
    const std::size_t most = none - 1;
    return c > most ? most : c;
  }
  static unsigned shift(unsigned level) noexcept {
    return level * slot_bits;
  }

  void push(list& q, std::uint32_t i) noexcept {
    nodes_[i].next = none;
    if (q.tail == none) {
      q.head = i;
    } else {
      nodes_[q.tail].next = i;
    }
    q.tail = i;
  }
  std::uint32_t pop(list& q) noexcept {
    const std::uint32_t i = q.head;
    q.head = nodes_[i].next;
    if (q.head == none) q.tail = none;
    return i;
  }

  // Puts node i where its tick belongs, seen from now_: due already, or the
  // lowest level whose span above it now_ shares with the tick. The top
  // level is a circle: a tick less than a whole turn (2^36 ticks) ahead goes
  // in its own slot, which may lie in the next turn; a tick further ahead
  // goes in the slot before now_'s own, the last one the turn reaches, and
  // is placed again when that slot comes round.
  void place(std::uint32_t i) noexcept {
    const std::uint64_t due = nodes_[i].due;
    if (due <= now_) {
      push(ready_, i);
      return;
    }
    unsigned l = 0;
    while (l + 1 < levels && (due >> shift(l + 1)) != (now_ >> shift(l + 1))) ++l;
    unsigned s;
    if (due - now_ >= (std::uint64_t{1} << shift(levels))) {
      s = static_cast<unsigned>(((now_ >> shift(l)) + slots - 1) & (slots - 1));
    } else {
      s = static_cast<unsigned>((due >> shift(l)) & (slots - 1));
    }
    push(wheel_[l][s], i);
    occupied_[l] |= std::uint64_t{1} << s;
  }

  // The first tick after now_, and not after `limit`, at which a slot of
  // some level comes round that holds values (level 0: they are due; above:
  // they are placed again); `limit` when none does by then.
  [[nodiscard]] std::uint64_t next_event(std::uint64_t limit) const noexcept {
    std::uint64_t best = limit;
    for (unsigned l = 0; l < levels; ++l) {
      const std::uint64_t occ = occupied_[l];
      if (occ == 0) continue;
      const unsigned here = static_cast<unsigned>((now_ >> shift(l)) & (slots - 1));
      // Slots after now_'s own in this level's span first; then (only the
      // top level, a circle) the slots of its next turn.
      const std::uint64_t after = here + 1 < slots ? occ & (~std::uint64_t{0} << (here + 1)) : 0;
      const std::uint64_t span_start = (now_ >> shift(l + 1)) << shift(l + 1);
      std::uint64_t t;
      if (after != 0) {
        t = span_start + (std::uint64_t{static_cast<unsigned>(__builtin_ctzll(after))} << shift(l));
      } else {
        const auto s = static_cast<unsigned>(__builtin_ctzll(occ));
        t = span_start + (std::uint64_t{1} << shift(l + 1)) + (std::uint64_t{s} << shift(l));
      }
      if (t <= now_) t = now_ + 1;
      if (t < best) best = t;
    }
    return best;
  }

  // At now_: level 0's slot is due; each higher level whose slot starts at
  // now_ is placed again (highest first, so that values keep the order they
  // were scheduled in).
  void cascade() noexcept {
    for (unsigned l = levels - 1; l >= 1; --l) {
      if ((now_ & ((std::uint64_t{1} << shift(l)) - 1)) != 0) continue;  // not a start of slot
      const unsigned s = static_cast<unsigned>((now_ >> shift(l)) & (slots - 1));
      if ((occupied_[l] & (std::uint64_t{1} << s)) == 0) continue;
      list q = wheel_[l][s];
      wheel_[l][s] = list{};
      occupied_[l] &= ~(std::uint64_t{1} << s);
      while (q.head != none) place(pop(q));
    }
    const unsigned s0 = static_cast<unsigned>(now_ & (slots - 1));
    if ((occupied_[0] & (std::uint64_t{1} << s0)) != 0) {
      list& q = wheel_[0][s0];
      while (q.head != none) push(ready_, pop(q));
      occupied_[0] &= ~(std::uint64_t{1} << s0);
    }
  }

  template <class F>
  std::size_t take_ready(F& f, std::size_t max) noexcept {
    std::size_t out = 0;
    while (out < max && ready_.head != none) {
      hand_out(pop(ready_), f);
      ++out;
    }
    return out;
  }

  template <class F>
  void hand_out(std::uint32_t i, F& f) noexcept {
    node& n = nodes_[i];
    T& v = n.value();
    f(std::move(v), n.due);
    v.~T();
    n.next = free_;
    free_ = i;
    --size_;
  }

  node* nodes_ = nullptr;
  std::size_t capacity_;
  std::size_t size_ = 0;
  std::uint32_t free_ = none;
  std::uint64_t now_;
  list ready_;
  list wheel_[levels][slots];
  std::uint64_t occupied_[levels] = {};
};

}  // namespace detail
}  // namespace SLUICE_ABI
}  // namespace sluice
