// The host: one bus, used through plugin A (linked) and plugin B (dlopen'd).
// Checks that each library's handlers get their own event types, that a type
// the libraries share has one identity, that channels agree, and that a
// reset() in one library waits for the handler a delivery in another runs.
#include <dlfcn.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "plugin.hpp"

#ifndef PLUGIN_B_PATH
#error "PLUGIN_B_PATH names plugin B's file"
#endif

namespace {
int failures = 0;
void check(bool ok, const char* what) {
  std::printf("%s: %s\n", ok ? "ok    " : "FAILED", what);
  if (!ok) ++failures;
}
template <class F>
F symbol(void* lib, const char* name) {
  void* p = ::dlsym(lib, name);
  if (p == nullptr) {
    std::printf("FAILED: dlsym %s: %s\n", name, ::dlerror());
    std::exit(2);
  }
  F f;
  static_assert(sizeof f == sizeof p, "function pointers are data pointers here");
  std::memcpy(&f, &p, sizeof f);
  return f;
}
}  // namespace

int main() {
  void* lib = ::dlopen(PLUGIN_B_PATH, RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    std::printf("FAILED: dlopen %s: %s\n", PLUGIN_B_PATH, ::dlerror());
    return 2;
  }
  auto b_dispatch_own = symbol<b_dispatch_own_fn>(lib, "b_dispatch_own");
  auto b_publish_tick = symbol<b_publish_tick_fn>(lib, "b_publish_tick");
  auto b_dispatch_tick = symbol<b_dispatch_tick_fn>(lib, "b_dispatch_tick");
  auto b_tick_index = symbol<b_index_fn>(lib, "b_tick_index");
  auto b_channel = symbol<b_channel_fn>(lib, "b_channel");

  sluice::bus bus{sluice::bus_options{}.with_lanes(2)};

  // Each library's own (hidden) type: never another library's handler.
  std::atomic<int> own_calls{0};
  std::atomic<std::int64_t> own_last{0};
  sluice::subscription* own = a_subscribe_own(bus, own_calls, own_last);
  const std::size_t b_calls = b_dispatch_own(bus, 3.5);
  check(b_calls == 0 && own_calls.load() == 0,
        "a dispatch of plugin B's type calls no handler of plugin A's type");
  check(a_dispatch_own(bus, 7) == 1 && own_calls.load() == 1 && own_last.load() == 7,
        "plugin A's handler gets plugin A's events");

  // The shared type: one identity in the host and both plugins.
  const std::uint32_t here = sluice::detail::type_index<tick>();
  check(a_tick_index() == here && b_tick_index() == here,
        "the shared type has one index in the host and both plugins");
  std::atomic<int> tick_calls{0};
  std::atomic<std::int64_t> tick_sum{0};
  sluice::subscription* ticks = a_subscribe_tick(bus, tick_calls, tick_sum);
  std::int64_t expected = 0;
  for (std::int64_t i = 1; i <= 100; ++i) {
    if (b_publish_tick(bus, i) == sluice::publish_result::ok) expected += i;
  }
  bus.poll();  // the host drains
  check(tick_calls.load() == 100 && tick_sum.load() == expected,
        "events plugin B publishes reach plugin A's handler, with their values");
  a_reset(ticks);

  // Channels: one name, one id, everywhere.
  const std::uint32_t ch = sluice::channel("plugins.alerts").id();
  check(a_channel("plugins.alerts") == ch && b_channel("plugins.alerts") == ch &&
            a_channel("plugins.other") != ch,
        "channel names give the same ids in every library");

  // reset() in plugin A waits for plugin A's handler while plugin B's
  // dispatch runs it on another thread.
  gate g;
  sluice::subscription* gated = a_subscribe_gated(bus, g);
  std::thread runner([&] { b_dispatch_tick(bus, 1); });
  while (!g.entered.load()) std::this_thread::yield();
  std::thread opener([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    g.open = true;
  });
  a_reset(gated);
  check(g.finished.load(),
        "reset() in plugin A returned only after the handler that plugin B "
        "ran had returned");
  runner.join();
  opener.join();

  a_reset(own);
  bus.stop();
  ::dlclose(lib);
  std::printf("%s\n", failures == 0 ? "shared libraries: all good" : "shared libraries: FAILED");
  return failures == 0 ? 0 : 1;
}
