// Corruption: a durable log damaged the ways a disk or a crash damages one.
//
// For every kind of damage the log is checked twice, on separate copies of
// the same bytes: a log_reader (which never changes the folder) must return
// every whole record before the damage and then name the damaged file and
// byte offset (or, for a torn tail, stop at the end with the torn bytes
// pending); and file_log::open must recover: keep every whole record before
// the damage, move the rest byte for byte to the side file it names, and
// append after the last good record.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <sluice/storage.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "storage_support.hpp"

namespace {

namespace fs = std::filesystem;
using bytes_t = std::vector<unsigned char>;
using Catch::Matchers::Contains;

// The stored event: trivially copyable, stored with memcpy under "tick".
struct tick {
  std::uint64_t seq = 0;
  std::uint32_t a = 0;
  std::uint32_t b = 0;
};

tick make_tick(std::uint64_t i) {
  tick t;
  t.seq = i;
  t.a = static_cast<std::uint32_t>(i * 2654435761U + 17U);
  t.b = ~static_cast<std::uint32_t>(i);
  return t;
}

bool same(const tick& x, const tick& y) {
  return x.seq == y.seq && x.a == y.a && x.b == y.b;
}

// Every record of these logs has the same size: frame, fixed body, "tick", payload.
constexpr std::size_t header_size = sluice::storage::segment_header_size;
constexpr std::size_t body_size = sluice::storage::body_fixed + 4 + sizeof(tick);
constexpr std::size_t record_size = sluice::storage::frame_size + body_size;
static_assert(record_size == 64, "the arithmetic below expects 64-byte records");

std::uint64_t record_pos(std::uint64_t i) {
  return header_size + i * record_size;
}

std::shared_ptr<const sluice::codecs> tick_codecs() {
  static const std::shared_ptr<const sluice::codecs> types = [] {
    auto t = std::make_shared<sluice::codecs>();
    t->add<tick>("tick");
    return std::shared_ptr<const sluice::codecs>(std::move(t));
  }();
  return types;
}

#define REQUIRE_OK(expr)    \
  do {                      \
    const auto e_ = (expr); \
    INFO(e_.describe());    \
    REQUIRE(e_.ok());       \
  } while (false)

sluice::file_log_options log_options(const std::string& dir, std::size_t segment_bytes) {
  sluice::file_log_options o;
  o.dir = dir;
  o.segment_bytes = segment_bytes;
  return o;
}

constexpr std::size_t big_segments = std::size_t{64} << 20;

// Appends ticks [first, first + count) through a recorder, handing them to
// the log `per_batch` at a time, and closes it.
void append_ticks(std::unique_ptr<sluice::file_log> log, std::uint64_t first, std::size_t count,
                  std::size_t per_batch) {
  REQUIRE(log != nullptr);
  REQUIRE(log->next_offset() == first);
  sluice::record_options ro;
  ro.sync = sluice::sync_policy::never;  // close() syncs
  sluice::recorder rec(std::move(log), tick_codecs(), ro);
  for (std::size_t i = 0; i < count; ++i) {
    REQUIRE(rec.write(make_tick(first + i)));
    if ((i + 1) % per_batch == 0) REQUIRE_OK(rec.flush());
  }
  REQUIRE_OK(rec.close());
  const sluice::recorder_stats st = rec.stats();
  REQUIRE(st.written == count);
  REQUIRE(st.synced == count);  // sync_policy::never: close() still syncs
  REQUIRE(st.syncs >= 1);
  REQUIRE(st.failed == 0);
  REQUIRE(st.unsynced == 0);
  REQUIRE(st.dropped == 0);
}

std::unique_ptr<sluice::file_log> open_log(const std::string& dir,
                                           std::size_t segment_bytes = big_segments) {
  sluice::storage_error err;
  auto log = sluice::file_log::open(log_options(dir, segment_bytes), err);
  INFO(err.describe());
  REQUIRE(err.ok());
  REQUIRE(log != nullptr);
  return log;
}

// A fresh log of `count` ticks.
void make_log(const std::string& dir, std::size_t count, std::size_t segment_bytes = big_segments,
              std::size_t per_batch = 1000000) {
  auto log = open_log(dir, segment_bytes);
  REQUIRE(log->recovered().empty());
  append_ticks(std::move(log), 0, count, per_batch);
}

// What a log_reader gives for a whole folder.
struct read_result {
  std::vector<std::uint64_t> offsets;
  std::vector<tick> ticks;
  std::size_t undecodable = 0;
  sluice::read_status last = sluice::read_status::event;
  sluice::storage_error error;
  std::uint64_t pending = 0;
  std::vector<sluice::lost_records> lost;  // reported on the way (reading went on)
};

read_result read_all(const std::string& dir, bool skip_damaged = false) {
  read_result out;
  sluice::storage_error err;
  sluice::reader_options ro;
  ro.skip_damaged = skip_damaged;
  auto r = sluice::log_reader::open(dir, ro, err);
  INFO(err.describe());
  REQUIRE(r != nullptr);
  sluice::stored_event e;
  for (std::size_t guard = 0; guard < 10000000; ++guard) {
    out.last = r->next(e);
    if (out.last == sluice::read_status::lost) {
      out.lost.push_back(r->lost());
      continue;
    }
    if (out.last != sluice::read_status::event) break;
    out.offsets.push_back(e.offset);
    const sluice::decoded<tick> d = tick_codecs()->decode<tick>(e);
    if (!d || e.type != "tick" || e.version != 1 || e.has_key || e.replayed) {
      ++out.undecodable;
    } else {
      out.ticks.push_back(d.value());
    }
  }
  out.error = r->error();
  out.pending = r->pending_bytes();
  // Stopping is stable: damage stays damage, the end stays the end.
  REQUIRE(r->next(e) == out.last);
  return out;
}

// The reader returned exactly ticks [0, count), in order, with their payloads.
void require_ticks(const read_result& r, std::uint64_t count) {
  REQUIRE(r.undecodable == 0);
  REQUIRE(r.offsets.size() == count);
  REQUIRE(r.ticks.size() == count);
  std::size_t wrong = 0;
  std::uint64_t first_wrong = 0;
  for (std::uint64_t i = 0; i < count; ++i) {
    if (r.offsets[i] != i || !same(r.ticks[i], make_tick(i))) {
      if (wrong++ == 0) first_wrong = i;
    }
  }
  INFO("first wrong record: " << first_wrong);
  REQUIRE(wrong == 0);
}

using test::walked;

walked walk(const std::string& path) {
  walked w = test::walk_segment(path);
  INFO(path << ": " << w.header_error);
  REQUIRE(w.has_header);
  return w;
}

void copy_log(const std::string& from, const std::string& to) {
  std::error_code ec;
  fs::remove_all(to, ec);
  fs::copy(from, to, fs::copy_options::recursive, ec);
  REQUIRE(!ec);
}

void truncate_file(const std::string& path, std::uint64_t size) {
  std::error_code ec;
  fs::resize_file(path, size, ec);
  REQUIRE(!ec);
}

void flip_bit(const std::string& path, std::uint64_t at, int bit) {
  bytes_t b = test::read_file(path);
  REQUIRE(at < b.size());
  b[at] = static_cast<unsigned char>(b[at] ^ (1U << bit));
  test::write_file(path, b);
}

void append_bytes(const std::string& path, const bytes_t& more) {
  bytes_t b = test::read_file(path);
  b.insert(b.end(), more.begin(), more.end());
  test::write_file(path, b);
}

// Rewrites a segment header field and seals the header again with a valid CRC.
void patch_header_u32(const std::string& path, std::size_t at, std::uint32_t v) {
  bytes_t b = test::read_file(path);
  REQUIRE(b.size() >= header_size);
  sluice::storage::store_le<std::uint32_t>(b.data() + at, v);
  sluice::storage::store_le<std::uint32_t>(b.data() + 60, sluice::detail::crc32c(b.data(), 60));
  test::write_file(path, b);
}

// Rewrites a record body field and seals the record again with a valid CRC.
void patch_record_u16(const std::string& path, std::uint64_t record_at, std::size_t body_at,
                      std::uint16_t v) {
  bytes_t b = test::read_file(path);
  REQUIRE(record_at + sluice::storage::frame_size + body_at + 2 <= b.size());
  unsigned char* p = b.data() + record_at;
  sluice::storage::store_le<std::uint16_t>(p + sluice::storage::frame_size + body_at, v);
  const auto body = sluice::storage::load_le<std::uint32_t>(p);
  sluice::storage::store_le<std::uint32_t>(
      p + 4, sluice::detail::crc32c(p + sluice::storage::frame_size, body));
  test::write_file(path, b);
}

std::vector<std::string> side_files(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".damaged-") != std::string::npos)
      out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

