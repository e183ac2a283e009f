// fuzz_record: any bytes given to the record parser, the segment header
// reader, the segment name parser and the codecs (memcpy and a codec of
// one's own reading with byte_reader). Never a crash, an out-of-bounds read
// or undefined behaviour; and the answers hold together.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <sluice/storage.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

[[noreturn]] void broken(const char* what, int line) {
  std::fprintf(stderr, "fuzz_record: broken at line %d: %s\n", line, what);
  std::abort();
}
#define FUZZ_CHECK(cond)                  \
  do {                                    \
    if (!(cond)) broken(#cond, __LINE__); \
  } while (false)

// A trivially copyable event without padding, stored with memcpy.
struct small {
  std::uint32_t a = 0;
  std::uint16_t b = 0;
  std::uint8_t c = 0;
  std::uint8_t d = 0;
};
static_assert(sizeof(small) == 8, "no padding");

// An event with a codec of its own: u16 length, text, u8 count, count u32s.
struct text_ev {
  std::string text;
  std::vector<std::uint32_t> numbers;
};
struct text_codec {
  void encode(const text_ev& e, sluice::byte_writer& out) const {
    out.put(static_cast<std::uint16_t>(e.text.size()));
    out.append(e.text);
    out.put(static_cast<std::uint8_t>(e.numbers.size()));
    for (std::uint32_t n : e.numbers) out.put(n);
  }
  sluice::decoded<text_ev> decode(sluice::byte_view in, std::uint32_t version) const {
    if (version != 1)
      return sluice::decode_failure("text: version", sluice::decode_errc::unsupported_version);
    sluice::byte_reader r(in);
    text_ev e;
    std::uint16_t len = 0;
    std::uint8_t count = 0;
    if (!r.get(len) || !r.string(len, e.text) || !r.get(count))
      return sluice::decode_failure("text: short");
    for (std::uint8_t i = 0; i < count; ++i) {
      std::uint32_t n = 0;
      if (!r.get(n)) return sluice::decode_failure("text: short numbers");
      e.numbers.push_back(n);
    }
    if (!r.done()) return sluice::decode_failure("text: trailing bytes");
    return e;
  }
};

// A codec that throws on payloads it dislikes.
struct throwy {
  std::uint8_t x = 0;
};
struct throwy_codec {
  void encode(const throwy& e, sluice::byte_writer& out) const { out.put(e.x); }
  sluice::decoded<throwy> decode(sluice::byte_view in, std::uint32_t) const {
    if (in.size != 1) throw std::length_error("throwy: size");
    if (in.data[0] == 0xFF) throw 7;
    throwy t;
    t.x = in.data[0];
    return t;
  }
};

const sluice::codecs& types() {
  static const std::unique_ptr<sluice::codecs> c = [] {
    auto t = std::make_unique<sluice::codecs>();
    t->add<small>("small");
    t->add<text_ev>("text", 1, text_codec{});
    t->add<throwy>("throwy", 1, throwy_codec{});
    return t;
  }();
  return *c;
}

volatile unsigned sink_byte = 0;

void touch(const unsigned char* p, std::size_t n) {
  unsigned s = 0;
  for (std::size_t i = 0; i < n; ++i) s += p[i];
  sink_byte = sink_byte + s;
}

// Every decoder on one stored event; the answers must fit the event.
void decode_all(const sluice::stored_event& e) {
  const sluice::codecs& t = types();
  const auto s = t.decode<small>(e);
  const bool small_ok = e.type == "small" && e.version == 1 && e.payload.size == sizeof(small);
  FUZZ_CHECK(s.ok() == small_ok);
  if (s.ok()) {
    small expect;
    std::memcpy(&expect, e.payload.data, sizeof expect);
    FUZZ_CHECK(s.value().a == expect.a && s.value().b == expect.b && s.value().c == expect.c &&
               s.value().d == expect.d);
  } else if (e.type != "small") {
    const bool known = e.type == "text" || e.type == "throwy";
    FUZZ_CHECK(s.error().code ==
               (known ? sluice::decode_errc::wrong_type : sluice::decode_errc::unknown_type));
  }
  const auto x = t.decode<text_ev>(e);
  if (x.ok()) {
    FUZZ_CHECK(e.type == "text");
    // What decodes encodes back to the same bytes.
    std::vector<unsigned char> again;
    sluice::byte_writer w(again);
    text_codec{}.encode(x.value(), w);
    FUZZ_CHECK(again.size() == e.payload.size);
    FUZZ_CHECK(again.empty() || std::memcmp(again.data(), e.payload.data, again.size()) == 0);
  }
  const auto y = t.decode<throwy>(e);
  if (e.type == "throwy" && (e.payload.size != 1 || e.payload.data[0] == 0xFF)) {
    FUZZ_CHECK(!y.ok());
    FUZZ_CHECK(y.error().code == sluice::decode_errc::codec_failed);
  }
}

// The record parser on n bytes at p, with one largest-record limit.
void parse_one(const unsigned char* p, std::size_t n, std::size_t max_record) {
  sluice::stored_event e;
  const sluice::storage::parse_result r = sluice::storage::parse_record(p, n, e, max_record);
  switch (r.status) {
    case sluice::storage::parse_status::ok: {
      constexpr std::size_t least = sluice::storage::frame_size + sluice::storage::body_fixed + 1;
      FUZZ_CHECK(r.size >= least && r.size <= n);
      FUZZ_CHECK(r.size - sluice::storage::frame_size <= max_record);
      FUZZ_CHECK(!e.type.empty() && e.type.size() <= sluice::storage::max_name);
      const auto* type = reinterpret_cast<const unsigned char*>(e.type.data());
      FUZZ_CHECK(type >= p + least - 1 && type + e.type.size() <= p + r.size);
      FUZZ_CHECK(e.payload.data + e.payload.size == p + r.size);
      touch(type, e.type.size());
      touch(e.payload.data, e.payload.size);
      // One byte short: the record is incomplete, not damaged.
      sluice::stored_event e2;
      const auto shorter = sluice::storage::parse_record(p, r.size - 1, e2, max_record);
      FUZZ_CHECK(shorter.status == sluice::storage::parse_status::need_more);
      FUZZ_CHECK(shorter.size == r.size || shorter.size == sluice::storage::frame_size);
      // Sealing it again with its own offset gives the same bytes.
      std::vector<unsigned char> copy(p, p + r.size);
      sluice::storage::seal_record(copy.data(), e.offset);
      FUZZ_CHECK(std::memcmp(copy.data(), p, r.size) == 0);
      decode_all(e);
      break;
    }
    case sluice::storage::parse_status::need_more:
      FUZZ_CHECK(r.size > n);
      FUZZ_CHECK(r.size == sluice::storage::frame_size ||
                 r.size - sluice::storage::frame_size <= max_record);
      break;
    case sluice::storage::parse_status::damaged:
      FUZZ_CHECK(r.reason != nullptr && r.reason[0] != '\0');
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto* p = static_cast<const unsigned char*>(data);

  // Records, with the default limit and small ones.
  for (std::size_t max_record :
       {sluice::storage::default_max_record, std::size_t{37}, std::size_t{64}, std::size_t{300}})
    parse_one(p, size, max_record);

  // A run of records, as in a segment body.
  {
    std::size_t at = 0;
    sluice::stored_event e;
    while (at < size) {
      const auto r = sluice::storage::parse_record(p + at, size - at, e);
      if (r.status != sluice::storage::parse_status::ok) break;
      FUZZ_CHECK(r.size != 0);
      at += r.size;
    }
    FUZZ_CHECK(at <= size);
  }

  // A segment header (the reader always has 64 bytes to give it).
  if (size >= sluice::storage::segment_header_size) {
    std::vector<unsigned char> h(p, p + sluice::storage::segment_header_size);
    sluice::storage::segment_header sh;
    if (sluice::storage::read_segment_header(h.data(), sh) == nullptr) {
      std::vector<unsigned char> again(sluice::storage::segment_header_size);
      sluice::storage::write_segment_header(again.data(), sh.base, sh.created_ns);
      sluice::storage::segment_header sh2;
      FUZZ_CHECK(sluice::storage::read_segment_header(again.data(), sh2) == nullptr);
      FUZZ_CHECK(sh2.base == sh.base && sh2.created_ns == sh.created_ns);
    }
  }

  // Segment file names.
  {
    const std::string_view name(reinterpret_cast<const char*>(p), size);
    std::uint64_t base = 0;
    if (sluice::storage::parse_segment_name(name, base))
      FUZZ_CHECK(sluice::storage::segment_name(base) == name);
  }

  // The codecs on the bytes as a payload: type and version from the first bytes.
  if (size >= 2) {
    static constexpr std::string_view names[] = {"small", "text", "throwy", "nope"};
    sluice::stored_event e;
    e.type = names[p[0] % 4];
    e.version = p[1] % 3;
    e.payload.data = size > 2 ? p + 2 : nullptr;
    e.payload.size = size - 2;
    decode_all(e);
  }

  // byte_reader driven by the bytes: never reads past the end.
  {
    sluice::byte_view all{p, size};
    sluice::byte_reader r(all);
    std::size_t i = 0;
    while (!r.done() && i < size) {
      const unsigned op = p[i++] % 6;
      const std::size_t before = r.left();
      bool ok = false;
      std::size_t took = 0;
      switch (op) {
        case 0: {
          std::uint8_t v = 0;
          ok = r.get(v);
          took = 1;
          break;
        }
        case 1: {
          std::uint16_t v = 0;
          ok = r.get(v);
          took = 2;
          break;
        }
        case 2: {
          std::uint32_t v = 0;
          ok = r.get(v);
          took = 4;
          break;
        }
        case 3: {
          std::int64_t v = 0;
          ok = r.get(v);
          took = 8;
          break;
        }
        case 4: {
          sluice::byte_view v;
          took = i < size ? p[i++] : 0;
          ok = r.bytes(took, v);
          if (ok) touch(v.data, v.size);
          break;
        }
        default: {
          std::string s;
          took = i < size ? p[i++] : 0;
          ok = r.string(took, s);
          if (ok) FUZZ_CHECK(s.size() == took);
          break;
        }
      }
      FUZZ_CHECK(ok == (took <= before));
      FUZZ_CHECK(r.left() == (ok ? before - took : before));
    }
  }
  return 0;
}
