// sluice — the type-erased stage chain of one event type (see pipeline.hpp).
// A chain is built before the bus starts and never changes afterwards, so
// drainers read it without any tracking; it lives as long as the bus.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../config.hpp"
#include "../event.hpp"
#include "process.hpp"

namespace sluice {
inline namespace SLUICE_ABI {
namespace detail {

enum class stage_kind : std::uint8_t { filter, tap, enrich, transform, route };

// How an event left its type's chain.
enum class fate : std::uint8_t { delivered, unrouted, filtered, transformed };

class bus_core;
struct registry;
struct reader_slot;

// What a converting stage needs to hand its output on.
struct stage_context {
  bus_core* core;
  reader_slot* slot;
  unsigned hops;          // transforms crossed so far (bounded: see SLUICE_MAX_HOPS)
  std::size_t calls = 0;  // handler calls made for the input's own type
};

// The message of the exception a stage threw (valid until the next one on
// this thread): a fixed buffer, filled on a path that must not allocate.
inline void set_stage_error(const char* message) noexcept {
  char* buf = this_thread().stage_error;
  std::strncpy(buf, message, sizeof(thread_state::stage_error) - 1);
  buf[sizeof(thread_state::stage_error) - 1] = '\0';
}
[[nodiscard]] inline const char* stage_error_message() noexcept {
  return this_thread().stage_error;
}

struct stage {
  stage_kind kind = stage_kind::tap;
  void* fn = nullptr;
  void (*destroy)(void* fn) noexcept = nullptr;
  // filter: false drops the event (a store stage is one). tap: observes. route: picks a
  // channel id.
  // enrich / transform: builds the output and sends it on (the rest of this
  // chain for enrich, the output type's chain for transform) and says what
  // became of the input. Each returns false if the user's function threw.
  bool (*test)(void* fn, const void* ev, const metadata& m, bool& pass) = nullptr;
  bool (*observe)(void* fn, const void* ev, const metadata& m) = nullptr;
  bool (*pick)(void* fn, const void* ev, std::uint32_t& channel) = nullptr;
  bool (*convert)(void* fn, const void* ev, const metadata& m, stage_context& ctx, std::size_t next,
                  fate& out) = nullptr;
};

struct stage_chain {
  std::vector<stage> stages;
  bool closed = false;                 // ends in a route or a type-changing transform
  std::vector<std::uint32_t> outputs;  // types that transforms of this chain make

  stage_chain() = default;
  stage_chain(const stage_chain&) = delete;
  stage_chain& operator=(const stage_chain&) = delete;
  ~stage_chain() {
    for (stage& s : stages)
      if (s.fn != nullptr) s.destroy(s.fn);
  }
};

}  // namespace detail
}  // namespace SLUICE_ABI
}  // namespace sluice