// Snapshot of every file in a folder (name -> bytes), to prove nothing changed.
std::vector<std::pair<std::string, bytes_t>> snapshot(const std::string& dir) {
  std::vector<std::pair<std::string, bytes_t>> out;
  for (const auto& e : fs::directory_iterator(dir))
    out.emplace_back(e.path().filename().string(), test::read_file(e.path().string()));
  std::sort(out.begin(), out.end());
  return out;
}

// One damaged log and what must be found in it.
struct expected_damage {
  std::string file;         // the damaged segment
  std::uint64_t at = 0;     // byte offset of the first damaged byte in it
  std::uint64_t good = 0;   // whole records before the damage (all segments)
  bool torn = false;        // a torn tail: the reader stops at the end with it pending
  const char* reason = "";  // a phrase of the reason (reader and recovery)
  std::size_t segment_bytes = big_segments;
};

// Checks the reader and then recovery on the damaged log in `dir`.
void check_damaged_log(const std::string& dir, const expected_damage& x) {
  INFO("damage at byte " << x.at << " of " << x.file << ", " << x.good << " good records");
  const bytes_t damaged = test::read_file(x.file);
  REQUIRE(x.at < damaged.size());
  const bytes_t head(damaged.begin(), damaged.begin() + static_cast<std::ptrdiff_t>(x.at));
  const bytes_t tail(damaged.begin() + static_cast<std::ptrdiff_t>(x.at), damaged.end());

  // (b) The reader, before any writer opened the log.
  {
    const read_result r = read_all(dir);
    require_ticks(r, x.good);
    if (x.torn) {
      REQUIRE(r.last == sluice::read_status::end);
      REQUIRE(r.pending == tail.size());
    } else {
      REQUIRE(r.last == sluice::read_status::damaged);
      REQUIRE(r.error.code == sluice::storage_errc::damaged);
      REQUIRE(r.error.file == x.file);
      REQUIRE(r.error.offset == x.at);
      REQUIRE_THAT(r.error.message, Contains(x.reason));
    }
    REQUIRE(test::read_file(x.file) == damaged);  // reading changes nothing
  }

  // (a) Recovery.
  auto log = open_log(dir, x.segment_bytes);
  REQUIRE(log->recovered().size() == 1);
  const sluice::damage_report& d = log->recovered().front();
  REQUIRE(d.file == x.file);
  REQUIRE(d.offset == x.at);
  REQUIRE(d.bytes == tail.size());
  REQUIRE_THAT(d.reason, Contains(x.torn ? "incomplete" : x.reason));
  REQUIRE(d.saved_to == x.file + ".damaged-" + std::to_string(x.at));
  REQUIRE(test::read_file(d.saved_to) == tail);
  REQUIRE(test::read_file(x.file) == head);
  REQUIRE(side_files(dir) == std::vector<std::string>{d.saved_to});
  REQUIRE(log->next_offset() == x.good);

  // Appends go on from the last good record and read back whole.
  append_ticks(std::move(log), x.good, 5, 2);
  {
    const read_result r = read_all(dir);
    require_ticks(r, x.good + 5);
    REQUIRE(r.last == sluice::read_status::end);
    REQUIRE(r.pending == 0);
  }
  // Opening again finds nothing more to recover; the side file stays.
  {
    auto again = open_log(dir, x.segment_bytes);
    REQUIRE(again->recovered().empty());
    REQUIRE(again->next_offset() == x.good + 5);
  }
  REQUIRE(test::read_file(x.file + ".damaged-" + std::to_string(x.at)) == tail);
}

// Damage with valid records after it: not a torn tail. Readers stop at it
// (or, told to, skip it and report the offsets lost); a writer refuses to open
// the log, changing nothing; repair_log keeps every valid record at its
// offset, moves the damaged bytes aside, and says what is missing; then the
// writer opens it and goes on, and a second repair finds nothing.
struct expected_mid_damage {
  std::string file;
  std::uint64_t at = 0;      // byte offset of the damaged record
  std::uint64_t bytes = 0;   // its size
  std::uint64_t victim = 0;  // its offset
  std::uint64_t total = 0;   // records in the log before the damage
  const char* reason = "";
  std::size_t segment_bytes = big_segments;
};

