// The log keeps its word when the system fails under it: failures injected
// through the file_io seam (a write that stops part-way, a write that makes
// no progress, a failed fdatasync), several threads acknowledging while writes
// fail, a machine losing power (only what was synced survives), and the
// acknowledgements, offsets and limits the log promises.
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <climits>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sluice/storage.hpp>
#include <sluice/storage/json_sink.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "storage_io.hpp"
#include "storage_support.hpp"
#include "support.hpp"

namespace {

using Catch::Matchers::Contains;

// Every record says which one it is (its number in the order written).
struct num {
  std::uint64_t n = 0;
  std::uint64_t check = 0;
};
std::uint64_t check_of(std::uint64_t n) {
  return n * 0x9E3779B97F4A7C15ULL + 7;
}
num make_num(std::uint64_t n) {
  return num{n, check_of(n)};
}

// No sync of its own, and records gather until a flush or sync (an hour's
// linger): each flush or sync is one append.
sluice::record_options by_flush() {
  sluice::record_options ro;
  ro.sync = sluice::sync_policy::never;
  ro.linger = std::chrono::hours(1);
  return ro;
}

std::shared_ptr<sluice::codecs> num_types() {
  auto t = std::make_shared<sluice::codecs>();
  t->add<num>("num");
  return t;
}

sluice::file_log_options options(const std::string& dir, sluice::file_io* io,
                                 std::size_t segment_bytes = std::size_t{64} << 20) {
  sluice::file_log_options o;
  o.dir = dir;
  o.io = io;
  o.segment_bytes = segment_bytes;
  return o;
}

std::unique_ptr<sluice::file_log> open_log(const sluice::file_log_options& o) {
  sluice::storage_error err;
  auto log = sluice::file_log::open(o, err);
  INFO(err.describe());
  REQUIRE(log != nullptr);
  return log;
}

struct read_back {
  std::vector<std::uint64_t> offsets;
  std::vector<std::uint64_t> nums;
  std::vector<sluice::lost_records> lost;
  sluice::read_status last = sluice::read_status::end;
  sluice::storage_error error;
  std::uint64_t pending = 0;
};

read_back read_log(const std::string& dir, sluice::reader_options ro = {}) {
  read_back out;
  sluice::storage_error err;
  auto r = sluice::log_reader::open(dir, ro, err);
  INFO(err.describe());
  REQUIRE(r != nullptr);
  const auto types = num_types();
  sluice::stored_event e;
  for (;;) {
    out.last = r->next(e);
    if (out.last == sluice::read_status::lost) {
      out.lost.push_back(r->lost());
      continue;
    }
    if (out.last != sluice::read_status::event) break;
    out.offsets.push_back(e.offset);
    const auto d = types->decode<num>(e);
    REQUIRE(d.ok());
    REQUIRE(d->check == check_of(d->n));
    out.nums.push_back(d->n);
  }
  out.error = r->error();
  out.pending = r->pending_bytes();
  return out;
}

// Offsets 0, 1, 2, ... with no gap and no repeat.
bool contiguous(const std::vector<std::uint64_t>& offsets, std::uint64_t from = 0) {
  for (std::size_t i = 0; i < offsets.size(); ++i)
    if (offsets[i] != from + i) return false;
  return true;
}

// Cuts a segment of 15 records after its first 10, as a power cut may take
// what followed the last good sync.
void cut_after_sync(const std::string& segment) {
  const test::walked w = test::walk_segment(segment);
  REQUIRE(w.offsets.size() == 15);
  std::vector<unsigned char> bytes = test::read_file(segment);
  bytes.resize(w.starts[10]);
  test::write_file(segment, bytes);
}

}  // namespace

TEST_CASE("faults: a write that stops part-way keeps its whole records and reuses no offset",
          "[storage][faults]") {
  test::temp_dir dir;
  test::fault_io io;
  auto log = open_log(options(dir.path(), &io));
  sluice::file_log* raw = log.get();
  const sluice::record_options ro = by_flush();
  auto types = num_types();
  sluice::recorder rec(std::move(log), types, ro);
  std::uint64_t n = 0;
  for (; n < 20; ++n) REQUIRE(rec.write(make_num(n)));
  REQUIRE(rec.flush().ok());

  // A follower reads what is there so far.
  sluice::storage_error err;
  auto follower = sluice::log_reader::open(dir.path(), {}, err);
  REQUIRE(follower != nullptr);
  sluice::stored_event e;
  std::vector<std::uint64_t> seen;
  while (follower->next(e) == sluice::read_status::event) seen.push_back(e.offset);
  REQUIRE(seen.size() == 20);

  // The next write stops after 2.5 records, full disk.
  const std::size_t record_bytes = test::walk_segment(test::segments(dir.path())[0]).end_of(0) -
                                   sluice::storage::segment_header_size;
  io.fail_write_after = static_cast<long>(record_bytes * 5 / 2);
  for (std::uint64_t i = 0; i < 10; ++i) REQUIRE(rec.write(make_num(n + i)));
  const sluice::storage_error lost = rec.flush();
  REQUIRE_FALSE(lost.ok());
  REQUIRE_THAT(lost.message, Contains("8 recorded event(s) lost"));
  REQUIRE(rec.stats().written == 22);
  REQUIRE(rec.stats().failed == 8);
  REQUIRE(raw->next_offset() == 22);  // the two whole records stay; the torn one is cut

  // The follower read the two whole records meanwhile: they stay in the log.
  while (follower->next(e) == sluice::read_status::event) seen.push_back(e.offset);
  REQUIRE(seen.size() == 22);
  sluice::checkpoint cp(dir / "follower.ckpt");
  REQUIRE(cp.store(follower->position()).ok());

  // The disk has room again: later records go on from offset 22.
  REQUIRE(rec.acknowledge_losses() == 8);
  for (std::uint64_t i = 0; i < 5; ++i) REQUIRE(rec.write(make_num(100 + i)));
  REQUIRE(rec.sync().ok());
  REQUIRE(rec.close().ok());
  while (follower->next(e) == sluice::read_status::event) seen.push_back(e.offset);
  REQUIRE(follower->error().ok());
  REQUIRE(seen.size() == 27);
  REQUIRE(contiguous(seen));

  // A consumer resuming from its checkpoint after a reopen misses nothing.
  const auto at = cp.load(err);
  REQUIRE(at);
  REQUIRE(*at == 22);
  sluice::reader_options from;
  from.from = *at;
  const read_back rb = read_log(dir.path(), from);
  REQUIRE(rb.last == sluice::read_status::end);
  REQUIRE(rb.nums == std::vector<std::uint64_t>{100, 101, 102, 103, 104});
  REQUIRE(contiguous(rb.offsets, 22));
  const read_back all = read_log(dir.path());
  REQUIRE(contiguous(all.offsets));
  REQUIRE(all.lost.empty());
}

TEST_CASE("faults: a write that makes no progress fails at once instead of looping",
          "[storage][faults]") {
  test::watchdog wd(std::chrono::seconds(60), "write returning 0");
  test::temp_dir dir;
  test::fault_io io;
  auto log = open_log(options(dir.path(), &io));
  io.writes_returning_zero = 1000000;
  auto types = num_types();
  sluice::recorder rec(std::move(log), types);
  REQUIRE(rec.write(make_num(0)));
  const sluice::storage_error e = rec.sync();
  REQUIRE_FALSE(e.ok());
  REQUIRE_THAT(e.message, Contains("Input/output error"));
  io.writes_returning_zero = 0;
  REQUIRE(rec.acknowledge_losses() == 1);
  REQUIRE(rec.write(make_num(1)));
  REQUIRE(rec.sync().ok());
  REQUIRE(rec.close().ok());
  const read_back rb = read_log(dir.path());
  REQUIRE(rb.nums == std::vector<std::uint64_t>{1});
  REQUIRE(rb.offsets == std::vector<std::uint64_t>{0});
}

