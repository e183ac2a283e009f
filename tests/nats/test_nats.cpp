// The NATS JetStream bridge, outbound (bridge/nats.hpp), against a real
// nats-server that each test starts on a free loopback port with a temporary
// store folder and stops itself.
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <sluice/bridge/nats.hpp>
#include <sluice/sluice.hpp>
#include <sluice/storage.hpp>
#include <string>
#include <thread>
#include <vector>

#include "../support.hpp"
#include "nats_server.hpp"
#include "orders.hpp"
#include "plain_client.hpp"

namespace {
using namespace test;  // orders.hpp

// The sink's record numbers (the end of each message id), in the stream's
// order, are they increasing? The stream keeps the sink's order through
// failures: a message sent again never lands after a later one.
bool in_sink_order(const std::vector<stored_msg>& msgs, const std::string& id_prefix) {
  std::uint64_t last = 0;
  bool first = true;
  for (const stored_msg& m : msgs) {
    if (m.id.rfind(id_prefix, 0) != 0) return false;
    const std::uint64_t n = std::stoull(m.id.substr(id_prefix.size()));
    if (!first && n <= last) {
      UNSCOPED_INFO("record " << n << " stored after record " << last);
      return false;
    }
    first = false;
    last = n;
  }
  return true;
}

// Syncs the recorder (every record acknowledged, or the test fails) and
// reads the stream back.
std::vector<stored_msg> synced_stream(sluice::recorder& rec, const test::nats_server& server,
                                      const char* stream) {
  const sluice::storage_error e = rec.sync();
  INFO(e.describe());
  REQUIRE_FALSE(e);
  plain_client reader(server.url());
  REQUIRE(reader.ok());
  return reader.all(stream);
}

template <class T>
T decode(const std::string& data) {
  T v{};
  REQUIRE(data.size() == sizeof(T));
  std::memcpy(&v, data.data(), sizeof(T));
  return v;
}

}  // namespace

TEST_CASE("nats: bad options are refused with a clear error", "[nats]") {
  sluice::storage_error err;
  sluice::nats_options o;
  o.subject_prefix = "orders.*";
  CHECK(sluice::nats_sink::open(o, err) == nullptr);
  CHECK(err.code == sluice::storage_errc::bad_option);
  CHECK(err.message.find("subject_prefix") != std::string::npos);
  o = {};
  o.max_in_flight = 0;
  CHECK(sluice::nats_sink::open(o, err) == nullptr);
  CHECK(err.message.find("max_in_flight") != std::string::npos);
  o = {};
  o.stream = "has.dot";
  CHECK(sluice::nats_sink::open(o, err) == nullptr);
  CHECK(err.message.find("stream") != std::string::npos);
  o = {};
  o.subject_prefix = "a..b";
  CHECK(sluice::nats_sink::open(o, err) == nullptr);
  CHECK(err.message.find("subject_prefix") != std::string::npos);
  o = {};
  o.ack_wait = std::chrono::milliseconds(0);
  CHECK(sluice::nats_sink::open(o, err) == nullptr);
  CHECK(err.code == sluice::storage_errc::bad_option);
}

