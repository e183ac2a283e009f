#pragma once
#include <sluice/sluice.hpp>

struct odr_event {
  int value;
};
struct odr_other {  // takes index 0 in odr_b's order if it were first
  int value;
};

sluice::subscription odr_subscribe(sluice::bus& bus, int& seen);
std::uint32_t odr_type_index();