TEST_CASE("faults: a write whose torn part cannot be cut stops the log until it is reopened",
          "[storage][faults]") {
  test::temp_dir dir;
  test::fault_io io;
  {
    auto log = open_log(options(dir.path(), &io));
    auto types = num_types();
    sluice::recorder rec(std::move(log), types);
    for (std::uint64_t n = 0; n < 5; ++n) REQUIRE(rec.write(make_num(n)));
    REQUIRE(rec.sync().ok());
    io.fail_write_after = 30;  // inside the first record of the next batch
    io.fail_ftruncate = 1;
    for (std::uint64_t n = 5; n < 8; ++n) REQUIRE(rec.write(make_num(n)));
    REQUIRE_FALSE(rec.sync().ok());
    REQUIRE(rec.write(make_num(8)));  // refused by the log: lost too
    REQUIRE_FALSE(rec.sync().ok());
    REQUIRE(rec.stats().failed == 4);
    (void)rec.close();
  }
  // Reopened, recovery cuts the torn bytes; offsets go on from 5.
  auto log = open_log(options(dir.path(), nullptr));
  REQUIRE(log->recovered().size() == 1);
  REQUIRE(log->next_offset() == 5);
}

TEST_CASE("faults: no acknowledgement covers a lost record, whichever thread asks",
          "[storage][faults]") {
  test::watchdog wd(std::chrono::seconds(120), "acknowledgements");
  test::temp_dir dir;
  test::fault_io io;
  auto log = open_log(options(dir.path(), &io));
  sluice::record_options ro;
  ro.sync = sluice::sync_policy::never;
  ro.linger = std::chrono::microseconds(0);
  auto types = num_types();
  sluice::recorder rec(std::move(log), types, ro);
  std::atomic<std::uint64_t> written{0};  // records recorded so far (all threads)
  std::atomic<bool> done{false};
  std::mutex m;
  // Each acknowledgement given: how many records had been recorded before
  // the call; and whether it was a sync.
  std::vector<std::pair<std::uint64_t, bool>> acks;
  std::atomic<int> failures{0};
  std::thread writer([&] {
    std::mt19937_64 rng(1);
    for (std::uint64_t n = 0; n < 3000; ++n) {
      if (rng() % 97 == 0) io.fail_write_after = static_cast<long>(rng() % 300);
      if (rng() % 211 == 0) io.fail_fdatasync = 1;
      std::lock_guard<std::mutex> lock(m);  // recorded and counted together
      (void)rec.write(make_num(n));
      written.store(n + 1);
    }
    {
      // At least one loss, whatever the schedule (and losses are sticky: no
      // acknowledgement is given after it): records written after an armed
      // write failure until an append fails. (An armed failure can hit a
      // segment header instead: the roll that follows a failed fdatasync
      // fails, and no record is lost.)
      std::lock_guard<std::mutex> lock(m);
      const std::uint64_t failed_before = rec.stats().append_failures;
      std::uint64_t n = 3000;
      for (int tries = 0; tries < 20 && rec.stats().append_failures == failed_before; ++tries) {
        io.fail_write_after = 0;
        (void)rec.write(make_num(n));
        written.store(++n);
        (void)rec.flush();  // its append has been tried
      }
    }
    done = true;
  });
  // Each acker asks until the writer is done, and once more after that.
  auto acker = [&](bool durable) {
    for (bool last = false; !last;) {
      last = done.load();
      std::uint64_t before = 0;
      {
        std::lock_guard<std::mutex> lock(m);
        before = written.load();
      }
      const sluice::storage_error e = durable ? rec.sync() : rec.flush();
      if (e.ok()) {
        std::lock_guard<std::mutex> lock(m);
        acks.emplace_back(before, durable);
      } else {
        ++failures;
      }
    }
  };
  std::thread a(acker, false), b(acker, true), c(acker, true);
  writer.join();
  a.join();
  b.join();
  c.join();
  (void)rec.close();
  REQUIRE(failures.load() >= 3);  // the last loss was reported to each of them
  const read_back rb = read_log(dir.path());
  REQUIRE(contiguous(rb.offsets));
  const std::set<std::uint64_t> stored(rb.nums.begin(), rb.nums.end());
  // Everything recorded before a successful acknowledgement is in the log.
  std::uint64_t checked = 0;
  for (const auto& [before, durable] : acks) {
    for (std::uint64_t n = 0; n < before; ++n) {
      INFO("acknowledged " << before << " records (" << (durable ? "sync" : "flush") << "), record "
                           << n << " missing");
      REQUIRE(stored.count(n) == 1);
    }
    checked += before;
  }
  const auto st = rec.stats();
  REQUIRE(st.failed + st.unsynced > 0);
  REQUIRE(st.append_failures + st.sync_failures > 0);
}

TEST_CASE("faults: a failed fdatasync moves the log to a fresh segment, rolls and retention go on",
          "[storage][faults]") {
  test::temp_dir dir;
  test::fault_io io;
  auto opts = options(dir.path(), &io, 4096);
  opts.retain_bytes = 16384;
  auto log = open_log(opts);
  sluice::file_log* raw = log.get();
  auto types = num_types();
  const sluice::record_options ro = by_flush();
  sluice::recorder rec(std::move(log), types, ro);
  std::uint64_t n = 0;
  for (; n < 10; ++n) REQUIRE(rec.write(make_num(n)));
  REQUIRE(rec.sync().ok());
  const std::size_t segments_before = raw->segment_count();

  io.fail_fdatasync = 1;
  for (; n < 15; ++n) REQUIRE(rec.write(make_num(n)));
  const sluice::storage_error e = rec.sync();
  REQUIRE_FALSE(e.ok());
  REQUIRE_THAT(e.message, Contains("not known to be durable"));
  auto st = rec.stats();
  REQUIRE(st.sync_failures == 1);
  REQUIRE(st.unsynced == 5);
  REQUIRE(raw->sync_failures() == 1);
  REQUIRE(raw->segment_count() == segments_before + 1);  // a fresh segment at once
  REQUIRE(rec.acknowledge_losses() == 5);

  // Appends go on in the fresh segment; syncs vouch for them; segments roll
  // and retention deletes old ones as before.
  for (; n < 2000; ++n) {
    REQUIRE(rec.write(make_num(n)));
    if (n % 50 == 0) REQUIRE(rec.flush().ok());  // batches small enough to roll between
  }
  REQUIRE(rec.sync().ok());
  st = rec.stats();
  REQUIRE(st.unsynced == 5);  // a later good sync does not vouch for them
  REQUIRE(st.synced + st.unsynced == st.written);
  REQUIRE(st.written == 2000);
  REQUIRE(rec.close().ok());
  st = rec.stats();
  REQUIRE(st.synced + st.unsynced == st.written);
  const auto segs = test::segments(dir.path());
  REQUIRE(segs.size() > 2);
  std::uint64_t total = 0;
  for (const auto& s : segs) total += std::filesystem::file_size(s);
  REQUIRE(total <= 16384 + 4096 * 2);
  REQUIRE(test::walk_segment(segs.front()).base > 0);  // the oldest were deleted
  const read_back rb = read_log(dir.path());
  REQUIRE(rb.last == sluice::read_status::end);
  REQUIRE_FALSE(rb.nums.empty());
  REQUIRE(rb.nums.back() == 1999);
}

TEST_CASE("faults: records lost after a failed fdatasync are reported, not taken for damage",
          "[storage][faults]") {
  test::temp_dir dir;
  test::fault_io io;
  {
    auto log = open_log(options(dir.path(), &io));
    auto types = num_types();
    const sluice::record_options ro = by_flush();
    sluice::recorder rec(std::move(log), types, ro);
    for (std::uint64_t n = 0; n < 10; ++n) REQUIRE(rec.write(make_num(n)));
    REQUIRE(rec.sync().ok());
    io.fail_fdatasync = 1;
    for (std::uint64_t n = 10; n < 15; ++n) REQUIRE(rec.write(make_num(n)));
    REQUIRE_FALSE(rec.sync().ok());
    rec.acknowledge_losses();
    for (std::uint64_t n = 15; n < 20; ++n) REQUIRE(rec.write(make_num(n)));
    REQUIRE(rec.sync().ok());
    REQUIRE(rec.close().ok());
  }
  const auto segs = test::segments(dir.path());
  REQUIRE(segs.size() == 2);
  {
    // The data did reach the disk after all: nothing is missing.
    const read_back rb = read_log(dir.path());
    REQUIRE(rb.last == sluice::read_status::end);
    REQUIRE(rb.lost.empty());
    REQUIRE(contiguous(rb.offsets));
    REQUIRE(rb.offsets.size() == 20);
  }
  // As if the pages the failed sync could not write were gone after a
  // power loss: the first segment loses its last three records, one torn.
  const test::walked w = test::walk_segment(segs[0]);
  REQUIRE(w.offsets.size() == 15);
  std::filesystem::resize_file(segs[0], w.starts[12] + 7);
  const read_back rb = read_log(dir.path());
  REQUIRE(rb.last == sluice::read_status::end);
  REQUIRE(rb.lost.size() == 1);
  REQUIRE(rb.lost[0].from == 12);
  REQUIRE(rb.lost[0].to == 15);
  REQUIRE_THAT(rb.lost[0].why, Contains("fdatasync failed"));
  REQUIRE(rb.offsets.size() == 17);
  REQUIRE(rb.offsets[12] == 15);  // no offset given twice
  // A writer opens it without complaint, and replay reads it whole but says
  // what is missing.
  REQUIRE(open_log(options(dir.path(), nullptr))->next_offset() == 20);
  sluice::bus bus;
  const sluice::replay_result res = sluice::replay(dir.path(), bus, *num_types());
  REQUIRE(res.ok());
  REQUIRE(res.lost == 3);
  REQUIRE_FALSE(res.complete());
  bus.stop();
}