void check_mid_damage(const std::string& dir, const expected_mid_damage& x) {
  INFO("record " << x.victim << " damaged at byte " << x.at << " of " << x.file);
  const auto before = snapshot(dir);
  const bytes_t damaged = test::read_file(x.file);
  std::vector<std::uint64_t> kept;
  for (std::uint64_t i = 0; i < x.total; ++i)
    if (i != x.victim) kept.push_back(i);
  {
    const read_result r = read_all(dir);
    REQUIRE(r.last == sluice::read_status::damaged);
    REQUIRE(r.error.file == x.file);
    REQUIRE(r.error.offset == x.at);
    REQUIRE_THAT(r.error.message, Contains(x.reason));
    REQUIRE(r.offsets.size() == x.victim);
  }
  {
    const read_result r = read_all(dir, true);  // skip_damaged
    REQUIRE(r.last == sluice::read_status::end);
    REQUIRE(r.offsets == kept);
    REQUIRE(r.lost.size() == 1);
    REQUIRE(r.lost[0].from == x.victim);
    REQUIRE(r.lost[0].to == x.victim + 1);
    REQUIRE(r.lost[0].file == x.file);
    REQUIRE(r.lost[0].offset == x.at);
  }
  {
    sluice::storage_error err;
    auto log = sluice::file_log::open(log_options(dir, x.segment_bytes), err);
    REQUIRE(log == nullptr);
    REQUIRE(err.code == sluice::storage_errc::damaged);
    REQUIRE(err.file == x.file);
    REQUIRE(err.offset == x.at);
    REQUIRE_THAT(err.message, Contains("not a torn tail"));
    REQUIRE_THAT(err.message, Contains("repair"));
  }
  REQUIRE(snapshot(dir) == before);  // refusing changed nothing

  sluice::repair_options ro;
  ro.dir = dir;
  ro.dry_run = true;
  const sluice::repair_report dry = sluice::repair_log(ro);
  REQUIRE(dry.ok());
  REQUIRE(dry.changed());
  REQUIRE(snapshot(dir) == before);  // a dry run changes nothing

  ro.dry_run = false;
  const sluice::repair_report rep = sluice::repair_log(ro);
  INFO(rep.error.describe());
  REQUIRE(rep.ok());
  REQUIRE(rep.records == x.total - 1);
  REQUIRE(rep.changes.size() == 1);
  const sluice::repair_change& c = rep.changes[0];
  REQUIRE(c.file == x.file);
  REQUIRE(c.at == x.at);
  REQUIRE(c.bytes == x.bytes);
  REQUIRE(c.lost_from == x.victim);
  REQUIRE(c.lost_to == x.victim + 1);
  REQUIRE(test::read_file(c.saved_to) ==
          bytes_t(damaged.begin() + static_cast<std::ptrdiff_t>(x.at),
                  damaged.begin() + static_cast<std::ptrdiff_t>(x.at + x.bytes)));
  {
    const read_result r = read_all(dir);
    REQUIRE(r.last == sluice::read_status::end);
    REQUIRE(r.pending == 0);
    REQUIRE(r.offsets == kept);  // every valid record, at its offset
    REQUIRE(r.undecodable == 0);
    REQUIRE(r.lost.size() == 1);
    REQUIRE(r.lost[0].from == x.victim);
    REQUIRE(r.lost[0].to == x.victim + 1);
    REQUIRE_THAT(r.lost[0].why, Contains("repair"));
  }
  {
    auto log = open_log(dir, x.segment_bytes);
    REQUIRE(log->recovered().empty());
    REQUIRE(log->next_offset() == x.total);
    append_ticks(std::move(log), x.total, 3, 1);
  }
  {
    const read_result r = read_all(dir);
    REQUIRE(r.last == sluice::read_status::end);
    REQUIRE(r.offsets.size() == kept.size() + 3);
    REQUIRE(r.offsets.back() == x.total + 2);
  }
  const sluice::repair_report again = sluice::repair_log(ro);
  REQUIRE(again.ok());
  REQUIRE_FALSE(again.changed());
}

constexpr std::uint64_t n_records = 10;

// A pristine single-segment log of n_records ticks, to copy for each case.
struct pristine {
  test::temp_dir tmp{"sluice-corrupt"};
  std::string dir = tmp / "pristine";
  std::string seg0 = dir + "/" + sluice::storage::segment_name(0);
  pristine() {
    make_log(dir, n_records, big_segments, 3);
    const walked w = walk(seg0);
    REQUIRE(w.offsets.size() == n_records);
    for (std::uint64_t i = 0; i < n_records; ++i) {
      REQUIRE(w.starts[i] == record_pos(i));
      REQUIRE(w.offsets[i] == i);
    }
    REQUIRE(w.size == record_pos(n_records));
  }
  // A fresh copy: returns its folder.
  std::string copy(const std::string& name) const {
    const std::string to = tmp / name;
    copy_log(dir, to);
    return to;
  }
  static std::string seg(const std::string& dir) {
    return dir + "/" + sluice::storage::segment_name(0);
  }
};

}  // namespace

TEST_CASE("corruption: an undamaged log reads back whole and recovers nothing", "[storage]") {
  pristine p;
  const read_result r = read_all(p.dir);
  require_ticks(r, n_records);
  REQUIRE(r.last == sluice::read_status::end);
  REQUIRE(r.pending == 0);
  auto log = open_log(p.dir);
  REQUIRE(log->recovered().empty());
  REQUIRE(log->next_offset() == n_records);
}

TEST_CASE("corruption: a flipped bit in any byte of the last record", "[storage]") {
  pristine p;
  const std::uint64_t last = record_pos(n_records - 1);
  for (std::uint64_t byte = 0; byte < record_size; ++byte) {
    const int bit = static_cast<int>(byte % 8);
    {
      INFO("byte " << byte << " bit " << bit);
      const std::string dir = p.copy("case");
      flip_bit(pristine::seg(dir), last + byte, bit);
      expected_damage x;
      x.file = pristine::seg(dir);
      x.at = last;
      x.good = n_records - 1;
      x.reason = "checksum mismatch";
      if (byte < 4) {
        // The length field: what the changed length means decides the verdict.
        const std::uint32_t len =
            static_cast<std::uint32_t>(body_size) ^
            (std::uint32_t{1} << (byte * 8 + static_cast<std::uint64_t>(bit)));
        if (len < sluice::storage::body_fixed + 1) {
          x.reason = "record length too small";
        } else if (len > sluice::storage::default_max_record) {
          x.reason = "record length beyond";
        } else if (len > body_size) {
          x.torn = true;  // claims more bytes than the file has: like a torn write
        }
      }
      check_damaged_log(dir, x);
    }
  }
}

TEST_CASE("corruption: every bit of the last record's length and checksum fields", "[storage]") {
  pristine p;
  const std::uint64_t last = record_pos(n_records - 1);
  for (int field_bit = 0; field_bit < 64; ++field_bit) {
    {
      INFO("frame bit " << field_bit);
      const std::string dir = p.copy("case");
      flip_bit(pristine::seg(dir), last + static_cast<std::uint64_t>(field_bit / 8), field_bit % 8);
      expected_damage x;
      x.file = pristine::seg(dir);
      x.at = last;
      x.good = n_records - 1;
      x.reason = "checksum mismatch";
      if (field_bit < 32) {
        const std::uint32_t len =
            static_cast<std::uint32_t>(body_size) ^ (std::uint32_t{1} << field_bit);
        if (len < sluice::storage::body_fixed + 1) {
          x.reason = "record length too small";
        } else if (len > sluice::storage::default_max_record) {
          x.reason = "record length beyond";
        } else if (len > body_size) {
          x.torn = true;
        }
      }
      check_damaged_log(dir, x);
    }
  }
}

