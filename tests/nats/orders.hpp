// What the NATS bridge tests share: two order events with their codecs, and
// a nats_sink under a recorder (the outbound side) on a test server.
#pragma once

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <sluice/bridge/nats.hpp>
#include <sluice/sluice.hpp>
#include <sluice/storage.hpp>
#include <utility>

#include "nats_server.hpp"

namespace test {

struct order_placed {
  std::uint64_t order;
  std::uint32_t items;
  std::uint32_t pad = 0;
};
struct order_paid {
  std::uint64_t order;
  std::int64_t cents;
};

inline std::shared_ptr<const sluice::codecs> order_codecs() {
  auto c = std::make_shared<sluice::codecs>();
  c->add<order_placed>("order_placed", 1, sluice::memcpy_codec<order_placed>{});
  c->add<order_paid>("order_paid", 2, sluice::memcpy_codec<order_paid>{});
  return c;
}

inline std::unique_ptr<sluice::nats_sink> open_sink(const sluice::nats_options& o) {
  sluice::storage_error err;
  auto s = sluice::nats_sink::open(o, err);
  INFO(err.describe());
  REQUIRE(s != nullptr);
  return s;
}

// Options for a sink on `server`'s stream `stream`.
inline sluice::nats_options options_for(
    const test::nats_server& server, const char* stream,
    std::chrono::milliseconds ack_wait = std::chrono::seconds(2)) {
  sluice::nats_options o;
  o.url = server.url();
  o.stream = stream;
  o.ack_wait = ack_wait;
  return o;
}

// A recorder over a nats_sink, syncing only when asked (unless `ro` says).
struct bridge {
  sluice::nats_sink* out = nullptr;  // owned by the recorder
  std::shared_ptr<sluice::recorder> rec;
};
inline sluice::record_options sync_when_asked() {
  sluice::record_options ro;
  ro.sync = sluice::sync_policy::never;
  return ro;
}
inline bridge open_bridge(const sluice::nats_options& o,
                          sluice::record_options ro = sync_when_asked(),
                          std::shared_ptr<const sluice::codecs> types = order_codecs()) {
  auto sink = open_sink(o);
  bridge b;
  b.out = sink.get();
  b.rec = std::make_shared<sluice::recorder>(std::move(sink), std::move(types), std::move(ro));
  return b;
}

}  // namespace test
