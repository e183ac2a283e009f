// One bus used from several shared libraries built with -fvisibility=hidden
// and -fvisibility-inlines-hidden, as a game engine loads its plugins: the
// host program, plugin A (linked) and plugin B (dlopen'd with RTLD_LOCAL).
#pragma once

#include <atomic>
#include <cstdint>
#include <sluice/sluice.hpp>

#define PLUGIN_API __attribute__((visibility("default")))

// An event type every library uses: exported (default visibility), so that
// the process has one identity for it, as for any type whose identity crosses
// a library boundary (exceptions, dynamic_cast).
struct PLUGIN_API tick {
  std::int64_t n;
};

// A handler that blocks until let go, to catch a reset() waiting for it.
struct gate {
  std::atomic<bool> entered{false}, open{false}, finished{false};
};

extern "C" {
// Plugin A (linked to the host).
PLUGIN_API sluice::subscription* a_subscribe_own(sluice::bus& bus, std::atomic<int>& calls,
                                                 std::atomic<std::int64_t>& last);
PLUGIN_API std::size_t a_dispatch_own(sluice::bus& bus, std::int64_t v);
PLUGIN_API sluice::subscription* a_subscribe_tick(sluice::bus& bus, std::atomic<int>& calls,
                                                  std::atomic<std::int64_t>& sum);
PLUGIN_API sluice::subscription* a_subscribe_gated(sluice::bus& bus, gate& g);
PLUGIN_API void a_reset(sluice::subscription* s);
PLUGIN_API std::uint32_t a_tick_index();
PLUGIN_API std::uint32_t a_channel(const char* name);

// Plugin B (dlopen'd): looked up with dlsym.
using b_dispatch_own_fn = std::size_t (*)(sluice::bus&, double);
using b_publish_tick_fn = sluice::publish_result (*)(sluice::bus&, std::int64_t);
using b_dispatch_tick_fn = std::size_t (*)(sluice::bus&, std::int64_t);
using b_index_fn = std::uint32_t (*)();
using b_channel_fn = std::uint32_t (*)(const char*);
}