namespace {
// A one-lane bus recording to a folder through a fault_io, write-ahead
// (durable_before_delivery); counts not_durable reports.
struct write_ahead_bus {
  explicit write_ahead_bus(std::shared_ptr<sluice::codecs> t)
      : types(std::move(t)),
        bus{sluice::bus_options{}.with_lanes(1).with_on_failure(
            [this](const sluice::failure_info& f) {
              if (f.kind == sluice::failure_kind::not_durable) ++not_durable;
            })},
        rec(sluice::record_to_folder(bus, dir.path(), types, wal_options(),
                                     options(dir.path(), &io))) {}
  static sluice::record_options wal_options() {
    sluice::record_options ro;
    ro.durable_before_delivery = true;
    return ro;
  }
  test::temp_dir dir;
  test::fault_io io;
  std::atomic<int> not_durable{0};
  std::shared_ptr<sluice::codecs> types;
  sluice::bus bus;
  sluice::folder_recording rec;
};
}  // namespace

TEST_CASE("faults: with durable_before_delivery an event whose write failed is not delivered",
          "[storage][faults]") {
  write_ahead_bus w(num_types());
  sluice::bus& bus = w.bus;
  test::fault_io& io = w.io;
  std::atomic<int>& not_durable = w.not_durable;
  sluice::folder_recording& rec = w.rec;
  REQUIRE(rec);
  std::vector<std::uint64_t> delivered;
  auto sub = bus.subscribe([&](const num& x) { delivered.push_back(x.n); });
  auto p = bus.make_producer();
  for (std::uint64_t n = 0; n < 5; ++n) p.publish(make_num(n));
  bus.poll();
  io.fail_write_after = 0;  // the next append fails at once
  for (std::uint64_t n = 5; n < 8; ++n) p.publish(make_num(n));
  bus.poll();
  rec.rec->acknowledge_losses();
  for (std::uint64_t n = 8; n < 10; ++n) p.publish(make_num(n));
  bus.poll();
  REQUIRE(delivered == std::vector<std::uint64_t>{0, 1, 2, 3, 4, 8, 9});
  REQUIRE(not_durable.load() == 3);
  p = sluice::producer{};
  bus.stop();
  const sluice::type_stats st = bus.stats<num>();
  REQUIRE(st.filtered == 3);
  REQUIRE(st.balanced());
  REQUIRE(rec.rec->close().ok() == true);
}

namespace {
// A type whose codec refuses (throws for) odd numbers.
struct picky {
  std::uint64_t n = 0;
};
struct picky_codec {
  void encode(const picky& p, sluice::byte_writer& out) const {
    if (p.n % 2 != 0) throw std::runtime_error("odd");
    out.put(p.n);
  }
  sluice::decoded<picky> decode(sluice::byte_view in, std::uint32_t) const {
    sluice::byte_reader r(in);
    picky p;
    if (!r.get(p.n) || !r.done()) return sluice::decode_failure("bad picky");
    return p;
  }
};
}  // namespace

TEST_CASE(
    "faults: a write-ahead store stage that cannot store an event reports it and drops only "
    "that event",
    "[storage][faults][pipeline]") {
  auto types = num_types();
  types->add<picky>("picky", 1, picky_codec{});
  auto ring = std::make_unique<sluice::memory_sink>(100);
  sluice::memory_sink* stored = ring.get();
  sluice::record_options ro;
  ro.durable_before_delivery = true;
  auto rec = std::make_shared<sluice::recorder>(std::move(ring), types, ro);
  std::vector<std::string> stage_failures;
  sluice::bus bus{
      sluice::bus_options{}.with_lanes(1).with_on_failure([&](const sluice::failure_info& f) {
        if (f.kind == sluice::failure_kind::stage) stage_failures.emplace_back(f.message);
      })};
  int tapped = 0;
  // The stage after the store sees only what was stored.
  bus.stages<picky>().store(rec).tap([&](const picky&) { ++tapped; });
  std::vector<std::uint64_t> got;
  auto sub = bus.subscribe([&](const picky& x) { got.push_back(x.n); });
  CHECK(bus.dispatch(picky{1}) == 0);  // its codec refuses odd numbers
  CHECK(bus.dispatch(picky{2}) == 1);
  auto p = bus.make_producer();
  for (std::uint64_t n = 3; n <= 6; ++n) p.publish(picky{n});
  bus.poll();
  p = sluice::producer{};
  bus.stop();
  CHECK(got == std::vector<std::uint64_t>{2, 4, 6});
  CHECK(tapped == 3);
  REQUIRE(stage_failures.size() == 3);
  for (const std::string& m : stage_failures) CHECK_THAT(m, Catch::Contains("durable"));
  const sluice::type_stats st = bus.stats<picky>();
  CHECK(st.filtered == 2);  // the queued odd ones (dispatch is not counted)
  CHECK(st.delivered == 2);
  CHECK(st.balanced());
  REQUIRE(rec->flush().ok());
  CHECK(stored->events().size() == 3);
}

TEST_CASE(
    "faults: with durable_before_delivery a dispatched event or a batch that could not be "
    "stored is not delivered",
    "[storage][faults]") {
  auto types = num_types();
  types->add<picky>("picky", 1, picky_codec{});
  write_ahead_bus w(types);
  sluice::bus& bus = w.bus;
  test::fault_io& io = w.io;
  std::atomic<int>& not_durable = w.not_durable;
  sluice::folder_recording& rec = w.rec;
  const test::temp_dir& dir = w.dir;
  REQUIRE(rec);
  std::vector<std::uint64_t> nums, pickies;
  auto s1 = bus.subscribe([&](const num& x) { nums.push_back(x.n); });
  auto s2 = bus.subscribe([&](const picky& x) { pickies.push_back(x.n); });

  // Dispatch: a failed write, then a good one.
  io.fail_write_after = 0;
  bus.dispatch(make_num(1));
  REQUIRE(rec.rec->acknowledge_losses() == 1);
  bus.dispatch(make_num(2));
  // A codec that throws: that event alone (dispatch) is not delivered.
  bus.dispatch(picky{3});
  bus.dispatch(picky{4});
  REQUIRE(nums == std::vector<std::uint64_t>{2});
  REQUIRE(pickies == std::vector<std::uint64_t>{4});
  REQUIRE(not_durable.load() == 2);

  // Through a lane: a batch with a record that its codec refused is not
  // delivered (the batch is the unit); the next batch is.
  auto p = bus.make_producer();
  p.publish(picky{6});
  p.publish(picky{7});
  p.publish(make_num(8));
  bus.poll();
  REQUIRE(pickies == std::vector<std::uint64_t>{4});
  REQUIRE(nums == std::vector<std::uint64_t>{2});
  REQUIRE(not_durable.load() == 5);
  p.publish(picky{10});
  bus.poll();
  REQUIRE(pickies == std::vector<std::uint64_t>{4, 10});
  p = sluice::producer{};
  bus.stop();
  REQUIRE(bus.stats<num>().balanced());
  REQUIRE(bus.stats<picky>().balanced());
  REQUIRE(rec.rec->stats().rejected == 2);
  REQUIRE(rec.rec->close().ok() == true);
  // Every delivered event is in the log (stored ones that were not delivered
  // may be too: the log holds at least what handlers saw).
  sluice::reader_options only_num;
  only_num.type = "num";
  const read_back got = read_log(dir.path(), only_num);
  REQUIRE(got.last == sluice::read_status::end);
  REQUIRE(got.nums == std::vector<std::uint64_t>{2, 8});
  sluice::storage_error err;
  auto r = sluice::log_reader::open(dir.path(), {}, err);
  REQUIRE(r != nullptr);
  std::vector<std::uint64_t> stored_pickies;
  sluice::stored_event e;
  for (sluice::read_status st; (st = r->next(e)) != sluice::read_status::end;) {
    REQUIRE(st == sluice::read_status::event);
    if (e.type != "picky") continue;
    const auto d = types->decode<picky>(e);
    REQUIRE(d.ok());
    stored_pickies.push_back(d->n);
  }
  REQUIRE(stored_pickies == std::vector<std::uint64_t>{4, 6, 10});
}

