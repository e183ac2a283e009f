// The NATS JetStream bridge, inbound (bridge/nats_source.hpp): a stream read
// into a bus, against a real nats-server started by each test.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sluice/bridge/nats.hpp>
#include <sluice/sluice.hpp>
#include <sluice/storage.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "../support.hpp"
#include "nats_server.hpp"
#include "orders.hpp"
#include "plain_client.hpp"

namespace {
using namespace test;  // orders.hpp

// An event of any size, with a codec of its own.
struct note {
  std::string text;
};
struct note_codec {
  void encode(const note& n, sluice::byte_writer& out) const {
    out.put(static_cast<std::uint32_t>(n.text.size()));
    out.append(n.text);
  }
  sluice::decoded<note> decode(sluice::byte_view in, std::uint32_t) const {
    sluice::byte_reader r(in);
    std::uint32_t n = 0;
    note v;
    if (!r.get(n) || !r.string(n, v.text) || !r.done())
      return sluice::decode_failure("a note is a length and that many bytes");
    return v;
  }
};
std::shared_ptr<const sluice::codecs> codecs_with_notes() {
  auto c = std::make_shared<sluice::codecs>();
  c->add<order_placed>("order_placed", 1, sluice::memcpy_codec<order_placed>{});
  c->add<order_paid>("order_paid", 2, sluice::memcpy_codec<order_paid>{});
  c->add<note>("note", 1, note_codec{});
  return c;
}

sluice::nats_source_options source_options(const nats_server& server, const char* durable) {
  sluice::nats_source_options o;
  o.url = server.url();
  o.stream = "ORDERS";
  o.durable = durable;
  o.ack_wait = std::chrono::seconds(5);
  return o;
}

std::unique_ptr<sluice::nats_source> open_source(
    sluice::bus& b, const sluice::nats_source_options& o,
    std::shared_ptr<const sluice::codecs> types = order_codecs(),
    sluice::nats_failures failures = sluice::nats_failures()) {
  sluice::storage_error err;
  auto s = sluice::nats_source::open(b, std::move(types), o, err, std::move(failures));
  INFO(err.describe());
  REQUIRE(s != nullptr);
  return s;
}

// Runs `publish` on a bus that records into the stream ORDERS through a
// nats_sink (with `partitions`), and waits for the server to acknowledge `n`
// messages.
template <class Publish>
void fill_with(const nats_server& server, std::uint32_t partitions, std::uint64_t n,
               Publish&& publish) {
  sluice::nats_options o = options_for(server, "ORDERS");
  o.partitions = partitions;
  bridge out = open_bridge(o);
  sluice::bus bus;
  REQUIRE(bus.record(out.rec) == nullptr);
  REQUIRE(bus.run(2));
  publish(bus);
  REQUIRE(bus.stop());
  INFO(out.rec->last_error().describe());
  REQUIRE_FALSE(out.rec->sync());
  REQUIRE(out.out->acknowledged() == n);
}

// order_paid{first..first+n-1, cents = id * 10}, keyed by id % 16.
void fill(const nats_server& server, std::uint64_t first, std::uint64_t n) {
  fill_with(server, 0, n, [&](sluice::bus& bus) {
    auto p = bus.make_producer();
    for (std::uint64_t id = first; id < first + n; ++id)
      REQUIRE(p.publish(order_paid{id, static_cast<std::int64_t>(id * 10)}, id % 16) ==
              sluice::publish_result::ok);
  });
}

std::string bytes_of(const order_paid& p) {
  return std::string(reinterpret_cast<const char*>(&p), sizeof p);
}

// What a consuming bus saw of order_paid events.
struct paid_log {
  std::mutex mutex;
  std::vector<order_paid> events;
  std::vector<sluice::metadata> meta;
  void add(const order_paid& p, const sluice::metadata& m) {
    std::lock_guard<std::mutex> lock(mutex);
    events.push_back(p);
    meta.push_back(m);
  }
  std::size_t size() {
    std::lock_guard<std::mutex> lock(mutex);
    return events.size();
  }
  // Subscribes to order_paid on `b`, each call taking `cost`.
  sluice::subscription subscribe(sluice::bus& b,
                                 std::chrono::microseconds cost = std::chrono::microseconds(0)) {
    return b.subscribe<order_paid>([this, cost](sluice::event_view<order_paid> v) {
      add(*v, v.meta());
      if (cost.count() != 0) std::this_thread::sleep_for(cost);
    });
  }
  std::set<std::uint64_t> ids() {
    std::lock_guard<std::mutex> lock(mutex);
    std::set<std::uint64_t> out;
    for (const order_paid& p : events) out.insert(p.order);
    return out;
  }
};

std::set<std::uint64_t> range(std::uint64_t first, std::uint64_t n) {
  std::set<std::uint64_t> out;
  for (std::uint64_t i = first; i < first + n; ++i) out.insert(i);
  return out;
}

}  // namespace

