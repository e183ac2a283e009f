// sluice — the type-erased envelope a lane carries: metadata, a pointer to the
// event type's operations, and the event itself stored inline when it fits
// (SLUICE_INLINE_SIZE bytes, alignment up to max_align_t) or boxed otherwise.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <type_traits>
#include <utility>

#include "../config.hpp"
#include "../event.hpp"
#include "type_id.hpp"

namespace sluice {
inline namespace SLUICE_ABI {
namespace detail {

inline constexpr std::size_t inline_size =
    SLUICE_INLINE_SIZE < sizeof(void*) ? sizeof(void*) : SLUICE_INLINE_SIZE;
inline constexpr std::size_t inline_align = alignof(std::max_align_t);

template <class Event>
inline constexpr bool stored_inline = sizeof(Event) <= inline_size &&
                                      alignof(Event) <= inline_align;

struct envelope_ops {
  std::uint32_t type;
  bool trivial;  // inline and trivially copyable: moved with memcpy, never destroyed
  bool boxed;    // the buffer holds a pointer to the event (else the event)
  void (*relocate)(void* dst, void* src) noexcept;  // move-construct dst, destroy src
  void (*destroy)(void* buf) noexcept;
  const void* (*get)(const void* buf) noexcept;
};

template <class Event>
struct ops_for {
  static void relocate(void* dst, void* src) noexcept {
    if constexpr (stored_inline<Event>) {
      Event* s = std::launder(static_cast<Event*>(src));
      ::new (dst) Event(std::move(*s));
      s->~Event();
    } else {
      std::memcpy(dst, src, sizeof(Event*));
    }
  }
  static void destroy(void* buf) noexcept {
    if constexpr (stored_inline<Event>) {
      std::launder(static_cast<Event*>(buf))->~Event();
    } else {
      Event* p = nullptr;
      std::memcpy(&p, buf, sizeof p);
      delete p;
    }
  }
  static const void* get(const void* buf) noexcept {
    if constexpr (stored_inline<Event>) {
      return std::launder(static_cast<const Event*>(buf));
    } else {
      const Event* p = nullptr;
      std::memcpy(&p, buf, sizeof p);
      return p;
    }
  }
  // Made on first use (see type_id.hpp for why not a static data member).
  static const envelope_ops* ops() noexcept {
    static const envelope_ops o{type_index<Event>(), is_trivial, !stored_inline<Event>,
                                &relocate,           &destroy,   &get};
    return &o;
  }
  static constexpr bool is_trivial = stored_inline<Event> && std::is_trivially_copyable_v<Event>;
};

// The metadata of one publish as a producer stamps it: six words, the
// fourth holding the producer and the flags (laid out as in `metadata`; see
// metadata_tail). An envelope writes them with three 16-byte stores: the queue
// then copies the envelope 16 bytes at a time, and a wide load of memory
// written by narrower stores cannot be forwarded from the store buffer (it
// waits for the stores to reach the cache: about 60 % of a publish's time on
// one thread before this, measured with perf; docs/performance.md).
struct stamp_words {
  std::uint64_t sequence;
  std::int64_t timestamp;
  key_type key;
  std::uint64_t tail;
  std::uint64_t correlation;
  std::uint64_t cause;
};

static_assert(sizeof(metadata) == 48 && offsetof(metadata, sequence) == 0 &&
                  offsetof(metadata, timestamp) == 8 && offsetof(metadata, key) == 16 &&
                  offsetof(metadata, producer) == 24 && offsetof(metadata, correlation) == 32 &&
                  offsetof(metadata, cause) == 40,
              "sluice: stamp_words mirrors the layout of metadata");
static_assert(sizeof(stamp_words) == sizeof(metadata) && std::is_trivially_copyable_v<stamp_words>,
              "sluice: stamp_words is copied into a metadata byte for byte");

// The last word of a metadata with these fields (computed once per producer).
inline std::uint64_t metadata_tail(std::uint32_t producer, bool has_key, bool replayed,
                                   bool bridged, bool redriven = false) noexcept {
  alignas(metadata) unsigned char bytes[sizeof(metadata)] = {};
  auto* m = ::new (static_cast<void*>(bytes)) metadata;
  m->producer = producer;
  m->has_key = has_key;
  m->replayed = replayed;
  m->bridged = bridged;
  m->redriven = redriven;
  std::uint64_t w = 0;
  std::memcpy(&w, bytes + offsetof(metadata, producer), sizeof w);
  return w;
}

// Writes w over a metadata's 48 bytes with three 16-byte stores.
inline void store_words(unsigned char* out, const stamp_words& w) noexcept {
#if defined(__GNUC__)
  using half = std::uint64_t __attribute__((vector_size(16)));
  const half lo = {w.sequence, static_cast<std::uint64_t>(w.timestamp)};
  const half mid = {w.key, w.tail};
  const half hi = {w.correlation, w.cause};
  std::memcpy(out, &lo, sizeof lo);
  std::memcpy(out + sizeof lo, &mid, sizeof mid);
  std::memcpy(out + 2 * sizeof lo, &hi, sizeof hi);
#else
  std::memcpy(out, &w, sizeof w);
#endif
}

// Movable, default-constructible (moodycamel needs both); empty when ops_ is null.
class envelope {
 public:
  // An empty envelope leaves its metadata unset (drainers make a batch of them
  // for every bulk dequeue): it is written before it is ever read.
  envelope() noexcept {}

  template <class Event>
  envelope(Event&& e, const stamp_words& w) noexcept(
      stored_inline<std::decay_t<Event>>&&
          std::is_nothrow_constructible_v<std::decay_t<Event>, Event&&>)
      : ops_(nullptr) {
    using E = std::decay_t<Event>;
    ::new (static_cast<void*>(&meta_)) metadata;
    store_words(reinterpret_cast<unsigned char*>(&meta_), w);
    if constexpr (stored_inline<E>) {
      ::new (static_cast<void*>(buf_)) E(std::forward<Event>(e));
    } else {
      E* p = new E(std::forward<Event>(e));
      std::memcpy(buf_, &p, sizeof p);
    }
    ops_ = ops_for<E>::ops();
  }

  envelope(envelope&& o) noexcept : ops_(o.ops_) { take(o); }
  envelope& operator=(envelope&& o) noexcept {
    if (this != &o) {
      reset();
      ops_ = o.ops_;
      take(o);
    }
    return *this;
  }
  envelope(const envelope&) = delete;
  envelope& operator=(const envelope&) = delete;
  ~envelope() { reset(); }

  void reset() noexcept {
    if (ops_ != nullptr && !ops_->trivial) ops_->destroy(buf_);
    ops_ = nullptr;
  }

  [[nodiscard]] std::uint32_t type() const noexcept { return ops_->type; }
  // The event's address (for the type's handlers, which launder it).
  [[nodiscard]] const void* event() const noexcept {
    if (SLUICE_LIKELY(!ops_->boxed)) return buf_;
    const void* p = nullptr;
    std::memcpy(&p, buf_, sizeof p);
    return p;
  }
  [[nodiscard]] const envelope_ops* ops() const noexcept { return ops_; }
  [[nodiscard]] const metadata& meta() const noexcept { return meta_; }

 private:
  void take(envelope& o) noexcept {
    if (ops_ == nullptr) return;
    meta_ = o.meta_;
    if (ops_->trivial) {
      std::memcpy(buf_, o.buf_, inline_size);
    } else {
      ops_->relocate(buf_, o.buf_);
    }
    o.ops_ = nullptr;
  }

  union {
    metadata meta_;  // active whenever ops_ is set
  };
  const envelope_ops* ops_ = nullptr;
  alignas(inline_align) unsigned char buf_[inline_size];
};

}  // namespace detail
}  // namespace SLUICE_ABI
}  // namespace sluice
