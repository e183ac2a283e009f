// Storage: codecs, the record format, sinks, the recorder attached to a bus,
// reading, replay (event sourcing) and checkpoints.
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <sluice/storage.hpp>
#include <sluice/storage/json_sink.hpp>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "storage_support.hpp"
#include "support.hpp"

namespace {

struct small_ev {
  std::uint32_t id = 0;
};
struct big_ev {
  std::uint64_t id = 0;
  unsigned char bytes[200] = {};
};
struct order {
  std::uint64_t id = 0;
  std::int64_t qty = 0;
  std::int64_t price_cents = 0;
};
struct text_ev {
  std::string text;
  std::vector<std::uint32_t> numbers;
};
struct unstored {
  int x = 0;
};

// A codec of one's own: length-prefixed string and numbers. Version 2 adds
// the numbers; version 1 records (text only) still decode.
struct text_codec {
  void encode(const text_ev& e, sluice::byte_writer& out) const {
    out.put(static_cast<std::uint32_t>(e.text.size()));
    out.append(e.text);
    out.put(static_cast<std::uint32_t>(e.numbers.size()));
    for (std::uint32_t n : e.numbers) out.put(n);
  }
  sluice::decoded<text_ev> decode(sluice::byte_view in, std::uint32_t version) const {
    sluice::byte_reader r(in);
    text_ev e;
    std::uint32_t len = 0;
    if (!r.get(len) || !r.string(len, e.text)) return sluice::decode_failure("short text");
    if (version >= 2) {
      std::uint32_t n = 0;
      if (!r.get(n) || n > r.left() / 4) return sluice::decode_failure("bad count");
      e.numbers.resize(n);
      for (auto& v : e.numbers)
        if (!r.get(v)) return sluice::decode_failure("short numbers");
    }
    if (!r.done()) return sluice::decode_failure("trailing bytes");
    return e;
  }
};

// A codec of one's own that says its size, and the same codec without.
struct pair_ev {
  std::uint32_t a = 0;
  std::uint16_t b = 0;
};
struct sized_codec {
  static constexpr std::size_t encoded_size = 6;
  void encode(const pair_ev& e, sluice::byte_writer& out) const {
    out.put(e.a);
    out.put(e.b);
  }
  void encode_to(const pair_ev& e, unsigned char* out) const noexcept {
    sluice::storage::store_le(out, e.a);
    sluice::storage::store_le(out + 4, e.b);
  }
  sluice::decoded<pair_ev> decode(sluice::byte_view in, std::uint32_t) const {
    sluice::byte_reader r(in);
    pair_ev e;
    if (!r.get(e.a) || !r.get(e.b) || !r.done()) return sluice::decode_failure("bad pair");
    return e;
  }
};
struct unsized_codec : sized_codec {
  static constexpr int encoded_size = 6;  // not a std::size_t: not taken as a size
};

// Three members with padding after the last: stored with fields().
struct multi_ev {
  std::uint32_t a = 0;
  std::uint16_t b = 0;
  std::uint8_t c = 0;
};
// The same codec without encode_to: the byte_writer path.
template <class T, class Inner>
struct via_writer {
  Inner inner{};
  std::uint32_t version = 1;
  using version_set_by_add = void;
  void encode(const T& e, sluice::byte_writer& out) const { inner.encode(e, out); }
  auto decode(sluice::byte_view in, std::uint32_t v) const { return inner.decode(in, v); }
};
// Derived from memcpy_codec, with an encode of its own (the id only).
struct id_only_codec : sluice::memcpy_codec<order> {
  void encode(const order& o, sluice::byte_writer& out) const { out.put(o.id); }
  sluice::decoded<order> decode(sluice::byte_view in, std::uint32_t) const {
    sluice::byte_reader r(in);
    order o{};
    if (!r.get(o.id) || !r.done()) return sluice::decode_failure("bad id");
    return o;
  }
};
// Keeps every byte it is given (numbered from 0, the writer's time zeroed).
class capture_sink final : public sluice::sink {
 public:
  sluice::storage_error append(sluice::record_batch& b) override {
    b.number(next);
    next += b.size();
    const std::size_t at = bytes.size();
    bytes.insert(bytes.end(), b.data(), b.data() + b.bytes());
    for (std::size_t p = at; p < bytes.size();
         p += sluice::storage::frame_size + sluice::storage::load_le<std::uint32_t>(&bytes[p]))
      sluice::storage::store_le<std::int64_t>(&bytes[p + sluice::storage::frame_size + 8], 0);
    return {};
  }
  std::vector<unsigned char> bytes;
  std::uint64_t next = 0;
};

std::shared_ptr<sluice::codecs> make_types() {
  auto t = std::make_shared<sluice::codecs>();
  t->add<small_ev>("small");
  t->add<big_ev>("big", 3);
  t->add<order>("order");
  t->add<text_ev>("text", 2, text_codec{});
  return t;
}

std::unique_ptr<sluice::file_log> open_log(const std::string& dir,
                                           sluice::file_log_options o = {}) {
  o.dir = dir;
  sluice::storage_error err;
  auto log = sluice::file_log::open(std::move(o), err);
  INFO(err.describe());
  REQUIRE(log != nullptr);
  return log;
}

std::vector<sluice::owned_event> read_all(const std::string& dir, sluice::reader_options ro = {}) {
  sluice::storage_error err;
  auto r = sluice::log_reader::open(dir, std::move(ro), err);
  INFO(err.describe());
  REQUIRE(r != nullptr);
  std::vector<sluice::owned_event> out;
  sluice::stored_event e;
  sluice::read_status s;
  while ((s = r->next(e)) == sluice::read_status::event)
    out.push_back(sluice::owned_event::from(e));
  INFO(r->error().describe());
  REQUIRE(s == sluice::read_status::end);
  REQUIRE(r->pending_bytes() == 0);
  return out;
}

// A sink that keeps what it gets in memory and can be slowed down or made to fail.
class test_sink final : public sluice::sink {
 public:
  sluice::storage_error append(sluice::record_batch& b) override {
    std::unique_lock<std::mutex> lock(m);
    cv.wait(lock, [&] { return !paused; });
    if (fail_appends) return sluice::storage_error::make(sluice::storage_errc::io, "disk on fire");
    b.seal(next);
    next += b.size();
    appended.store(next);
    b.for_each(
        [&](const sluice::stored_event& e) { events.push_back(sluice::owned_event::from(e)); });
    return {};
  }
  sluice::storage_error sync() override {
    synced.store(appended.load());
    ++syncs;
    return {};
  }
  void pause(bool p) {
    {
      std::lock_guard<std::mutex> lock(m);
      paused = p;
    }
    cv.notify_all();
  }
  std::vector<sluice::owned_event> copy() {
    std::lock_guard<std::mutex> lock(m);
    return events;
  }

  std::mutex m;
  std::condition_variable cv;
  bool paused = false;
  std::atomic<bool> fail_appends{false};
  std::uint64_t next = 0;
  std::atomic<std::uint64_t> appended{0};
  std::atomic<std::uint64_t> synced{0};
  std::atomic<int> syncs{0};
  std::vector<sluice::owned_event> events;
};

sluice::metadata keyed(sluice::key_type k) {
  sluice::metadata m;
  m.has_key = true;
  m.key = k;
  return m;
}

}  // namespace

TEST_CASE("crc32c: known value, hardware and table agree on every length", "[storage]") {
  REQUIRE(sluice::detail::crc32c("123456789", 9) == 0xE3069283U);
  REQUIRE(sluice::detail::crc32c_portable(0, "123456789", 9) == 0xE3069283U);
  std::mt19937 rng(7);
  std::vector<unsigned char> buf(300);
  for (auto& b : buf) b = static_cast<unsigned char>(rng());
  for (std::size_t n = 0; n <= buf.size(); ++n) {
    REQUIRE(sluice::detail::crc32c(buf.data(), n) ==
            sluice::detail::crc32c_portable(0, buf.data(), n));
    // Continuing a CRC over two parts equals the CRC of the whole.
    const std::size_t half = n / 2;
    REQUIRE(sluice::detail::crc32c(sluice::detail::crc32c(buf.data(), half), buf.data() + half,
                                   n - half) == sluice::detail::crc32c(buf.data(), n));
  }
}