TEST_CASE("faults: power loss keeps every synced record, in order, and renumbers nothing",
          "[storage][faults][crash]") {
  test::watchdog wd(std::chrono::seconds(240), "power loss");
  test::temp_dir tmp;
  const std::string dir = tmp / "log";
  std::mt19937_64 rng(20261129);
  std::uint64_t acknowledged = 0;  // records known durable (sync returned ok)
  std::uint64_t rounds_with_loss = 0;
  for (int round = 0; round < 40; ++round) {
    INFO("round " << round);
    test::power_io io(dir);
    {
      // make_dirs syncs the folder's entry; the power_io watches the folder.
      sluice::file_log_options o = options(dir, &io, 8192);
      sluice::storage_error err;
      auto log = sluice::file_log::open(o, err);
      INFO(err.describe());
      REQUIRE(log != nullptr);
      std::uint64_t next = log->next_offset();
      REQUIRE(next >= acknowledged);  // nothing acknowledged was lost
      sluice::record_options ro;
      ro.sync = rng() % 2 == 0 ? sluice::sync_policy::every_batch : sluice::sync_policy::never;
      ro.linger = std::chrono::microseconds(0);
      sluice::recorder rec(std::move(log), num_types(), ro);
      const int batches = static_cast<int>(rng() % 20);
      for (int b = 0; b < batches; ++b) {
        const std::uint64_t k = 1 + rng() % 50;
        // Records carry their offset: a record's number is the offset it
        // was written at (the recorder numbers them in the order given).
        for (std::uint64_t i = 0; i < k; ++i) REQUIRE(rec.write(make_num(next++)));
        if (rng() % 3 == 0) {
          if (rec.sync().ok()) acknowledged = next;
        } else if (rng() % 2 == 0) {
          (void)rec.flush();
        }
      }
      io.power_off();
      (void)rec.close();  // fails: no power
    }
    const int keep = static_cast<int>(rng() % 3);
    io.crash(rng, keep);
    // A writer recovers the log (cutting a torn tail); then every acknowledged
    // record is there, in order, and every record that is there is at the
    // offset it was written at.
    {
      sluice::storage_error err;
      auto log = sluice::file_log::open(options(dir, nullptr, 8192), err);
      INFO(err.describe());
      REQUIRE(log != nullptr);
    }
    const read_back rb = read_log(dir);
    INFO(rb.error.describe());
    REQUIRE(rb.last == sluice::read_status::end);
    REQUIRE(rb.offsets.size() >= acknowledged);
    REQUIRE(contiguous(rb.offsets));
    for (std::size_t i = 0; i < rb.nums.size(); ++i) REQUIRE(rb.nums[i] == rb.offsets[i]);
    if (rb.offsets.size() > acknowledged) ++rounds_with_loss;
  }
  CHECK(rounds_with_loss > 0);  // some rounds kept records they had not synced
  // A writer after the last crash recovers and goes on.
  auto log = open_log(options(dir, nullptr, 8192));
  REQUIRE(log->next_offset() >= acknowledged);
}

TEST_CASE("limits: each segment says its writer's largest record, readers follow it",
          "[storage][faults]") {
  test::temp_dir dir;
  struct blob {
    unsigned char bytes[60000];
  };
  auto types = std::make_shared<sluice::codecs>();
  types->add<blob>("blob");
  blob b{};
  for (std::size_t i = 0; i < sizeof b.bytes; ++i) b.bytes[i] = static_cast<unsigned char>(i * 7);
  {
    sluice::file_log_options o = options(dir.path(), nullptr);
    o.max_record = 100000;
    sluice::recorder rec(open_log(o), types);
    for (int i = 0; i < 11; ++i) REQUIRE(rec.write(b));
    REQUIRE(rec.close().ok());
  }
  // A reader whose own limit is smaller reads them: the segment says 100000.
  sluice::reader_options small;
  small.max_record = 1000;
  {
    sluice::storage_error err;
    auto r = sluice::log_reader::open(dir.path(), small, err);
    REQUIRE(r != nullptr);
    sluice::stored_event e;
    int n = 0;
    sluice::read_status s;
    while ((s = r->next(e)) == sluice::read_status::event) ++n;
    REQUIRE(s == sluice::read_status::end);
    REQUIRE(n == 11);
  }
  // Reopening with a smaller limit cuts nothing: the records stay, and new
  // ones go to a segment with the new limit, which refuses larger ones.
  {
    sluice::file_log_options o = options(dir.path(), nullptr);
    o.max_record = 1000;
    auto log = open_log(o);
    REQUIRE(log->recovered().empty());
    REQUIRE(log->next_offset() == 11);
    sluice::recorder rec(std::move(log), types);
    REQUIRE_FALSE(rec.write(b));  // larger than this writer takes: refused when recorded
    REQUIRE(rec.stats().rejected == 1);
    REQUIRE(rec.close().ok());
  }
  sluice::bus bus;
  int replayed = 0;
  auto sub = bus.subscribe([&](const blob& x) { replayed += x.bytes[1] == 7 ? 1 : 0; });
  const sluice::replay_result res = sluice::replay(dir.path(), bus, *types);
  bus.poll();
  REQUIRE(res.complete());
  REQUIRE(replayed == 11);
  bus.stop();
}

TEST_CASE("replay: a shortened log is never a complete replay", "[storage][faults]") {
  test::temp_dir dir;
  {
    sluice::recorder rec(open_log(options(dir.path(), nullptr)), num_types());
    for (std::uint64_t n = 0; n < 40; ++n) REQUIRE(rec.write(make_num(n)));
    REQUIRE(rec.close().ok());
  }
  const std::string seg = test::segments(dir.path())[0];
  const test::walked w = test::walk_segment(seg);
  SECTION("a flipped length bit with whole records after it: damage") {
    std::vector<unsigned char> bytes = test::read_file(seg);
    bytes[w.starts[10] + 2] ^= 0x10;  // the length now runs far past the file's end
    test::write_file(seg, bytes);
    sluice::bus bus;
    const sluice::replay_result res = sluice::replay(dir.path(), bus, *num_types());
    REQUIRE_FALSE(res.ok());
    REQUIRE_FALSE(res.complete());
    REQUIRE(res.published == 10);
    REQUIRE(res.error.file == seg);
    REQUIRE(res.error.offset == w.starts[10]);
    bus.stop();
  }
  SECTION("a torn tail: no damage, but bytes left unread, and where") {
    std::filesystem::resize_file(seg, w.starts[39] + 11);
    sluice::bus bus;
    const sluice::replay_result res = sluice::replay(dir.path(), bus, *num_types());
    REQUIRE(res.ok());
    REQUIRE_FALSE(res.complete());
    REQUIRE(res.published == 39);
    REQUIRE(res.unread_bytes == 11);
    REQUIRE(res.unread_file == seg);
    REQUIRE(res.unread_at == w.starts[39]);
    bus.stop();
  }
  SECTION("a whole log: complete") {
    sluice::bus bus;
    const sluice::replay_result res = sluice::replay(dir.path(), bus, *num_types());
    REQUIRE(res.complete());
    REQUIRE(res.published == 40);
    bus.stop();
  }
}

