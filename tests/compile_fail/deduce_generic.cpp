// A generic lambda says nothing about the event type it wants: subscribe
// without <Event> is refused with a message that says how to write it.
#include <sluice/sluice.hpp>

struct order {
  int id;
};

int main() {
  sluice::bus bus;
#ifdef SLUICE_COMPILE_FAIL
  auto sub = bus.subscribe([](const auto& o) { (void)o; });
#else
  auto sub = bus.subscribe<order>([](const auto& o) { (void)o; });
#endif
  return 0;
}