TEST_CASE("crc32c_x4: four checksums at once equal four single ones, whatever the lengths",
          "[storage]") {
  std::mt19937 rng(11);
  std::vector<unsigned char> buf(4 * 300 + 8);
  for (auto& b : buf) b = static_cast<unsigned char>(rng());
  for (int round = 0; round < 2000; ++round) {
    const unsigned char* p[4];
    std::size_t n[4];
    for (int k = 0; k < 4; ++k) {
      // Equal lengths half the time (a batch of one type), any otherwise.
      n[k] = round % 2 == 0 && k > 0 ? n[0] : rng() % 300;
      p[k] = buf.data() + 300 * k + (rng() % 4);  // n < 300: within the buffer
    }
    std::uint32_t out[4];
    sluice::detail::crc32c_x4(p, n, out);
    for (int k = 0; k < 4; ++k) REQUIRE(out[k] == sluice::detail::crc32c_portable(0, p[k], n[k]));
  }
}

TEST_CASE(
    "record_batch: seal numbers and checksums as seal_record does, and records without a "
    "time get the batch's in whichever way the sink reads them",
    "[storage]") {
  // Records of several lengths, every third without a time.
  auto make = [](std::size_t count, std::vector<unsigned char>& bytes, std::size_t& largest) {
    bytes.clear();
    largest = 0;
    for (std::size_t i = 0; i < count; ++i) {
      const std::size_t payload = (i * 7) % 23;
      const std::size_t head = sluice::storage::frame_size + sluice::storage::body_fixed + 4;
      const std::size_t start = bytes.size();
      bytes.resize(start + head + payload, static_cast<unsigned char>(i));
      sluice::metadata m{};
      m.key = i;
      m.has_key = i % 2 == 0;
      sluice::storage::begin_record(bytes.data() + start, i % 3 == 0 ? 0 : 1000 + i, m, 1, "tick");
      sluice::storage::set_length(bytes.data() + start,
                                  head - sluice::storage::frame_size + payload);
      largest = std::max(largest, head - sluice::storage::frame_size + payload);
    }
  };
  auto times = [](const unsigned char* p, std::size_t size) {
    std::vector<std::int64_t> out;
    for (const unsigned char* end = p + size; p < end;
         p += sluice::storage::frame_size + sluice::storage::load_le<std::uint32_t>(p))
      out.push_back(sluice::storage::load_le<std::int64_t>(p + sluice::storage::frame_size + 8));
    return out;
  };
  for (std::size_t count = 0; count <= 11; ++count) {
    std::vector<unsigned char> bytes, expected;
    std::size_t largest = 0;
    make(count, bytes, largest);
    // The reference: times filled, then each record sealed on its own.
    expected = bytes;
    std::vector<std::int64_t> want_times;
    {
      unsigned char* p = expected.data();
      for (std::size_t i = 0; i < count; ++i) {
        unsigned char* t = p + sluice::storage::frame_size + 8;
        if (sluice::storage::load_le<std::int64_t>(t) == 0)
          sluice::storage::store_le<std::int64_t>(t, 777);
        want_times.push_back(sluice::storage::load_le<std::int64_t>(t));
        sluice::storage::seal_record(p, 40 + i);
        p += sluice::storage::frame_size + sluice::storage::load_le<std::uint32_t>(p);
      }
    }
    INFO("records: " << count);
    {
      std::vector<unsigned char> b = bytes;
      sluice::record_batch batch(b.data(), b.size(), count);
      REQUIRE(batch.largest() == largest);  // found by a pass
      batch.set_time_of_unstamped(777);
      batch.seal(40);
      REQUIRE(b == expected);
      REQUIRE(times(batch.data(), batch.bytes()) == want_times);
    }
    {
      // number() fills the times in its pass; for_each then sees them.
      std::vector<unsigned char> b = bytes;
      sluice::record_batch batch(b, count);
      batch.set_time_of_unstamped(777);
      batch.number(40);
      std::vector<std::int64_t> seen;
      std::vector<std::uint64_t> offsets;
      batch.for_each([&](const sluice::stored_event& e) {
        seen.push_back(e.time_ns);
        offsets.push_back(e.offset);
      });
      REQUIRE(seen == want_times);
      for (std::size_t i = 0; i < offsets.size(); ++i) REQUIRE(offsets[i] == 40 + i);
    }
    {
      // A sink that only reads (data() or for_each) sees the times too.
      std::vector<unsigned char> b = bytes, c = bytes;
      sluice::record_batch read(b.data(), b.size(), count), each(c.data(), c.size(), count);
      read.set_time_of_unstamped(777);
      each.set_time_of_unstamped(777);
      REQUIRE(times(read.data(), read.bytes()) == want_times);
      std::vector<std::int64_t> seen;
      each.for_each([&](const sluice::stored_event& e) { seen.push_back(e.time_ns); });
      REQUIRE(seen == want_times);
      // Without a batch time, records keep time 0.
      std::vector<unsigned char> d = bytes;
      sluice::record_batch plain(d.data(), d.size(), count);
      plain.set_largest(largest);
      REQUIRE(plain.largest() == largest);
      REQUIRE(times(plain.data(), plain.bytes()) == times(bytes.data(), bytes.size()));
    }
  }
}

TEST_CASE("codecs: names and types are registered once, bad names are refused", "[storage]") {
  sluice::codecs t;
  REQUIRE(t.add<small_ev>("small") == nullptr);
  REQUIRE_THROWS_AS(t.add<order>("small"), std::invalid_argument);
  REQUIRE_THROWS_AS(t.add<small_ev>("other"), std::invalid_argument);
  REQUIRE_THROWS_AS(t.add<order>(""), std::invalid_argument);
  REQUIRE_THROWS_AS(t.add<order>("has space"), std::invalid_argument);
  REQUIRE_THROWS_AS(t.add<order>("quote\""), std::invalid_argument);
  REQUIRE_THROWS_AS(t.add<order>(std::string(256, 'a')), std::invalid_argument);
  REQUIRE(t.add<order>(std::string(255, 'a')) == nullptr);
  REQUIRE(t.size() == 2);
  REQUIRE(t.find<small_ev>() != nullptr);
  REQUIRE(t.find<small_ev>()->name == "small");
  REQUIRE(t.find("small") == t.find<small_ev>());
  REQUIRE(t.find<unstored>() == nullptr);
  REQUIRE(t.find("nope") == nullptr);
}

TEST_CASE("codecs: decoding errors are values", "[storage]") {
  auto t = make_types();
  std::vector<unsigned char> bytes(sizeof(order), 0);
  sluice::stored_event e;
  e.type = "order";
  e.version = 1;
  e.payload = {bytes.data(), bytes.size()};
  REQUIRE(t->decode<order>(e).ok());
  REQUIRE(t->decode<small_ev>(e).error().code == sluice::decode_errc::wrong_type);
  e.payload.size = sizeof(order) - 1;
  REQUIRE(t->decode<order>(e).error().code == sluice::decode_errc::wrong_size);
  e.payload.size = sizeof(order);
  e.version = 2;
  REQUIRE(t->decode<order>(e).error().code == sluice::decode_errc::unsupported_version);
  e.type = "missing";
  REQUIRE(t->decode<order>(e).error().code == sluice::decode_errc::unknown_type);
  // A user codec sees the version: version 1 has no numbers.
  std::vector<unsigned char> v1;
  sluice::byte_writer w(v1);
  w.put(std::uint32_t{2});
  w.append("hi");
  sluice::stored_event te;
  te.type = "text";
  te.version = 1;
  te.payload = {v1.data(), v1.size()};
  auto d = t->decode<text_ev>(te);
  REQUIRE(d.ok());
  REQUIRE(d->text == "hi");
  te.version = 2;  // the same bytes are short for version 2
  REQUIRE(t->decode<text_ev>(te).error().code == sluice::decode_errc::malformed);
}

