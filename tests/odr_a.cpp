// ODR: two translation units include the umbrella and share one bus. Type
// identity must agree across them: an event published here reaches a handler
// subscribed in odr_b.cpp.
#include <cstdio>
#include <sluice/sluice.hpp>

#include "odr_shared.hpp"

int main() {
  sluice::bus bus;
  int seen = 0;
  auto sub = odr_subscribe(bus, seen);
  bus.publish(odr_event{41});
  bus.poll();
  const std::uint32_t here = sluice::detail::type_index<odr_event>();
  const std::uint32_t there = odr_type_index();
  const bool ok = seen == 41 && here == there && bus.dispatch(odr_event{1}) == 1 && seen == 42;
  std::printf("odr: seen=%d type index here=%u there=%u: %s\n", seen, here, there,
              ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