TEST_CASE("repair: a damaged header of the last segment, and damage in an old segment",
          "[storage][faults]") {
  test::temp_dir dir;
  {
    sluice::recorder rec(open_log(options(dir.path(), nullptr, 4096)), num_types());
    for (std::uint64_t n = 0; n < 200; ++n) {
      REQUIRE(rec.write(make_num(n)));
      if (n % 10 == 9) REQUIRE(rec.flush().ok());  // batches small enough to roll between
    }
    REQUIRE(rec.close().ok());
  }
  const auto segs = test::segments(dir.path());
  REQUIRE(segs.size() >= 3);
  SECTION("the last segment's header") {
    std::vector<unsigned char> bytes = test::read_file(segs.back());
    bytes[20] ^= 1;  // inside the base offset: checksum fails
    test::write_file(segs.back(), bytes);
    sluice::storage_error err;
    REQUIRE(sluice::file_log::open(options(dir.path(), nullptr, 4096), err) == nullptr);
    REQUIRE(err.code == sluice::storage_errc::damaged);
    REQUIRE_THAT(err.message, Contains("repair"));
    sluice::repair_options ro;
    ro.dir = dir.path();
    const sluice::repair_report r = sluice::repair_log(ro);
    INFO(r.error.describe());
    REQUIRE(r.ok());
    REQUIRE(r.headers_rewritten.size() == 1);
    const read_back rb = read_log(dir.path());
    REQUIRE(rb.last == sluice::read_status::end);
    REQUIRE(rb.offsets.size() == 200);
    REQUIRE(contiguous(rb.offsets));
    REQUIRE(open_log(options(dir.path(), nullptr, 4096))->next_offset() == 200);
  }
  SECTION(
      "a record in an old segment: readers stop, or skip and count, and repair keeps the rest") {
    const test::walked w = test::walk_segment(segs[1]);
    std::vector<unsigned char> bytes = test::read_file(segs[1]);
    bytes[w.starts[3] + 40] ^= 4;
    test::write_file(segs[1], bytes);
    const read_back stopped = read_log(dir.path());
    REQUIRE(stopped.last == sluice::read_status::damaged);
    sluice::reader_options skip;
    skip.skip_damaged = true;
    const read_back skipped = read_log(dir.path(), skip);
    REQUIRE(skipped.last == sluice::read_status::end);
    REQUIRE(skipped.offsets.size() == 199);
    REQUIRE(skipped.lost.size() == 1);
    REQUIRE(skipped.lost[0].from == w.offsets[3]);
    REQUIRE(skipped.lost[0].to == w.offsets[3] + 1);
    // A writer opens the log (only the last segment is checked on open).
    REQUIRE(open_log(options(dir.path(), nullptr, 4096))->next_offset() == 200);
    sluice::repair_options ro;
    ro.dir = dir.path();
    const sluice::repair_report r = sluice::repair_log(ro);
    REQUIRE(r.ok());
    REQUIRE(r.records == 199);
    REQUIRE(r.changes.size() == 1);
    const read_back after = read_log(dir.path());
    REQUIRE(after.last == sluice::read_status::end);
    REQUIRE(after.offsets == skipped.offsets);
    REQUIRE(after.lost.size() == 1);
  }
}

TEST_CASE("checkpoint: concurrent stores never leave a damaged file", "[storage][faults]") {
  test::watchdog wd(std::chrono::seconds(120), "checkpoints");
  test::temp_dir dir;
  const std::string path = dir / "consumer.ckpt";
  std::atomic<bool> bad{false};
  std::atomic<bool> stop{false};
  std::vector<std::thread> storers;
  for (int t = 0; t < 4; ++t) {
    storers.emplace_back([&, t] {
      sluice::checkpoint cp(path);
      for (std::uint64_t i = 0; i < 200; ++i)
        if (!cp.store(static_cast<std::uint64_t>(t) * 1000 + i).ok()) bad = true;
    });
  }
  std::thread loader([&] {
    sluice::checkpoint cp(path);
    while (!stop.load()) {
      sluice::storage_error err;
      const auto v = cp.load(err);
      if (!err.ok()) bad = true;
      if (v && (*v % 1000 >= 200 || *v / 1000 >= 4)) bad = true;
    }
  });
  for (auto& t : storers) t.join();
  stop = true;
  loader.join();
  REQUIRE_FALSE(bad.load());
  sluice::storage_error err;
  const auto v = sluice::checkpoint(path).load(err);
  REQUIRE(err.ok());
  REQUIRE(v);
  REQUIRE(*v % 1000 == 199);
  // No temporary file is left behind.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    (void)e;
    ++files;
  }
  REQUIRE(files == 1);
}

TEST_CASE("faults: a log's new folders are synced into their parents", "[storage][faults]") {
  test::temp_dir dir;
  test::fault_io io;
  const std::string nested = dir / "a/b/log";
  auto log = open_log(options(nested, &io));
  const auto made = io.made_dirs();
  REQUIRE(made.size() == 3);
  const auto synced = io.fsynced();
  for (const std::string& m : made) {
    const std::string parent = m.substr(0, m.find_last_of('/'));
    INFO(m << " made; its parent " << parent << " must be synced");
    REQUIRE(std::find(synced.begin(), synced.end(), parent) != synced.end());
  }
}

TEST_CASE("records: an extreme timestamp is held, not overflowed", "[storage][faults]") {
  test::temp_dir dir;
  sluice::recorder rec(open_log(options(dir.path(), nullptr)), num_types());
  sluice::metadata m;
  m.timestamp = INT64_MAX;
  REQUIRE(rec.write(make_num(0), m));
  m.timestamp = INT64_MIN + 1;
  REQUIRE(rec.write(make_num(1), m));
  REQUIRE(rec.close().ok());
  sluice::storage_error err;
  auto r = sluice::log_reader::open(dir.path(), {}, err);
  sluice::stored_event e;
  REQUIRE(r->next(e) == sluice::read_status::event);
  REQUIRE(e.time_ns > 0);  // held at the top, not wrapped to a negative time
  REQUIRE(r->next(e) == sluice::read_status::event);
}

TEST_CASE("codecs: fields() stores no padding, and equal events store equal bytes",
          "[storage][faults]") {
  struct shot {
    std::uint8_t kind;  // then 7 bytes of padding
    double x;
    std::uint16_t y;  // then 6
  };
  sluice::codecs types;
  REQUIRE(types.add<shot>("shot", 1, sluice::fields(&shot::kind, &shot::x, &shot::y)) == nullptr);
  const sluice::codec_entry* c = types.find<shot>();
  REQUIRE(c != nullptr);
  auto encode = [&](const shot& s) {
    std::vector<unsigned char> out;
    sluice::byte_writer w(out);
    c->encode(c->codec.get(), &s, w);
    return out;
  };
  shot a;
  std::memset(static_cast<void*>(&a), 0xAB, sizeof a);  // garbage in the padding
  a.kind = 3;
  a.x = 1.5;
  a.y = 9;
  shot b;
  std::memset(static_cast<void*>(&b), 0x00, sizeof b);
  b.kind = 3;
  b.x = 1.5;
  b.y = 9;
  REQUIRE(encode(a) == encode(b));
  REQUIRE(encode(a).size() == 1 + 8 + 2);
  sluice::stored_event e;
  const auto bytes = encode(a);
  e.type = "shot";
  e.version = 1;
  e.payload.data = bytes.data();
  e.payload.size = bytes.size();
  const auto d = types.decode<shot>(e);
  REQUIRE(d.ok());
  REQUIRE(d->kind == 3);
  REQUIRE(d->x == 1.5);
  REQUIRE(d->y == 9);
}

