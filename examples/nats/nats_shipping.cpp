// nats_shipping — the receiving half of the NATS example: a shipping service
// whose bus is fed from the JetStream stream SHOP by a nats_source (durable
// consumer "shipping"). An order is shipped once it is placed and paid, and
// only once however often a message is delivered (at least once). Each
// order's events come in publication order (one key, one partition; the
// order service's sink keeps its order through the server's crash). A
// consumer that must never act out of order still guards itself: a payment
// that came before its order (a message the server handed out just before
// it crashed and hands out again later, say) would be held until the order
// comes, and counted. Expect 0.
//
//   nats_shipping --url nats://127.0.0.1:4222 [--orders N] [--timeout SECONDS]
//
// Exits 0 when all N orders were shipped once each, after being placed and
// paid, and no message was bad; 1 otherwise.
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <mutex>
#include <sluice/bridge/nats.hpp>
#include <sluice/sluice.hpp>
#include <thread>
#include <unordered_map>

#include "shop.hpp"

namespace {
struct order_state {
  bool placed = false, paid = false, shipped = false;
};
}  // namespace

int main(int argc, char** argv) {
  const shop::args a{argc, argv};
  const std::string url = a.text("--url", "nats://127.0.0.1:4222");
  const std::uint64_t orders = a.number("--orders", 10000);
  const std::uint64_t timeout = a.number("--timeout", 60);

  std::mutex mutex;
  std::unordered_map<std::uint64_t, order_state> state;
  std::uint64_t shipped = 0, held = 0, again = 0;

  sluice::nats_failures failures;
  sluice::bus_options bo;
  bo.on_failure = failures.observer();
  sluice::bus bus(bo);
  // One key per order: its events are handled one at a time, in the order
  // they came.
  auto ship = [&](order_state& s) {
    if (s.placed && s.paid && !s.shipped) {
      s.shipped = true;
      ++shipped;
    }
  };
  auto placed = bus.subscribe<shop::order_placed>([&](const shop::order_placed& e) {
    std::lock_guard<std::mutex> lock(mutex);
    order_state& s = state[e.order];
    if (s.placed) ++again;  // delivered again
    s.placed = true;
    ship(s);
  });
  auto paid = bus.subscribe<shop::order_paid>([&](const shop::order_paid& e) {
    std::lock_guard<std::mutex> lock(mutex);
    order_state& s = state[e.order];
    if (s.paid) ++again;               // delivered again: shipped once already
    if (!s.placed && !s.paid) ++held;  // before its order: held until it comes
    s.paid = true;
    ship(s);
  });
  bus.run(2);

  sluice::nats_source_options o;
  o.url = url;
  o.stream = shop::stream;
  o.durable = "shipping";
  o.ack_wait = std::chrono::seconds(2);
  o.dedupe_window = 4096;
  o.on_error = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  sluice::storage_error err;
  auto in = sluice::nats_source::open(bus, shop::codecs(), o, err, failures);
  if (!in) {
    std::fprintf(stderr, "nats_shipping: %s\n", err.describe().c_str());
    return 2;
  }
  // Until every order is shipped (the stream may not exist yet: the order
  // service makes it; the source waits for it).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout);
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (shipped == orders) break;
    }
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  in->close();
  bus.stop();
  const sluice::nats_source_counts c = in->counts();
  std::lock_guard<std::mutex> lock(mutex);
  std::printf("shipping: %" PRIu64 " of %" PRIu64
              " orders shipped, each once, after being placed and "
              "paid; %" PRIu64
              " payments came before their order "
              "and were held; %" PRIu64 " events delivered again and ignored (%" PRIu64
              " more removed by the dedupe window); %" PRIu64 " bad messages\n",
              shipped, orders, held, again, c.duplicates, c.bad());
  return shipped == orders && c.bad() == 0 ? 0 : 1;
}
