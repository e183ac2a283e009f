// Helpers for the storage tests: a temporary folder removed afterwards, and
// small file utilities.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sluice/storage/format.hpp>
#include <string>
#include <vector>

namespace test {

// A fresh folder under $TMPDIR (or /tmp), removed with everything in it.
class temp_dir {
 public:
  explicit temp_dir(const char* tag = "sluice") {
    const char* base = std::getenv("TMPDIR");
    std::string pattern =
        std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/" + tag + "-XXXXXX";
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) == nullptr) std::abort();
    path_ = buf.data();
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  [[nodiscard]] const std::string& path() const noexcept { return path_; }
  [[nodiscard]] std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::vector<unsigned char> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<unsigned char>(std::istreambuf_iterator<char>(f),
                                    std::istreambuf_iterator<char>());
}

inline void write_file(const std::string& path, const std::vector<unsigned char>& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// The segment files of a log folder, oldest first.
inline std::vector<std::string> segments(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.size() == 25 && name.substr(20) == ".slog") out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The whole records of one segment file as the format defines them: a
// reference walk with storage::parse_record, independent of the reader and of
// recovery. `header_error` is set (and nothing walked) when the file has no
// valid header.
struct walked {
  std::uint64_t base = 0;
  std::vector<std::uint64_t> starts;   // file position of each whole record
  std::vector<std::uint64_t> offsets;  // its log offset
  std::uint64_t good_end = 0;          // end of the last whole record
  std::uint64_t size = 0;
  bool has_header = false;
  std::string header_error;

  [[nodiscard]] std::uint64_t end_of(std::size_t i) const {
    return i + 1 < starts.size() ? starts[i + 1] : good_end;
  }
};

inline walked walk_segment(const std::string& path) {
  const std::vector<unsigned char> b = read_file(path);
  walked w;
  w.size = b.size();
  if (b.size() < sluice::storage::segment_header_size) {
    w.header_error = "shorter than a segment header";
    return w;
  }
  sluice::storage::segment_header h;
  if (const char* why = sluice::storage::read_segment_header(b.data(), h)) {
    w.header_error = why;
    return w;
  }
  w.has_header = true;
  w.base = h.base;
  std::size_t pos = sluice::storage::segment_header_size;
  sluice::stored_event e;
  while (pos < b.size()) {
    const auto r = sluice::storage::parse_record(b.data() + pos, b.size() - pos, e);
    if (r.status != sluice::storage::parse_status::ok) break;
    w.starts.push_back(pos);
    w.offsets.push_back(e.offset);
    pos += r.size;
  }
  w.good_end = pos;
  return w;
}

}  // namespace test
