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
//               any other event;
//  - correlation: the id (sluice::event_id) of the event that began the
//               event's flow: its own for an event published outside any
//               handler, its cause's correlation for one published by a
//               handler, a stage or inside a sluice::caused_by scope;
//  - cause:     the id of the event whose handler (or stage) published it,
//               or that a transform made it from (0: none; see "Flows and
//               tracing" in docs/monitoring.md).
struct metadata {
  std::uint64_t sequence = 0;
  std::int64_t timestamp = 0;
  key_type key = 0;
  std::uint32_t producer = 0;
  bool has_key = false;
  bool replayed = false;
  bool bridged = false;
  bool redriven = false;
  std::uint64_t correlation = 0;
  std::uint64_t cause = 0;
};

// An event's id within its bus: its producer in the top 24 bits and the low
// 40 bits of its sequence below (unique while a producer has published
// fewer than 2^40 events and a bus has fewer than 2^24 producers; 0: a
// dispatched event, which has none).
[[nodiscard]] constexpr std::uint64_t event_id(std::uint32_t producer,
                                               std::uint64_t sequence) noexcept {
  return (std::uint64_t{producer} << 40) | (sequence & ((std::uint64_t{1} << 40) - 1));
}
[[nodiscard]] constexpr std::uint64_t event_id(const metadata& m) noexcept {
  return event_id(m.producer, m.sequence);
}

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
