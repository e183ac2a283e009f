// Plugin A: its own event type (hidden, as everything in this library but
// the PLUGIN_API functions), and handlers for the shared one.
#include <thread>

#include "plugin.hpp"

// Hidden (the library's default visibility), with external linkage: plugin B
// has a hidden type of its own that plays the same part.
struct a_only {
  std::int64_t v;
};

extern "C" {
sluice::subscription* a_subscribe_own(sluice::bus& bus, std::atomic<int>& calls,
                                      std::atomic<std::int64_t>& last) {
  return new sluice::subscription(bus.subscribe([&calls, &last](const a_only& e) {
    ++calls;
    last = e.v;
  }));
}
std::size_t a_dispatch_own(sluice::bus& bus, std::int64_t v) {
  return bus.dispatch(a_only{v});
}
sluice::subscription* a_subscribe_tick(sluice::bus& bus, std::atomic<int>& calls,
                                       std::atomic<std::int64_t>& sum) {
  return new sluice::subscription(bus.subscribe([&calls, &sum](const tick& t) {
    ++calls;
    sum += t.n;
  }));
}
sluice::subscription* a_subscribe_gated(sluice::bus& bus, gate& g) {
  return new sluice::subscription(bus.subscribe([&g](const tick&) {
    g.entered = true;
    while (!g.open.load()) std::this_thread::yield();
    g.finished = true;
  }));
}
void a_reset(sluice::subscription* s) {
  s->reset();
  delete s;
}
std::uint32_t a_tick_index() {
  return sluice::detail::type_index<tick>();
}
std::uint32_t a_channel(const char* name) {
  return sluice::channel(name).id();
}
}