TEST_CASE("corruption: a flipped bit in a middle record is not a torn tail: refused, repaired",
          "[storage]") {
  pristine p;
  for (std::uint64_t victim : {std::uint64_t{0}, std::uint64_t{4}, n_records - 2}) {
    for (std::uint64_t byte :
         {std::uint64_t{5}, std::uint64_t{8}, std::uint64_t{44}, record_size - 1}) {
      const std::string dir = p.copy("case");
      flip_bit(pristine::seg(dir), record_pos(victim) + byte, 3);
      expected_mid_damage x;
      x.file = pristine::seg(dir);
      x.at = record_pos(victim);
      x.bytes = record_size;
      x.victim = victim;
      x.total = n_records;
      x.reason = "checksum mismatch";
      check_mid_damage(dir, x);
    }
  }
}

TEST_CASE("corruption: truncation at every byte inside the last record", "[storage]") {
  pristine p;
  const std::uint64_t last = record_pos(n_records - 1);
  // At the record's start: a clean log one record shorter, nothing to recover.
  {
    const std::string dir = p.copy("case");
    truncate_file(pristine::seg(dir), last);
    const read_result r = read_all(dir);
    require_ticks(r, n_records - 1);
    REQUIRE(r.last == sluice::read_status::end);
    REQUIRE(r.pending == 0);
    auto log = open_log(dir);
    REQUIRE(log->recovered().empty());
    REQUIRE(log->next_offset() == n_records - 1);
  }
  for (std::uint64_t cut = last + 1; cut < last + record_size; ++cut) {
    INFO("truncated to " << cut << " bytes");
    const std::string dir = p.copy("case");
    truncate_file(pristine::seg(dir), cut);
    expected_damage x;
    x.file = pristine::seg(dir);
    x.at = last;
    x.good = n_records - 1;
    x.torn = true;
    check_damaged_log(dir, x);
  }
}

TEST_CASE("corruption: zero-filled bytes after a power loss", "[storage]") {
  pristine p;
  SECTION("a zero-filled tail of 8 bytes or more is damage") {
    for (std::size_t zeros : {std::size_t{8}, std::size_t{9}, std::size_t{64}, std::size_t{4096}}) {
      INFO(zeros << " zero bytes appended");
      const std::string dir = p.copy("case");
      append_bytes(pristine::seg(dir), bytes_t(zeros, 0));
      expected_damage x;
      x.file = pristine::seg(dir);
      x.at = record_pos(n_records);
      x.good = n_records;
      x.reason = "zero-filled";
      check_damaged_log(dir, x);
    }
  }
  SECTION("fewer zero bytes than a frame are a torn tail") {
    for (std::size_t zeros = 1; zeros < sluice::storage::frame_size; ++zeros) {
      INFO(zeros << " zero bytes appended");
      const std::string dir = p.copy("case");
      append_bytes(pristine::seg(dir), bytes_t(zeros, 0));
      expected_damage x;
      x.file = pristine::seg(dir);
      x.at = record_pos(n_records);
      x.good = n_records;
      x.torn = true;
      check_damaged_log(dir, x);
    }
  }
  SECTION("the last records' bytes zeroed in place") {
    const std::string dir = p.copy("case");
    bytes_t b = test::read_file(pristine::seg(dir));
    std::fill(b.begin() + static_cast<std::ptrdiff_t>(record_pos(n_records - 2)), b.end(), 0);
    test::write_file(pristine::seg(dir), b);
    expected_damage x;
    x.file = pristine::seg(dir);
    x.at = record_pos(n_records - 2);
    x.good = n_records - 2;
    x.reason = "zero-filled";
    check_damaged_log(dir, x);
  }
}

TEST_CASE("corruption: whole records that fail the checks after the checksum", "[storage]") {
  pristine p;
  SECTION("a record written twice (same bytes, offset out of sequence)") {
    const std::string dir = p.copy("case");
    const bytes_t b = test::read_file(pristine::seg(dir));
    append_bytes(
        pristine::seg(dir),
        bytes_t(b.begin() + static_cast<std::ptrdiff_t>(record_pos(n_records - 1)), b.end()));
    expected_damage x;
    x.file = pristine::seg(dir);
    x.at = record_pos(n_records);
    x.good = n_records;
    x.reason = "out of sequence";
    check_damaged_log(dir, x);
  }
  SECTION("unknown flags under a valid checksum") {
    const std::string dir = p.copy("case");
    patch_record_u16(pristine::seg(dir), record_pos(n_records - 1), 32, 4);
    expected_damage x;
    x.file = pristine::seg(dir);
    x.at = record_pos(n_records - 1);
    x.good = n_records - 1;
    x.reason = "unknown record flags";
    check_damaged_log(dir, x);
  }
  SECTION("a type name length of zero or past the body under a valid checksum") {
    for (std::uint16_t name_len : {std::uint16_t{0}, std::uint16_t{21}, std::uint16_t{256}}) {
      INFO("name length " << name_len);
      const std::string dir = p.copy("case");
      patch_record_u16(pristine::seg(dir), record_pos(n_records - 1), 34, name_len);
      expected_damage x;
      x.file = pristine::seg(dir);
      x.at = record_pos(n_records - 1);
      x.good = n_records - 1;
      x.reason = "bad type name length";
      check_damaged_log(dir, x);
    }
  }
  SECTION("random garbage after the last record") {
    std::mt19937 rng(7);
    for (int round = 0; round < 8; ++round) {
      bytes_t junk(static_cast<std::size_t>(1 + rng() % 300));
      for (auto& c : junk) c = static_cast<unsigned char>(rng());
      junk[0] = static_cast<unsigned char>(junk[0] | 1);  // not a zero-filled frame
      const std::string dir = p.copy("case");
      append_bytes(pristine::seg(dir), junk);
      expected_damage x;
      x.file = pristine::seg(dir);
      x.at = record_pos(n_records);
      x.good = n_records;
      // Garbage either claims an impossible length (damage) or more bytes than
      // there are (a torn tail); the reference walk tells which.
      sluice::stored_event e;
      const auto verdict = sluice::storage::parse_record(junk.data(), junk.size(), e);
      REQUIRE(verdict.status != sluice::storage::parse_status::ok);
      x.torn = verdict.status == sluice::storage::parse_status::need_more;
      x.reason = verdict.reason != nullptr ? verdict.reason : "";
      INFO("garbage of " << junk.size() << " bytes, torn: " << x.torn);
      check_damaged_log(dir, x);
    }
  }
}