TEST_CASE("nats: a bus's events reach the stream with their headers, keys and partitions",
          "[nats]") {
  test::watchdog wd(std::chrono::seconds(120), "nats round trip");
  test::nats_server server;
  REQUIRE(server.start());
  sluice::nats_options o;
  o.url = server.url();
  o.stream = "ORDERS";
  o.subject_prefix = "shop";
  o.partitions = 4;
  o.origin = "order-service";
  auto sink = open_sink(o);
  sluice::nats_sink* out = sink.get();
  auto rec = std::make_shared<sluice::recorder>(std::move(sink), order_codecs());
  constexpr int orders = 500;
  {
    sluice::bus bus;
    REQUIRE(bus.record(rec) == nullptr);
    REQUIRE(bus.run(2));
    std::vector<std::thread> producers;
    for (int t = 0; t < 2; ++t)
      producers.emplace_back([&bus, t] {
        auto p = bus.make_producer();
        for (int i = t; i < orders; i += 2) {
          const auto id = static_cast<std::uint64_t>(i);
          p.publish(order_placed{id, static_cast<std::uint32_t>(i % 7 + 1)}, id);
          p.publish(order_paid{id, i * 100}, id);
        }
      });
    for (auto& t : producers) t.join();
    REQUIRE(bus.stop());
  }
  REQUIRE_FALSE(rec->sync());
  CHECK(out->acknowledged() == 2 * orders);
  CHECK(out->failed() == 0);

  plain_client reader(server.url());
  REQUIRE(reader.ok());
  const std::vector<stored_msg> msgs = reader.all("ORDERS");
  REQUIRE(msgs.size() == 2 * orders);
  std::set<std::string> ids;
  // Per key: placed before paid, and both on the same partition subject.
  std::map<std::uint64_t, std::vector<std::string>> per_order;
  std::map<std::uint64_t, std::string> partition_of;
  for (const stored_msg& m : msgs) {
    ids.insert(m.id);
    CHECK(m.id.rfind(out->id_prefix(), 0) == 0);
    const std::uint64_t key = std::stoull(m.key);
    const std::string part = m.subject.substr(m.subject.rfind('.') + 1);
    CHECK(std::stoul(part) < 4);
    if (partition_of.count(key) != 0) CHECK(partition_of[key] == part);
    partition_of[key] = part;
    per_order[key].push_back(m.type);
    if (m.type == "order_placed") {
      CHECK(m.subject == "shop.order_placed." + part);
      CHECK(m.version == "1");
      const auto e = decode<order_placed>(m.data);
      CHECK(e.order == key);
      CHECK(e.items == key % 7 + 1);
    } else {
      REQUIRE(m.type == "order_paid");
      CHECK(m.version == "2");
      const auto e = decode<order_paid>(m.data);
      CHECK(e.order == key);
      CHECK(e.cents == static_cast<std::int64_t>(key) * 100);
    }
    CHECK_FALSE(m.producer.empty());
  }
  CHECK(ids.size() == msgs.size());  // every id distinct
  REQUIRE(per_order.size() == static_cast<std::size_t>(orders));
  for (const auto& [key, types] : per_order)
    CHECK(types == std::vector<std::string>{"order_placed", "order_paid"});
}

TEST_CASE("nats: the server killed and restarted mid-stream loses nothing acknowledged", "[nats]") {
  test::watchdog wd(std::chrono::seconds(240), "nats server killed");
  test::nats_server server;
  REQUIRE(server.start());
  auto [out, rec] = open_bridge(options_for(server, "EVENTS", std::chrono::milliseconds(300)));
  constexpr int total = 3000;
  int synced_before_kill = 0;
  for (int i = 0; i < total; ++i) {
    REQUIRE(rec->write(order_paid{static_cast<std::uint64_t>(i), i}));
    if (i == 999) {
      REQUIRE_FALSE(rec->sync());  // the first thousand are acknowledged
      synced_before_kill = i + 1;
      // The server acknowledges before its file store writes: wait until the
      // last acknowledged message is in a file, so that the crash takes
      // nothing the server said it had.
      REQUIRE(test::wait_until([&] { return server.stored_on_disk(out->id_prefix() + "999"); },
                               std::chrono::milliseconds(60000)));
      server.kill(SIGKILL);  // a crash; the stream goes on without it
    }
    if (i == 1499) {
      // Down until the sink knows the connection is lost (it finds out as
      // it publishes or syncs): what is written meanwhile waits; then back on
      // the same port and store, and the sync in progress succeeds.
      std::thread syncer([&] { CHECK_FALSE(rec->sync()); });
      const bool missing = test::wait_until([&] { return out->connections_lost() > 0; },
                                            std::chrono::milliseconds(60000));
      const bool back = server.start();
      syncer.join();
      REQUIRE(missing);
      REQUIRE(back);
    }
  }
  // Everything is acknowledged once the server is back (sent again as needed).
  const std::vector<stored_msg> msgs = synced_stream(*rec, server, "EVENTS");
  std::set<std::uint64_t> orders;
  std::set<std::string> ids;
  for (const stored_msg& m : msgs) {
    orders.insert(decode<order_paid>(m.data).order);
    ids.insert(m.id);
  }
  CHECK(synced_before_kill == 1000);
  CHECK(ids.size() == msgs.size());  // duplicates were removed by id
  CHECK(in_sink_order(msgs, out->id_prefix()));
  CHECK(msgs.size() == static_cast<std::size_t>(total));
  CHECK(orders.size() == static_cast<std::size_t>(total));  // every event, once
  CHECK(out->failed() == 0);
  CHECK(out->connections_lost() >= 1);
}