TEST_CASE("file log: many types and sizes round-trip through recorder, log and reader",
          "[storage]") {
  test::temp_dir dir;
  auto types = make_types();
  std::mt19937 rng(42);
  std::vector<text_ev> texts;
  {
    sluice::record_options ro;
    ro.buffer_bytes = 64 << 10;  // small: the writer takes many batches
    sluice::recorder rec(open_log(dir.path()), types, ro);
    for (std::uint32_t i = 0; i < 3000; ++i) {
      switch (i % 4) {
        case 0:
          REQUIRE(rec.write(small_ev{i}));
          break;
        case 1: {
          big_ev b;
          b.id = i;
          for (auto& c : b.bytes) c = static_cast<unsigned char>(rng());
          REQUIRE(rec.write(b, keyed(i)));
          break;
        }
        case 2:
          REQUIRE(rec.write(order{i, -static_cast<std::int64_t>(i), 12345}, keyed(i % 10)));
          break;
        default: {
          text_ev t;
          t.text = std::string(rng() % 3 == 0 ? 0 : rng() % 5000, static_cast<char>('a' + i % 26));
          t.numbers.resize(rng() % 50);
          for (auto& n : t.numbers) n = static_cast<std::uint32_t>(rng());
          texts.push_back(t);
          REQUIRE(rec.write(t));
        }
      }
    }
    REQUIRE(!rec.write(unstored{1}));  // no codec: counted, not stored
    REQUIRE(rec.close().ok());
    const auto st = rec.stats();
    REQUIRE(st.recorded == 3000);
    REQUIRE(st.written == 3000);
    REQUIRE(st.unrecorded == 1);
    REQUIRE(st.failed == 0);
    REQUIRE(st.batches >= 2);
  }
  const auto events = read_all(dir.path());
  REQUIRE(events.size() == 3000);
  std::size_t ti = 0;
  for (std::uint32_t i = 0; i < 3000; ++i) {
    const auto& e = events[i];
    REQUIRE(e.offset == i);
    const auto v = e.view();
    switch (i % 4) {
      case 0:
        REQUIRE(e.type == "small");
        REQUIRE(types->decode<small_ev>(v)->id == i);
        REQUIRE(!e.has_key);
        break;
      case 1:
        REQUIRE(e.type == "big");
        REQUIRE(e.version == 3);
        REQUIRE(types->decode<big_ev>(v)->id == i);
        REQUIRE(e.has_key);
        REQUIRE(e.key == i);
        break;
      case 2: {
        auto o = types->decode<order>(v);
        REQUIRE(o.ok());
        REQUIRE(o->id == i);
        REQUIRE(o->qty == -static_cast<std::int64_t>(i));
        REQUIRE(e.key == i % 10);
        break;
      }
      default: {
        auto t = types->decode<text_ev>(v);
        REQUIRE(t.ok());
        REQUIRE(t->text == texts[ti].text);
        REQUIRE(t->numbers == texts[ti].numbers);
        ++ti;
      }
    }
  }
  // Reopening for writing continues the offsets.
  {
    sluice::recorder rec(open_log(dir.path()), types);
    REQUIRE(rec.write(small_ev{9999}));
  }
  const auto again = read_all(dir.path());
  REQUIRE(again.size() == 3001);
  REQUIRE(again.back().offset == 3000);
  REQUIRE(types->decode<small_ev>(again.back().view())->id == 9999);
}

TEST_CASE("file log: segments roll, retention deletes the oldest, readers start anywhere",
          "[storage]") {
  test::temp_dir dir;
  auto types = make_types();
  sluice::file_log_options fo;
  fo.segment_bytes = 8192;
  fo.retain_bytes = 40000;
  {
    sluice::record_options ro;
    ro.buffer_bytes = 4096;
    sluice::recorder rec(open_log(dir.path(), fo), types, ro);
    for (std::uint32_t i = 0; i < 5000; ++i) {
      REQUIRE(rec.write(order{i, 1, 1}, keyed(i % 3)));
      if (i % 50 == 0) REQUIRE(rec.flush().ok());  // many batches, many rolls
    }
  }
  const auto segs = test::segments(dir.path());
  REQUIRE(segs.size() >= 3);
  std::uintmax_t total = 0;
  for (const auto& s : segs) total += std::filesystem::file_size(s);
  REQUIRE(total <= 40000 + 8192 + 4096 + 1024);  // the limit plus the segment being written
  auto log = open_log(dir.path(), fo);
  const std::uint64_t first = log->first_offset();
  REQUIRE(first > 0);
  REQUIRE(log->next_offset() == 5000);
  log.reset();
  // Reading from before the oldest offset starts at the oldest.
  const auto all = read_all(dir.path());
  REQUIRE(all.front().offset == first);
  REQUIRE(all.back().offset == 4999);
  for (std::size_t i = 1; i < all.size(); ++i) REQUIRE(all[i].offset == all[i - 1].offset + 1);
  // From an offset, by type, by key.
  sluice::reader_options ro;
  ro.from = 4900;
  REQUIRE(read_all(dir.path(), ro).size() == 100);
  ro.key = 1;
  const auto k1 = read_all(dir.path(), ro);
  REQUIRE(!k1.empty());
  for (const auto& e : k1) REQUIRE((e.key == 1 && e.offset >= 4900));
  std::size_t expected_k1 = 0;
  for (std::uint32_t i = 4900; i < 5000; ++i) expected_k1 += i % 3 == 1 ? 1 : 0;
  REQUIRE(k1.size() == expected_k1);
  ro = {};
  ro.type = "small";
  REQUIRE(read_all(dir.path(), ro).empty());
}

TEST_CASE("file log: retention by age", "[storage]") {
  test::temp_dir dir;
  auto types = make_types();
  sluice::file_log_options fo;
  fo.segment_bytes = 4096;
  fo.retain_age = std::chrono::seconds(1);
  auto log = open_log(dir.path(), fo);
  auto* raw = log.get();
  sluice::recorder rec(std::move(log), types);
  for (std::uint32_t i = 0; i < 200; ++i) {
    REQUIRE(rec.write(order{i, 1, 1}));
    if (i % 20 == 19) REQUIRE(rec.flush().ok());  // batches: segments roll between them
  }
  const std::size_t before = test::segments(dir.path()).size();
  REQUIRE(before >= 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(1300));
  for (std::uint32_t i = 0; i < 300; ++i) {
    REQUIRE(rec.write(order{i, 1, 1}));
    if (i % 20 == 19) REQUIRE(rec.flush().ok());
  }
  // Every segment made before the pause (except possibly the one written across it) is gone.
  REQUIRE(raw->first_offset() >= 150);
  REQUIRE(read_all(dir.path()).back().offset == 499);
}

