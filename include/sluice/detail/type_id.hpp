// sluice — event type identity without RTTI: a dense index handed out on the
// first use of each type, the same in every translation unit (inline variables
// are merged by the linker), never typeid and never a function's address.
#pragma once

#include <atomic>
#include <cstdint>
#include <type_traits>

#include "../config.hpp"

namespace sluice::detail {

inline std::uint32_t next_type_index() noexcept {
  static std::atomic<std::uint32_t> counter{0};
  const std::uint32_t id = counter.fetch_add(1, std::memory_order_relaxed);
  SLUICE_ASSERT(id < SLUICE_MAX_EVENT_TYPES,
                "more event types than SLUICE_MAX_EVENT_TYPES: define it larger");
  return id;
}

template <class T>
struct type_index_holder {
  static inline const std::uint32_t value = next_type_index();
};

template <class T>
[[nodiscard]] inline std::uint32_t type_index() noexcept {
  return type_index_holder<std::remove_cv_t<std::remove_reference_t<T>>>::value;
}

}  // namespace sluice::detail
