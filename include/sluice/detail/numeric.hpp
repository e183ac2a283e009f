// sluice — conversions between the integer types of offsets and of sizes,
// and the hash that spreads keys over lanes and partitions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "../config.hpp"

namespace sluice {
inline namespace SLUICE_ABI {
namespace detail {

// A 64-bit count as a size_t. The caller knows it fits; on 64-bit targets it
// is no conversion at all (and so no cast that a user's -Wuseless-cast sees).
template <class U = std::uint64_t>
[[nodiscard]] constexpr std::size_t to_size(U v) noexcept {
  static_assert(std::is_same_v<U, std::uint64_t>, "sluice: to_size takes a std::uint64_t");
  if constexpr (std::is_same_v<std::size_t, U>) {
    return v;
  } else {
    return static_cast<std::size_t>(v);
  }
}

// A 64-bit mix (the murmur3 finalizer's first half): keys that differ in few
// bits land far apart.
[[nodiscard]] constexpr std::uint64_t mix(std::uint64_t x) noexcept {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}

}  // namespace detail
}  // namespace SLUICE_ABI
}  // namespace sluice