TEST_CASE("nats source: bad options are refused with a clear error", "[nats]") {
  sluice::bus bus;
  sluice::storage_error err;
  sluice::nats_source_options o;
  o.durable = "d";
  CHECK(sluice::nats_source::open(bus, order_codecs(), o, err) == nullptr);
  CHECK(err.code == sluice::storage_errc::bad_option);
  CHECK(err.message.find("stream") != std::string::npos);
  o.stream = "S";
  o.durable = "has.dot";
  CHECK(sluice::nats_source::open(bus, order_codecs(), o, err) == nullptr);
  CHECK(err.message.find("durable") != std::string::npos);
  o.durable = "d";
  o.batch = 0;
  CHECK(sluice::nats_source::open(bus, order_codecs(), o, err) == nullptr);
  CHECK(err.message.find("batch") != std::string::npos);
  o.batch = 10;
  o.ack_wait = std::chrono::milliseconds(10);
  CHECK(sluice::nats_source::open(bus, order_codecs(), o, err) == nullptr);
  CHECK(err.message.find("ack_wait") != std::string::npos);
  o.ack_wait = std::chrono::seconds(1);
  o.filter_subject = "a..b";
  CHECK(sluice::nats_source::open(bus, order_codecs(), o, err) == nullptr);
  CHECK(err.message.find("filter_subject") != std::string::npos);
  o.filter_subject.clear();
  CHECK(sluice::nats_source::open(bus, nullptr, o, err) == nullptr);
  CHECK(err.message.find("codecs") != std::string::npos);
}