TEST_CASE("json: output is valid UTF-8, and offsets go on when the file is opened again",
          "[storage][faults]") {
  test::temp_dir dir;
  struct word {
    std::uint32_t id;
  };
  auto types = std::make_shared<sluice::codecs>();
  types->add<word>("word");
  const std::string path = dir / "audit.jsonl";
  for (int round = 0; round < 2; ++round) {
    sluice::storage_error err;
    auto js = sluice::json_sink::open(path, types, err);
    REQUIRE(js != nullptr);
    sluice::recorder rec(std::move(js), types);
    for (std::uint32_t i = 0; i < 3; ++i) REQUIRE(rec.write(word{i}));
    REQUIRE(rec.close().ok());
  }
  const std::vector<unsigned char> text = test::read_file(path);
  std::string s(text.begin(), text.end());
  std::vector<std::string> lines;
  for (std::size_t at = 0; at < s.size();) {
    const std::size_t nl = s.find('\n', at);
    REQUIRE(nl != std::string::npos);
    lines.push_back(s.substr(at, nl - at));
    at = nl + 1;
  }
  REQUIRE(lines.size() == 6);
  for (std::size_t i = 0; i < lines.size(); ++i)
    REQUIRE_THAT(lines[i], Contains("{\"offset\":" + std::to_string(i) + ","));
  // A last line cut short by a crash: ended, and counted past.
  {
    std::FILE* f = std::fopen(path.c_str(), "ab");
    std::fputs("{\"offset\":6,\"ti", f);
    std::fclose(f);
    sluice::storage_error err;
    auto js = sluice::json_sink::open(path, types, err);
    sluice::recorder rec(std::move(js), types);
    REQUIRE(rec.write(word{9}));
    REQUIRE(rec.close().ok());
    const std::vector<unsigned char> t2 = test::read_file(path);
    const std::string s2(t2.begin(), t2.end());
    REQUIRE_THAT(s2, Contains("\"ti\n{\"offset\":6,"));
  }
  // A last line cut short that is longer than the window read back: ended
  // once (one newline, not one per window).
  {
    const std::string garbage(70000, 'x');
    std::FILE* f = std::fopen(path.c_str(), "ab");
    std::fputs(garbage.c_str(), f);
    std::fclose(f);
    const std::size_t before = test::read_file(path).size();
    sluice::storage_error err;
    auto js = sluice::json_sink::open(path, types, err);
    REQUIRE(js != nullptr);
    sluice::recorder rec(std::move(js), types);
    REQUIRE(rec.write(word{10}));
    REQUIRE(rec.close().ok());
    const std::vector<unsigned char> t3 = test::read_file(path);
    const std::string s3(t3.begin() + static_cast<std::ptrdiff_t>(before) - 1, t3.end());
    REQUIRE(s3.substr(0, 3) == "x\n{");  // the garbage, one newline, the next line
    REQUIRE(std::count(s3.begin(), s3.end(), '\n') == 2);
  }
  // Bytes that are not UTF-8 become U+FFFD; valid UTF-8 stays as it is.
  fmt::memory_buffer out;
  sluice::detail::json_escape(out,
                              std::string_view("ok \xC3\xA9 bad \xFF\xC0\x80 cut \xE2\x82", 20));
  const std::string esc(out.data(), out.size());
  REQUIRE(esc == "ok \xC3\xA9 bad \\ufffd\\ufffd\\ufffd cut \\ufffd\\ufffd");
}

TEST_CASE("faults: an acknowledged loss hides no later one", "[storage][faults]") {
  test::temp_dir dir;
  test::fault_io io;
  const sluice::record_options ro = by_flush();
  sluice::recorder rec(open_log(options(dir.path(), &io)), num_types(), ro);
  std::uint64_t n = 0;
  for (; n < 10; ++n) REQUIRE(rec.write(make_num(n)));
  REQUIRE(rec.flush().ok());  // appended, not synced
  io.fail_write_after = 0;
  for (; n < 20; ++n) REQUIRE(rec.write(make_num(n)));
  REQUIRE_FALSE(rec.flush().ok());
  REQUIRE(rec.acknowledge_losses() == 10);
  // The sync of the first ten fails: they are lost too, though they come
  // before the acknowledged ones.
  io.fail_fdatasync = 1;
  const sluice::storage_error e = rec.sync();
  REQUIRE_FALSE(e.ok());
  REQUIRE_THAT(e.message, Contains("10 recorded event(s) lost"));
  auto st = rec.stats();
  REQUIRE(st.failed == 10);
  REQUIRE(st.unsynced == 10);
  REQUIRE(st.unacknowledged == 10);
  REQUIRE(rec.acknowledge_losses() == 10);
  REQUIRE(rec.sync().ok());
  REQUIRE(rec.write(make_num(n)));
  REQUIRE(rec.sync().ok());
  st = rec.stats();
  REQUIRE(st.synced + st.unsynced == st.written);
  REQUIRE(rec.close().ok());
}

TEST_CASE("faults: a failed fdatasync while rolling is the next sync's error",
          "[storage][faults]") {
  test::temp_dir dir;
  test::fault_io io;
  auto log = open_log(options(dir.path(), &io, 4096));
  sluice::file_log* raw = log.get();
  const sluice::record_options ro = by_flush();
  sluice::recorder rec(std::move(log), num_types(), ro);
  std::uint64_t n = 0;
  for (; n < 10; ++n) REQUIRE(rec.write(make_num(n)));
  REQUIRE(rec.sync().ok());
  const std::size_t segments_before = raw->segment_count();
  // Fill the segment past its size without syncing; the roll's sync fails.
  io.fail_fdatasync = 1;
  while (raw->segment_count() == segments_before) {
    REQUIRE(rec.write(make_num(n++)));
    REQUIRE(rec.flush().ok());  // appends succeed (the roll went on in a fresh segment)
    REQUIRE(n < 1000);
  }
  REQUIRE(raw->sync_failures() == 1);
  const sluice::storage_error e = rec.sync();
  REQUIRE_FALSE(e.ok());  // not "ok" over records whose sync failed
  REQUIRE_THAT(e.message, Contains("not known to be durable"));
  REQUIRE(rec.stats().unsynced > 0);
  rec.acknowledge_losses();
  REQUIRE(rec.write(make_num(n++)));
  REQUIRE(rec.sync().ok());
  REQUIRE(rec.close().ok());
  // The fresh segment announces what was not known to be durable; the log
  // reads to its end.
  const read_back rb = read_log(dir.path());
  REQUIRE(rb.last == sluice::read_status::end);
  REQUIRE(rb.nums.size() == n);
}

TEST_CASE("faults: a sync() during close() waits for close's sync", "[storage][faults]") {
  struct slow_close_sink final : sluice::sink {
    std::atomic<bool> closing{false}, release{false}, closed{false};
    sluice::storage_error append(sluice::record_batch& b) override {
      b.set_stored(b.size());
      return {};
    }
    sluice::storage_error sync() override { return {}; }
    sluice::storage_error close() override {
      closing = true;
      while (!release.load()) std::this_thread::yield();
      closed = true;
      return {};
    }
  };
  test::watchdog wd(std::chrono::seconds(60), "sync during close");
  auto owned = std::make_unique<slow_close_sink>();
  slow_close_sink* sink = owned.get();
  sluice::record_options ro;
  ro.sync = sluice::sync_policy::never;
  sluice::recorder rec(std::move(owned), num_types(), ro);
  REQUIRE(rec.write(make_num(1)));
  std::thread closer([&] { (void)rec.close(); });
  while (!sink->closing.load()) std::this_thread::yield();
  std::atomic<bool> saw_closed{false};
  std::thread syncer([&] {
    (void)rec.sync();
    saw_closed = sink->closed.load();  // a sync() may return only once close has synced
  });
  sink->release = true;
  syncer.join();
  closer.join();
  REQUIRE(saw_closed.load());
}

TEST_CASE("faults: an error observer may sync while close() reports its error",
          "[storage][faults]") {
  struct failing_close_sink final : sluice::sink {
    sluice::storage_error append(sluice::record_batch& b) override {
      b.set_stored(b.size());
      return {};
    }
    sluice::storage_error sync() override { return {}; }
    sluice::storage_error close() override {
      return sluice::storage_error::make(sluice::storage_errc::io, "close failed");
    }
  };
  test::watchdog wd(std::chrono::seconds(60), "observer syncs during close");
  sluice::recorder* self = nullptr;
  int observed = 0;
  bool sync_failed = false;
  sluice::record_options ro;
  ro.sync = sluice::sync_policy::never;
  ro.on_error = [&](const sluice::storage_error& e) {
    if (e.message != "close failed") return;
    ++observed;
    sync_failed = !self->sync().ok();  // waited for close, which waited for this call
  };
  sluice::recorder rec(std::make_unique<failing_close_sink>(), num_types(), ro);
  self = &rec;
  REQUIRE(rec.write(make_num(1)));
  const sluice::storage_error e = rec.close();
  REQUIRE_FALSE(e.ok());
  REQUIRE(observed == 1);
  REQUIRE(sync_failed);  // the record's sync was close's, and it failed
  REQUIRE(rec.stats().unsynced == 1);
}

TEST_CASE("faults: losses on both sides of a sync are counted once each", "[storage][faults]") {
  test::temp_dir dir;
  test::fault_io io;
  sluice::recorder rec(open_log(options(dir.path(), &io)), num_types(), by_flush());
  std::uint64_t n = 0;
  io.fail_write_after = 0;
  for (; n < 10; ++n) REQUIRE(rec.write(make_num(n)));
  REQUIRE_FALSE(rec.flush().ok());    // lost by a failed append
  REQUIRE(rec.sync().ok() == false);  // the loss is sticky until acknowledged
  io.fail_write_after = 0;
  for (; n < 20; ++n) REQUIRE(rec.write(make_num(n)));
  REQUIRE_FALSE(rec.flush().ok());  // lost too, after a sync
  io.fail_fdatasync = 1;
  REQUIRE_FALSE(rec.sync().ok());  // and this sync fails: nothing new to lose
  auto st = rec.stats();
  REQUIRE(st.failed == 20);
  REQUIRE(st.unacknowledged == 20);
  REQUIRE(st.synced + st.unsynced <= st.written);
  REQUIRE(rec.acknowledge_losses() == 20);
  REQUIRE(rec.write(make_num(n++)));
  REQUIRE(rec.sync().ok());
  st = rec.stats();
  REQUIRE(st.unacknowledged == 0);
  REQUIRE(st.synced + st.unsynced == st.written);
  REQUIRE(rec.close().ok());
}