TEST_CASE("recorder: a bus records every accepted event in lane order, replay rebuilds state",
          "[storage]") {
  test::watchdog dog(std::chrono::seconds(60));
  test::temp_dir dir;
  auto types = make_types();
  std::map<std::uint64_t, std::int64_t> position;  // the state: qty per id % 16
  const int producers = 4, per = 5000;
  {
    sluice::bus b(sluice::bus_options{}.with_lanes(4).with_lane_capacity(256));
    auto rec = sluice::record_to_folder(b, dir.path(), types);
    INFO(rec.error.describe());
    REQUIRE(rec);
    REQUIRE(rec.recovered.empty());
    std::mutex m;
    auto sub = b.subscribe<order>([&](const order& o) {
      std::lock_guard<std::mutex> lock(m);
      position[o.id % 16] += o.qty;
    });
    REQUIRE(b.run(2));
    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p)
      threads.emplace_back([&b, p] {
        auto prod = b.make_producer();
        for (int i = 0; i < per; ++i) {
          const auto id = static_cast<std::uint64_t>(p * per + i);
          prod.publish(order{id, (i % 7) - 3, 100}, id % 16);
        }
      });
    for (auto& t : threads) t.join();
    REQUIRE(b.stop());
    const auto st = rec.rec->stats();
    REQUIRE(st.recorded == static_cast<std::uint64_t>(producers * per));
    REQUIRE(st.written == st.recorded);
    REQUIRE(st.synced == st.recorded);  // stop() syncs
  }
  const auto events = read_all(dir.path());
  REQUIRE(events.size() == static_cast<std::size_t>(producers * per));
  // Per producer and key, the log keeps publication order.
  std::map<std::pair<std::uint32_t, std::uint64_t>, std::uint64_t> last;
  for (const auto& e : events) {
    REQUIRE(e.has_key);
    const auto o = types->decode<order>(e.view());
    REQUIRE(o.ok());
    REQUIRE(e.key == o->id % 16);
    auto& prev = last[{e.producer, e.key}];
    REQUIRE((prev == 0 || o->id > prev));
    prev = o->id;
  }
  // Event sourcing: a new bus fed by replay reaches the same state.
  std::map<std::uint64_t, std::int64_t> rebuilt;
  sluice::bus b2(sluice::bus_options{}.with_lanes(2).with_lane_capacity(64));
  auto rec2 =
      sluice::record_to_folder(b2, dir.path(), types);  // replayed events are not stored again
  REQUIRE(rec2);
  std::atomic<int> seen_replayed{0};
  auto sub2 = b2.subscribe<order>([&](sluice::event_view<order> v) {
    rebuilt[v->id % 16] += v->qty;
    if (v.meta().replayed) ++seen_replayed;
  });
  const auto res = sluice::replay(dir.path(), b2, *types);  // no workers: replay polls
  INFO(res.error.describe());
  REQUIRE(res.ok());
  REQUIRE(res.published == static_cast<std::uint64_t>(producers * per));
  REQUIRE(res.next_offset == static_cast<std::uint64_t>(producers * per));
  b2.poll();
  REQUIRE(rebuilt == position);
  REQUIRE(seen_replayed == producers * per);
  REQUIRE(b2.stats<order>().delivered == static_cast<std::uint64_t>(producers * per));
  b2.publish(order{1, 5, 1});  // a new event after the replay is recorded
  REQUIRE(b2.stop());
  REQUIRE(rec2.rec->stats().recorded == 1);
  REQUIRE(read_all(dir.path()).size() == static_cast<std::size_t>(producers * per + 1));
}

TEST_CASE(
    "recorder: dispatch is recorded, discarded events are not, types without codec are counted",
    "[storage]") {
  auto sink = std::make_unique<test_sink>();
  auto* s = sink.get();
  auto rec = std::make_shared<sluice::recorder>(std::move(sink), make_types());
  sluice::bus b;
  REQUIRE(b.record(rec) == nullptr);
  REQUIRE_THROWS_AS(b.record(rec), std::logic_error);  // one recorder per bus
  int calls = 0;
  auto sub = b.subscribe<small_ev>([&](const small_ev&) { ++calls; });
  REQUIRE(b.dispatch(small_ev{1}) == 1);
  REQUIRE(b.dispatch(unstored{2}) == 0);
  REQUIRE(b.publish(small_ev{3}) == sluice::publish_result::ok);
  REQUIRE(b.publish(small_ev{4}) == sluice::publish_result::ok);
  REQUIRE(b.stop(sluice::stop_mode::discard));
  REQUIRE(calls == 1);
  REQUIRE(rec->flush().ok());
  const auto ev = s->copy();
  REQUIRE(ev.size() == 1);
  REQUIRE(ev[0].type == "small");
  REQUIRE(rec->stats().unrecorded == 1);
  // After the bus started, a recorder cannot be attached.
  sluice::bus started;
  started.publish(small_ev{1});
  REQUIRE_THROWS_AS(started.record(std::make_shared<sluice::recorder>(
                        std::make_unique<sluice::memory_sink>(4), make_types())),
                    std::logic_error);
}

TEST_CASE("recorder: durable_before_delivery delivers only synced events", "[storage]") {
  test::watchdog dog(std::chrono::seconds(60));
  auto sink = std::make_unique<test_sink>();
  auto* s = sink.get();
  sluice::record_options ro;
  ro.durable_before_delivery = true;
  ro.sync = sluice::sync_policy::never;  // the option forces the sync anyway
  auto rec = std::make_shared<sluice::recorder>(std::move(sink), make_types(), ro);
  sluice::bus b(sluice::bus_options{}.with_lanes(2));
  b.record(rec);
  std::atomic<std::uint64_t> delivered{0};
  std::atomic<int> early{0};
  auto sub = b.subscribe<small_ev>([&](const small_ev&) {
    const std::uint64_t n = delivered.fetch_add(1) + 1;
    if (s->synced.load() < n) ++early;  // delivered before it was durable
  });
  REQUIRE(b.run(2));
  for (std::uint32_t i = 0; i < 2000; ++i) b.publish(small_ev{i}, i % 5);
  REQUIRE(b.stop());
  REQUIRE(delivered == 2000);
  REQUIRE(early == 0);
  REQUIRE(s->syncs.load() >= 1);
}

TEST_CASE("recorder: a full buffer blocks or drops as chosen, and loses nothing it counts",
          "[storage]") {
  test::watchdog dog(std::chrono::seconds(60));
  for (const auto behaviour : {sluice::full_behaviour::block, sluice::full_behaviour::drop}) {
    auto sink = std::make_unique<test_sink>();
    auto* s = sink.get();
    s->pause(true);  // the writer is stuck in its first append
    sluice::record_options ro;
    ro.buffer_bytes = 4096;
    ro.when_full = behaviour;
    sluice::recorder rec(std::move(sink), make_types(), ro);
    std::atomic<int> done{0};
    std::thread writer([&] {
      for (std::uint32_t i = 0; i < 2000; ++i) {
        (void)rec.write(order{i, 1, 1});
        ++done;
      }
    });
    if (behaviour == sluice::full_behaviour::block) {
      // ~4 KiB of 69-byte records, twice (one buffer taken by the stuck writer).
      REQUIRE(test::wait_until([&] { return done.load() > 50; }));
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      REQUIRE(done.load() < 2000);  // waiting for room
    } else {
      REQUIRE(test::wait_until([&] { return done.load() == 2000; }));
    }
    s->pause(false);
    writer.join();
    REQUIRE(rec.flush().ok());
    const auto st = rec.stats();
    REQUIRE(st.recorded + st.dropped == 2000);
    REQUIRE(st.written == st.recorded);
    REQUIRE(s->copy().size() == st.recorded);
    if (behaviour == sluice::full_behaviour::block) {
      REQUIRE(st.dropped == 0);
    } else {
      REQUIRE(st.dropped > 0);
    }
    // What was kept is in order.
    const auto ev = s->copy();
    for (std::size_t i = 1; i < ev.size(); ++i) {
      const auto a = make_types()->decode<order>(ev[i - 1].view());
      const auto c = make_types()->decode<order>(ev[i].view());
      REQUIRE(a->id < c->id);
    }
  }
}

TEST_CASE("recorder: sink errors are reported and counted, delivery goes on", "[storage]") {
  auto sink = std::make_unique<test_sink>();
  sink->fail_appends = true;
  std::atomic<int> errors{0};
  sluice::record_options ro;
  ro.on_error = [&](const sluice::storage_error& e) {
    if (e.message == "disk on fire") ++errors;
  };
  auto rec = std::make_shared<sluice::recorder>(std::move(sink), make_types(), ro);
  sluice::bus b;
  b.record(rec);
  int calls = 0;
  auto sub = b.subscribe<small_ev>([&](const small_ev&) { ++calls; });
  for (std::uint32_t i = 0; i < 100; ++i) b.publish(small_ev{i});
  b.poll();
  REQUIRE(calls == 100);
  REQUIRE(!rec->flush().ok());
  const auto st = rec->stats();
  REQUIRE(st.failed == 100);
  REQUIRE(st.written == 0);
  REQUIRE(errors.load() >= 1);
  REQUIRE(rec->last_error().code == sluice::storage_errc::io);
}

