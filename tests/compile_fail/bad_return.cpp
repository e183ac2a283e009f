// A handler must return void or sluice::outcome.
#include <sluice/sluice.hpp>

struct ev {
  int x;
};

int main() {
  sluice::bus bus;
#ifdef SLUICE_COMPILE_FAIL
  auto sub = bus.subscribe<ev>([](const ev& e) { return e.x; });
#else
  auto sub = bus.subscribe<ev>([](const ev&) { return sluice::outcome::success(); });
#endif
  return 0;
}
