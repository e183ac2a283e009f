// sluice — a JSON-lines text sink: one human-readable line per event, for
// audit trails that people and log tools read. Needs {fmt} (link fmt::fmt).
//
//   {"offset":7,"time_ns":1764000000000000000,"type":"order","version":1,
//    "key":42,"producer":3,"replayed":false,"event":"order #42: 3 x AAPL"}
//
// "event" is the event formatted with fmt::formatter<T> for the types shown
// with show<T>(); other types get "payload_base64" (their codec's bytes).
// Names are printable ASCII (codecs::check_name); text is escaped as JSON.
//
// Offsets go on from the file's last line when an existing file is opened
// again (a last line cut short by a crash is ended with a newline first, and
// left as it is). The text is always valid JSON and valid UTF-8: bytes of a
// formatted event that are not UTF-8 become U+FFFD.
//
// Thread-safety: a sink (the recorder's writer thread calls it).
#pragma once

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "../config.hpp"
#include "../detail/numeric.hpp"
#include "../detail/text.hpp"
#include "codec.hpp"
#include "format.hpp"
#include "io.hpp"
#include "sink.hpp"

namespace sluice {
inline namespace SLUICE_ABI {

namespace detail {

inline void base64(fmt::memory_buffer& out, byte_view in) {
  static constexpr char digits[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::size_t i = 0;
  for (; i + 3 <= in.size; i += 3) {
    const std::uint32_t v =
        (std::uint32_t{in.data[i]} << 16) | (std::uint32_t{in.data[i + 1]} << 8) | in.data[i + 2];
    const char q[4] = {digits[v >> 18], digits[(v >> 12) & 63], digits[(v >> 6) & 63],
                       digits[v & 63]};
    out.append(q, q + 4);
  }
  if (i < in.size) {
    std::uint32_t v = std::uint32_t{in.data[i]} << 16;
    if (i + 1 < in.size) v |= std::uint32_t{in.data[i + 1]} << 8;
    const char q[4] = {digits[v >> 18], digits[(v >> 12) & 63],
                       i + 1 < in.size ? digits[(v >> 6) & 63] : '=', '='};
    out.append(q, q + 4);
  }
}

}  // namespace detail

// Appends one JSON line (with '\n') for `e`. `text`: the formatted event, or
// nullptr to show the payload as base64 (or as hex when `hex`).
inline void append_json_line(fmt::memory_buffer& out, const stored_event& e,
                             const std::string* text, bool hex = false) {
  fmt::format_to(std::back_inserter(out), "{{\"offset\":{},\"time_ns\":{},\"type\":\"", e.offset,
                 e.time_ns);
  detail::json_escape(out, e.type);
  fmt::format_to(std::back_inserter(out), "\",\"version\":{},\"key\":", e.version);
  if (e.has_key) {
    fmt::format_to(std::back_inserter(out), "{}", e.key);
  } else {
    out.append(std::string_view("null"));
  }
  fmt::format_to(std::back_inserter(out), ",\"producer\":{},\"replayed\":{},", e.producer,
                 e.replayed ? "true" : "false");
  if (text != nullptr) {
    out.append(std::string_view("\"event\":\""));
    detail::json_escape(out, *text);
  } else if (hex) {
    out.append(std::string_view("\"payload_hex\":\""));
    for (std::size_t i = 0; i < e.payload.size; ++i)
      fmt::format_to(std::back_inserter(out), "{:02x}", e.payload.data[i]);
  } else {
    out.append(std::string_view("\"payload_base64\":\""));
    detail::base64(out, e.payload);
  }
  out.append(std::string_view("\"}\n"));
}

class json_sink final : public sink {
 public:
  // Appends to the file at `path` (made if missing). nullptr on error.
  static std::unique_ptr<json_sink> open(const std::string& path,
                                         std::shared_ptr<const codecs> types, storage_error& err) {
    err = {};
    const int fd = detail::open_retry(path.c_str(), O_RDWR | O_CREAT | O_APPEND);
    if (fd < 0) {
      err = detail::errno_error("open", path, errno);
      return nullptr;
    }
    std::unique_ptr<json_sink> sink(new json_sink(fd, path, std::move(types)));
    err = sink->resume();
    if (err) return nullptr;
    return sink;
  }

  json_sink(const json_sink&) = delete;
  json_sink& operator=(const json_sink&) = delete;
  ~json_sink() override { (void)close(); }

  // Shows events of type T as fmt::format("{}", event) (decoded with the codecs).
  // Call before the sink is handed to a recorder.
  template <class T>
  json_sink& show() {
    const codec_entry* c = types_ ? types_->find<T>() : nullptr;
    if (c == nullptr) return *this;
    formatters_[c->name] = [](const codecs& types, const stored_event& e, std::string& out) {
      decoded<T> d = types.decode<T>(e);
      if (!d) return false;
      out = fmt::format("{}", d.value());
      return true;
    };
    return *this;
  }

  storage_error append(record_batch& b) override {
    if (fd_ < 0)
      return storage_error::make(storage_errc::closed, "sluice: the JSON sink is closed", path_);
    b.number(next_);
    next_ += b.size();
    buf_.clear();
    std::string text;
    b.for_each([&](const stored_event& e) {
      auto it = formatters_.find(std::string(e.type));
      const bool shown = it != formatters_.end() && it->second(*types_, e, text);
      append_json_line(buf_, e, shown ? &text : nullptr);
    });
    int err = 0;
    if (!detail::write_all(fd_, reinterpret_cast<const unsigned char*>(buf_.data()), buf_.size(),
                           err))
      return detail::errno_error("write", path_, err);
    return {};
  }

  storage_error sync() override {
    if (fd_ < 0)
      return storage_error::make(storage_errc::closed, "sluice: the JSON sink is closed", path_);
    if (::fdatasync(fd_) != 0) return detail::errno_error("fdatasync", path_, errno);
    return {};
  }

  storage_error close() override {
    if (fd_ < 0) return {};
    storage_error e = sync();
    ::close(fd_);
    fd_ = -1;
    return e;
  }

 private:
  json_sink(int fd, std::string path, std::shared_ptr<const codecs> types)
      : fd_(fd), path_(std::move(path)), types_(std::move(types)) {}

  // Goes on from an existing file: the next offset after its last whole
  // line's, and a newline after a last line cut short.
  storage_error resume() {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) return detail::errno_error("fstat", path_, errno);
    const auto size = static_cast<std::uint64_t>(st.st_size);
    if (size == 0) return {};
    std::uint64_t window = std::min<std::uint64_t>(size, std::uint64_t{64} << 10);
    bool cut_short = false;  // the last line has no newline (a crash while writing)
    for (;;) {
      std::vector<unsigned char> tail(detail::to_size(window));
      int e = 0;
      const ssize_t n = detail::pread_some(fd_, tail.data(), tail.size(), size - window, e);
      if (n != static_cast<ssize_t>(tail.size())) return detail::errno_error("pread", path_, e);
      std::size_t end = tail.size();
      if (tail.back() != '\n' && !cut_short) {
        // End it, once (the window may grow below).
        cut_short = true;
        int we = 0;
        const unsigned char nl = '\n';
        if (!detail::write_all(posix_io::instance(), fd_, &nl, 1, we))
          return detail::errno_error("write", path_, we);
      }
      if (cut_short)
        while (end != 0 && tail[end - 1] != '\n') --end;
      // The last whole line is tail[start, end - 1).
      std::size_t start = end == 0 ? 0 : end - 1;
      while (start != 0 && tail[start - 1] != '\n') --start;
      if (end != 0 && (start != 0 || window == size)) {
        const std::string_view line(reinterpret_cast<const char*>(tail.data() + start),
                                    end - 1 - start);
        constexpr std::string_view prefix = "{\"offset\":";
        if (line.substr(0, prefix.size()) == prefix) {
          std::uint64_t v = 0;
          std::size_t i = prefix.size();
          bool digits = false;
          while (i < line.size() && line[i] >= '0' && line[i] <= '9' && v < (UINT64_MAX / 10)) {
            v = v * 10 + static_cast<std::uint64_t>(line[i] - '0');
            ++i;
            digits = true;
          }
          if (digits) next_ = v + 1;
        }
        return {};
      }
      if (window == size) return {};  // no whole line at all
      window = std::min<std::uint64_t>(size, window * 4);
    }
  }

  using format_fn = bool (*)(const codecs&, const stored_event&, std::string&);
  int fd_;
  std::string path_;
  std::shared_ptr<const codecs> types_;
  std::unordered_map<std::string, format_fn> formatters_;
  fmt::memory_buffer buf_;
  std::uint64_t next_ = 0;
};

}  // namespace SLUICE_ABI
}  // namespace sluice
