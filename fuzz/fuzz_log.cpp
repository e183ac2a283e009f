// fuzz_log: the input becomes a log folder (one or two segment files, with or
// without a valid header, version 2 header fields taken from the input, raw
// bytes or sealed records with damage on top), which a log_reader reads to the
// end, file_log::open recovers (on a copy) and repair_log repairs (on another
// copy). Never a crash, hang or leak; and reader, recovery and repair agree:
//
// - a refused log is left exactly as it was;
// - recovery cuts only the last segment, and the kept bytes followed by the
//   side file's bytes are the segment as it was;
// - the reader finds as many records after recovery as before it, the cut
//   starts where the reader found the damage (or the torn tail), and after
//   recovery nothing is torn and an appended record reads back;
// - a repaired log reads to its end without damage, keeps at least every
//   record the reader found before the damage, opens for writing with nothing
//   to recover, and a second repair changes nothing.
//
// The folder lives under $SLUICE_FUZZ_TMPDIR, else /dev/shm, else $TMPDIR or /tmp.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sluice/storage.hpp>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using bytes_t = std::vector<unsigned char>;

[[noreturn]] void broken(const char* what, int line) {
  std::fprintf(stderr, "fuzz_log: broken at line %d: %s\n", line, what);
  std::abort();
}
#define FUZZ_CHECK(cond)                  \
  do {                                    \
    if (!(cond)) broken(#cond, __LINE__); \
  } while (false)

// The flags byte at the start of the input.
enum : unsigned {
  with_header = 1U << 0,    // segment A starts with a valid header
  sealed = 1U << 1,         // the body is chunks made into valid records
  two_segments = 1U << 2,   // split into segments A and B (B with a valid header)
  truncate_last = 1U << 3,  // cut the last segment somewhere
  flip_last = 1U << 4,      // flip one bit of the last segment
  small_max = 1U << 5,      // a small largest-record limit for reader and log
  read_from = 1U << 6,      // the reader starts at a later offset
  large = 1U << 7,          // sealed records repeated past the reader's 256 KiB buffer
};

const std::string& work_dir() {
  static const std::string dir = [] {
    std::string base;
    if (const char* v = std::getenv("SLUICE_FUZZ_TMPDIR"); v != nullptr && *v != '\0') {
      base = v;
    } else if (::access("/dev/shm", W_OK) == 0) {
      base = "/dev/shm";
    } else if (const char* t = std::getenv("TMPDIR"); t != nullptr && *t != '\0') {
      base = t;
    } else {
      base = "/tmp";
    }
    std::string pattern = base + "/sluice-fuzz-log-XXXXXX";
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) == nullptr) {
      std::perror("fuzz_log: mkdtemp");
      std::abort();
    }
    std::string made = buf.data();
    static const std::string to_remove = made;
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(to_remove, ec);
    });
    return made;
  }();
  return dir;
}

bytes_t read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) return {};
  const auto n = static_cast<std::size_t>(f.tellg());
  bytes_t b(n);
  f.seekg(0);
  if (n != 0) f.read(reinterpret_cast<char*>(b.data()), static_cast<std::streamsize>(n));
  FUZZ_CHECK(static_cast<std::size_t>(f.gcount()) == n || n == 0);
  return b;
}

void write_file(const std::string& path, const bytes_t& b) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  FUZZ_CHECK(f.good());
}

std::map<std::string, bytes_t> snapshot(const std::string& dir) {
  std::map<std::string, bytes_t> out;
  for (const auto& e : fs::directory_iterator(dir))
    out.emplace(e.path().filename().string(), read_file(e.path().string()));
  return out;
}

// Consumes the input front to back; zeros once it runs out.
struct input {
  const unsigned char* p;
  std::size_t n;
  unsigned byte() {
    if (n == 0) return 0;
    --n;
    return *p++;
  }
  unsigned u16() { return byte() | (byte() << 8); }
};

void add_record(bytes_t& out, std::uint64_t offset, const unsigned char* payload, std::size_t n) {
  const std::string_view name = n % 3 == 0 ? "a" : "bb";
  sluice::metadata m;
  m.has_key = (n & 1U) != 0;
  m.key = n * 7;
  m.producer = static_cast<std::uint32_t>(n);
  const std::size_t start = out.size();
  out.resize(start + sluice::storage::frame_size + sluice::storage::body_fixed + name.size());
  sluice::storage::begin_record(out.data() + start, 1000 + static_cast<std::int64_t>(offset), m, 1,
                                name);
  if (n != 0) out.insert(out.end(), payload, payload + n);
  sluice::storage::set_length(out.data() + start, out.size() - start - sluice::storage::frame_size);
  sluice::storage::seal_record(out.data() + start, offset);
}

