// sluice — the clock that stamps published events (metadata::timestamp):
// steady-clock nanoseconds, read for the price of a time-stamp counter read.
//
// steady_clock::now() is a system call's worth of work on many virtual
// machines (about 27 ns where the kernel's clock source is kvm-clock), and a
// publish without it costs less than that. On x86-64 with an invariant
// time-stamp counter (constant rate, runs in every sleep state: CPUID
// 0x80000007, EDX bit 8), the stamp is instead the counter scaled to
// nanoseconds: anchor + (tsc - anchor_tsc) * rate. The anchor is taken from
// steady_clock every `period` counter ticks (about 4 ms), by whichever thread
// first notices that it is due, and the rate is measured over the whole time
// since the first anchor, so the stamps follow steady_clock to within the
// rate's error over one period. A new anchor never sets the clock back: when
// the counter ran ahead of steady_clock, the next period's rate is lowered so
// that the stamps catch up over that period instead.
//
// Until the first period has passed (the rate is not known yet), and where
// the counter is missing or not invariant, stamps come from steady_clock.
// SLUICE_FAST_CLOCK=0 always uses steady_clock.
//
// Guarantees: stamps are steady_clock nanoseconds to within a few
// microseconds; a producer's stamps never decrease (the producer keeps the
// largest it gave). Stamps of different threads are as comparable as
// steady_clock readings are, give or take that error.
#pragma once

#include <atomic>
#include <cstdint>

#include "../config.hpp"
#include "clock.hpp"

#ifndef SLUICE_FAST_CLOCK
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !SLUICE_MODEL_CHECK
#define SLUICE_FAST_CLOCK 1
#else
#define SLUICE_FAST_CLOCK 0
#endif
#endif

#if SLUICE_FAST_CLOCK
#include <cpuid.h>
#endif