TEST_CASE("nats: events cross from one bus to another with their types, keys and payloads",
          "[nats]") {
  test::watchdog wd(std::chrono::seconds(120), "nats bus to bus");
  nats_server server;
  REQUIRE(server.start());
  const auto types = codecs_with_notes();
  constexpr std::uint64_t orders = 300, notes = 100;
  {  // the sending bus
    sluice::nats_options o = options_for(server, "ORDERS");
    o.partitions = 3;
    bridge out = open_bridge(o, sync_when_asked(), types);
    sluice::bus bus;
    REQUIRE(bus.record(out.rec) == nullptr);
    REQUIRE(bus.run(2));
    auto p = bus.make_producer();
    for (std::uint64_t i = 0; i < orders; ++i) {
      p.publish(order_placed{i, static_cast<std::uint32_t>(i % 9 + 1)}, i);
      p.publish(order_paid{i, static_cast<std::int64_t>(i) * 7}, i);
    }
    for (std::uint64_t i = 0; i < notes; ++i)  // no key; 0 to 2970 bytes
      p.publish(
          note{std::string(static_cast<std::size_t>(i * 30), static_cast<char>('a' + i % 26))});
    REQUIRE(bus.stop());
    REQUIRE_FALSE(out.rec->sync());
    REQUIRE(out.out->acknowledged() == 2 * orders + notes);
  }
  // The receiving bus, with a recorder of its own: it must store none of
  // the bridged events (nothing would be sent back).
  sluice::bus bus;
  auto kept = std::make_unique<sluice::memory_sink>(4096);
  sluice::memory_sink* kept_view = kept.get();
  auto rec = std::make_shared<sluice::recorder>(std::move(kept), types);
  REQUIRE(bus.record(rec) == nullptr);
  std::mutex mutex;
  std::map<std::uint64_t, std::uint32_t> placed;
  std::map<std::uint64_t, std::int64_t> paid;
  std::vector<std::string> texts;
  std::atomic<int> wrong_meta{0};
  auto s1 = bus.subscribe<order_placed>([&](sluice::event_view<order_placed> v) {
    if (!v.meta().bridged || !v.meta().has_key || v.meta().key != v->order) ++wrong_meta;
    std::lock_guard<std::mutex> lock(mutex);
    placed[v->order] += v->items;
  });
  auto s2 = bus.subscribe<order_paid>([&](sluice::event_view<order_paid> v) {
    if (!v.meta().bridged || !v.meta().has_key || v.meta().key != v->order) ++wrong_meta;
    std::lock_guard<std::mutex> lock(mutex);
    paid[v->order] += v->cents;
  });
  auto s3 = bus.subscribe<note>([&](sluice::event_view<note> v) {
    if (!v.meta().bridged || v.meta().has_key) ++wrong_meta;
    std::lock_guard<std::mutex> lock(mutex);
    texts.push_back(v->text);
  });
  REQUIRE(bus.run(2));
  auto in = open_source(bus, source_options(server, "all"), types);
  REQUIRE(test::wait_until([&] { return in->counts().acknowledged == 2 * orders + notes; },
                           std::chrono::seconds(60)));
  in->close();
  REQUIRE(bus.stop());
  const sluice::nats_source_counts c = in->counts();
  CHECK(c.published == 2 * orders + notes);
  CHECK(c.bad() == 0);
  CHECK(c.failed == 0);
  CHECK(wrong_meta == 0);
  REQUIRE(placed.size() == orders);
  REQUIRE(paid.size() == orders);
  for (std::uint64_t i = 0; i < orders; ++i) {
    CHECK(placed[i] == i % 9 + 1);  // each exactly once
    CHECK(paid[i] == static_cast<std::int64_t>(i) * 7);
  }
  REQUIRE(texts.size() == notes);
  std::multiset<std::string> want, got(texts.begin(), texts.end());
  for (std::uint64_t i = 0; i < notes; ++i)
    want.insert(std::string(static_cast<std::size_t>(i * 30), static_cast<char>('a' + i % 26)));
  CHECK(got == want);
  REQUIRE_FALSE(rec->sync());
  CHECK(kept_view->appended() == 0);
  CHECK(rec->stats().unrecorded == 0);  // not stored by choice, not for want of a codec
}