TEST_CASE("recorder and log: impossible options are refused with a message", "[storage]") {
  sluice::record_options ro;
  ro.buffer_bytes = 10;
  REQUIRE(ro.validate() != nullptr);
  {
    sluice::record_options wal;
    wal.durable_before_delivery = true;
    REQUIRE(wal.validate() == nullptr);
    wal.when_full = sluice::full_behaviour::drop;  // a write-ahead log that drops: no
    REQUIRE(std::string(wal.validate()).find("durable_before_delivery") != std::string::npos);
  }
  REQUIRE_THROWS_AS(sluice::recorder(std::make_unique<sluice::memory_sink>(1), make_types(), ro),
                    std::invalid_argument);
  REQUIRE_THROWS_AS(sluice::recorder(nullptr, make_types()), std::invalid_argument);
  sluice::file_log_options fo;
  sluice::storage_error err;
  REQUIRE(sluice::file_log::open(fo, err) == nullptr);
  REQUIRE(err.code == sluice::storage_errc::bad_option);
  fo.dir = "/tmp";
  fo.segment_bytes = 10;
  REQUIRE(sluice::file_log::open(fo, err) == nullptr);
  REQUIRE(err.code == sluice::storage_errc::bad_option);
  fo.segment_bytes = std::size_t{2} << 30;  // recovery reads a segment into memory: at most 1 GiB
  REQUIRE(sluice::file_log::open(fo, err) == nullptr);
  REQUIRE(err.code == sluice::storage_errc::bad_option);
  REQUIRE(sluice::log_reader::open("/nonexistent/sluice/log", {}, err) == nullptr);
  REQUIRE(err.code == sluice::storage_errc::io);
}

TEST_CASE("store stage: stores what passed the filters before it", "[storage]") {
  auto ring = std::make_unique<sluice::memory_sink>(1000);
  auto* r = ring.get();
  auto rec = std::make_shared<sluice::recorder>(std::move(ring), make_types());
  sluice::bus b;
  b.stages<order>().filter([](const order& o) { return o.qty > 0; }).store(rec);
  int calls = 0;
  auto sub = b.subscribe<order>([&](const order&) { ++calls; });
  for (std::uint32_t i = 0; i < 100; ++i)
    b.publish(order{i, static_cast<std::int64_t>(i % 2), 1}, i);
  b.poll();
  REQUIRE(rec->flush().ok());
  REQUIRE(calls == 50);
  const auto ev = r->events();
  REQUIRE(ev.size() == 50);
  for (const auto& e : ev) {
    const auto o = make_types()->decode<order>(e.view());
    REQUIRE(o->qty == 1);
    REQUIRE(e.has_key);
    REQUIRE(e.key == o->id);  // the stage sees the metadata
  }
}

TEST_CASE(
    "codecs of one size write straight into the recorder's buffer, and the bytes are the "
    "same as through a byte_writer",
    "[storage]") {
  auto sized = std::make_shared<sluice::codecs>();
  sized->add<pair_ev>("pair", 1, sized_codec{});
  sized->add<order>("order");                                       // memcpy
  sized->add<small_ev>("small", 1, sluice::fields(&small_ev::id));  // fields()
  sized->add<text_ev>("text", 2, text_codec{});
  REQUIRE(sized->find<pair_ev>()->encode_fixed != nullptr);
  REQUIRE(sized->find<pair_ev>()->fixed_size == 6);
  REQUIRE(sized->find<order>()->fixed_size == sizeof(order));
  REQUIRE(sized->find<small_ev>()->fixed_size == sizeof(std::uint32_t));
  REQUIRE(sized->find<text_ev>()->encode_fixed == nullptr);
  auto unsized = std::make_shared<sluice::codecs>();
  unsized->add<pair_ev>("pair", 1, unsized_codec{});
  REQUIRE(unsized->find<pair_ev>()->encode_fixed == nullptr);

  // A codec derived from memcpy_codec with an encode of its own is not taken
  // for one of fixed size: its own encode writes the record.
  auto own = std::make_shared<sluice::codecs>();
  own->add<order>("order", 1, id_only_codec{});
  REQUIRE(own->find<order>()->encode_fixed == nullptr);
  {
    auto ring = std::make_unique<sluice::memory_sink>(4);
    auto* r = ring.get();
    sluice::recorder rec(std::move(ring), own);
    REQUIRE(rec.write(order{77, 1, 2}));
    REQUIRE(rec.flush().ok());
    REQUIRE(r->events().at(0).payload.size() == sizeof(std::uint64_t));
  }

  // Each kind of fixed-size codec, and the same codec through the
  // byte_writer path: whole records equal byte for byte (the writer's time
  // aside).
  auto records = [](std::shared_ptr<sluice::codecs> types, auto write_all) {
    auto sink = std::make_unique<capture_sink>();
    auto* c = sink.get();
    sluice::recorder rec(std::move(sink), types);
    write_all(rec);
    REQUIRE(rec.flush().ok());
    REQUIRE(rec.stats().recorded == 20);
    return c->bytes;
  };
  auto direct = std::make_shared<sluice::codecs>();
  direct->add<pair_ev>("pair", 1, sized_codec{});
  direct->add<order>("order");
  direct->add<multi_ev>("multi", 2, sluice::fields(&multi_ev::a, &multi_ev::b, &multi_ev::c));
  auto through = std::make_shared<sluice::codecs>();
  through->add<pair_ev>("pair", 1, unsized_codec{});
  through->add<order>("order", 1, via_writer<order, sluice::memcpy_codec<order>>{});
  through->add<multi_ev>(
      "multi", 2,
      via_writer<multi_ev, decltype(sluice::fields(&multi_ev::a, &multi_ev::b, &multi_ev::c))>{
          sluice::fields(&multi_ev::a, &multi_ev::b, &multi_ev::c)});
  REQUIRE(direct->find<multi_ev>()->fixed_size == 7);
  REQUIRE(through->find<multi_ev>()->encode_fixed == nullptr);
  REQUIRE(through->find<order>()->encode_fixed == nullptr);
  auto write_all = [](sluice::recorder& rec) {
    for (std::uint32_t i = 0; i < 20; ++i) {
      sluice::metadata m{};
      m.key = i;
      m.has_key = i % 2 == 1;
      m.producer = i;
      switch (i % 3) {
        case 0:
          REQUIRE(rec.write(pair_ev{i * 1000, static_cast<std::uint16_t>(i)}, m));
          break;
        case 1:
          REQUIRE(rec.write(order{i, -static_cast<std::int64_t>(i), 3}, m));
          break;
        default:
          REQUIRE(rec.write(
              multi_ev{i, static_cast<std::uint16_t>(i + 1), static_cast<std::uint8_t>(i + 2)}, m));
      }
    }
  };
  const std::vector<unsigned char> a = records(direct, write_all);
  const std::vector<unsigned char> b = records(through, write_all);
  REQUIRE(!a.empty());
  REQUIRE(a.size() == b.size());
  const auto diff = std::mismatch(a.begin(), a.end(), b.begin());
  INFO("first difference at byte " << (diff.first - a.begin()));
  REQUIRE(diff.first == a.end());
  // And they decode.
  std::uint32_t i = 0;
  for (std::size_t p = 0; p < a.size(); ++i) {
    const auto body = sluice::storage::load_le<std::uint32_t>(&a[p]);
    sluice::stored_event e;
    sluice::storage::read_body(&a[p + sluice::storage::frame_size], body, e);
    REQUIRE(e.offset == i);
    REQUIRE(e.producer == i);
    if (i % 3 == 2) {
      const auto d = direct->decode<multi_ev>(e);
      REQUIRE(d);
      REQUIRE(d->a == i);
      REQUIRE(d->b == i + 1);
      REQUIRE(d->c == i + 2);
    }
    p += sluice::storage::frame_size + body;
  }
  REQUIRE(i == 20);
}