TEST_CASE("corruption: a file named like a segment that is not one is refused, unchanged",
          "[storage]") {
  test::temp_dir tmp("sluice-corrupt");
  const std::string dir = tmp / "log";
  fs::create_directories(dir);
  const std::string seg = dir + "/" + sluice::storage::segment_name(0);
  std::mt19937 rng(11);
  bytes_t junk(4096);
  for (auto& c : junk) c = static_cast<unsigned char>(rng());
  junk[0] = 'X';
  test::write_file(seg, junk);
  const auto before = snapshot(dir);

  sluice::storage_error err;
  auto log = sluice::file_log::open(log_options(dir, big_segments), err);
  REQUIRE(log == nullptr);
  REQUIRE(err.code == sluice::storage_errc::not_a_log);
  REQUIRE(err.file == seg);
  REQUIRE(err.offset == 0);
  REQUIRE(snapshot(dir) == before);

  const read_result r = read_all(dir);
  REQUIRE(r.offsets.empty());
  REQUIRE(r.last == sluice::read_status::damaged);
  REQUIRE(r.error.code == sluice::storage_errc::not_a_log);
  REQUIRE(r.error.file == seg);
  REQUIRE(r.error.offset == 0);
  REQUIRE_THAT(r.error.message, Contains("magic"));
  REQUIRE(snapshot(dir) == before);

  SECTION("also when it is an older segment, before a good one") {
    const std::string later = dir + "/" + sluice::storage::segment_name(100);
    {
      // A valid, empty segment whose first offset is 100.
      bytes_t b(header_size);
      sluice::storage::write_segment_header(b.data(), 100, 1);
      test::write_file(later, b);
    }
    const auto both = snapshot(dir);
    auto log2 = sluice::file_log::open(log_options(dir, big_segments), err);
    REQUIRE(log2 == nullptr);
    REQUIRE(err.code == sluice::storage_errc::not_a_log);
    REQUIRE(err.file == seg);
    REQUIRE(snapshot(dir) == both);
  }
}

// A file shorter than a header that does not begin like one (zeros or the
// magic's first bytes) is not a torn header: it is refused like any other
// file that is not a segment.
TEST_CASE("corruption: a short file that is not a segment is refused, unchanged", "[storage]") {
  const std::vector<std::string> texts = {"hello, this is not a log\n", "x", "SLUICELX",
                                          std::string(63, 'z')};
  for (const std::string& text : texts) {
    INFO("a file of " << text.size() << " bytes: " << text);
    test::temp_dir tmp("sluice-corrupt");
    const std::string dir = tmp / "log";
    fs::create_directories(dir);
    const std::string seg = dir + "/" + sluice::storage::segment_name(0);
    test::write_file(seg, bytes_t(text.begin(), text.end()));
    const auto before = snapshot(dir);
    sluice::storage_error err;
    auto log = sluice::file_log::open(log_options(dir, big_segments), err);
    REQUIRE(log == nullptr);
    REQUIRE(err.code == sluice::storage_errc::not_a_log);
    REQUIRE(err.file == seg);
    REQUIRE(snapshot(dir) == before);
    const read_result r = read_all(dir);
    REQUIRE(r.offsets.empty());
    REQUIRE(r.last == sluice::read_status::damaged);
    REQUIRE(r.error.code == sluice::storage_errc::not_a_log);
    REQUIRE(r.error.file == seg);
    REQUIRE(r.error.offset == 0);
    REQUIRE(snapshot(dir) == before);
  }
}

TEST_CASE("corruption: a segment of another format version is refused, unchanged", "[storage]") {
  test::temp_dir tmp("sluice-corrupt");
  const std::string dir = tmp / "log";
  make_log(dir, 4, 4096, 2);
  const std::string seg = dir + "/" + sluice::storage::segment_name(0);
  patch_header_u32(seg, 8, 3);  // this build reads versions 1 and 2
  const auto before = snapshot(dir);

  sluice::storage_error err;
  auto log = sluice::file_log::open(log_options(dir, 4096), err);
  REQUIRE(log == nullptr);
  REQUIRE(err.code == sluice::storage_errc::bad_version);
  REQUIRE(err.file == seg);
  REQUIRE_THAT(err.message, Contains("version"));
  REQUIRE(snapshot(dir) == before);

  const read_result r = read_all(dir);
  REQUIRE(r.offsets.empty());
  REQUIRE(r.last == sluice::read_status::damaged);
  REQUIRE(r.error.code == sluice::storage_errc::bad_version);
  REQUIRE(r.error.file == seg);
  REQUIRE(r.error.offset == 0);
  REQUIRE_THAT(r.error.message, Contains("version"));
  REQUIRE(snapshot(dir) == before);

  SECTION("also when an older segment has it") {
    // Put a good later segment after it (a log that continues at 4).
    {
      bytes_t b(header_size);
      sluice::storage::write_segment_header(b.data(), 4, 1);
      test::write_file(dir + "/" + sluice::storage::segment_name(4), b);
    }
    const auto both = snapshot(dir);
    auto log2 = sluice::file_log::open(log_options(dir, 4096), err);
    REQUIRE(log2 == nullptr);
    REQUIRE(err.code == sluice::storage_errc::bad_version);
    REQUIRE(err.file == seg);
    REQUIRE(snapshot(dir) == both);
  }
}

TEST_CASE("corruption: a damaged segment header is refused as damage, unchanged", "[storage]") {
  pristine p;
  for (std::uint64_t byte :
       {std::uint64_t{16}, std::uint64_t{24}, std::uint64_t{40}, std::uint64_t{61}}) {
    INFO("header byte " << byte);
    const std::string dir = p.copy("case");
    flip_bit(pristine::seg(dir), byte, 2);
    const auto before = snapshot(dir);
    sluice::storage_error err;
    auto log = sluice::file_log::open(log_options(dir, big_segments), err);
    REQUIRE(log == nullptr);
    REQUIRE(err.code == sluice::storage_errc::damaged);
    REQUIRE(err.file == pristine::seg(dir));
    REQUIRE(snapshot(dir) == before);
    const read_result r = read_all(dir);
    REQUIRE(r.offsets.empty());
    REQUIRE(r.last == sluice::read_status::damaged);
    REQUIRE(r.error.code == sluice::storage_errc::damaged);
    REQUIRE(r.error.file == pristine::seg(dir));
    REQUIRE(r.error.offset == 0);
  }
  SECTION("a segment renamed to another first offset") {
    const std::string dir = p.copy("case");
    const std::string moved = dir + "/" + sluice::storage::segment_name(7);
    fs::rename(pristine::seg(dir), moved);
    const auto before = snapshot(dir);
    sluice::storage_error err;
    auto log = sluice::file_log::open(log_options(dir, big_segments), err);
    REQUIRE(log == nullptr);
    REQUIRE(err.code == sluice::storage_errc::damaged);
    REQUIRE(err.file == moved);
    REQUIRE(snapshot(dir) == before);
    const read_result r = read_all(dir);
    REQUIRE(r.last == sluice::read_status::damaged);
    REQUIRE(r.error.file == moved);
  }
}

// A flipped bit in the version field breaks the header's checksum: that is
// damage, not a log of another version.
TEST_CASE("corruption: a bit flipped in the header's version field is damage, not bad_version",
          "[storage]") {
  pristine p;
  for (int bit = 0; bit < 8; ++bit) {
    INFO("version bit " << bit);
    const std::string dir = p.copy("case");
    flip_bit(pristine::seg(dir), 8, bit);  // checksum left as it was
    const auto before = snapshot(dir);
    sluice::storage_error err;
    auto log = sluice::file_log::open(log_options(dir, big_segments), err);
    REQUIRE(log == nullptr);
    REQUIRE(err.code == sluice::storage_errc::damaged);
    REQUIRE(err.file == pristine::seg(dir));
    REQUIRE(snapshot(dir) == before);
    const read_result r = read_all(dir);
    REQUIRE(r.offsets.empty());
    REQUIRE(r.last == sluice::read_status::damaged);
    REQUIRE(r.error.code == sluice::storage_errc::damaged);
    REQUIRE(r.error.offset == 0);
  }
}

