// A stage whose input type does not match its chain must not compile.
#include <sluice/sluice.hpp>

struct reading {
  int value;
};
struct alert {
  int level;
};

int main() {
  sluice::bus bus;
#ifdef SLUICE_COMPILE_FAIL
  bus.stages<reading>().filter([](const alert& a) { return a.level > 0; });
#else
  bus.stages<reading>().filter([](const reading& r) { return r.value > 0; });
#endif
  return 0;
}
