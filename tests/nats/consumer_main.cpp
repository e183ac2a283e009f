// A consuming process for the crash test (test_nats_source.cpp): reads the
// stream ORDERS through a durable source into a bus whose handler appends
// each order id to a file, one write() per event (what was written survives
// a SIGKILL). Runs until it is killed.
//   sluice_nats_consumer <url> <durable> <file>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <sluice/bridge/nats.hpp>
#include <sluice/sluice.hpp>
#include <thread>

#include "orders.hpp"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s <url> <durable> <file>\n", argv[0]);
    return 2;
  }
  const int fd = ::open(argv[3], O_WRONLY | O_APPEND | O_CREAT, 0644);
  if (fd < 0) {
    std::perror(argv[3]);
    return 1;
  }
  sluice::bus bus;
  auto sub = bus.subscribe<test::order_paid>([fd](const test::order_paid& p) {
    char line[32];
    const int n =
        std::snprintf(line, sizeof line, "%llu\n", static_cast<unsigned long long>(p.order));
    if (::write(fd, line, static_cast<std::size_t>(n)) != n) std::abort();
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  });
  if (!bus.run(1)) return 1;
  sluice::nats_source_options o;
  o.url = argv[1];
  o.stream = "ORDERS";
  o.durable = argv[2];
  o.batch = 50;
  o.ack_wait = std::chrono::seconds(2);
  sluice::storage_error err;
  auto in = sluice::nats_source::open(bus, test::order_codecs(), o, err);
  if (in == nullptr) {
    std::fprintf(stderr, "%s\n", err.describe().c_str());
    return 1;
  }
  for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
}