TEST_CASE(
    "write_n records a run of events in order, as write() one by one would, and says how "
    "many it recorded",
    "[storage]") {
  std::vector<order> orders(3000);
  for (std::size_t i = 0; i < orders.size(); ++i)
    orders[i] = order{i, static_cast<std::int64_t>(i) * 3, 7};
  auto record = [&](bool bulk) {
    auto ring = std::make_unique<sluice::memory_sink>(orders.size());
    auto* r = ring.get();
    sluice::recorder rec(std::move(ring), make_types());
    sluice::metadata m{};
    m.key = 9;
    m.has_key = true;
    if (bulk) {
      REQUIRE(rec.write_n(orders.data(), 1000, m) == 1000);  // several writer passes apart
      REQUIRE(rec.write_n(orders.data() + 1000, 2000, m) == 2000);
      REQUIRE(rec.write_n(orders.data(), 0, m) == 0);
    } else {
      for (const order& o : orders) REQUIRE(rec.write(o, m));
    }
    REQUIRE(rec.flush().ok());
    REQUIRE(rec.stats().recorded == orders.size());
    return r->events();
  };
  const auto bulk = record(true);
  const auto one_by_one = record(false);
  REQUIRE(bulk.size() == orders.size());
  REQUIRE(one_by_one.size() == orders.size());
  for (std::size_t i = 0; i < bulk.size(); ++i) {
    REQUIRE(bulk[i].offset == i);
    REQUIRE(bulk[i].payload == one_by_one[i].payload);
    REQUIRE(bulk[i].key == 9);
    REQUIRE(make_types()->decode<order>(bulk[i].view())->id == i);
  }
  // What is not recorded is counted as write() counts it.
  sluice::recorder closed(std::make_unique<sluice::memory_sink>(10), make_types());
  REQUIRE(closed.close().ok());
  REQUIRE(closed.write_n(orders.data(), 5) == 0);
  REQUIRE(closed.stats().dropped == 5);
  sluice::recorder no_codec(std::make_unique<sluice::memory_sink>(10), make_types());
  const unstored u[3] = {};
  REQUIRE(no_codec.write_n(u, 3) == 0);
  REQUIRE(no_codec.stats().unrecorded == 3);
}

TEST_CASE("memory ring keeps the last N records", "[storage]") {
  auto ring = std::make_unique<sluice::memory_sink>(10);
  auto* r = ring.get();
  sluice::recorder rec(std::move(ring), make_types());
  for (std::uint32_t i = 0; i < 25; ++i) REQUIRE(rec.write(small_ev{i}));
  REQUIRE(rec.flush().ok());
  const auto ev = r->events();
  REQUIRE(ev.size() == 10);
  REQUIRE(r->appended() == 25);
  for (std::uint32_t i = 0; i < 10; ++i) {
    REQUIRE(ev[i].offset == 15 + i);
    REQUIRE(make_types()->decode<small_ev>(ev[i].view())->id == 15 + i);
  }
}

namespace {
struct price {
  std::uint32_t id;
  double value;
};
}  // namespace
template <>
struct fmt::formatter<price> : fmt::formatter<double> {
  auto format(const price& p, fmt::format_context& ctx) const {
    return fmt::format_to(ctx.out(), "price \"{}\"\n= {}", p.id, p.value);
  }
};

TEST_CASE("JSON-lines sink: one escaped line per event, formatted or base64", "[storage]") {
  test::temp_dir dir;
  auto types = make_types();
  types->add<price>("price", 1, sluice::fields(&price::id, &price::value));
  sluice::storage_error err;
  auto js = sluice::json_sink::open(dir / "audit.jsonl", types, err);
  REQUIRE(js != nullptr);
  js->show<price>();
  {
    sluice::recorder rec(std::move(js), types);
    REQUIRE(rec.write(price{7, 1.5}, keyed(3)));
    REQUIRE(rec.write(small_ev{0x00FFEEDD}));
  }
  const auto bytes = test::read_file(dir / "audit.jsonl");
  const std::string text(bytes.begin(), bytes.end());
  const auto nl = text.find('\n');
  REQUIRE(nl != std::string::npos);
  const std::string first = text.substr(0, nl), second = text.substr(nl + 1);
  REQUIRE(first.find("\"offset\":0,") != std::string::npos);
  REQUIRE(first.find("\"type\":\"price\"") != std::string::npos);
  REQUIRE(first.find("\"key\":3,") != std::string::npos);
  REQUIRE(first.find("\"event\":\"price \\\"7\\\"\\n= 1.5\"}") != std::string::npos);
  REQUIRE(second.find("\"offset\":1,") != std::string::npos);
  REQUIRE(second.find("\"key\":null") != std::string::npos);
  REQUIRE(second.find("\"payload_base64\":\"3e7/AA==\"}\n") != std::string::npos);
  REQUIRE(std::count(text.begin(), text.end(), '\n') == 2);
}

TEST_CASE("replay: recorded pace keeps the gaps, scaled by speed", "[storage]") {
  test::watchdog dog(std::chrono::seconds(60));
  test::temp_dir dir;
  auto types = make_types();
  {
    sluice::recorder rec(open_log(dir.path()), types);
    const std::int64_t t0 = sluice::detail::now_ns();
    for (std::uint32_t i = 0; i < 6; ++i) {
      sluice::metadata m;
      m.timestamp = t0 + static_cast<std::int64_t>(i) * 40'000'000;  // 40 ms apart
      REQUIRE(rec.write(small_ev{i}, m));
    }
  }
  for (const double speed : {1.0, 4.0}) {
    sluice::bus b;
    std::vector<std::uint32_t> got;
    auto sub = b.subscribe<small_ev>([&](const small_ev& e) { got.push_back(e.id); });
    sluice::replay_options o;
    o.pace = sluice::replay_pace::recorded;
    o.speed = speed;
    const auto start = std::chrono::steady_clock::now();
    const auto res = sluice::replay(dir.path(), b, *types, 0, o);
    const auto took = std::chrono::steady_clock::now() - start;
    b.poll();
    REQUIRE(res.published == 6);
    REQUIRE(got == std::vector<std::uint32_t>{0, 1, 2, 3, 4, 5});
    // A lower bound only: the recorded 200 ms between first and last, scaled.
    REQUIRE(took >= std::chrono::milliseconds(static_cast<int>(190 / speed)));
  }
}

TEST_CASE("replay: filters, unknown types and a start offset", "[storage]") {
  test::temp_dir dir;
  auto all = make_types();
  {
    sluice::recorder rec(open_log(dir.path()), all);
    for (std::uint32_t i = 0; i < 100; ++i) {
      REQUIRE(rec.write(small_ev{i}));
      REQUIRE(rec.write(order{i, 1, 1}));
    }
  }
  sluice::codecs only_orders;  // a reader that knows only orders
  only_orders.add<order>("order");
  sluice::bus b;
  std::vector<std::uint64_t> ids;
  auto sub = b.subscribe<order>([&](const order& o) { ids.push_back(o.id); });
  int unknown_reports = 0;
  sluice::replay_options o;
  o.filter = [](const sluice::stored_event& e) {
    return e.offset % 4 != 1;
  };  // skip orders 0, 2, ..
  o.on_decode_error = [&](const sluice::stored_event&, const sluice::decode_error& e) {
    if (e.code == sluice::decode_errc::unknown_type) ++unknown_reports;
  };
  const auto res = sluice::replay(dir.path(), b, only_orders, 100, o);
  b.poll();
  REQUIRE(res.ok());
  REQUIRE(res.unknown == 50);  // smalls from offset 100 on
  REQUIRE(unknown_reports == 50);
  REQUIRE(res.skipped == 25);
  REQUIRE(res.published == 25);
  REQUIRE(ids.size() == 25);
  for (auto id : ids) REQUIRE(id % 2 == 1);
  REQUIRE(res.next_offset == 200);
}

TEST_CASE("checkpoint: store, load, resume at least once, damage is an error", "[storage]") {
  test::temp_dir dir;
  auto types = make_types();
  {
    sluice::recorder rec(open_log(dir / "log"), types);
    for (std::uint32_t i = 0; i < 50; ++i) REQUIRE(rec.write(small_ev{i}));
  }
  sluice::checkpoint cp(dir / "consumer.ckpt");
  sluice::storage_error err;
  REQUIRE(!cp.load(err).has_value());
  REQUIRE(err.ok());  // none yet
  // Consume 20 events, store the position.
  std::uint64_t next = 0;
  {
    sluice::reader_options ro;
    auto r = sluice::log_reader::open(dir / "log", ro, err);
    REQUIRE(r != nullptr);
    sluice::stored_event e;
    for (int i = 0; i < 20; ++i) REQUIRE(r->next(e) == sluice::read_status::event);
    next = r->position();
    REQUIRE(cp.store(next).ok());
  }
  REQUIRE(next == 20);
  const auto loaded = cp.load(err);
  REQUIRE(err.ok());
  REQUIRE(loaded == std::optional<std::uint64_t>(20));
  sluice::reader_options ro;
  ro.from = *loaded;
  const auto rest = read_all(dir / "log", ro);
  REQUIRE(rest.size() == 30);
  REQUIRE(rest.front().offset == 20);
  // A damaged checkpoint is reported, not trusted.
  auto bytes = test::read_file(dir / "consumer.ckpt");
  REQUIRE(bytes.size() == 24);
  bytes[9] ^= 1;
  test::write_file(dir / "consumer.ckpt", bytes);
  REQUIRE(!cp.load(err).has_value());
  REQUIRE(err.code == sluice::storage_errc::damaged);
}

