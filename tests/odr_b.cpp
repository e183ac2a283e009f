#include <sluice/sluice.hpp>

#include "odr_shared.hpp"

sluice::subscription odr_subscribe(sluice::bus& bus, int& seen) {
  return bus.subscribe<odr_event>([&seen](const odr_event& e) { seen += e.value; });
}

std::uint32_t odr_type_index() {
  return sluice::detail::type_index<odr_event>();
}
