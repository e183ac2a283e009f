// The includes of a dispatch-only user (tests/CMakeLists.txt checks them);
// with SLUICE_WHOLE_LIBRARY, the umbrella header's (the positive control).
#ifdef SLUICE_WHOLE_LIBRARY
#include <sluice/sluice.hpp>
#else
#include <sluice/dispatcher.hpp>
#endif

struct moved {
  int x, y;
};

int main() {
  sluice::dispatcher d;
  int sum = 0;
  sluice::subscription s = d.subscribe([&](const moved& m) { sum += m.x; });
  return d.dispatch(moved{3, 4}) == 1 && sum == 3 ? 0 : 1;
}