TEST_CASE("nats: bad messages are terminated, counted and logged, and the flow goes on", "[nats]") {
  test::watchdog wd(std::chrono::seconds(120), "nats bad messages");
  nats_server server;
  REQUIRE(server.start());
  plain_client raw(server.url());
  REQUIRE(raw.ok());
  REQUIRE(raw.make_stream());
  const std::string good1 = bytes_of(order_paid{1, 10}), good2 = bytes_of(order_paid{2, 20});
  using headers = std::vector<std::pair<const char*, std::string>>;
  REQUIRE(raw.publish("sluice.order_paid", good1,
                      headers{{"Sluice-Type", "order_paid"}, {"Sluice-Version", "2"}}));
  REQUIRE(raw.publish("sluice.order_paid", good1, headers{}));  // no headers
  REQUIRE(raw.publish("sluice.order_paid", good1, headers{{"Sluice-Type", "order_paid"}}));
  REQUIRE(raw.publish("sluice.order_paid", good1,
                      headers{{"Sluice-Type", "order_paid"}, {"Sluice-Version", "1"}}));
  REQUIRE(raw.publish("sluice.order_paid", "garbage",
                      headers{{"Sluice-Type", "order_paid"}, {"Sluice-Version", "2"}}));
  REQUIRE(raw.publish("sluice.refund", good1,
                      headers{{"Sluice-Type", "refund"}, {"Sluice-Version", "1"}}));
  REQUIRE(raw.publish(
      "sluice.order_paid", good1,
      headers{{"Sluice-Type", "order_paid"}, {"Sluice-Version", "2"}, {"Sluice-Key", "12x"}}));
  REQUIRE(raw.publish(
      "sluice.order_paid", good2,
      headers{{"Sluice-Type", "order_paid"}, {"Sluice-Version", "2"}, {"Sluice-Key", "5"}}));

  sluice::bus bus;
  paid_log log;
  auto sub = log.subscribe(bus);
  REQUIRE(bus.run(1));
  std::mutex lines_mutex;
  std::vector<std::string> lines;
  sluice::nats_source_options o = source_options(server, "bad");
  o.on_error = [&](const std::string& line) {
    std::lock_guard<std::mutex> lock(lines_mutex);
    lines.push_back(line);
  };
  auto in = open_source(bus, o);
  REQUIRE(
      test::wait_until([&] { return in->counts().acknowledged == 2 && in->counts().bad() == 6; },
                       std::chrono::seconds(30)));
  // Each is settled on the server: nothing held, nothing left to deliver.
  REQUIRE(test::wait_until(
      [&] {
        std::uint64_t held = 1, pending = 1;
        return raw.consumer_state("bad", held, pending) && held == 0 && pending == 0;
      },
      std::chrono::seconds(30)));
  in->close();
  const sluice::nats_source_counts c = in->counts();
  CHECK(c.malformed == 3);
  CHECK(c.unknown_type == 1);
  CHECK(c.undecodable == 2);
  CHECK(c.published == 2);
  REQUIRE(log.size() == 2);
  CHECK(log.events[0].order == 1);
  CHECK(!log.meta[0].has_key);
  CHECK(log.events[1].order == 2);
  CHECK(log.meta[1].has_key);
  CHECK(log.meta[1].key == 5);
  std::lock_guard<std::mutex> lock(lines_mutex);
  REQUIRE(lines.size() == 6);
  for (const std::string& l : lines) {
    CHECK(l.find("terminated") != std::string::npos);
    CHECK(l.find("sluice: nats source bad: message ") == 0);
  }
  CHECK(lines[0].find("Sluice-Type") != std::string::npos);
  CHECK(lines[2].find("another version") != std::string::npos);
  CHECK(lines[3].find("does not decode") != std::string::npos);
  CHECK(lines[4].find("refund") != std::string::npos);
  CHECK(lines[5].find("Sluice-Key") != std::string::npos);
}

