// A handler whose parameter is not the event type must not compile.
#include <sluice/sluice.hpp>

struct ev {
  int x;
};
struct other {
  int y;
};

int main() {
  sluice::bus bus;
#ifdef SLUICE_COMPILE_FAIL
  auto sub = bus.subscribe<ev>([](const other&) {});
#else
  auto sub = bus.subscribe<ev>([](const ev&) {});
#endif
  return 0;
}
