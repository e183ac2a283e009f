// nats_orders — the sending half of the NATS example: an order service whose
// bus sends every order_placed and order_paid event to the JetStream stream
// SHOP (subjects shop.<type>.<partition>, four partitions by order id)
// through a recorder over a nats_sink. It keeps sending while the server is
// killed and restarted: the sink sends again what was not acknowledged, and
// the stream keeps one copy of each.
//
//   nats_orders --url nats://127.0.0.1:4222 [--orders N] [--rate ORDERS_PER_S]
//
// Exits 0 once the server has acknowledged every event, 1 if it has not
// within a minute.
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <sluice/bridge/nats.hpp>
#include <sluice/sluice.hpp>
#include <thread>

#include "shop.hpp"

int main(int argc, char** argv) {
  const shop::args a{argc, argv};
  const std::string url = a.text("--url", "nats://127.0.0.1:4222");
  const std::uint64_t orders = a.number("--orders", 10000);
  const std::uint64_t rate = a.number("--rate", 5000);
  if (orders == 0) a.usage("--orders must be at least 1");

  sluice::nats_options o;
  o.url = url;
  o.stream = shop::stream;
  o.subject_prefix = shop::prefix;
  o.partitions = shop::partitions;
  o.origin = "order-service";
  o.ack_wait = std::chrono::milliseconds(500);
  sluice::storage_error err;
  auto out = sluice::nats_sink::open(o, err);
  if (!out) {
    std::fprintf(stderr, "nats_orders: %s\n", err.describe().c_str());
    return 2;
  }
  sluice::nats_sink* sink = out.get();
  sluice::record_options ro;
  ro.sync = sluice::sync_policy::interval;  // publishing stays asynchronous
  auto rec = std::make_shared<sluice::recorder>(std::move(out), shop::codecs(), ro);

  sluice::bus bus;
  if (const char* why = bus.record(rec)) {
    std::fprintf(stderr, "nats_orders: %s\n", why);
    return 2;
  }
  bus.run(1);
  auto p = bus.make_producer();
  const auto start = std::chrono::steady_clock::now();
  for (std::uint64_t id = 1; id <= orders; ++id) {
    if (rate != 0)  // paced, so that the server's restart falls mid-stream
      std::this_thread::sleep_until(start + std::chrono::microseconds(id * 1'000'000 / rate));
    p.publish(shop::order_placed{id, static_cast<std::uint32_t>(id % 97),
                                 1 + static_cast<std::uint32_t>(id % 5)},
              id);
    p.publish(shop::order_paid{id, static_cast<std::int64_t>(id % 5 + 1) * 999}, id);
  }
  bus.stop();
  // Until the server has acknowledged everything (it may be restarting).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(1);
  sluice::storage_error e = rec->sync();
  while (e && std::chrono::steady_clock::now() < deadline) e = rec->sync();
  std::printf("order service: %" PRIu64 " orders, %" PRIu64
              " events acknowledged by the server, %" PRIu64 " sent again, %" PRIu64
              " copies dropped by the stream\n",
              orders, sink->acknowledged(), sink->sent_again(), sink->duplicates());
  if (e) {
    std::fprintf(stderr, "nats_orders: %s\n", e.describe().c_str());
    return 1;
  }
  return 0;
}