TEST_CASE("log reader follows a log that is being written", "[storage]") {
  test::watchdog dog(std::chrono::seconds(60));
  test::temp_dir dir;
  auto types = make_types();
  sluice::file_log_options fo;
  fo.segment_bytes = 4096;  // the reader crosses segments as they are made
  sluice::recorder rec(open_log(dir.path(), fo), types);
  sluice::storage_error err;
  auto r = sluice::log_reader::open(dir.path(), {}, err);
  REQUIRE(r != nullptr);
  std::thread writer([&] {
    for (std::uint32_t i = 0; i < 3000; ++i) {
      (void)rec.write(small_ev{i});
      if (i % 100 == 0) (void)rec.flush();
    }
    (void)rec.flush();
  });
  std::uint32_t expect = 0;
  sluice::stored_event e;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (expect < 3000 && std::chrono::steady_clock::now() < deadline) {
    const auto s = r->next(e);
    REQUIRE(s != sluice::read_status::damaged);
    if (s == sluice::read_status::end) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      continue;
    }
    REQUIRE(e.offset == expect);
    REQUIRE(types->decode<small_ev>(e)->id == expect);
    ++expect;
  }
  writer.join();
  REQUIRE(expect == 3000);
}

TEST_CASE("file log: one writer per folder", "[storage]") {
  test::temp_dir dir;
  auto first = open_log(dir.path());
  sluice::storage_error err;
  REQUIRE(sluice::file_log::open({dir.path()}, err) == nullptr);
  REQUIRE(err.code == sluice::storage_errc::locked);
  auto types = make_types();
  REQUIRE(!sluice::record_to_folder(*std::make_unique<sluice::bus>(), dir.path(), types));
  REQUIRE(first->close().ok());  // releases the folder
  REQUIRE(open_log(dir.path()) != nullptr);
  // Readers need no lock.
  auto again = open_log(dir.path());
  REQUIRE(sluice::log_reader::open(dir.path(), {}, err) != nullptr);
}

TEST_CASE("file log: a failed roll loses nothing and is tried again", "[storage]") {
  test::temp_dir dir;
  auto types = make_types();
  sluice::file_log_options fo;
  fo.segment_bytes = 4096;
  auto log = open_log(dir.path(), fo);
  auto* raw = log.get();
  sluice::recorder rec(std::move(log), types);
  std::uint32_t n = 0;
  // Fill the first segment past its size.
  while (std::filesystem::file_size(test::segments(dir.path()).back()) < 4096) {
    REQUIRE(rec.write(order{n++, 1, 1}));
    REQUIRE(rec.flush().ok());
  }
  // Something else holds the next segment's name: the roll fails.
  const std::string blocker = dir / sluice::storage::segment_name(raw->next_offset());
  std::filesystem::create_directory(blocker);
  REQUIRE(rec.write(order{n++, 1, 1}));
  REQUIRE(rec.flush().ok());  // written to the current segment
  REQUIRE(raw->last_roll_error().code == sluice::storage_errc::io);
  REQUIRE(raw->segment_count() == 1);
  // The next batch tries again (under the next offset's name) and rolls.
  for (int i = 0; i < 5; ++i) {
    REQUIRE(rec.write(order{n++, 1, 1}));
    REQUIRE(rec.flush().ok());
  }
  REQUIRE(raw->last_roll_error().ok());
  REQUIRE(raw->segment_count() == 2);
  REQUIRE(std::filesystem::is_directory(blocker));  // not a segment: readers pass it by
  REQUIRE(rec.close().ok());
  const auto all = read_all(dir.path());
  REQUIRE(all.size() == n);
  for (std::uint32_t i = 0; i < n; ++i)
    REQUIRE(make_types()->decode<order>(all[i].view())->id == i);
}

TEST_CASE("log reader: a follower goes on when retention deletes what it reads", "[storage]") {
  test::watchdog dog(std::chrono::seconds(60));
  test::temp_dir dir;
  auto types = make_types();
  sluice::file_log_options fo;
  fo.segment_bytes = 4096;
  fo.retain_bytes = 3 * 4096;
  sluice::recorder rec(open_log(dir.path(), fo), types);
  for (std::uint32_t i = 0; i < 60; ++i) {
    REQUIRE(rec.write(order{i, 1, 1}));
    if (i % 10 == 9) REQUIRE(rec.flush().ok());
  }
  sluice::storage_error err;
  auto r = sluice::log_reader::open(dir.path(), {}, err);
  REQUIRE(r != nullptr);
  sluice::stored_event e;
  REQUIRE(r->next(e) == sluice::read_status::event);  // in the first segment
  // Many more records: retention deletes the segment the reader is in, and more.
  for (std::uint32_t i = 60; i < 1000; ++i) {
    REQUIRE(rec.write(order{i, 1, 1}));
    if (i % 10 == 9) REQUIRE(rec.flush().ok());
  }
  std::uint64_t last = e.offset, seen = 1;
  sluice::read_status s;
  while ((s = r->next(e)) == sluice::read_status::event) {
    REQUIRE(e.offset > last);
    last = e.offset;
    ++seen;
  }
  INFO(r->error().describe());
  REQUIRE(s == sluice::read_status::end);
  REQUIRE(last == 999);  // reached the newest record
  REQUIRE(r->skipped() > 0);
  REQUIRE(seen + r->skipped() == 1000);
}

TEST_CASE("replay: next_offset never goes back before `from`", "[storage]") {
  test::temp_dir dir;
  auto types = make_types();
  {
    sluice::recorder rec(open_log(dir.path()), types);
    for (std::uint32_t i = 0; i < 10; ++i) REQUIRE(rec.write(small_ev{i}));
  }
  sluice::bus b;
  const auto res = sluice::replay(dir.path(), b, *types, 1000);
  REQUIRE(res.ok());
  REQUIRE(res.published == 0);
  REQUIRE(res.next_offset == 1000);
  const auto all = sluice::replay(dir.path(), b, *types, 4);
  REQUIRE(all.published == 6);
  REQUIRE(all.next_offset == 10);
}

TEST_CASE("recorder: stop() writes and syncs store-stage recorders too", "[storage]") {
  auto sink = std::make_unique<test_sink>();
  auto* s = sink.get();
  sluice::record_options ro;
  ro.sync = sluice::sync_policy::interval;
  ro.sync_interval = std::chrono::hours(1);  // only stop() would sync
  auto rec = std::make_shared<sluice::recorder>(std::move(sink), make_types(), ro);
  sluice::bus b;
  b.stages<small_ev>().store(rec);
  for (std::uint32_t i = 0; i < 100; ++i) b.publish(small_ev{i});
  REQUIRE(b.stop());
  REQUIRE(s->appended.load() == 100);
  REQUIRE(s->synced.load() == 100);
}