TEST_CASE("faults: a zeroed header with valid records after it is refused, then repaired",
          "[storage][faults]") {
  test::temp_dir dir;
  {
    sluice::recorder rec(open_log(options(dir.path(), nullptr)), num_types());
    for (std::uint64_t n = 0; n < 20; ++n) REQUIRE(rec.write(make_num(n)));
    REQUIRE(rec.close().ok());
  }
  const auto segs = test::segments(dir.path());
  REQUIRE(segs.size() == 1);
  std::vector<unsigned char> bytes = test::read_file(segs[0]);
  std::fill(bytes.begin(), bytes.begin() + 64, 0);
  test::write_file(segs[0], bytes);
  sluice::storage_error err;
  REQUIRE(sluice::file_log::open(options(dir.path(), nullptr), err) == nullptr);
  REQUIRE(err.code == sluice::storage_errc::damaged);
  REQUIRE_THAT(err.message, Contains("repair"));
  REQUIRE(test::read_file(segs[0]) == bytes);  // unchanged
  sluice::repair_options ro;
  ro.dir = dir.path();
  const sluice::repair_report r = sluice::repair_log(ro);
  REQUIRE(r.ok());
  const read_back rb = read_log(dir.path());
  REQUIRE(rb.last == sluice::read_status::end);
  REQUIRE(rb.nums.size() == 20);
  REQUIRE(open_log(options(dir.path(), nullptr))->next_offset() == 20);
}

TEST_CASE("faults: an empty segment replaced by a roll keeps its announcement of lost offsets",
          "[storage][faults]") {
  test::temp_dir dir;
  test::fault_io io;
  {
    auto log = open_log(options(dir.path(), &io));
    sluice::file_log* raw = log.get();
    const sluice::record_options ro = by_flush();
    sluice::recorder rec(std::move(log), num_types(), ro);
    for (std::uint64_t n = 0; n < 10; ++n) REQUIRE(rec.write(make_num(n)));
    REQUIRE(rec.sync().ok());
    io.fail_fdatasync = 1;
    for (std::uint64_t n = 10; n < 15; ++n) REQUIRE(rec.write(make_num(n)));
    REQUIRE_FALSE(rec.sync().ok());  // a fresh, empty segment from 15 says [10, 15) may be lost
    REQUIRE(raw->segment_count() == 2);
    // Its own first sync fails too: it is replaced, and the new header must
    // still say [10, 15).
    io.fail_fdatasync = 1;
    REQUIRE_FALSE(rec.sync().ok());
    rec.acknowledge_losses();
    REQUIRE(rec.close().ok());
  }
  const auto segs = test::segments(dir.path());
  REQUIRE(segs.size() == 2);
  sluice::storage::segment_header h;
  const std::vector<unsigned char> bytes = test::read_file(segs.back());
  REQUIRE(sluice::storage::read_segment_header(bytes.data(), h) == nullptr);
  REQUIRE(h.base == 15);
  REQUIRE(h.lost_from == 10);
  REQUIRE(h.reason == sluice::storage::lost_reason::failed_sync);
  // Reopened with another record limit, the writer replaces the empty
  // segment again: the announcement stays.
  {
    sluice::file_log_options o = options(dir.path(), nullptr);
    o.max_record = 1000;
    auto log = open_log(o);
    sluice::recorder rec(std::move(log), num_types());
    REQUIRE(rec.write(make_num(15)));
    REQUIRE(rec.close().ok());
  }
  const std::vector<unsigned char> again = test::read_file(test::segments(dir.path()).back());
  REQUIRE(sluice::storage::read_segment_header(again.data(), h) == nullptr);
  REQUIRE(h.base == 15);
  REQUIRE(h.lost_from == 10);
  REQUIRE(h.max_record == 1000);
  // Cut what the old segment held after the last good sync (as a power cut
  // may): readers report the offsets as lost, not as damage.
  cut_after_sync(segs.front());
  const read_back rb = read_log(dir.path());
  REQUIRE(rb.last == sluice::read_status::end);
  REQUIRE(rb.lost.size() == 1);
  REQUIRE(rb.lost[0].from == 10);
  REQUIRE(rb.lost[0].to == 15);
  REQUIRE(rb.nums.size() == 11);
}

TEST_CASE("faults: an empty segment whose replacement cannot be made stays, announcement and all",
          "[storage][faults]") {
  test::temp_dir dir;
  test::fault_io io;
  {
    sluice::recorder rec(open_log(options(dir.path(), &io)), num_types(), by_flush());
    for (std::uint64_t n = 0; n < 10; ++n) REQUIRE(rec.write(make_num(n)));
    REQUIRE(rec.sync().ok());
    io.fail_fdatasync = 1;
    for (std::uint64_t n = 10; n < 15; ++n) REQUIRE(rec.write(make_num(n)));
    REQUIRE_FALSE(rec.sync().ok());  // a fresh, empty segment from 15 says [10, 15) may be lost
    // Its own sync fails, and so does the sync of the file meant to replace
    // it: the empty segment was deleted first, and with it the announcement.
    io.fail_fdatasync = 2;
    REQUIRE_FALSE(rec.sync().ok());
    rec.acknowledge_losses();
    (void)rec.close();
  }
  const auto names = test::names_in(dir.path());
  for (const auto& n : names) REQUIRE(n.find(".new") == std::string::npos);  // nothing left over
  const auto segs = test::segments(dir.path());
  REQUIRE(segs.size() == 2);
  sluice::storage::segment_header h;
  const std::vector<unsigned char> bytes = test::read_file(segs.back());
  REQUIRE(sluice::storage::read_segment_header(bytes.data(), h) == nullptr);
  REQUIRE(h.base == 15);
  REQUIRE(h.lost_from == 10);
  // A power cut takes what the first segment held after its last good sync:
  // the offsets are reported lost, and the log goes on at 15, not at 10.
  cut_after_sync(segs.front());
  {
    sluice::recorder rec(open_log(options(dir.path(), nullptr)), num_types());
    REQUIRE(rec.write(make_num(15)));
    REQUIRE(rec.close().ok());
  }
  const read_back rb = read_log(dir.path());
  REQUIRE(rb.last == sluice::read_status::end);
  REQUIRE(rb.lost.size() == 1);
  REQUIRE(rb.lost[0].from == 10);
  REQUIRE(rb.offsets.size() == 11);
  REQUIRE(rb.offsets.back() == 15);
}

TEST_CASE("faults: a log that fails to open is left as it was", "[storage][faults]") {
  test::temp_dir dir;
  {
    sluice::recorder rec(open_log(options(dir.path(), nullptr)), num_types(), by_flush());
    for (std::uint64_t n = 0; n < 10; ++n) REQUIRE(rec.write(make_num(n)));
    REQUIRE(rec.close().ok());
  }
  const auto before = test::names_in(dir.path());
  // Recovery's sync of the last segment fails: open() fails. Its clean-up
  // once synced again, failed again (the second failure) and rolled to a new
  // segment announcing offsets from 0 as lost.
  test::fault_io io;
  io.fail_fdatasync = 2;
  sluice::storage_error err;
  REQUIRE(sluice::file_log::open(options(dir.path(), &io), err) == nullptr);
  REQUIRE_FALSE(err.ok());
  REQUIRE(test::names_in(dir.path()) == before);
  const read_back rb = read_log(dir.path());
  REQUIRE(rb.last == sluice::read_status::end);
  REQUIRE(rb.lost.empty());
  REQUIRE(rb.nums.size() == 10);
}