TEST_CASE("corruption: an empty or header-only truncated segment", "[storage]") {
  pristine p;
  SECTION("an empty segment file is given its header") {
    test::temp_dir tmp("sluice-corrupt");
    const std::string dir = tmp / "log";
    fs::create_directories(dir);
    const std::string seg = dir + "/" + sluice::storage::segment_name(0);
    test::write_file(seg, {});
    {
      const read_result r = read_all(dir);
      REQUIRE(r.offsets.empty());
      REQUIRE(r.last == sluice::read_status::end);
      REQUIRE(r.pending == 0);
    }
    auto log = open_log(dir);
    REQUIRE(log->recovered().size() == 1);
    const sluice::damage_report& d = log->recovered().front();
    REQUIRE(d.file == seg);
    REQUIRE(d.offset == 0);
    REQUIRE(d.bytes == 0);
    REQUIRE(d.saved_to.empty());
    REQUIRE(side_files(dir).empty());
    REQUIRE(log->next_offset() == 0);
    append_ticks(std::move(log), 0, 3, 1);
    const read_result r = read_all(dir);
    require_ticks(r, 3);
    REQUIRE(r.last == sluice::read_status::end);
    REQUIRE(r.pending == 0);
  }
  SECTION("a header cut at every byte") {
    const bytes_t whole = test::read_file(p.seg0);
    for (std::size_t cut = 1; cut < header_size; ++cut) {
      INFO("segment truncated to " << cut << " bytes");
      const std::string dir = p.copy("case");
      const std::string seg = pristine::seg(dir);
      truncate_file(seg, cut);
      {
        // A torn header: the reader stops at the end with its bytes pending.
        const read_result r = read_all(dir);
        REQUIRE(r.offsets.empty());
        REQUIRE(r.last == sluice::read_status::end);
        REQUIRE(r.pending == cut);
      }
      auto log = open_log(dir);
      REQUIRE(log->recovered().size() == 1);
      const sluice::damage_report& d = log->recovered().front();
      REQUIRE(d.file == seg);
      REQUIRE(d.offset == 0);
      REQUIRE(d.bytes == cut);
      REQUIRE(d.saved_to == seg + ".damaged-0");
      REQUIRE(test::read_file(d.saved_to) ==
              bytes_t(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(cut)));
      REQUIRE(log->next_offset() == 0);
      append_ticks(std::move(log), 0, 2, 1);
      const read_result r = read_all(dir);
      require_ticks(r, 2);
      REQUIRE(r.last == sluice::read_status::end);
      REQUIRE(r.pending == 0);
      REQUIRE(test::read_file(seg).size() == record_pos(2));
    }
  }
  SECTION("a zero-filled header") {
    const std::string dir = p.copy("case");
    const std::string seg = pristine::seg(dir);
    test::write_file(seg, bytes_t(header_size, 0));
    auto log = open_log(dir);
    REQUIRE(log->recovered().size() == 1);
    REQUIRE(log->recovered().front().bytes == header_size);
    REQUIRE(test::read_file(log->recovered().front().saved_to) == bytes_t(header_size, 0));
    REQUIRE(log->next_offset() == 0);
  }
}

namespace {

// A log of several 4 KiB segments: `count` ticks, appended `per_batch` at a time.
struct segmented {
  test::temp_dir tmp{"sluice-corrupt"};
  std::string dir = tmp / "pristine";
  std::vector<std::string> segs;
  std::vector<walked> walks;
  static constexpr std::size_t seg_bytes = 4096;
  static constexpr std::uint64_t count = 300;

  segmented() {
    make_log(dir, count, seg_bytes, 7);
    segs = test::segments(dir);
    REQUIRE(segs.size() >= 4);
    std::uint64_t next = 0;
    for (const auto& s : segs) {
      walks.push_back(walk(s));
      const walked& w = walks.back();
      REQUIRE(w.base == next);
      REQUIRE(w.good_end == w.size);
      for (std::size_t i = 0; i < w.offsets.size(); ++i) REQUIRE(w.offsets[i] == next + i);
      next += w.offsets.size();
    }
    REQUIRE(next == count);
    REQUIRE(walks.back().offsets.size() >= 2);
  }
  std::string copy(const std::string& name) const {
    const std::string to = tmp / name;
    copy_log(dir, to);
    return to;
  }
  // The same segment file in a copy.
  static std::string in(const std::string& dir, const std::string& seg) {
    return dir + "/" + fs::path(seg).filename().string();
  }
};

}  // namespace

TEST_CASE("corruption: several segments, damage in the last one", "[storage]") {
  segmented s;
  const walked& last = s.walks.back();
  const std::uint64_t base = last.base;
  REQUIRE(s.segs.size() == s.walks.size());

  SECTION("a flipped bit in the last segment's second record") {
    const std::string dir = s.copy("case");
    flip_bit(segmented::in(dir, s.segs.back()), last.starts[1] + 50, 6);
    expected_mid_damage x;
    x.file = segmented::in(dir, s.segs.back());
    x.at = last.starts[1];
    x.bytes = last.starts[2] - last.starts[1];
    x.victim = base + 1;
    x.total = segmented::count;
    x.reason = "checksum mismatch";
    x.segment_bytes = segmented::seg_bytes;
    check_mid_damage(dir, x);
  }
  SECTION("truncation at every byte inside the last record") {
    const std::uint64_t start = last.starts.back();
    for (std::uint64_t cut = start + 1; cut < last.size; ++cut) {
      INFO("last segment truncated to " << cut << " bytes");
      const std::string dir = s.copy("case");
      truncate_file(segmented::in(dir, s.segs.back()), cut);
      expected_damage x;
      x.file = segmented::in(dir, s.segs.back());
      x.at = start;
      x.good = segmented::count - 1;
      x.torn = true;
      x.segment_bytes = segmented::seg_bytes;
      check_damaged_log(dir, x);
    }
  }
  SECTION("4 KiB of zeros after the last record") {
    const std::string dir = s.copy("case");
    append_bytes(segmented::in(dir, s.segs.back()), bytes_t(4096, 0));
    expected_damage x;
    x.file = segmented::in(dir, s.segs.back());
    x.at = last.size;
    x.good = segmented::count;
    x.reason = "zero-filled";
    x.segment_bytes = segmented::seg_bytes;
    check_damaged_log(dir, x);
  }
  SECTION("a crash while rolling: the last segment empty or with a torn header") {
    for (std::uint64_t cut :
         {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{40}, std::uint64_t{header_size - 1}}) {
      INFO("last segment truncated to " << cut << " bytes");
      const std::string dir = s.copy("case");
      const std::string seg = segmented::in(dir, s.segs.back());
      truncate_file(seg, cut);
      {
        const read_result r = read_all(dir);
        require_ticks(r, base);
        REQUIRE(r.last == sluice::read_status::end);
        REQUIRE(r.pending == cut);
      }
      auto log = open_log(dir, segmented::seg_bytes);
      REQUIRE(log->recovered().size() == 1);
      REQUIRE(log->recovered().front().file == seg);
      REQUIRE(log->recovered().front().offset == 0);
      REQUIRE(log->recovered().front().bytes == cut);
      REQUIRE(log->next_offset() == base);
      REQUIRE(log->segment_count() == s.segs.size());
      append_ticks(std::move(log), base, 20, 3);
      const read_result r = read_all(dir);
      require_ticks(r, base + 20);
      REQUIRE(r.last == sluice::read_status::end);
      REQUIRE(r.pending == 0);
    }
  }
}