TEST_CASE("nats: a failed handler has its message delivered again, until max_deliver", "[nats]") {
  test::watchdog wd(std::chrono::seconds(120), "nats nak");
  nats_server server;
  REQUIRE(server.start());
  constexpr std::uint64_t n = 40;
  fill(server, 0, n);
  sluice::nats_failures failures;
  sluice::bus_options bo;
  bo.on_failure = failures.observer();
  sluice::bus bus(bo);
  std::mutex mutex;
  std::map<std::uint64_t, int> calls;
  auto sub = bus.subscribe<order_paid>([&](const order_paid& p) -> sluice::outcome {
    int k = 0;
    {
      std::lock_guard<std::mutex> lock(mutex);
      k = ++calls[p.order];
    }
    if (p.order == 7 && k == 1) return sluice::outcome::failure(1, "not yet");
    if (p.order == 9) return sluice::outcome::failure(2, "never");
    return sluice::outcome::success();
  });
  REQUIRE(bus.run(2));
  sluice::nats_source_options o = source_options(server, "retrying");
  o.nak_delay = std::chrono::milliseconds(50);
  o.max_deliver = 3;
  std::atomic<int> lines{0};
  o.on_error = [&](const std::string& l) {
    if (l.find("max_deliver 3") != std::string::npos) ++lines;
  };
  auto in = open_source(bus, o, order_codecs(), failures);
  REQUIRE(test::wait_until(
      [&] { return in->counts().acknowledged == n - 1 && in->counts().gave_up == 1; },
      std::chrono::seconds(60)));
  in->close();
  REQUIRE(bus.stop());
  const sluice::nats_source_counts c = in->counts();
  CHECK(c.failed == 1 + 3);
  CHECK(c.redelivery == 1 + 2);
  CHECK(lines == 1);
  std::lock_guard<std::mutex> lock(mutex);
  REQUIRE(calls.size() == n);
  for (const auto& kv : calls) {
    INFO(kv.first);
    CHECK(kv.second == (kv.first == 7 ? 2 : kv.first == 9 ? 3 : 1));
  }
  CHECK(bus.stats<order_paid>().failed == 4);
}

TEST_CASE(
    "nats: a source opened again with its durable name resumes after the last "
    "acknowledged message",
    "[nats]") {
  test::watchdog wd(std::chrono::seconds(120), "nats resume");
  nats_server server;
  REQUIRE(server.start());
  fill(server, 0, 100);
  sluice::bus bus;
  paid_log log;
  auto sub = log.subscribe(bus);
  REQUIRE(bus.run(1));
  {
    auto in = open_source(bus, source_options(server, "resuming"));
    REQUIRE(test::wait_until([&] { return in->counts().acknowledged == 100; },
                             std::chrono::seconds(60)));
  }
  CHECK(log.ids() == range(0, 100));
  fill(server, 100, 50);
  auto again = open_source(bus, source_options(server, "resuming"));
  REQUIRE(test::wait_until([&] { return again->counts().acknowledged == 50; },
                           std::chrono::seconds(60)));
  // Another durable name reads the stream from its start: 150 were there.
  auto fresh = open_source(bus, source_options(server, "fresh"));
  REQUIRE(test::wait_until([&] { return fresh->counts().acknowledged == 150; },
                           std::chrono::seconds(60)));
  again->close();
  fresh->close();
  REQUIRE(bus.stop());
  CHECK(again->counts().received == 50);  // none of the first 100 again
  CHECK(log.size() == 100 + 50 + 150);
  CHECK(log.ids() == range(0, 150));
}

TEST_CASE("nats: a full bus stops the fetching, nothing is dropped, and keys keep their order",
          "[nats]") {
  test::watchdog wd(std::chrono::seconds(120), "nats backpressure");
  nats_server server;
  REQUIRE(server.start());
  constexpr std::uint64_t n = 1500;
  fill(server, 0, n);
  sluice::bus_options bo;
  bo.lanes = 2;
  bo.lane_capacity = 8;
  sluice::bus bus(bo);
  paid_log log;
  auto sub = log.subscribe(bus, std::chrono::microseconds(50));
  REQUIRE(bus.run(1));
  sluice::nats_source_options o = source_options(server, "slow");
  o.batch = 64;
  auto in = open_source(bus, o);
  REQUIRE(
      test::wait_until([&] { return in->counts().acknowledged == n; }, std::chrono::seconds(90)));
  in->close();
  REQUIRE(bus.stop());
  CHECK(bus.stats<order_paid>().dropped == 0);
  CHECK(log.ids() == range(0, n));
  CHECK(log.size() == n);
  std::map<std::uint64_t, std::uint64_t> last;  // key -> last order seen
  for (const order_paid& p : log.events) {
    const std::uint64_t key = p.order % 16;
    auto it = last.find(key);
    if (it != last.end()) CHECK(it->second < p.order);
    last[key] = p.order;
  }
}