TEST_CASE("faults: a follower reads records written over a torn tail it had seen",
          "[storage][faults]") {
  test::temp_dir dir;
  {
    sluice::recorder rec(open_log(options(dir.path(), nullptr)), num_types());
    for (std::uint64_t n = 0; n < 7; ++n) REQUIRE(rec.write(make_num(n)));
    REQUIRE(rec.close().ok());
  }
  const std::string seg = test::segments(dir.path()).at(0);
  const std::vector<unsigned char> full = test::read_file(seg);
  const test::walked w = test::walk_segment(seg);
  REQUIRE(w.offsets.size() == 7);
  const auto p5 = static_cast<std::ptrdiff_t>(w.starts[5]);
  // The log holds 0..4 and the torn start of another record 5 (its checksum
  // differs from the one that will be written).
  std::vector<unsigned char> torn(full.begin(), full.begin() + p5 + 12);
  torn[static_cast<std::size_t>(p5) + 5] ^= 0x10;
  test::write_file(seg, torn);
  sluice::storage_error err;
  auto follower = sluice::log_reader::open(dir.path(), {}, err);
  REQUIRE(follower != nullptr);
  sluice::stored_event e;
  for (std::uint64_t n = 0; n < 5; ++n) {
    REQUIRE(follower->next(e) == sluice::read_status::event);
    REQUIRE(e.offset == n);
  }
  REQUIRE(follower->next(e) == sluice::read_status::end);
  REQUIRE(follower->pending_bytes() == 12);
  // The writer cuts the torn record and writes 5 and 6 in its place.
  test::write_file(seg, full);
  for (std::uint64_t n = 5; n < 7; ++n) {
    const sluice::read_status s = follower->next(e);
    INFO(follower->error().describe());
    REQUIRE(s == sluice::read_status::event);
    REQUIRE(e.offset == n);
  }
  REQUIRE(follower->next(e) == sluice::read_status::end);
  REQUIRE(follower->pending_bytes() == 0);
}

TEST_CASE("repair: damage between the header and the first record is removed",
          "[storage][faults]") {
  test::temp_dir dir;
  {
    sluice::recorder rec(open_log(options(dir.path(), nullptr)), num_types());
    for (std::uint64_t n = 0; n < 5; ++n) REQUIRE(rec.write(make_num(n)));
    REQUIRE(rec.close().ok());
  }
  // Four stray bytes right after the header: the records after them keep
  // their offsets from 0, in the same segment. The repair reported the
  // bytes as removed but kept them in the file (found by fuzz_log).
  const std::string seg = test::segments(dir.path()).at(0);
  std::vector<unsigned char> bytes = test::read_file(seg);
  const std::vector<unsigned char> stray{1, 0, 0, 0};
  bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(sluice::storage::segment_header_size),
               stray.begin(), stray.end());
  test::write_file(seg, bytes);
  REQUIRE(read_log(dir.path()).last == sluice::read_status::damaged);
  sluice::repair_options ro;
  ro.dir = dir.path();
  const sluice::repair_report r = sluice::repair_log(ro);
  INFO(r.error.describe());
  REQUIRE(r.ok());
  REQUIRE(r.records == 5);
  REQUIRE(r.changes.size() == 1);
  REQUIRE(r.changes[0].bytes == 4);
  const read_back rb = read_log(dir.path());
  REQUIRE(rb.last == sluice::read_status::end);
  REQUIRE(contiguous(rb.offsets));
  REQUIRE(rb.nums.size() == 5);
  REQUIRE(sluice::repair_log(ro).changes.empty());  // nothing left to repair
}

TEST_CASE("repair: an interrupted repair run again keeps every record", "[storage][faults]") {
  test::temp_dir dir;
  {
    sluice::recorder rec(open_log(options(dir.path(), nullptr)), num_types());
    for (std::uint64_t n = 0; n < 20; ++n) REQUIRE(rec.write(make_num(n)));
    REQUIRE(rec.close().ok());
  }
  const std::string seg = test::segments(dir.path()).at(0);
  const test::walked w = test::walk_segment(seg);
  std::vector<unsigned char> bytes = test::read_file(seg);
  bytes[w.starts[10] + 30] ^= 2;  // record 10
  test::write_file(seg, bytes);
  // The first run stops where it would cut the segment (after writing the
  // new one for 11..19).
  test::fault_io io;
  io.fail_ftruncate = 1;
  sluice::repair_options ro;
  ro.dir = dir.path();
  ro.io = &io;
  const sluice::repair_report first = sluice::repair_log(ro);
  REQUIRE_FALSE(first.ok());
  REQUIRE(test::segments(dir.path()).size() == 2);
  // Run again: the new segment is recognised, not moved aside.
  const sluice::repair_report second = sluice::repair_log(ro);
  INFO(second.error.describe());
  REQUIRE(second.ok());
  REQUIRE(second.records == 19);
  const read_back rb = read_log(dir.path());
  REQUIRE(rb.last == sluice::read_status::end);
  REQUIRE(rb.nums.size() == 19);
  REQUIRE(rb.lost.size() == 1);
  REQUIRE(rb.lost[0].from == 10);
  const sluice::repair_report third = sluice::repair_log(ro);
  REQUIRE(third.ok());
  REQUIRE_FALSE(third.changed());
  // Every damaged byte is kept aside, once.
  std::size_t side_files = 0;
  for (const std::string& name : test::names_in(dir.path()))
    if (name.find(".damaged-") != std::string::npos) ++side_files;
  REQUIRE(side_files >= 1);
}

TEST_CASE("repair: a segment of nothing but damage never replaces an earlier side file",
          "[storage][faults]") {
  test::temp_dir dir;
  const std::string seg = dir / "00000000000000000000.slog";
  test::write_file(seg, std::vector<unsigned char>(100, 0xEE));
  test::write_file(seg + ".damaged-0", std::vector<unsigned char>{1, 2, 3});
  sluice::repair_options ro;
  ro.dir = dir.path();
  const sluice::repair_report r = sluice::repair_log(ro);
  REQUIRE(r.ok());
  REQUIRE(r.changes.size() == 1);
  REQUIRE(r.changes[0].saved_to != seg + ".damaged-0");
  REQUIRE(test::read_file(seg + ".damaged-0") == std::vector<unsigned char>{1, 2, 3});
  REQUIRE(test::read_file(r.changes[0].saved_to) == std::vector<unsigned char>(100, 0xEE));
}

TEST_CASE("codecs: fields() refuses a bool that is neither 0 nor 1, and another version",
          "[storage]") {
  struct flags {
    std::uint32_t id = 0;
    bool on = false;
  };
  sluice::codecs types;
  REQUIRE(types.add<flags>("flags", 3, sluice::fields(&flags::id, &flags::on)) == nullptr);
  std::vector<unsigned char> payload = {7, 0, 0, 0, 1};  // id 7, on
  sluice::stored_event e;
  e.type = "flags";
  e.version = 3;
  e.payload = sluice::byte_view{payload.data(), payload.size()};
  auto d = types.decode<flags>(e);
  REQUIRE(d.ok());
  REQUIRE(d->id == 7);
  REQUIRE(d->on);
  payload[4] = 2;  // not a bool
  d = types.decode<flags>(e);
  REQUIRE_FALSE(d.ok());
  REQUIRE(d.error().code == sluice::decode_errc::malformed);
  payload[4] = 0;
  e.version = 2;  // written by another version of the type
  d = types.decode<flags>(e);
  REQUIRE_FALSE(d.ok());
  REQUIRE(d.error().code == sluice::decode_errc::unsupported_version);
}

TEST_CASE(
    "faults: events the write-ahead log lost stay undelivered when a poll_for budget splits "
    "their batch",
    "[storage][faults]") {
  write_ahead_bus w(num_types());
  REQUIRE(w.rec);
  std::vector<std::uint64_t> delivered;
  auto sub = w.bus.subscribe([&](const num& x) { delivered.push_back(x.n); });
  auto p = w.bus.make_producer();
  for (std::uint64_t n = 0; n < 5; ++n)
    REQUIRE(p.publish(make_num(n)) == sluice::publish_result::ok);
  w.io.fail_write_after = 0;  // the batch's append fails
  // The budget runs out after the first event: the other four stay in the
  // lane's batch for the next drainer, which must not deliver them either.
  REQUIRE(w.bus.poll_for(std::chrono::nanoseconds(1)) == 1);
  REQUIRE(w.bus.poll() == 4);
  CHECK(delivered.empty());
  CHECK(w.not_durable.load() == 5);
  w.rec.rec->acknowledge_losses();
  REQUIRE(p.publish(make_num(9)) == sluice::publish_result::ok);
  REQUIRE(w.bus.poll() == 1);
  CHECK(delivered == std::vector<std::uint64_t>{9});
  p = sluice::producer{};
  w.bus.stop();
  CHECK(w.bus.stats<num>().balanced());
  CHECK(w.bus.stats<num>().filtered == 5);
}