TEST_CASE("corruption: damage in an older segment is left to readers, which name it", "[storage]") {
  segmented s;
  SECTION("a flipped bit") {
    // Recovery checks only the last segment's records (older ones were synced
    // whole before the next was made); the reader checks every record.
    const std::string dir = s.copy("case");
    const walked& w = s.walks[1];
    const std::string seg = segmented::in(dir, s.segs[1]);
    flip_bit(seg, w.starts[3] + 60, 0);
    {
      auto log = open_log(dir, segmented::seg_bytes);
      REQUIRE(log->recovered().empty());
      REQUIRE(log->next_offset() == segmented::count);
    }
    const read_result r = read_all(dir);
    require_ticks(r, w.base + 3);
    REQUIRE(r.last == sluice::read_status::damaged);
    REQUIRE(r.error.file == seg);
    REQUIRE(r.error.offset == w.starts[3]);
    REQUIRE_THAT(r.error.message, Contains("checksum mismatch"));
  }
  SECTION("a torn older segment") {
    const std::string dir = s.copy("case");
    const walked& w = s.walks[1];
    const std::string seg = segmented::in(dir, s.segs[1]);
    truncate_file(seg, w.starts.back() + 10);
    const read_result r = read_all(dir);
    require_ticks(r, w.offsets.back());
    REQUIRE(r.last == sluice::read_status::damaged);
    REQUIRE(r.error.file == seg);
    REQUIRE(r.error.offset == w.starts.back());
    REQUIRE_THAT(r.error.message, Contains("incomplete"));
  }
  SECTION("a missing segment") {
    const std::string dir = s.copy("case");
    fs::remove(segmented::in(dir, s.segs[2]));
    const read_result r = read_all(dir);
    require_ticks(r, s.walks[2].base);
    REQUIRE(r.last == sluice::read_status::damaged);
    REQUIRE(r.error.file == segmented::in(dir, s.segs[3]));
    REQUIRE(r.error.offset == 0);
    REQUIRE_THAT(r.error.message, Contains("missing"));
  }
}

// ---- codecs: decoding errors are values --------------------------------------------

namespace {

struct tick_v2 {  // "tick" as a later build lays it out
  std::uint64_t seq = 0;
  std::uint32_t a = 0;
  std::uint32_t b = 0;
  std::uint32_t c = 0;
  std::uint32_t reserved = 0;  // no padding: every byte is value
};
struct other {
  std::uint16_t x = 0;
};

// A codec of one's own that reads with byte_reader and refuses what it cannot read.
struct pair_ev {
  std::uint32_t n = 0;
  std::string text;
};
struct pair_codec {
  void encode(const pair_ev& e, sluice::byte_writer& out) const {
    out.put(e.n);
    out.put(static_cast<std::uint16_t>(e.text.size()));
    out.append(e.text);
  }
  sluice::decoded<pair_ev> decode(sluice::byte_view in, std::uint32_t) const {
    sluice::byte_reader r(in);
    pair_ev e;
    std::uint16_t len = 0;
    if (!r.get(e.n) || !r.get(len) || !r.string(len, e.text) || !r.done())
      return sluice::decode_failure("pair: malformed");
    return e;
  }
};

// A codec that throws on anything it does not like.
struct throwing_codec {
  void encode(const other& e, sluice::byte_writer& out) const { out.put(e.x); }
  sluice::decoded<other> decode(sluice::byte_view in, std::uint32_t) const {
    if (in.size != 2) throw std::runtime_error("throwing_codec: bad size");
    other o;
    o.x = sluice::storage::load_le<std::uint16_t>(in.data);
    if (o.x == 0xDEAD) throw 42;  // not even a std::exception
    return o;
  }
};

sluice::stored_event event_of(std::string_view type, std::uint32_t version,
                              const bytes_t& payload) {
  sluice::stored_event e;
  e.type = type;
  e.version = version;
  e.payload.data = payload.empty() ? nullptr : payload.data();
  e.payload.size = payload.size();
  return e;
}

}  // namespace