TEST_CASE(
    "recorder: sink failures of the last pass are close()'s error, a throwing sink is an error",
    "[storage]") {
  {
    auto sink = std::make_unique<test_sink>();
    sink->fail_appends = true;
    sluice::record_options ro;
    ro.sync = sluice::sync_policy::never;
    sluice::recorder rec(std::move(sink), make_types(), ro);
    REQUIRE(rec.write(small_ev{1}));
    REQUIRE(rec.close().code == sluice::storage_errc::io);
    REQUIRE(rec.stats().failed == 1);
  }
  {
    struct throwing_sink final : sluice::sink {
      sluice::storage_error append(sluice::record_batch&) override {
        throw std::runtime_error("serializer bug");
      }
    };
    std::atomic<int> reports{0};
    sluice::record_options ro;
    ro.on_error = [&](const sluice::storage_error& e) {
      if (e.message.find("serializer bug") != std::string::npos) ++reports;
    };
    sluice::recorder rec(std::make_unique<throwing_sink>(), make_types(), ro);
    REQUIRE(rec.write(small_ev{1}));
    REQUIRE(rec.flush().code == sluice::storage_errc::io);
    REQUIRE(rec.stats().failed == 1);
    REQUIRE(reports.load() == 1);
  }
}

TEST_CASE("recorder: on_error may record while the buffer is full (no self-deadlock)",
          "[storage]") {
  test::watchdog dog(std::chrono::seconds(30));
  auto sink = std::make_unique<test_sink>();
  auto* s = sink.get();
  s->fail_appends = true;
  sluice::recorder* self = nullptr;
  std::atomic<int> errors{0};
  sluice::record_options ro;
  ro.buffer_bytes = 4096;
  ro.on_error = [&](const sluice::storage_error&) {
    ++errors;
    for (std::uint32_t i = 0; i < 200; ++i) (void)self->write(order{i, 0, 0});  // fills it
  };
  sluice::recorder rec(std::move(sink), make_types(), ro);
  self = &rec;
  for (std::uint32_t i = 0; i < 200; ++i) (void)rec.write(order{i, 1, 1});
  REQUIRE(test::wait_until([&] { return errors.load() >= 1; }));
  s->fail_appends = false;
  (void)rec.flush();
  REQUIRE(rec.close().code != sluice::storage_errc::closed);
  const auto st = rec.stats();
  REQUIRE(st.dropped > 0);  // the writer's own records that found no room
  REQUIRE(st.recorded == st.written + st.failed);
}

TEST_CASE("recorder: a throwing codec is rejected and counted, the rest goes on", "[storage]") {
  struct boom {
    int x = 0;
  };
  struct boom_codec {
    void encode(const boom& b, sluice::byte_writer& out) const {
      if (b.x < 0) throw std::runtime_error("cannot encode");
      out.put(b.x);
    }
    sluice::decoded<boom> decode(sluice::byte_view, std::uint32_t) const { return boom{}; }
  };
  auto types = std::make_shared<sluice::codecs>();
  types->add<boom>("boom", 1, boom_codec{});
  auto ring = std::make_unique<sluice::memory_sink>(10);
  auto* r = ring.get();
  sluice::recorder rec(std::move(ring), types);
  REQUIRE(rec.write(boom{1}));
  REQUIRE(!rec.write(boom{-1}));
  REQUIRE(rec.write(boom{2}));
  REQUIRE(rec.flush().ok());
  const auto st = rec.stats();
  REQUIRE(st.recorded == 2);
  REQUIRE(st.rejected == 1);
  REQUIRE(r->size() == 2);
}

TEST_CASE("recorder: the writer lingers, but half a buffer or a flush takes records at once",
          "[storage]") {
  // The linger is an hour: if half a buffer or a flush did not cut it short,
  // the waits below would never end and the watchdog would fail the test. No
  // wait here has a deadline of its own, so a slow machine cannot fail it.
  test::watchdog dog(std::chrono::seconds(120));
  auto sink = std::make_unique<test_sink>();
  auto* s = sink.get();
  sluice::record_options ro;
  ro.sync = sluice::sync_policy::never;
  ro.linger = std::chrono::hours(1);
  ro.buffer_bytes = 8192;
  sluice::recorder rec(std::move(sink), make_types(), ro);
  // Half a buffer (4096 bytes) wakes the writer, which takes every record
  // there is then: at least the ones that filled half the buffer.
  const std::size_t record_bytes = sluice::storage::frame_size + sluice::storage::body_fixed +
                                   std::string_view("order").size() + sizeof(order);
  const std::size_t half = (ro.buffer_bytes / 2 + record_bytes - 1) / record_bytes;
  std::uint32_t n = 0;
  while (n < 70) REQUIRE(rec.write(order{n++, 1, 1}));
  while (s->appended.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  REQUIRE(s->appended.load() >= half);
  // A flush does not wait for the linger either.
  REQUIRE(rec.write(order{n++, 1, 1}));
  REQUIRE(rec.flush().ok());
  REQUIRE(s->appended.load() == n);
}

TEST_CASE("recorder: events that came through a bridge are stored only when asked for",
          "[storage]") {
  auto types = make_types();
  for (const bool keep : {false, true}) {
    INFO("record_bridged = " << keep);
    auto sink = std::make_unique<sluice::memory_sink>(64);
    sluice::memory_sink* view = sink.get();
    sluice::record_options ro;
    ro.record_bridged = keep;
    auto rec = std::make_shared<sluice::recorder>(std::move(sink), types, ro);
    sluice::bus bus;
    REQUIRE(bus.record(rec) == nullptr);
    sluice::producer_options po;
    po.bridged = true;
    auto inbound = bus.make_producer(po);
    auto local = bus.make_producer();
    int bridged_seen = 0;
    auto sub = bus.subscribe<order>([&](sluice::event_view<order> v) {
      if (v.meta().bridged) ++bridged_seen;
    });
    REQUIRE(inbound.publish(order{1, 1, 1}) == sluice::publish_result::ok);
    REQUIRE(local.publish(order{2, 1, 1}) == sluice::publish_result::ok);
    REQUIRE(inbound.publish(order{3, 1, 1}) == sluice::publish_result::ok);
    bus.poll();
    REQUIRE_FALSE(rec->sync());
    CHECK(bridged_seen == 2);  // delivered either way
    std::vector<std::uint64_t> ids;
    for (const auto& e : view->events()) ids.push_back(types->decode<order>(e.view())->id);
    std::sort(ids.begin(), ids.end());  // two producers: two lanes
    CHECK(ids == (keep ? std::vector<std::uint64_t>{1, 2, 3} : std::vector<std::uint64_t>{2}));
    CHECK(rec->stats().unrecorded == 0);  // left out by choice, not for want of a codec
  }
}

TEST_CASE("loss ledger: append and sync losses are counted once, in order, until acknowledged",
          "[storage]") {
  sluice::detail::loss_ledger l;
  l.lose(3, 4, false, 0);  // two appends failed (records 3-4, then 7)
  l.lose(7, 7, false, 0);
  REQUIRE(l.unacknowledged() == 3);
  // Then the sync of records 1-9 failed: 1, 2, 5, 6, 8 and 9 are newly lost.
  REQUIRE(l.lose_unsynced(1, 9) == 6);
  REQUIRE(l.unacknowledged() == 9);
  std::uint64_t first = 0;
  REQUIRE(l.unacknowledged_in(0, 9, false, first) == 3);  // a flush sees append losses
  REQUIRE(first == 3);
  REQUIRE(l.unacknowledged_in(0, 9, true, first) == 9);  // a sync sees both
  REQUIRE(first == 1);
  REQUIRE(l.unacknowledged_in(4, 6, true, first) == 2);
  REQUIRE(first == 5);
  REQUIRE(l.any_in(7, 7));
  REQUIRE_FALSE(l.any_in(10, 20));
  // Adjacent append losses after the last sync merge; across it they do not.
  l.lose(10, 11, false, 9);
  l.lose(12, 12, false, 9);
  REQUIRE(l.ranges() == 6);  // 1-2, 3-4, 5-6, 7, 8-9, 10-12
  REQUIRE(l.unacknowledged() == 12);
  REQUIRE(l.acknowledge() == 12);
  REQUIRE(l.unacknowledged() == 0);
  REQUIRE(l.unacknowledged_in(0, 20, true, first) == 0);
  REQUIRE(l.any_in(7, 7));  // acknowledged, still known until pruned
  l.prune(9);               // up to the last sync
  REQUIRE(l.any_in(10, 12));
  REQUIRE_FALSE(l.any_in(1, 9));
  l.prune(12);
  REQUIRE(l.ranges() == 0);
}