TEST_CASE("nats: per-key order end to end: 4 producers, consumers per partition", "[nats]") {
  test::watchdog wd(std::chrono::seconds(180), "nats partitions");
  nats_server server;
  REQUIRE(server.start());
  constexpr int producers = 4, per_producer = 400, keys_per_producer = 8;
  constexpr std::uint32_t partitions = 4;
  constexpr std::uint64_t total = producers * per_producer;
  fill_with(server, partitions, total, [&](sluice::bus& bus) {
    std::vector<std::thread> threads;
    for (int t = 0; t < producers; ++t)
      threads.emplace_back([&bus, t] {
        auto p = bus.make_producer();
        for (int i = 0; i < per_producer; ++i) {
          // order = key * 1'000'000 + its number within the key
          const auto key =
              static_cast<std::uint64_t>(t * keys_per_producer + i % keys_per_producer);
          const auto nth = static_cast<std::uint64_t>(i / keys_per_producer);
          p.publish(order_paid{key * 1'000'000 + nth, 0}, key);
        }
      });
    for (auto& t : threads) t.join();
  });
  // Two consuming buses (two services), each reading two partitions.
  struct service {
    sluice::bus bus;
    paid_log log;
    sluice::subscription sub;
    std::vector<std::unique_ptr<sluice::nats_source>> in;
  };
  std::vector<std::unique_ptr<service>> services;
  for (std::uint32_t s = 0; s < 2; ++s) {
    auto svc = std::make_unique<service>();
    service* sv = svc.get();
    sv->sub = sv->log.subscribe(sv->bus);
    REQUIRE(sv->bus.run(2));
    for (std::uint32_t part = s * 2; part < s * 2 + 2; ++part) {
      const std::string durable = "part" + std::to_string(part);
      sluice::nats_source_options o = source_options(server, durable.c_str());
      o.filter_subject = "sluice.*." + std::to_string(part);
      o.batch = 32;
      sv->in.push_back(open_source(sv->bus, o));
    }
    services.push_back(std::move(svc));
  }
  REQUIRE(test::wait_until(
      [&] {
        std::uint64_t acked = 0;
        for (auto& s : services)
          for (auto& in : s->in) acked += in->counts().acknowledged;
        return acked == total;
      },
      std::chrono::seconds(90)));
  std::map<std::uint64_t, std::vector<std::uint64_t>> by_key;
  for (auto& s : services) {
    for (auto& in : s->in) in->close();
    REQUIRE(s->bus.stop());
    for (std::size_t i = 0; i < s->log.events.size(); ++i) {
      const std::uint64_t order = s->log.events[i].order;
      CHECK(s->log.meta[i].key == order / 1'000'000);
      by_key[order / 1'000'000].push_back(order % 1'000'000);
    }
  }
  REQUIRE(by_key.size() == static_cast<std::size_t>(producers * keys_per_producer));
  for (const auto& kv : by_key) {
    INFO("key " << kv.first);
    REQUIRE(kv.second.size() == per_producer / keys_per_producer);
    for (std::size_t i = 0; i < kv.second.size(); ++i) CHECK(kv.second[i] == i);
  }
  // Each service read only its own partitions.
  CHECK(services[0]->log.size() + services[1]->log.size() == total);
  CHECK(services[0]->log.size() > 0);
  CHECK(services[1]->log.size() > 0);
}

