// Plugin B, loaded with dlopen(RTLD_LOCAL): its own hidden event type, and
// publishing of the shared one.
#include "plugin.hpp"

struct b_only {
  double v;
};

extern "C" {
PLUGIN_API std::size_t b_dispatch_own(sluice::bus& bus, double v) {
  return bus.dispatch(b_only{v});
}
PLUGIN_API sluice::publish_result b_publish_tick(sluice::bus& bus, std::int64_t n) {
  return bus.publish(tick{n});
}
PLUGIN_API std::size_t b_dispatch_tick(sluice::bus& bus, std::int64_t n) {
  return bus.dispatch(tick{n});
}
PLUGIN_API std::uint32_t b_tick_index() {
  return sluice::detail::type_index<tick>();
}
PLUGIN_API std::uint32_t b_channel(const char* name) {
  return sluice::channel(name).id();
}
}
