// sluice — event type identity without RTTI: a dense index handed out on the
// first use of each type, the same in every translation unit (inline variables
// are merged by the linker), never typeid and never a function's address.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <type_traits>

#include "../config.hpp"

namespace sluice::detail {

inline std::uint32_t next_type_index() noexcept {
  static std::atomic<std::uint32_t> counter{0};
  const std::uint32_t id = counter.fetch_add(1, std::memory_order_relaxed);
  if (id >= SLUICE_MAX_EVENT_TYPES) {
    // A configuration limit, checked in every build mode: indexing past the
    // per-bus tables would be undefined behaviour.
    std::fprintf(stderr,
                 "sluice: more than SLUICE_MAX_EVENT_TYPES (%d) event types; define it larger\n",
                 SLUICE_MAX_EVENT_TYPES);
    std::abort();
  }
  return id;
}

// A function-local static, not a static data member: dynamic initialisation
// of templated static members is unordered across instantiations, so another
// static initialiser could read a member before it was set (and see 0). A
// local static is initialised on first use, thread-safely.
template <class T>
[[nodiscard]] inline std::uint32_t type_index_of() noexcept {
  static const std::uint32_t value = next_type_index();
  return value;
}

template <class T>
[[nodiscard]] inline std::uint32_t type_index() noexcept {
  return type_index_of<std::remove_cv_t<std::remove_reference_t<T>>>();
}

}  // namespace sluice::detail