TEST_CASE("nats: the server killed mid-stream: the source goes on after the restart", "[nats]") {
  test::watchdog wd(std::chrono::seconds(180), "nats source and a killed server");
  nats_server server;
  REQUIRE(server.start());
  constexpr std::uint64_t n = 2000;
  fill(server, 0, n);
  // What the server acknowledged is on its disk before it is killed.
  REQUIRE(test::wait_until(
      [&] {
        return server.stored_on_disk(bytes_of(order_paid{n - 1, (n - 1) * 10}));
      },
      std::chrono::seconds(30)));
  sluice::bus bus;
  paid_log log;
  auto sub = log.subscribe(bus, std::chrono::microseconds(100));
  REQUIRE(bus.run(1));
  sluice::nats_source_options o = source_options(server, "survivor");
  o.batch = 50;
  o.ack_wait = std::chrono::seconds(2);
  auto in = open_source(bus, o);
  REQUIRE(test::wait_until([&] { return log.size() >= 300; }, std::chrono::seconds(60)));
  server.kill(SIGKILL);
  const std::size_t before = log.size();
  REQUIRE(server.start());
  REQUIRE(test::wait_until([&] { return log.ids() == range(0, n); }, std::chrono::seconds(120)));
  in->close();
  REQUIRE(bus.stop());
  CHECK(before < n);       // the kill came mid-stream
  CHECK(log.size() >= n);  // duplicates allowed (at least once), losses not
}

namespace {
// The consuming process of the crash test (consumer_main.cpp).
class consumer_process {
 public:
  consumer_process(const std::string& url, const std::string& durable, const std::string& file) {
    pid_ = ::fork();
    if (pid_ == 0) {
      ::execl(SLUICE_NATS_CONSUMER, SLUICE_NATS_CONSUMER, url.c_str(), durable.c_str(),
              file.c_str(), static_cast<char*>(nullptr));
      std::_Exit(127);
    }
  }
  consumer_process(const consumer_process&) = delete;
  consumer_process& operator=(const consumer_process&) = delete;
  ~consumer_process() { kill(); }
  [[nodiscard]] bool started() const noexcept { return pid_ > 0; }
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
};

// The order ids a consumer process wrote, one per line (a torn last line,
// being written when the process was killed, is not counted).
std::vector<std::uint64_t> lines_of(const std::string& file) {
  std::ifstream in(file);
  std::vector<std::uint64_t> out;
  std::string line;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // no newline: torn
    out.push_back(std::stoull(line));
  }
  return out;
}
}  // namespace

TEST_CASE(
    "nats: the consuming process killed mid-stream resumes at its last acknowledged "
    "message, losing nothing",
    "[nats]") {
  test::watchdog wd(std::chrono::seconds(180), "nats consumer killed");
  nats_server server;
  REQUIRE(server.start());
  constexpr std::uint64_t n = 3000;
  fill(server, 0, n);
  char tmpl[] = "/tmp/sluice-consumer-XXXXXX";
  const int fd = ::mkstemp(tmpl);
  REQUIRE(fd >= 0);
  ::close(fd);
  const std::string file = tmpl;
  std::size_t at_kill = 0;
  {
    consumer_process first(server.url(), "shipping", file);
    REQUIRE(first.started());
    // Mid-batch (batches of 50): some events handled, their batch not acknowledged.
    REQUIRE(test::wait_until([&] { return lines_of(file).size() >= n / 5 + 10; },
                             std::chrono::seconds(60)));
    first.kill();
    at_kill = lines_of(file).size();
  }
  consumer_process second(server.url(), "shipping", file);
  REQUIRE(second.started());
  REQUIRE(test::wait_until(
      [&] {
        const std::vector<std::uint64_t> got = lines_of(file);
        return std::set<std::uint64_t>(got.begin(), got.end()) == range(0, n);
      },
      std::chrono::seconds(120)));
  second.kill();
  const std::vector<std::uint64_t> got = lines_of(file);
  std::remove(file.c_str());
  INFO("written at the kill: " << at_kill << ", in all: " << got.size());
  CHECK(at_kill < n);  // killed mid-stream
  // It resumed where it was, not from the start: at most the batch it held
  // (and the one being acknowledged) came again.
  CHECK(got.size() >= n);
  CHECK(got.size() - n <= 100);
}