// A segment header; `fields` (an input byte) sets the version 2 fields: bit 0
// a recorded largest record (37 + 8 * bits 1-5), bit 6 lost offsets before
// the base (up to 3; bit 7: removed by a repair, else a failed sync).
bytes_t header(std::uint64_t base, unsigned fields) {
  bytes_t h(sluice::storage::segment_header_size);
  sluice::storage::segment_header sh;
  sh.base = base;
  sh.created_ns = 42;
  sh.lost_from = base;
  if ((fields & 1U) != 0) sh.max_record = 37 + 8 * ((fields >> 1) & 0x1FU);
  if ((fields & 0x40U) != 0 && base != 0) {
    sh.lost_from = base - std::min<std::uint64_t>(base, 1 + ((fields >> 1) & 3U));
    sh.reason = (fields & 0x80U) != 0 ? sluice::storage::lost_reason::repaired
                                      : sluice::storage::lost_reason::failed_sync;
  }
  sluice::storage::write_segment_header(h.data(), sh);
  return h;
}

volatile unsigned sink_byte = 0;

struct read_result {
  std::uint64_t count = 0;
  std::uint64_t lost = 0;  // lost reports
  sluice::read_status last = sluice::read_status::event;
  sluice::storage_error error;
  std::uint64_t pending = 0;
};

