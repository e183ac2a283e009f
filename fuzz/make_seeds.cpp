// fuzz_seeds: writes a small seed corpus for the fuzz targets.
//   fuzz_seeds <folder>   makes <folder>/fuzz_record and <folder>/fuzz_log
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sluice/storage.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace {

using bytes_t = std::vector<unsigned char>;

void add_record(bytes_t& out, std::uint64_t offset, std::string_view name, std::uint32_t version,
                const bytes_t& payload) {
  sluice::metadata m;
  m.has_key = (offset & 1U) != 0;
  m.key = offset * 3;
  const std::size_t start = out.size();
  out.resize(start + sluice::storage::frame_size + sluice::storage::body_fixed + name.size());
  sluice::storage::begin_record(out.data() + start, 1000, m, version, name);
  out.insert(out.end(), payload.begin(), payload.end());
  sluice::storage::set_length(out.data() + start, out.size() - start - sluice::storage::frame_size);
  sluice::storage::seal_record(out.data() + start, offset);
}

bool write(const std::filesystem::path& path, const bytes_t& b) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  return f.good();
}

bytes_t text_payload(std::string_view text, std::uint8_t numbers) {
  bytes_t p;
  sluice::byte_writer w(p);
  w.put(static_cast<std::uint16_t>(text.size()));
  w.append(text);
  w.put(numbers);
  for (std::uint8_t i = 0; i < numbers; ++i) w.put(static_cast<std::uint32_t>(i * 1000U));
  return p;
}

// A fuzz_log input: flags, cut (u16), flip (u16), base, header fields, then the body.
bytes_t log_input(unsigned flags, unsigned cut, unsigned flip, unsigned base, const bytes_t& body,
                  unsigned header_fields = 0) {
  bytes_t b = {static_cast<unsigned char>(flags),        static_cast<unsigned char>(cut & 0xFFU),
               static_cast<unsigned char>(cut >> 8),     static_cast<unsigned char>(flip & 0xFFU),
               static_cast<unsigned char>(flip >> 8),    static_cast<unsigned char>(base),
               static_cast<unsigned char>(header_fields)};
  b.insert(b.end(), body.begin(), body.end());
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_seeds <folder>\n");
    return 2;
  }
  const std::filesystem::path root = argv[1];
  const auto rec_dir = root / "fuzz_record";
  const auto log_dir = root / "fuzz_log";
  std::filesystem::create_directories(rec_dir);
  std::filesystem::create_directories(log_dir);
  bool ok = true;

  // fuzz_record: single records of each registered type, a run, a header, a name.
  const bytes_t small_payload = {1, 2, 3, 4, 5, 6, 7, 8};
  bytes_t r;
  add_record(r, 0, "small", 1, small_payload);
  ok &= write(rec_dir / "small", r);
  r.clear();
  add_record(r, 5, "text", 1, text_payload("hello", 3));
  ok &= write(rec_dir / "text", r);
  r.clear();
  add_record(r, 9, "throwy", 1, bytes_t{0xFF});
  ok &= write(rec_dir / "throwy", r);
  bytes_t run;
  for (std::uint64_t i = 0; i < 3; ++i) add_record(run, i, "small", 1, small_payload);
  ok &= write(rec_dir / "run", run);
  bytes_t h(sluice::storage::segment_header_size);
  sluice::storage::write_segment_header(h.data(), 7, 123456789);
  ok &= write(rec_dir / "header", h);
  const std::string name = sluice::storage::segment_name(42);
  ok &= write(rec_dir / "name", bytes_t(name.begin(), name.end()));
  ok &= write(rec_dir / "payload", bytes_t{1, 0, 3, 0, 'a', 'b', 'c', 0});

  // fuzz_log: sealed chunks (length byte, payload) in the shapes the target knows.
  bytes_t chunks;
  for (unsigned i = 0; i < 12; ++i) {
    const unsigned n = (i * 7) % 20;
    chunks.push_back(static_cast<unsigned char>(n));
    for (unsigned k = 0; k < n; ++k) chunks.push_back(static_cast<unsigned char>(i + k));
  }
  ok &= write(log_dir / "sealed", log_input(0x03, 0, 0, 0, chunks));
  ok &= write(log_dir / "sealed_two", log_input(0x07, 5, 0, 3, chunks));
  ok &= write(log_dir / "sealed_torn", log_input(0x0B, 300, 0, 0, chunks));
  ok &= write(log_dir / "sealed_flip", log_input(0x13, 0, 900, 0, chunks));
  ok &= write(log_dir / "sealed_from", log_input(0x43, 4, 0, 1, chunks));
  ok &= write(log_dir / "sealed_large", log_input(0x83, 10, 0, 0, chunks));
  // Raw bytes after a valid header: real records, then garbage.
  bytes_t raw;
  for (std::uint64_t i = 0; i < 4; ++i) add_record(raw, i, "small", 1, small_payload);
  ok &= write(log_dir / "raw_records", log_input(0x01, 0, 0, 0, raw));
  raw.insert(raw.end(), {0xDE, 0xAD, 0xBE, 0xEF, 0, 0, 0, 0, 1});
  ok &= write(log_dir / "raw_garbage", log_input(0x01, 0, 0, 0, raw));
  ok &= write(log_dir / "raw_zeros", log_input(0x01, 0, 0, 0, bytes_t(100, 0)));
  ok &= write(log_dir / "no_header", log_input(0x00, 0, 0, 0, bytes_t{'n', 'o', 't'}));
  // Version 2 header fields: a recorded limit, lost offsets announced.
  ok &= write(log_dir / "header_limit", log_input(0x07, 3, 0, 5, chunks, 0x13));
  ok &= write(log_dir / "header_lost", log_input(0x07, 3, 0, 5, chunks, 0x46));
  ok &= write(log_dir / "header_lost_repaired", log_input(0x17, 3, 77, 9, chunks, 0xC5));
  if (!ok) {
    std::fprintf(stderr, "fuzz_seeds: could not write the seeds under %s\n", argv[1]);
    return 1;
  }
  return 0;
}
