// sluice — the stored record format, shared by every sink and the reader.
//
// All integers are little-endian. docs/log-format.md is the specification;
// this file is its one implementation.
//
//   record  = frame header (8 bytes) + body
//   frame   = u32 body length L | u32 CRC32C of the L body bytes
//   body    = u64 offset | i64 time (ns since the Unix epoch) | u64 key
//           | u32 producer | u32 type version | u16 flags | u16 name length N
//           | N bytes type name | L - 36 - N bytes payload
//   flags   = bit 0: has key, bit 1: replayed; other bits are zero
//
//   segment = header (64 bytes) + records
//   header  = "SLUICELG" | u32 format version (2) | u32 header size (64)
//           | u64 offset of the first record | i64 creation time (ns, Unix)
//           | u64 lost from | u32 max record | u8 lost reason | 15 zero bytes
//           | u32 CRC32C of the 60 bytes before it
//   (version 1: the same, with lost from, max record and lost reason zero)
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "../config.hpp"
#include "../event.hpp"
#include "crc32c.hpp"

namespace sluice {
inline namespace SLUICE_ABI {

// A read-only run of bytes.
struct byte_view {
  const unsigned char* data = nullptr;
  std::size_t size = 0;
};

// One stored event as a sink or a reader sees it: a view, valid until the
// next call on whatever produced it.
struct stored_event {
  std::uint64_t offset = 0;    // position in its log: 0, 1, 2, ...
  std::int64_t time_ns = 0;    // when it was published, ns since the Unix epoch
  key_type key = 0;            // meaningful when has_key
  std::uint32_t producer = 0;  // the publishing producer's id within its bus
  std::uint32_t version = 0;   // the codec version it was written with
  bool has_key = false;
  bool replayed = false;  // it came from a replay
  std::string_view type;  // the stable event name given to sluice::codecs
  byte_view payload;      // the codec's bytes
};

namespace storage {

inline constexpr char segment_magic[8] = {'S', 'L', 'U', 'I', 'C', 'E', 'L', 'G'};
inline constexpr std::uint32_t format_version = 2;  // written; versions 1 and 2 are read
inline constexpr std::uint32_t oldest_format_version = 1;
inline constexpr std::size_t segment_header_size = 64;
inline constexpr std::size_t frame_size = 8;
inline constexpr std::size_t body_fixed = 36;  // body bytes before the name
inline constexpr std::size_t max_name = 255;
inline constexpr std::uint16_t flag_key = 1;
inline constexpr std::uint16_t flag_replayed = 2;
inline constexpr std::uint16_t known_flags = flag_key | flag_replayed;
// The largest body a reader accepts by default (a length beyond it is damage,
// not an allocation).
inline constexpr std::size_t default_max_record = std::size_t{16} << 20;

// ---- little-endian loads and stores ------------------------------------------

// Integers as stored: little-endian (a byte swap on big-endian hosts).
template <class T>
[[nodiscard]] constexpr T to_le(T v) noexcept {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  if constexpr (sizeof(T) == 2)
    return static_cast<T>(__builtin_bswap16(static_cast<std::uint16_t>(v)));
  if constexpr (sizeof(T) == 4)
    return static_cast<T>(__builtin_bswap32(static_cast<std::uint32_t>(v)));
  if constexpr (sizeof(T) == 8)
    return static_cast<T>(__builtin_bswap64(static_cast<std::uint64_t>(v)));
#endif
  return v;
}

template <class T>
inline void store_le(unsigned char* p, T v) noexcept {
  v = to_le(v);
  std::memcpy(p, &v, sizeof v);
}

template <class T>
[[nodiscard]] inline T load_le(const unsigned char* p) noexcept {
  T v;
  std::memcpy(&v, p, sizeof v);
  return to_le(v);
}

// ---- records -------------------------------------------------------------------

// Writes a frame and body header at p (frame_size + body_fixed + name bytes);
// the length is set by set_length, the checksum (0 until then) by
// seal_record.
inline void begin_record(unsigned char* p, std::int64_t time_ns, const metadata& m,
                         std::uint32_t version, std::string_view name) noexcept {
  store_le<std::uint32_t>(p + 4, 0);
  unsigned char* b = p + frame_size;
  store_le<std::uint64_t>(b, 0);
  store_le<std::int64_t>(b + 8, time_ns);
  store_le<std::uint64_t>(b + 16, m.has_key ? m.key : 0);
  store_le<std::uint32_t>(b + 24, m.producer);
  store_le<std::uint32_t>(b + 28, version);
  const std::uint16_t flags =
      static_cast<std::uint16_t>((m.has_key ? flag_key : 0) | (m.replayed ? flag_replayed : 0));
  store_le<std::uint16_t>(b + 32, flags);
  store_le<std::uint16_t>(b + 34, static_cast<std::uint16_t>(name.size()));
  std::memcpy(b + body_fixed, name.data(), name.size());
}

// Sets the length of a record whose body is `body` bytes.
inline void set_length(unsigned char* p, std::size_t body) noexcept {
  store_le<std::uint32_t>(p, static_cast<std::uint32_t>(body));
}

// Numbers a record and seals it with its checksum.
inline void seal_record(unsigned char* p, std::uint64_t offset) noexcept {
  const std::uint32_t body = load_le<std::uint32_t>(p);
  store_le<std::uint64_t>(p + frame_size, offset);
  store_le<std::uint32_t>(p + 4, detail::crc32c(p + frame_size, body));
}

// Fills `out` from a record's body (`body` bytes at b), which the caller has
// checked (parse_record) or made (record_batch).
inline void read_body(const unsigned char* b, std::uint32_t body, stored_event& out) noexcept {
  const auto flags = load_le<std::uint16_t>(b + 32);
  const auto name_len = load_le<std::uint16_t>(b + 34);
  out.offset = load_le<std::uint64_t>(b);
  out.time_ns = load_le<std::int64_t>(b + 8);
  out.key = load_le<std::uint64_t>(b + 16);
  out.producer = load_le<std::uint32_t>(b + 24);
  out.version = load_le<std::uint32_t>(b + 28);
  out.has_key = (flags & flag_key) != 0;
  out.replayed = (flags & flag_replayed) != 0;
  out.type = std::string_view(reinterpret_cast<const char*>(b + body_fixed), name_len);
  out.payload.data = b + body_fixed + name_len;
  out.payload.size = body - body_fixed - name_len;
}

enum class parse_status : std::uint8_t {
  ok,         // a whole, checked record
  need_more,  // the bytes end inside the record (a torn tail, or still being written)
  damaged,    // the bytes are not a valid record
};

struct parse_result {
  parse_status status = parse_status::ok;
  std::size_t size = 0;          // bytes the record takes (ok), or needs (need_more)
  const char* reason = nullptr;  // why it is damaged
};

// Checks the record at p (n bytes available) and fills `out` on success.
// Never reads beyond p + n.
inline parse_result parse_record(const unsigned char* p, std::size_t n, stored_event& out,
                                 std::size_t max_record = default_max_record) noexcept {
  parse_result r;
  if (n < frame_size) {
    r.status = parse_status::need_more;
    r.size = frame_size;
    return r;
  }
  const std::uint32_t body = load_le<std::uint32_t>(p);
  const std::uint32_t crc = load_le<std::uint32_t>(p + 4);
  if (body == 0 && crc == 0) {
    r.status = parse_status::damaged;
    r.reason = "zero-filled bytes where a record should start";
    return r;
  }
  if (body < body_fixed + 1 || body > max_record) {
    r.status = parse_status::damaged;
    r.reason = body > max_record ? "record length beyond the largest allowed record"
                                 : "record length too small for a record";
    return r;
  }
  if (n - frame_size < body) {
    r.status = parse_status::need_more;
    r.size = frame_size + body;
    return r;
  }
  const unsigned char* b = p + frame_size;
  if (detail::crc32c(b, body) != crc) {
    r.status = parse_status::damaged;
    r.reason = "checksum mismatch";
    return r;
  }
  const std::uint16_t flags = load_le<std::uint16_t>(b + 32);
  const std::uint16_t name_len = load_le<std::uint16_t>(b + 34);
  if ((flags & ~known_flags) != 0) {
    r.status = parse_status::damaged;
    r.reason = "unknown record flags";
    return r;
  }
  if (name_len == 0 || name_len > max_name || body_fixed + name_len > body) {
    r.status = parse_status::damaged;
    r.reason = "bad type name length";
    return r;
  }
  for (std::size_t i = 0; i < name_len; ++i) {
    const unsigned char ch = b[body_fixed + i];
    if (ch <= ' ' || ch > '~' || ch == '"' || ch == '\\') {
      r.status = parse_status::damaged;
      r.reason = "type name outside the format (printable ASCII without space, quote or backslash)";
      return r;
    }
  }
  read_body(b, body, out);
  r.size = frame_size + body;
  return r;
}

// ---- segment headers -------------------------------------------------------------

// Why offsets below a segment's base are missing from the log (a segment's
// header says so, for the offsets [lost_from, base)).
enum class lost_reason : std::uint8_t {
  none = 0,
  failed_sync = 1,  // an fdatasync failed: records after the last good sync, kept in the
                    // previous segment or not, were never acknowledged as durable
  repaired = 2,     // removed by a repair as damaged (their bytes are kept aside)
};

[[nodiscard]] constexpr const char* to_string(lost_reason r) noexcept {
  switch (r) {
    case lost_reason::none:
      return "none";
    case lost_reason::failed_sync:
      return "an fdatasync failed before they were acknowledged";
    case lost_reason::repaired:
      return "removed as damaged by a repair";
  }
  return "unknown";
}

struct segment_header {
  std::uint64_t base = 0;
  std::int64_t created_ns = 0;
  std::uint32_t version = format_version;
  // Offsets [lost_from, base) are not in the log, for `reason`; lost_from ==
  // base when nothing is missing before this segment.
  std::uint64_t lost_from = 0;
  lost_reason reason = lost_reason::none;
  // The largest record body the writer of this segment accepted (0: not
  // recorded, a version 1 segment).
  std::uint32_t max_record = 0;
};

inline void write_segment_header(unsigned char* p, const segment_header& h) noexcept {
  std::memset(p, 0, segment_header_size);
  std::memcpy(p, segment_magic, sizeof segment_magic);
  store_le<std::uint32_t>(p + 8, format_version);
  store_le<std::uint32_t>(p + 12, static_cast<std::uint32_t>(segment_header_size));
  store_le<std::uint64_t>(p + 16, h.base);
  store_le<std::int64_t>(p + 24, h.created_ns);
  store_le<std::uint64_t>(p + 32, h.lost_from);
  store_le<std::uint32_t>(p + 40, h.max_record);
  p[44] = static_cast<unsigned char>(h.reason);
  store_le<std::uint32_t>(p + 60, detail::crc32c(p, 60));
}

// A header with nothing lost before it and no recorded limit.
inline void write_segment_header(unsigned char* p, std::uint64_t base,
                                 std::int64_t created_ns) noexcept {
  segment_header h;
  h.base = base;
  h.lost_from = base;
  h.created_ns = created_ns;
  write_segment_header(p, h);
}

// nullptr when the 64 bytes at p are a valid header, else why not.
[[nodiscard]] inline const char* read_segment_header(const unsigned char* p,
                                                     segment_header& out) noexcept {
  if (std::memcmp(p, segment_magic, sizeof segment_magic) != 0)
    return "not a sluice log segment (bad magic)";
  if (load_le<std::uint32_t>(p + 60) != detail::crc32c(p, 60))
    return "segment header checksum mismatch";
  const std::uint32_t version = load_le<std::uint32_t>(p + 8);
  if (version < oldest_format_version || version > format_version)
    return "unsupported log format version (this build reads versions 1 and 2)";
  if (load_le<std::uint32_t>(p + 12) != segment_header_size) return "bad segment header size";
  segment_header h;
  h.version = version;
  h.base = load_le<std::uint64_t>(p + 16);
  h.created_ns = load_le<std::int64_t>(p + 24);
  if (version == 1) {
    for (std::size_t i = 32; i < 60; ++i)
      if (p[i] != 0) return "reserved header bytes are not zero";
    h.lost_from = h.base;
  } else {
    h.lost_from = load_le<std::uint64_t>(p + 32);
    h.max_record = load_le<std::uint32_t>(p + 40);
    const unsigned char reason = p[44];
    for (std::size_t i = 45; i < 60; ++i)
      if (p[i] != 0) return "reserved header bytes are not zero";
    if (reason > static_cast<unsigned char>(lost_reason::repaired))
      return "unknown lost-records reason in the segment header";
    h.reason = static_cast<lost_reason>(reason);
    if (h.lost_from > h.base) return "segment header's lost offsets lie after its first offset";
    if ((h.lost_from == h.base) != (h.reason == lost_reason::none))
      return "segment header's lost offsets and their reason disagree";
    if (h.max_record != 0 && h.max_record < body_fixed + 1)
      return "segment header's largest record is too small for a record";
  }
  out = h;
  return nullptr;
}

// What kind of problem a header has that read_segment_header refused, checked
// in its order (magic, checksum, version): a header damaged where its version
// bytes are is damage, not another version.
enum class header_problem : std::uint8_t { not_a_log, damaged, bad_version };
[[nodiscard]] inline header_problem classify_header(const unsigned char* p) noexcept {
  if (std::memcmp(p, segment_magic, sizeof segment_magic) != 0) return header_problem::not_a_log;
  const std::uint32_t version = load_le<std::uint32_t>(p + 8);
  if (load_le<std::uint32_t>(p + 60) == detail::crc32c(p, 60) &&
      (version < oldest_format_version || version > format_version))
    return header_problem::bad_version;
  return header_problem::damaged;
}

// The limit a segment's records are checked against: what its writer
// accepted (version 2), else the reader's own limit.
[[nodiscard]] inline std::size_t record_limit(const segment_header& h,
                                              std::size_t fallback) noexcept {
  return h.max_record != 0 ? h.max_record : fallback;
}

// Looks for the next whole, valid record in [p, p + n), starting one byte in:
// where reading can go on after damage. Returns its position, or n when there
// is none. The record's offset must be at least `from_offset` (a damaged
// stretch must not bring back an older record). Cheap checks come before the
// checksum.
[[nodiscard]] inline std::size_t find_next_record(const unsigned char* p, std::size_t n,
                                                  std::uint64_t from_offset, std::size_t max_record,
                                                  stored_event& out) noexcept {
  for (std::size_t at = 1; at + frame_size + body_fixed + 1 <= n; ++at) {
    const std::uint32_t body = load_le<std::uint32_t>(p + at);
    if (body < body_fixed + 1 || body > max_record || body > n - at - frame_size) continue;
    const std::uint16_t name_len = load_le<std::uint16_t>(p + at + frame_size + 34);
    if (name_len == 0 || name_len > max_name || body_fixed + name_len > body) continue;
    if ((load_le<std::uint16_t>(p + at + frame_size + 32) & ~known_flags) != 0) continue;
    if (load_le<std::uint64_t>(p + at + frame_size) < from_offset) continue;
    const parse_result r = parse_record(p + at, n - at, out, max_record);
    if (r.status == parse_status::ok) return at;
  }
  return n;
}

// Segment files are named by their first offset: 20 digits, ".slog".
[[nodiscard]] inline std::string segment_name(std::uint64_t base) {
  std::string s = std::to_string(base);
  return std::string(20 - s.size(), '0') + s + ".slog";
}

// The base offset a segment file name gives, or false for other files.
[[nodiscard]] inline bool parse_segment_name(std::string_view name, std::uint64_t& base) noexcept {
  if (name.size() != 25 || name.substr(20) != ".slog") return false;
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 20; ++i) {
    const char c = name[i];
    if (c < '0' || c > '9') return false;
    const auto d = static_cast<std::uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  base = v;
  return true;
}

}  // namespace storage
}  // namespace SLUICE_ABI
}  // namespace sluice
