// sluice — what travels with an event: its metadata, and the view a handler
// may take instead of the bare event.
#pragma once

#include <cstdint>
#include <type_traits>

#include "config.hpp"

namespace sluice {
inline namespace SLUICE_ABI {

// A key chooses the lane (and so the order) of an event: events of one
// producer with the same key are delivered in publication order, across types.
using key_type = std::uint64_t;

// Metadata stamped on every queued event by its producer.
//  - sequence:  per-producer publication number, from 1 (producer + sequence is
//               unique within a bus);
//  - timestamp: steady-clock nanoseconds at publish (0 when the bus was made
//               with stamp_time(false));
//  - producer:  the publishing producer's id (1..n within a bus; 0 for dispatch);
//  - key / has_key: the key given to publish, if any;
//  - replayed:  the event was published by a replay of a stored log (see
//               storage/replay.hpp): handlers with outside effects (mail, payments) may skip it;
//  - bridged:   the event came from another process through a bridge (see
//               bridge/nats.hpp): recorders and outbound bridges do not send it back;
//  - redriven:  the event was dead-lettered once and sent back by a redrive of a
//               dead-letter log (see storage/dead_letters.hpp); handlers run it as
//               any other event.
struct metadata {
  std::uint64_t sequence = 0;
  std::int64_t timestamp = 0;
  key_type key = 0;
  std::uint32_t producer = 0;
  bool has_key = false;
  bool replayed = false;
  bool bridged = false;
  bool redriven = false;
};

// The metadata of an event that was dispatched, not published: all zero.
inline constexpr metadata no_metadata{};

// What a handler receives when it asks for metadata: a view valid only during
// the handler call.
template <class Event>
class event_view {
 public:
  event_view(const Event& e, const metadata& m) noexcept : event_(&e), meta_(&m) {}
  [[nodiscard]] const Event& event() const noexcept { return *event_; }
  [[nodiscard]] const Event* operator->() const noexcept { return event_; }
  [[nodiscard]] const Event& operator*() const noexcept { return *event_; }
  [[nodiscard]] const metadata& meta() const noexcept { return *meta_; }

 private:
  const Event* event_;
  const metadata* meta_;
};

// Requirements on event types, checked where a type enters the bus.
template <class Event>
constexpr bool check_event_type() noexcept {
  static_assert(!std::is_reference_v<Event> && !std::is_const_v<Event>,
                "sluice: publish events by value; event types are plain object types");
  static_assert(std::is_object_v<Event>, "sluice: event types must be object types");
  static_assert(std::is_move_constructible_v<Event>,
                "sluice: event types must be move constructible");
  static_assert(std::is_nothrow_move_constructible_v<Event>,
                "sluice: event types must be nothrow move constructible");
  static_assert(std::is_nothrow_destructible_v<Event>,
                "sluice: event types must be nothrow destructible");
  return true;
}

}  // namespace SLUICE_ABI
}  // namespace sluice