namespace sluice {
inline namespace SLUICE_ABI {
namespace detail {

#if SLUICE_FAST_CLOCK

// The anchor and rate, published with a sequence lock (all fields atomic, so
// that racing reads are defined; a reader retries when the count changed).
struct tsc_state {
  std::atomic<std::uint32_t> seq{0};
  std::atomic<std::uint64_t> tsc{0};   // the anchor's counter value
  std::atomic<std::int64_t> ns{0};     // the anchor's nanoseconds
  std::atomic<std::uint64_t> rate{0};  // ns per tick, 32.32 fixed point; 0: not known
  std::atomic<std::uint64_t> due{0};   // counter value at which to re-anchor
  std::atomic<bool> updating{false};   // a thread is re-anchoring
  std::atomic<int> usable{-1};         // -1 unknown, 0 no invariant counter, 1 yes
  // Written only by the thread that holds `updating`:
  std::uint64_t first_tsc = 0;
  std::int64_t first_ns = 0;
  std::uint64_t true_rate = 0;
};

__extension__ typedef unsigned __int128 tsc_wide;

// Counter ticks between anchors: 2^23 is 2.8 ms at 3 GHz, 8.4 ms at 1 GHz.
inline constexpr std::uint64_t tsc_period = std::uint64_t{1} << 23;

SLUICE_API inline tsc_state& tsc() noexcept {
  static tsc_state s;
  return s;
}

[[nodiscard]] inline std::uint64_t read_tsc() noexcept {
  return __builtin_ia32_rdtsc();
}

SLUICE_NOINLINE inline bool tsc_invariant() noexcept {
  unsigned a = 0, b = 0, c = 0, d = 0;
  __cpuid(0x80000000u, a, b, c, d);  // a: the highest extended leaf
  if (a < 0x80000007u) return false;
  __cpuid(0x80000007u, a, b, c, d);
  return (d & (1u << 8)) != 0;
}

// steady_clock, with the counter value at the middle of the read: the
// narrowest of a few tries, so that a thread preempted during one read does
// not skew the anchor.
inline std::int64_t steady_with_tsc(std::uint64_t& at) noexcept {
  std::uint64_t width = ~std::uint64_t{0};
  std::int64_t n = 0;
  for (int i = 0; i < 4 && width > (std::uint64_t{1} << 14); ++i) {
    const std::uint64_t t1 = read_tsc();
    const std::int64_t r = now_ns();
    const std::uint64_t t2 = read_tsc();
    if (t2 >= t1 && t2 - t1 < width) {
      width = t2 - t1;
      at = t1 + width / 2;
      n = r;
    }
  }
  if (width == ~std::uint64_t{0}) at = read_tsc(), n = now_ns();
  return n;
}

// The counter's value `t` in nanoseconds by an anchor.
[[nodiscard]] inline std::int64_t tsc_to_ns(std::uint64_t t, std::uint64_t anchor_tsc,
                                            std::int64_t anchor_ns, std::uint64_t rate) noexcept {
  const tsc_wide scaled = (static_cast<tsc_wide>(t - anchor_tsc) * rate) >> 32;
  return anchor_ns + static_cast<std::int64_t>(scaled);
}

// The slow path: decides whether the counter is usable, takes an anchor when
// one is due (or lets the thread already doing so finish), and reads
// steady_clock meanwhile.
SLUICE_NOINLINE inline std::int64_t stamp_slow(std::uint64_t t) noexcept {
  tsc_state& s = tsc();
  int usable = s.usable.load(std::memory_order_acquire);
  if (usable < 0) {
    usable = tsc_invariant() ? 1 : 0;
    s.usable.store(usable, std::memory_order_release);
  }
  if (usable == 0 || s.updating.exchange(true, std::memory_order_acquire)) return now_ns();
  if (s.first_tsc != 0 && t < s.due.load(std::memory_order_relaxed)) {
    // The rate is still being measured: no anchor is due, one plain read.
    s.updating.store(false, std::memory_order_release);
    return now_ns();
  }
  std::uint64_t at = 0;
  const std::int64_t n = steady_with_tsc(at);
  std::int64_t result = n;
  const std::uint64_t old_rate = s.rate.load(std::memory_order_relaxed);
  if (s.first_tsc == 0) {
    s.first_tsc = at;
    s.first_ns = n;
    s.due.store(at + tsc_period, std::memory_order_relaxed);  // measure the rate first
  } else if (at > s.first_tsc && n > s.first_ns && t >= s.due.load(std::memory_order_relaxed)) {
    // The rate over everything seen so far.
    const auto elapsed_ns = static_cast<tsc_wide>(n - s.first_ns);
    s.true_rate = static_cast<std::uint64_t>((elapsed_ns << 32) / (at - s.first_tsc));
    // Never back: where the old anchor's line is ahead of steady_clock, start
    // from it and slow the rate so that it meets steady_clock a period later.
    std::int64_t from = n;
    if (old_rate != 0) {
      const std::int64_t line = tsc_to_ns(at, s.tsc.load(std::memory_order_relaxed),
                                          s.ns.load(std::memory_order_relaxed), old_rate);
      if (line > from) from = line;
    }
    const std::int64_t target = tsc_to_ns(at + tsc_period, at, n, s.true_rate);
    std::uint64_t rate = s.true_rate;
    if (target > from) {
      rate = static_cast<std::uint64_t>((static_cast<tsc_wide>(target - from) << 32) / tsc_period);
    } else {
      rate = s.true_rate / 2;  // far ahead (a jump of steady_clock?): catch up faster
    }
    if (rate == 0) rate = 1;
    const std::uint32_t q = s.seq.load(std::memory_order_relaxed);
    s.seq.store(q + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    s.tsc.store(at, std::memory_order_relaxed);
    s.ns.store(from, std::memory_order_relaxed);
    s.rate.store(rate, std::memory_order_relaxed);
    s.due.store(at + tsc_period, std::memory_order_relaxed);
    s.seq.store(q + 2, std::memory_order_release);
    result = from;
  }
  s.updating.store(false, std::memory_order_release);
  return result;
}

// Nanoseconds on steady_clock's scale, now.
[[nodiscard]] inline std::int64_t stamp_now() noexcept {
  tsc_state& s = tsc();
  const std::uint64_t t = read_tsc();
  for (;;) {
    const std::uint32_t q = s.seq.load(std::memory_order_acquire);
    const std::uint64_t at = s.tsc.load(std::memory_order_relaxed);
    const std::int64_t ns = s.ns.load(std::memory_order_relaxed);
    const std::uint64_t rate = s.rate.load(std::memory_order_relaxed);
    const std::uint64_t due = s.due.load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (SLUICE_UNLIKELY(s.seq.load(std::memory_order_relaxed) != q || (q & 1) != 0)) continue;
    if (SLUICE_UNLIKELY(rate == 0 || t >= due || t < at)) return stamp_slow(t);
    return tsc_to_ns(t, at, ns, rate);
  }
}

#else

[[nodiscard]] inline std::int64_t stamp_now() noexcept {
  return now_ns();
}

#endif

}  // namespace detail
}  // namespace SLUICE_ABI
}  // namespace sluice
