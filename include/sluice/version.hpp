// sluice — version numbers.
#pragma once

#define SLUICE_VERSION_MAJOR 0
#define SLUICE_VERSION_MINOR 1
#define SLUICE_VERSION_PATCH 0

namespace sluice {
inline constexpr int version_major = SLUICE_VERSION_MAJOR;
inline constexpr int version_minor = SLUICE_VERSION_MINOR;
inline constexpr int version_patch = SLUICE_VERSION_PATCH;
}  // namespace sluice