TEST_CASE(
    "nats: a bus that stops under a source: it stops fetching, and another reader gets "
    "every message at once",
    "[nats]") {
  test::watchdog wd(std::chrono::seconds(120), "nats bus stopped");
  nats_server server;
  REQUIRE(server.start());
  constexpr std::uint64_t n = 200;
  fill(server, 0, n);
  std::atomic<int> refusals{0};
  {
    sluice::bus bus;  // nobody drains it: nothing is ever settled
    sluice::nats_source_options o = source_options(server, "orphan");
    o.ack_wait = std::chrono::seconds(60);  // what is not handed back comes in a minute
    o.on_error = [&](const std::string& l) {
      if (l.find("the bus refuses events") != std::string::npos) ++refusals;
    };
    auto in = open_source(bus, o);
    REQUIRE(
        test::wait_until([&] { return in->counts().published == n; }, std::chrono::seconds(30)));
    REQUIRE(bus.stop(sluice::stop_mode::discard));
    REQUIRE(test::wait_until([&] { return refusals.load() == 1; }, std::chrono::seconds(30)));
    const sluice::nats_source_counts c = in->counts();
    in->close();
    CHECK(c.acknowledged == 0);
    CHECK(c.redelivery >= n);  // every message it held went back
    CHECK(refusals == 1);      // said once
  }
  sluice::bus bus;
  paid_log log;
  auto sub = log.subscribe(bus);
  REQUIRE(bus.run(1));
  auto again = open_source(bus, source_options(server, "orphan"));
  // Well within the minute of ack_wait: they were handed back, not abandoned.
  REQUIRE(test::wait_until([&] { return again->counts().acknowledged == n; },
                           std::chrono::seconds(30)));
  again->close();
  REQUIRE(bus.stop());
  CHECK(log.ids() == range(0, n));
}

TEST_CASE(
    "nats: a publish that throws on the source's thread hands its message back, and the "
    "rest goes on",
    "[nats]") {
  test::watchdog wd(std::chrono::seconds(120), "nats source exception");
  nats_server server;
  REQUIRE(server.start());
  plain_client raw(server.url());
  REQUIRE(raw.ok());
  REQUIRE(raw.make_stream());
  using headers = std::vector<std::pair<const char*, std::string>>;
  const headers no_key{{"Sluice-Type", "order_paid"}, {"Sluice-Version", "2"}};
  REQUIRE(raw.publish("sluice.order_paid", bytes_of(order_paid{1, 10}), no_key));
  REQUIRE(raw.publish("sluice.order_paid", bytes_of(order_paid{2, 20}), no_key));  // same batch
  sluice::bus bus;
  // Keys events published without one; throws for order 1 (on the source's
  // thread, inside its publish).
  REQUIRE(bus.key<order_paid>([](const order_paid& p) -> sluice::key_type {
    if (p.order == 1) throw std::runtime_error("no key for order 1");
    return p.order;
  }) == nullptr);
  paid_log log;
  auto sub = log.subscribe(bus);
  REQUIRE(bus.run(1));
  std::atomic<int> threw{0};
  sluice::nats_source_options o = source_options(server, "throwing");
  o.nak_delay = std::chrono::milliseconds(20);
  o.on_error = [&](const std::string& l) {
    if (l.find("publishing its event threw; handed back") != std::string::npos) ++threw;
  };
  auto in = open_source(bus, o);
  REQUIRE(test::wait_until([&] { return threw.load() >= 2; }, std::chrono::seconds(30)));
  // Handed back, so delivered again (and failing again); the message after
  // it in the batch is delivered, and the thread lives on.
  REQUIRE(test::wait_until([&] { return log.ids().count(2) == 1; }, std::chrono::seconds(30)));
  REQUIRE(raw.publish("sluice.order_paid", bytes_of(order_paid{3, 30}), no_key));
  REQUIRE(test::wait_until([&] { return log.ids().count(3) == 1; }, std::chrono::seconds(30)));
  in->close();
  REQUIRE(bus.stop());
  CHECK(log.ids().count(1) == 0);
  CHECK(in->counts().failed >= 2);
  CHECK(in->counts().redelivery >= 2);
}
