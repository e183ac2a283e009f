// sluice — event type identity without RTTI: a dense index handed out on the
// first use of each type, from one counter per process, never typeid and
// never a function's address.
//
// The index lives in a static data member of a class template. It is
// constant-initialised (so no initialisation order problem between static
// initialisers, and no guard on the fast path), and SLUICE_API, so that an
// event type with default visibility has one index in the whole process, even
// across shared libraries built with -fvisibility=hidden and
// -fvisibility-inlines-hidden (the linker merges the copies). A type that a
// library hides gets an index of its own in each library that uses it:
// distinct from every other type's, so a handler never sees another type's
// event, but not shared either (docs/shared-libraries.md).
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <type_traits>

#include "../config.hpp"
#include "process.hpp"

namespace sluice {
inline namespace SLUICE_ABI {
namespace detail {

inline constexpr std::uint32_t no_type_index = 0xFFFFFFFFu;
inline constexpr std::uint32_t type_index_busy = 0xFFFFFFFEu;

template <class T>
struct SLUICE_API type_slot {
  static inline std::atomic<std::uint32_t> index{no_type_index};
};

// Gives `slot` the next index of the process (once, whichever thread comes
// first; others wait for it).
SLUICE_NOINLINE inline std::uint32_t assign_type_index(std::atomic<std::uint32_t>& slot) noexcept {
  std::uint32_t v = no_type_index;
  if (slot.compare_exchange_strong(v, type_index_busy, std::memory_order_acq_rel)) {
    v = process().next_type.fetch_add(1, std::memory_order_relaxed);
    if (v >= SLUICE_MAX_EVENT_TYPES) {
      // A configuration limit, checked in every build mode: indexing past the
      // per-bus tables would be undefined behaviour.
      std::fprintf(stderr,
                   "sluice: more than SLUICE_MAX_EVENT_TYPES (%d) event types; define it larger\n",
                   SLUICE_MAX_EVENT_TYPES);
      std::abort();
    }
    slot.store(v, std::memory_order_release);
    return v;
  }
  while (v == type_index_busy) {
    SLUICE_PAUSE();
    v = slot.load(std::memory_order_acquire);
  }
  return v;
}

template <class T>
[[nodiscard]] inline std::uint32_t type_index_of() noexcept {
  const std::uint32_t v = type_slot<T>::index.load(std::memory_order_acquire);
  if (SLUICE_LIKELY(v < type_index_busy)) return v;
  return assign_type_index(type_slot<T>::index);
}

template <class T>
[[nodiscard]] inline std::uint32_t type_index() noexcept {
  return type_index_of<std::remove_cv_t<std::remove_reference_t<T>>>();
}

}  // namespace detail
}  // namespace SLUICE_ABI
}  // namespace sluice
