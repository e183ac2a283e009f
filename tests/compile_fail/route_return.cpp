// A route function must return a sluice::channel.
#include <sluice/sluice.hpp>

struct alert {
  int level;
};

int main() {
  sluice::bus bus;
#ifdef SLUICE_COMPILE_FAIL
  bus.stages<alert>().route([](const alert& a) { return a.level > 1 ? "pager" : "dashboard"; });
#else
  bus.stages<alert>().route([](const alert& a) {
    return a.level > 1 ? sluice::channel{"pager"} : sluice::channel{"dashboard"};
  });
#endif
  return 0;
}
