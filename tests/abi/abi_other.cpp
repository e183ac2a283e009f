// See abi_main.cpp. Takes its settings from ABI_OTHER_* (so that one command
// line can build the two files with different values).
#if defined(ABI_OTHER_INLINE_SIZE)
#define SLUICE_INLINE_SIZE ABI_OTHER_INLINE_SIZE
#endif
#if defined(ABI_OTHER_MAX_DEPTH)
#define SLUICE_MAX_DEPTH ABI_OTHER_MAX_DEPTH
#endif
#if defined(ABI_OTHER_MAX_EVENT_TYPES)
#define SLUICE_MAX_EVENT_TYPES ABI_OTHER_MAX_EVENT_TYPES
#endif
#include <sluice/sluice.hpp>

namespace {
struct ping {
  int n;
};
}  // namespace

int use_bus(sluice::bus& b) {
  int seen = 0;
  auto sub = b.subscribe([&seen](const ping&) { ++seen; });
  b.publish(ping{1});
  b.poll();
  return seen;
}
