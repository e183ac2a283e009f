// sluice — forward declarations.
#pragma once

#include <cstdint>

#include "config.hpp"

namespace sluice {
inline namespace SLUICE_ABI {
class bus;
class dispatcher;
class producer;
class subscription;
struct bus_options;
struct producer_options;
struct metadata;
struct type_stats;
struct lane_stats;
struct failure_info;
class outcome;
template <class Event>
class event_view;
enum class full_policy : std::uint8_t;
enum class stop_mode : std::uint8_t;
enum class publish_result : std::uint8_t;
}  // namespace SLUICE_ABI
}  // namespace sluice
