// sluice — the type-erased stage chain of one event type (see pipeline.hpp).
// A chain is built before the bus starts and never changes afterwards, so
// drainers read it without any tracking; it lives as long as the bus. Its
// stages are threaded: each one's step calls the next (docs/pipeline.md).
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

enum class stage_kind : std::uint8_t { filter, tap, enrich, transform, route, deliver };

// How an event left its type's chain.
enum class fate : std::uint8_t { delivered, unrouted, filtered, transformed };

class bus_core;
class failure_reporter;
struct registry;
struct reader_slot;

// The most stages one chain takes (its delivery step not counted). Each stage
// calls the next, so a chain runs as nested calls; the bound keeps the stack
// one chain needs small and known (transforms nest chains: SLUICE_MAX_HOPS).
inline constexpr std::size_t max_stages = 64;

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

struct stage;

// One event's way through a chain: what its steps need, and what they leave.
struct delivery_gate;

struct chain_run {
  bus_core* core;
  const failure_reporter* failures;
  registry* reg;          // the chain's type
  reader_slot* slot;      // this thread's, with the chain's frame open at `depth`
  unsigned hops;          // transforms crossed so far (bounded: see SLUICE_MAX_HOPS)
  unsigned depth;         // the slot's depth before the chain's frame
  bool open;              // the chain's frame is still open (the delivery step closes it)
  std::uint32_t channel;  // the channel a route picked (0: none)
  std::size_t calls;      // handler calls made for the chain's own type
  const delivery_gate* gate = nullptr;  // asked before each handler call (a bus's failure
                                        // policies), if set
};

// Runs one stage, then (unless the stage ends the event) the stages after
// it: each step calls the next through the chain's array, whose last entry
// is the delivery step. One indirect call per stage, no loop over kinds.
// Returns what became of the event.
using step_fn = fate (*)(const stage* self, const void* ev, const metadata& m, chain_run& run);

struct stage {
  stage_kind kind = stage_kind::tap;
  void* fn = nullptr;                            // the user's function (owned)
  void (*destroy)(void* fn) noexcept = nullptr;  // deletes fn
  step_fn step = nullptr;
};

// Hands the event on to the stage after `self`.
inline fate next_step(const stage* self, const void* ev, const metadata& m, chain_run& run) {
  return self[1].step(self + 1, ev, m, run);
}

struct stage_chain {
  std::vector<stage> stages;           // the user's stages, then the delivery step
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
