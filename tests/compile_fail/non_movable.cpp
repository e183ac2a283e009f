// Events must be movable: a type with deleted moves must not be published.
#include <sluice/sluice.hpp>

#ifdef SLUICE_COMPILE_FAIL
struct ev {
  ev() = default;
  ev(ev&&) = delete;
  ev& operator=(ev&&) = delete;
  int x = 0;
};
#else
struct ev {
  int x = 0;
};
#endif

int main() {
  sluice::bus bus;
  auto sub = bus.subscribe<ev>([](const ev&) {});
  return 0;
}