read_result read_log(const std::string& dir, const sluice::reader_options& ro,
                     std::size_t max_events) {
  read_result out;
  sluice::storage_error err;
  auto r = sluice::log_reader::open(dir, ro, err);
  FUZZ_CHECK(r != nullptr);
  sluice::stored_event e;
  std::uint64_t next = 0;  // the offset the next record must have (0: any)
  bool any = false;
  for (;;) {
    out.last = r->next(e);
    if (out.last == sluice::read_status::lost) {
      const sluice::lost_records& l = r->lost();
      FUZZ_CHECK(l.to >= l.from);
      FUZZ_CHECK(!any || l.from == next);
      next = l.to;
      ++out.lost;
      FUZZ_CHECK(out.lost <= max_events + 4);
      continue;
    }
    if (out.last != sluice::read_status::event) break;
    FUZZ_CHECK(e.offset >= ro.from);
    FUZZ_CHECK(!any || e.offset == next);
    any = true;
    next = e.offset + 1;
    unsigned s = 0;
    for (char c : e.type) s += static_cast<unsigned char>(c);
    for (std::size_t i = 0; i < e.payload.size; ++i) s += e.payload.data[i];
    sink_byte = sink_byte + s;
    ++out.count;
    FUZZ_CHECK(out.count <= max_events);  // no record out of nothing, no endless loop
  }
  out.error = r->error();
  out.pending = r->pending_bytes();
  FUZZ_CHECK(out.last == sluice::read_status::end || !out.error.ok());
  FUZZ_CHECK(r->next(e) == out.last);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  input in{static_cast<const unsigned char*>(data), size};
  const unsigned flags = in.byte();
  const unsigned cut = in.u16();
  const unsigned flip = in.u16();
  const std::uint64_t base = in.byte();
  const unsigned fields = in.byte();
  const bytes_t body(in.p, in.p + in.n);

  // Segment A's bytes and, with two_segments, segment B's.
  bytes_t a, b;
  std::uint64_t base_b = base + 1;
  std::uint64_t b_header_base = base_b;
  if ((flags & sealed) != 0) {
    // Chunks: a length byte (mod 64) and that many payload bytes.
    std::vector<std::pair<std::size_t, std::size_t>> chunks;  // (start, length) in body
    for (std::size_t at = 0; at < body.size();) {
      const std::size_t n = std::min<std::size_t>(body[at] % 64U, body.size() - at - 1);
      chunks.emplace_back(at + 1, n);
      at += 1 + n;
    }
    std::size_t copies = 1;
    if ((flags & large) != 0 && !chunks.empty()) {
      std::size_t one = 0;
      for (const auto& c : chunks) one += 47 + c.second;
      copies = std::max<std::size_t>(1, ((std::size_t{260} << 10) + cut) / one + 1);
    }
    const std::size_t total = chunks.size() * copies;
    const std::size_t in_a = (flags & two_segments) != 0 && total != 0 ? cut % (total + 1) : total;
    std::uint64_t offset = base;
    for (std::size_t i = 0; i < total; ++i, ++offset) {
      const auto& c = chunks[i % chunks.size()];
      add_record(i < in_a ? a : b, offset, body.data() + c.first, c.second);
    }
    base_b = base + in_a;
    b_header_base = base_b;
    if (base_b == base) base_b = base + 1;  // B needs a name of its own (then its header differs)
  } else if ((flags & two_segments) != 0) {
    const std::size_t split = body.empty() ? 0 : cut % (body.size() + 1);
    a.assign(body.begin(), body.begin() + static_cast<std::ptrdiff_t>(split));
    b.assign(body.begin() + static_cast<std::ptrdiff_t>(split), body.end());
    b_header_base = base + (flip & 0xFU);
    base_b = std::max(b_header_base, base + 1);
  } else {
    a = body;
  }
  if ((flags & with_header) != 0) {
    const bytes_t h = header(base, fields & 0x3FU);
    a.insert(a.begin(), h.begin(), h.end());
  }
  if ((flags & two_segments) != 0) {
    const bytes_t h = header(b_header_base, fields);
    b.insert(b.begin(), h.begin(), h.end());
  }
  bytes_t& last_bytes = (flags & two_segments) != 0 ? b : a;
  if ((flags & truncate_last) != 0) last_bytes.resize(cut % (last_bytes.size() + 1));
  if ((flags & flip_last) != 0 && !last_bytes.empty()) {
    const std::size_t bit = flip % (last_bytes.size() * 8);
    last_bytes[bit / 8] = static_cast<unsigned char>(last_bytes[bit / 8] ^ (1U << (bit % 8)));
  }

  // The folder.
  const std::string root = work_dir();
  const std::string orig = root + "/orig";
  const std::string copy = root + "/copy";
  std::error_code ec;
  fs::remove_all(orig, ec);
  fs::remove_all(copy, ec);
  fs::create_directories(orig);
  const std::string seg_a = sluice::storage::segment_name(base);
  write_file(orig + "/" + seg_a, a);
  std::string last_name = seg_a;
  if ((flags & two_segments) != 0) {
    last_name = sluice::storage::segment_name(base_b);
    write_file(orig + "/" + last_name, b);
  }
  const bytes_t last_before = last_bytes;
  const std::uint64_t total_bytes = a.size() + b.size();
  const std::size_t max_events = static_cast<std::size_t>(total_bytes / 45 + 1);

  sluice::reader_options ro;
  ro.max_record = (flags & small_max) != 0 ? 37 + (flip % 64) : sluice::storage::default_max_record;
  ro.from = (flags & read_from) != 0 ? base + cut % 8 : 0;

  // The reader on the log as it is (and from its start, for repair).
  const read_result before = read_log(orig, ro, max_events);
  sluice::reader_options ro_all = ro;
  ro_all.from = 0;
  const read_result before_all = read_log(orig, ro_all, max_events);

  // Repair on a copy.
  {
    const std::string fixed = root + "/repaired";
    std::error_code rec;
    fs::remove_all(fixed, rec);
    fs::copy(orig, fixed, fs::copy_options::recursive);
    sluice::repair_options rpo;
    rpo.dir = fixed;
    rpo.max_record = ro.max_record;
    const sluice::repair_report rr = sluice::repair_log(rpo);
    if (std::getenv("SLUICE_FUZZ_VERBOSE") != nullptr) {
      std::fprintf(stderr, "repair: %s; %zu changes, %zu made, %zu rewritten, %llu records\n",
                   rr.error.describe().c_str(), rr.changes.size(), rr.segments_made.size(),
                   rr.headers_rewritten.size(), static_cast<unsigned long long>(rr.records));
      for (const auto& c : rr.changes)
        std::fprintf(stderr, "  %s:%llu %llu bytes [%llu, %llu) %s\n", c.file.c_str(),
                     static_cast<unsigned long long>(c.at),
                     static_cast<unsigned long long>(c.bytes),
                     static_cast<unsigned long long>(c.lost_from),
                     static_cast<unsigned long long>(c.lost_to), c.reason.c_str());
      const read_result dbg = read_log(fixed, ro_all, max_events);
      std::fprintf(stderr, "after repair: last %d, %llu records, error %s, pending %llu\n",
                   static_cast<int>(dbg.last), static_cast<unsigned long long>(dbg.count),
                   dbg.error.describe().c_str(), static_cast<unsigned long long>(dbg.pending));
      std::fprintf(
          stderr, "before: last %d, %llu records, error %s\n", static_cast<int>(before_all.last),
          static_cast<unsigned long long>(before_all.count), before_all.error.describe().c_str());
    }
    if (rr.ok()) {
      const read_result after = read_log(fixed, ro_all, max_events);
      FUZZ_CHECK(after.last == sluice::read_status::end);  // no damage left
      FUZZ_CHECK(after.pending == 0);
      FUZZ_CHECK(after.count >= before_all.count);  // nothing valid before the damage went
      FUZZ_CHECK(rr.records >= after.count);
      {
        sluice::file_log_options fo;
        fo.dir = fixed;
        fo.max_record = ro.max_record;
        sluice::storage_error oe;
        auto w = sluice::file_log::open(fo, oe);
        FUZZ_CHECK(w != nullptr);
        FUZZ_CHECK(w->recovered().empty());
      }
      const sluice::repair_report again = sluice::repair_log(rpo);
      FUZZ_CHECK(again.ok());
      FUZZ_CHECK(!again.changed());
    } else {
      FUZZ_CHECK(rr.error.code == sluice::storage_errc::bad_version);
    }
    fs::remove_all(fixed, rec);
  }

  // Recovery on a copy.
  fs::copy(orig, copy, fs::copy_options::recursive);
  sluice::file_log_options lo;
  lo.dir = copy;
  lo.segment_bytes = 4096;
  lo.max_record = ro.max_record;
  sluice::storage_error err;
  auto log = sluice::file_log::open(lo, err);
  if (log == nullptr) {
    FUZZ_CHECK(!err.ok());
    FUZZ_CHECK(err.code != sluice::storage_errc::io &&
               err.code != sluice::storage_errc::bad_option);
    FUZZ_CHECK(snapshot(copy) == snapshot(orig));  // a refused log is left as it was
    return 0;
  }
  FUZZ_CHECK(err.ok());
  const std::string last_path = copy + "/" + last_name;
  const std::string orig_last_path = orig + "/" + last_name;
  const auto& rep = log->recovered();
  FUZZ_CHECK(rep.size() <= 1);
  const bytes_t kept = read_file(last_path);
  if (rep.empty()) {
    FUZZ_CHECK(kept == last_before);
  } else {
    const sluice::damage_report& d = rep.front();
    FUZZ_CHECK(d.file == last_path);
    FUZZ_CHECK(d.offset + d.bytes == last_before.size());
    FUZZ_CHECK(!d.reason.empty());
    // The side file holds the cut bytes; the segment keeps the rest (or, for
    // a header that never completed, gets a fresh header).
    if (d.bytes != 0) {
      FUZZ_CHECK(d.saved_to == last_path + ".damaged-" + std::to_string(d.offset));
      FUZZ_CHECK(
          read_file(d.saved_to) ==
          bytes_t(last_before.begin() + static_cast<std::ptrdiff_t>(d.offset), last_before.end()));
    } else {
      FUZZ_CHECK(d.saved_to.empty());
    }
    if (d.offset == 0) {
      sluice::storage::segment_header h;
      FUZZ_CHECK(kept.size() == sluice::storage::segment_header_size);
      FUZZ_CHECK(sluice::storage::read_segment_header(kept.data(), h) == nullptr);
    } else {
      FUZZ_CHECK(kept.size() == d.offset);
      FUZZ_CHECK(std::equal(kept.begin(), kept.end(), last_before.begin()));
    }
    // The cut starts where the reader stopped in this segment.
    if (before.last == sluice::read_status::damaged && before.error.file == orig_last_path &&
        before.error.offset >= sluice::storage::segment_header_size)
      FUZZ_CHECK(d.offset == before.error.offset);
    if (before.last == sluice::read_status::end && before.pending != 0)
      FUZZ_CHECK(d.bytes == before.pending);
  }
  if (before.last == sluice::read_status::end && before.pending != 0) FUZZ_CHECK(!rep.empty());

  // The reader after recovery: as many records, nothing torn.
  const read_result after = read_log(copy, ro, max_events);
  FUZZ_CHECK(after.count == before.count);
  if (after.last == sluice::read_status::end) FUZZ_CHECK(after.pending == 0);
  if (after.last == sluice::read_status::damaged && after.error.file == last_path)
    FUZZ_CHECK(after.error.offset == 0);  // only the segments' sequence, never a record

  // An append goes on from the last good record and reads back.
  const std::uint64_t next = log->next_offset();
  {
    bytes_t rec;
    // No payload: 37 body bytes, the least any largest-record limit allows.
    add_record(rec, 0, nullptr, 0);
    sluice::record_batch batch(rec, 1);
    const sluice::storage_error ae = log->append(batch);
    FUZZ_CHECK(ae.ok());
  }
  FUZZ_CHECK(log->close().ok());
  log.reset();
  if (after.last == sluice::read_status::end) {
    const read_result appended = read_log(copy, ro, max_events + 1);
    FUZZ_CHECK(appended.last == sluice::read_status::end);
    FUZZ_CHECK(appended.pending == 0);
    FUZZ_CHECK(appended.count == after.count + (next >= ro.from ? 1 : 0));
  }
  return 0;
}
