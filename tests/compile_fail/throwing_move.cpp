// Events must be nothrow move constructible.
#include <sluice/sluice.hpp>

struct ev {
  ev() = default;
#ifdef SLUICE_COMPILE_FAIL
  ev(ev&&) noexcept(false) {}
#else
  ev(ev&&) noexcept {}
#endif
  int x = 0;
};

int main() {
  sluice::bus bus;
  auto p = bus.make_producer();
  p.publish(ev{});
  return 0;
}