TEST_CASE("corruption: decoding errors are values, never undefined behaviour", "[storage]") {
  sluice::codecs types;
  types.add<tick>("tick");
  types.add<pair_ev>("pair", 1, pair_codec{});
  types.add<other>("other", 1, throwing_codec{});

  SECTION("wrong payload size, every size but the right one") {
    for (std::size_t n = 0; n <= 2 * sizeof(tick); ++n) {
      if (n == sizeof(tick)) continue;
      const bytes_t payload(n, 0xAB);
      const auto d = types.decode<tick>(event_of("tick", 1, payload));
      INFO("payload of " << n << " bytes");
      REQUIRE_FALSE(d.ok());
      REQUIRE(d.error().code == sluice::decode_errc::wrong_size);
    }
    bytes_t right(sizeof(tick));
    const tick t = make_tick(99);
    std::memcpy(right.data(), &t, sizeof t);
    const auto d = types.decode<tick>(event_of("tick", 1, right));
    REQUIRE(d.ok());
    REQUIRE(same(d.value(), t));
  }
  SECTION("a version the codec does not read") {
    const bytes_t payload(sizeof(tick), 1);
    for (std::uint32_t v : {0U, 2U, 0xFFFFFFFFU}) {
      const auto d = types.decode<tick>(event_of("tick", v, payload));
      REQUIRE_FALSE(d.ok());
      REQUIRE(d.error().code == sluice::decode_errc::unsupported_version);
    }
  }
  SECTION("a record of another type, and of no known type") {
    const bytes_t payload(sizeof(tick), 1);
    const auto d = types.decode<other>(event_of("tick", 1, payload));
    REQUIRE_FALSE(d.ok());
    REQUIRE(d.error().code == sluice::decode_errc::wrong_type);
    const auto u = types.decode<tick>(event_of("tock", 1, payload));
    REQUIRE_FALSE(u.ok());
    REQUIRE(u.error().code == sluice::decode_errc::unknown_type);
  }
  SECTION("a throwing codec is reported as codec_failed") {
    const auto d = types.decode<other>(event_of("other", 1, bytes_t(3, 0)));
    REQUIRE_FALSE(d.ok());
    REQUIRE(d.error().code == sluice::decode_errc::codec_failed);
    const auto n = types.decode<other>(event_of("other", 1, bytes_t{0xAD, 0xDE}));
    REQUIRE_FALSE(n.ok());
    REQUIRE(n.error().code == sluice::decode_errc::codec_failed);
    const auto ok = types.decode<other>(event_of("other", 1, bytes_t{0x34, 0x12}));
    REQUIRE(ok.ok());
    REQUIRE(ok.value().x == 0x1234);
  }
  SECTION("a byte_reader codec on every prefix of a good payload and on lying lengths") {
    std::vector<unsigned char> good;
    sluice::byte_writer w(good);
    pair_codec{}.encode(pair_ev{7, "seven"}, w);
    REQUIRE(good.size() == 4 + 2 + 5);
    for (std::size_t n = 0; n < good.size(); ++n) {
      const auto d = types.decode<pair_ev>(event_of(
          "pair", 1, bytes_t(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n))));
      INFO("prefix of " << n << " bytes");
      REQUIRE_FALSE(d.ok());
      REQUIRE(d.error().code == sluice::decode_errc::malformed);
    }
    bytes_t lying = good;
    lying[4] = 0xFF;
    lying[5] = 0xFF;  // text length 65535
    const auto l = types.decode<pair_ev>(event_of("pair", 1, lying));
    REQUIRE_FALSE(l.ok());
    REQUIRE(l.error().code == sluice::decode_errc::malformed);
    const auto d = types.decode<pair_ev>(event_of("pair", 1, good));
    REQUIRE(d.ok());
    REQUIRE(d.value().n == 7);
    REQUIRE(d.value().text == "seven");
  }
  SECTION("a log written by a build with another layout under the same name") {
    test::temp_dir tmp("sluice-corrupt");
    {
      auto v2 = std::make_shared<sluice::codecs>();
      v2->add<tick_v2>("tick");
      auto log = open_log(tmp.path());
      sluice::recorder rec(std::move(log), v2);
      REQUIRE(rec.write(tick_v2{1, 2, 3, 4}));
      REQUIRE_OK(rec.close());
    }
    sluice::storage_error err;
    auto r = sluice::log_reader::open(tmp.path(), {}, err);
    REQUIRE(r != nullptr);
    sluice::stored_event e;
    REQUIRE(r->next(e) == sluice::read_status::event);
    REQUIRE(e.payload.size == sizeof(tick_v2));
    const auto d = types.decode<tick>(e);
    REQUIRE_FALSE(d.ok());
    REQUIRE(d.error().code == sluice::decode_errc::wrong_size);
    REQUIRE(r->next(e) == sluice::read_status::end);
  }
}

// Two crashes in a row at the same place: the second recovery keeps the
// bytes the first one saved, in a side file of its own.
TEST_CASE("corruption: a second recovery at the same offset keeps the first side file",
          "[storage]") {
  pristine p;
  const std::string dir = p.copy("case");
  const std::string seg = pristine::seg(dir);
  const std::uint64_t at = record_pos(n_records - 1);
  truncate_file(seg, at + 20);
  const bytes_t first_tail = [&] {
    const bytes_t b = test::read_file(seg);
    return bytes_t(b.begin() + static_cast<std::ptrdiff_t>(at), b.end());
  }();
  std::string first_saved;
  {
    auto log = open_log(dir);
    REQUIRE(log->recovered().size() == 1);
    first_saved = log->recovered().front().saved_to;
    REQUIRE(first_saved == seg + ".damaged-" + std::to_string(at));
    REQUIRE(test::read_file(first_saved) == first_tail);
  }
  const bytes_t second_tail(30, 0x5A);
  append_bytes(seg, second_tail);
  {
    auto log = open_log(dir);
    REQUIRE(log->recovered().size() == 1);
    const sluice::damage_report& d = log->recovered().front();
    REQUIRE(d.offset == at);
    REQUIRE(d.bytes == second_tail.size());
    REQUIRE(d.saved_to != first_saved);
    REQUIRE(test::read_file(d.saved_to) == second_tail);
    REQUIRE(test::read_file(first_saved) == first_tail);
    REQUIRE(side_files(dir).size() == 2);
    REQUIRE(log->next_offset() == n_records - 1);
  }
  // The side files are not segments: the log reads as before.
  const read_result r = read_all(dir);
  require_ticks(r, n_records - 1);
  REQUIRE(r.last == sluice::read_status::end);
  REQUIRE(r.pending == 0);
}

namespace {
struct wide {
  unsigned char bytes[200] = {};
};
}  // namespace

// A log never accepts what its own recovery would later cut as damage: a
// record over the log's max_record is refused when recorded (counted as
// failed, never acknowledged), and a batch holding one is refused by append.
TEST_CASE("corruption: a record over the log's max_record is refused, not cut later", "[storage]") {
  test::temp_dir tmp("sluice-corrupt");
  sluice::file_log_options o = log_options(tmp.path(), big_segments);
  o.max_record = 100;
  auto types = std::make_shared<sluice::codecs>();
  types->add<tick>("tick");
  types->add<wide>("wide");
  {
    sluice::storage_error err;
    auto log = sluice::file_log::open(o, err);
    REQUIRE(log != nullptr);
    sluice::recorder rec(std::move(log), types);
    REQUIRE(rec.write(make_tick(0)));
    REQUIRE_FALSE(rec.write(wide{}));
    REQUIRE(rec.write(make_tick(1)));
    REQUIRE_OK(rec.sync());
    const sluice::recorder_stats st = rec.stats();
    REQUIRE(st.recorded == 2);
    REQUIRE(st.written == 2);
    REQUIRE(st.rejected == 1);  // refused when recorded, never acknowledged
    REQUIRE(st.failed == 0);
    REQUIRE_OK(rec.close());
  }
  const std::string seg = tmp / sluice::storage::segment_name(0);
  const bytes_t before = test::read_file(seg);
  REQUIRE(before.size() == record_pos(2));
  {
    sluice::storage_error err;
    auto log = sluice::file_log::open(o, err);
    REQUIRE(log != nullptr);
    REQUIRE(log->recovered().empty());
    REQUIRE(log->next_offset() == 2);
    // A batch laid out by hand with a 101-byte body: refused whole.
    bytes_t bytes;
    for (std::size_t body : {std::size_t{60}, std::size_t{101}}) {
      const std::size_t start = bytes.size();
      bytes.resize(start + sluice::storage::frame_size + sluice::storage::body_fixed + 4);
      sluice::storage::begin_record(bytes.data() + start, 1, sluice::metadata{}, 1, "tick");
      bytes.resize(start + sluice::storage::frame_size + body, 0);
      sluice::storage::set_length(bytes.data() + start, body);
    }
    sluice::record_batch batch(bytes, 2);
    const sluice::storage_error e = log->append(batch);
    REQUIRE(e.code == sluice::storage_errc::bad_option);
    REQUIRE(log->next_offset() == 2);
    REQUIRE_OK(log->close());
  }
  REQUIRE(test::read_file(seg) == before);
  const read_result r = read_all(tmp.path());
  require_ticks(r, 2);
  REQUIRE(r.last == sluice::read_status::end);
  REQUIRE(r.pending == 0);
}
