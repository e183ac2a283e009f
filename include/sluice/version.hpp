// sluice — version numbers.
#pragma once

#include "config.hpp"

#define SLUICE_VERSION_MAJOR 0
#define SLUICE_VERSION_MINOR 1
#define SLUICE_VERSION_PATCH 0

namespace sluice {
inline namespace SLUICE_ABI {
inline constexpr int version_major = SLUICE_VERSION_MAJOR;
inline constexpr int version_minor = SLUICE_VERSION_MINOR;
inline constexpr int version_patch = SLUICE_VERSION_PATCH;
}  // namespace SLUICE_ABI
}  // namespace sluice
