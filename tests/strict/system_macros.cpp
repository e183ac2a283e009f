// System headers that define a BLOCK_SIZE macro, included before sluice: the
// queue's header must still compile, and the macro must be as it was after.
#include <linux/fs.h>
#include <sys/mount.h>

#include <cstdio>
#include <sluice/sluice.hpp>
#include <sluice/storage.hpp>
#include <vector>

static_assert(BLOCK_SIZE == 1024, "the system's BLOCK_SIZE is left as it was");

namespace {
struct tick {
  int n;
};
}  // namespace

int main() {
  sluice::bus bus{sluice::bus_options{}.with_lanes(2)};
  int seen = 0;
  auto sub = bus.subscribe([&](const tick& t) { seen += t.n; });
  auto p = bus.make_producer();
  std::vector<tick> batch(100, tick{1});
  const std::size_t n = p.publish_bulk(batch.begin(), batch.end(), 5);
  bus.poll();
  std::printf("system_macros: %zu published, %d seen\n", n, seen);
  return n == 100 && seen == 100 ? 0 : 1;
}