TEST_CASE("nats: the server killed with messages in flight: the stream keeps the sink's order",
          "[nats]") {
  test::watchdog wd(std::chrono::seconds(240), "nats order through a crash");
  test::nats_server server;
  REQUIRE(server.start());
  auto [out, rec] = open_bridge(options_for(server, "ORDER", std::chrono::milliseconds(300)));
  // The server is frozen first: what the writer sends from then on reaches
  // its socket and is never read, so the crash surely takes messages in
  // flight, and the sink has found out (their ack_wait passed). Then it is
  // killed, and comes back once the sink knows the connection is lost; what
  // is written meanwhile waits. Messages lost with the crash are sent
  // again: none may land after a later one.
  std::atomic<bool> restarted{false};
  std::atomic<std::uint64_t> written{0};
  std::uint64_t acked_at_kill = 0;
  bool killed = false, missing = false, lost = false, back = false;
  std::thread killer([&] {
    killed = test::wait_until([&] { return out->acknowledged() >= 1500; },
                              std::chrono::milliseconds(60000));
    server.pause();
    missing = test::wait_until([&] { return out->not_acknowledged() > 0; },
                               std::chrono::milliseconds(60000));
    acked_at_kill = out->acknowledged();  // records 0 .. acked_at_kill - 1
    server.kill(SIGKILL);
    lost = test::wait_until([&] { return out->connections_lost() > 0; },
                            std::chrono::milliseconds(60000));
    back = server.start();
    restarted = true;
  });
  std::uint64_t after_restart = 0;
  for (std::uint64_t i = 0; after_restart < 2000 && i < 2000000; ++i) {
    if (!rec->write(order_paid{i, static_cast<int>(i)})) break;
    written = i + 1;
    if (restarted) ++after_restart;
    if (i % 64 == 63) std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  killer.join();
  REQUIRE(killed);
  REQUIRE(missing);
  REQUIRE(lost);
  REQUIRE(back);
  REQUIRE(after_restart == 2000);
  const std::vector<stored_msg> msgs = synced_stream(*rec, server, "ORDER");
  std::set<std::string> ids;
  std::set<std::uint64_t> offsets;
  for (const stored_msg& m : msgs) {
    ids.insert(m.id);
    offsets.insert(std::stoull(m.id.substr(out->id_prefix().size())));
  }
  CHECK(ids.size() == msgs.size());
  CHECK(in_sink_order(msgs, out->id_prefix()));
  // Some were lost with the crash (sent while the server was frozen) and
  // stored only when sent again, not found as copies.
  CHECK(out->sent_again() > out->duplicates());
  CHECK(out->failed() == 0);
  // Every record not acknowledged before the crash is there. (What the
  // server had acknowledged but not yet written to its files may have gone
  // with it: the sink does not send those again.)
  std::uint64_t absent = 0;
  for (std::uint64_t o = acked_at_kill; o < written; ++o) absent += offsets.count(o) == 0 ? 1 : 0;
  CHECK(absent == 0);
  CHECK(offsets.size() <= written);
}

TEST_CASE(
    "nats: a sink closed unused, a server restarted before the first write, a stream not named",
    "[nats]") {
  test::watchdog wd(std::chrono::seconds(120), "nats idle connections");
  test::nats_server server;
  REQUIRE(server.start());
  {  // connected at its opening, closed without a message sent
    auto unused = open_sink(options_for(server, "IDLE"));
    CHECK(unused->acknowledged() == 0);
  }
  // The connection made at the opening dies before anything is sent on it:
  // the first write finds out, and the sink makes a new one.
  auto [out, rec] = open_bridge(options_for(server, "IDLE", std::chrono::milliseconds(300)));
  server.kill(SIGTERM);
  REQUIRE(server.start());
  for (int i = 0; i < 10; ++i) REQUIRE(rec->write(order_paid{static_cast<std::uint64_t>(i), i}));
  std::vector<stored_msg> msgs = synced_stream(*rec, server, "IDLE");
  CHECK(msgs.size() == 10);
  CHECK(in_sink_order(msgs, out->id_prefix()));
  CHECK(out->connections_lost() >= 1);
  CHECK(out->failed() == 0);
  // A sink not told the stream's name writes into the stream that captures
  // its subjects (made above) without looking it up.
  sluice::nats_options unnamed = options_for(server, "IDLE");
  unnamed.stream.clear();
  auto [out2, rec2] = open_bridge(unnamed);
  for (int i = 10; i < 15; ++i) REQUIRE(rec2->write(order_paid{static_cast<std::uint64_t>(i), i}));
  msgs = synced_stream(*rec2, server, "IDLE");
  CHECK(msgs.size() == 15);
  CHECK(out2->acknowledged() == 5);
}

TEST_CASE("nats: a server that comes late: the buffer's full behaviour applies, then it recovers",
          "[nats]") {
  test::watchdog wd(std::chrono::seconds(180), "nats server late");
  test::nats_server server;  // not started yet
  sluice::record_options ro = sync_when_asked();
  ro.buffer_bytes = 4096;
  ro.when_full = sluice::full_behaviour::drop;
  auto [out, rec] = open_bridge(options_for(server, "LATE", std::chrono::milliseconds(300)), ro);
  int kept = 0;
  for (int i = 0; i < 2000; ++i) kept += rec->write(order_paid{static_cast<std::uint64_t>(i), i});
  const sluice::recorder_stats before = rec->stats();
  CHECK(before.dropped > 0);  // the buffer filled while nobody listened
  CHECK(before.dropped + static_cast<std::uint64_t>(kept) == 2000);
  REQUIRE(server.start());
  const sluice::storage_error e = rec->sync();
  INFO(e.describe());
  REQUIRE_FALSE(e);
  // New records go through again (ten at a time: well within the buffer).
  for (int i = 2000; i < 2100; ++i) {
    REQUIRE(rec->write(order_paid{static_cast<std::uint64_t>(i), i}));
    if (i % 10 == 9) REQUIRE_FALSE(rec->sync());
  }
  plain_client reader(server.url());
  REQUIRE(reader.ok());
  const std::vector<stored_msg> msgs = reader.all("LATE");
  CHECK(msgs.size() == static_cast<std::size_t>(kept) + 100);  // what was kept, and nothing more
  std::set<std::uint64_t> orders;
  for (const stored_msg& m : msgs) orders.insert(decode<order_paid>(m.data).order);
  CHECK(orders.size() == msgs.size());
  CHECK(orders.count(2099) == 1);
}

TEST_CASE("nats: acknowledgements that do not come: messages sent again are stored once",
          "[nats]") {
  test::watchdog wd(std::chrono::seconds(180), "nats lost acknowledgements");
  test::nats_server server;
  REQUIRE(server.start());
  sluice::record_options ro = sync_when_asked();
  ro.linger = std::chrono::microseconds(0);
  auto [out, rec] = open_bridge(options_for(server, "AGAIN", std::chrono::milliseconds(200)), ro);
  REQUIRE(rec->write(order_paid{0, 0}));
  REQUIRE_FALSE(rec->sync());  // the stream exists and answers
  // Frozen: the messages reach its socket, nothing is answered for ack_wait,
  // so the sink takes them back and sends them again (the writer does it as
  // it syncs); thawed, it reads both copies.
  server.pause();
  for (int i = 1; i <= 200; ++i) REQUIRE(rec->write(order_paid{static_cast<std::uint64_t>(i), i}));
  REQUIRE_FALSE(rec->flush());
  std::thread syncer([&] { CHECK_FALSE(rec->sync()); });
  const bool unanswered = test::wait_until([&] { return out->not_acknowledged() > 0; },
                                           std::chrono::milliseconds(60000));
  const bool resent = unanswered && test::wait_until([&] { return out->sent_again() > 0; },
                                                     std::chrono::milliseconds(60000));
  server.resume();  // (in any case: the syncer must be able to end)
  syncer.join();
  REQUIRE(unanswered);
  REQUIRE(resent);
  plain_client reader(server.url());
  REQUIRE(reader.ok());
  const std::vector<stored_msg> msgs = reader.all("AGAIN");
  std::set<std::uint64_t> orders;
  for (const stored_msg& m : msgs) orders.insert(decode<order_paid>(m.data).order);
  CHECK(msgs.size() == 201);  // once each, although sent more than once
  CHECK(orders.size() == 201);
  CHECK(in_sink_order(msgs, out->id_prefix()));
  CHECK(out->duplicates() > 0);  // the stream said so for the copies
}

TEST_CASE("nats: a message the client refuses for good is counted, and the stream goes on",
          "[nats]") {
  test::watchdog wd(std::chrono::seconds(120), "nats refused");
  test::nats_server server;
  REQUIRE(server.start());
  // A codec name that is not one subject token: the sink refuses the record.
  auto types = std::make_shared<sluice::codecs>();
  types->add<order_paid>("bad*name", 1, sluice::memcpy_codec<order_paid>{});
  types->add<order_placed>("order_placed", 1, sluice::memcpy_codec<order_placed>{});
  auto [out, rec] = open_bridge(options_for(server, "REFUSE"), sync_when_asked(), types);
  REQUIRE(rec->write(order_placed{1, 1}));
  REQUIRE(rec->write(order_paid{2, 2}));
  REQUIRE(rec->write(order_placed{3, 1}));
  const sluice::storage_error e = rec->sync();
  CHECK(e);  // the refusal is reported
  CHECK(out->failed() == 1);
  CHECK(out->acknowledged() == 2);
  plain_client reader(server.url());
  REQUIRE(reader.ok());
  const std::vector<stored_msg> msgs = reader.all("REFUSE");
  REQUIRE(msgs.size() == 2);
  CHECK(decode<order_placed>(msgs[0].data).order == 1);
  CHECK(decode<order_placed>(msgs[1].data).order == 3);
}

TEST_CASE("nats: a server that never comes: the append gives up after handover_timeout, reported",
          "[nats]") {
  test::watchdog wd(std::chrono::seconds(120), "nats never");
  test::nats_server server;  // never started
  sluice::nats_options o = options_for(server, "NEVER", std::chrono::milliseconds(100));
  o.handover_timeout = std::chrono::milliseconds(200);
  auto [out, rec] = open_bridge(o);
  for (int i = 0; i < 5; ++i) REQUIRE(rec->write(order_paid{static_cast<std::uint64_t>(i), i}));
  const sluice::storage_error e = rec->flush();  // the writer tried, and gave up
  INFO(e.describe());
  CHECK(e);
  CHECK(e.message.find("handover_timeout") != std::string::npos);
  const sluice::recorder_stats st = rec->stats();
  CHECK(st.failed == 5);  // lost, and said so: nothing acknowledged
  CHECK(st.synced == 0);
  CHECK(out->acknowledged() == 0);
  CHECK(rec->acknowledge_losses() == 5);
  CHECK_FALSE(rec->flush());  // once acknowledged, no longer reported
}

TEST_CASE("nats: acknowledgements later than sync_timeout: sync fails, nothing is taken back",
          "[nats]") {
  test::watchdog wd(std::chrono::seconds(180), "nats sync timeout");
  test::nats_server server;
  REQUIRE(server.start());
  sluice::nats_options o = options_for(server, "SLOW");
  o.sync_timeout = std::chrono::milliseconds(300);
  auto [out, rec] = open_bridge(o);
  REQUIRE(rec->write(order_paid{0, 0}));
  REQUIRE_FALSE(rec->sync());  // the stream exists and answers
  server.pause();              // no acknowledgement can come now
  for (int i = 1; i <= 10; ++i) REQUIRE(rec->write(order_paid{static_cast<std::uint64_t>(i), i}));
  const sluice::storage_error late = rec->sync();
  server.resume();
  INFO(late.describe());
  CHECK(late);  // not acknowledged within sync_timeout
  CHECK(late.message.find("sync_timeout") != std::string::npos);
  const sluice::recorder_stats st = rec->stats();
  CHECK(st.synced == 1);     // the first record only
  CHECK(st.unsynced == 10);  // their fate unknown: counted, reported
  // Once the program has seen the loss, a sync succeeds again, and the ten
  // arrive all the same (the sink kept them, and sends them again if their
  // acknowledgement was lost meanwhile).
  CHECK(rec->acknowledge_losses() == 10);
  REQUIRE(rec->write(order_paid{11, 11}));
  CHECK_FALSE(rec->sync());
  CHECK(out->acknowledged() == 12);
  plain_client reader(server.url());
  REQUIRE(reader.ok());
  CHECK(reader.all("SLOW").size() == 12);
}
