// sluice — the pieces of a subscription's failure policy (resilience.hpp)
// that the delivery path carries: a subscription's retry spec, a retry
// record (a copy of the event waiting in its lane's retry wheel for one
// subscriber), the block that settles an event once its retries end, and
// the context a drainer gives the failure path. docs/resilience.md.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "../config.hpp"
#include "../errors.hpp"
#include "../event.hpp"
#include "../resilience.hpp"
#include "stages.hpp"

namespace sluice {
inline namespace SLUICE_ABI {
namespace detail {

class bus_core;
class envelope;
struct sub_node;
struct registry;
struct retry_record;

// One event's retries, across the subscriptions retrying it: the event is
// settled (delivered, or dead-lettered if any of them gave up with a dead
// letter) when the last one ends. Every retry of one event runs under its
// lane's lock, so the block needs no atomics.
struct settle_block {
  std::uint32_t chains = 0;  // subscriptions still retrying the event
  bool dead = false;         // some subscription dead-lettered it
};

// A subscription's failure policy, with what the failure path needs of the
// event type (made by bus::subscribe<Event>).
struct retry_spec {
  failure_policy policy;
  std::string name;
  // A record holding a copy of the event (throws std::bad_alloc).
  retry_record* (*make)(const void* event, const metadata& m) = nullptr;
  // Hands a dead_letter<Event> made of the event to its subscribers on this
  // thread (bus.hpp).
  void (*dead_letter)(bus_core& core, const void* event, const metadata& m, failure_kind kind,
                      int code, const char* message, std::uint32_t attempts,
                      const std::string& name) = nullptr;
};

// A copy of an event waiting for its next call of one subscriber.
struct retry_record {
  sub_node* node = nullptr;
  registry* reg = nullptr;
  settle_block* block = nullptr;
  const void* event = nullptr;  // the copy (in the derived record)
  metadata meta;
  std::uint32_t calls = 0;  // calls made so far
  failure_kind kind = failure_kind::exception;
  int code = 0;
  std::string message;  // of the last failure
  void (*destroy)(retry_record*) noexcept = nullptr;

  retry_record() = default;
  retry_record(const retry_record&) = delete;
  retry_record& operator=(const retry_record&) = delete;
};

template <class Event>
struct retry_record_of final : retry_record {
  Event copy;
  retry_record_of(const Event& e, const metadata& m) : copy(e) {
    event = &copy;
    meta = m;
    destroy = [](retry_record* r) noexcept { delete static_cast<retry_record_of*>(r); };
  }
  static retry_record* make(const void* e, const metadata& m) {
    return new retry_record_of(*static_cast<const Event*>(e), m);
  }
};

// What a drainer tells the failure path about the event it is delivering
// (this_thread().retry, owner thread only): a failure of a handler called
// for that event, at that depth, may schedule a retry into that lane; the
// drainer then leaves the event's settling to `block`.
struct retry_context {
  envelope* const* current = nullptr;  // where the drainer keeps the event it delivers
  const fate* current_fate = nullptr;  // how it counts if its thread ends (delivered: it is
                                       // being delivered; else an observer runs for it)
  unsigned depth = 0;                  // the slot's depth outside its frame
  std::size_t lane = 0;
  settle_block* block = nullptr;  // set by the failure path: the event's fate moved there
};

}  // namespace detail
}  // namespace SLUICE_ABI
}  // namespace sluice
