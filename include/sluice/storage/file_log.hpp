// sluice — the durable file log (the embedded default sink) and its reader.
//
// A log is a folder of segment files (format.hpp, docs/log-format.md), named
// by the offset of their first record. The writer appends whole batches with
// one write() each, rolls to a new segment past segment_bytes (syncing the old
// one first, so only the last segment can ever end in a torn record), and
// deletes the oldest segments past the retention limits.
//
// Opening a log for writing recovers it: the last segment is checked record
// by record; the first damage (a torn tail after a crash, a checksum mismatch,
// zero-filled bytes) and everything after it is copied to a side file
// `<segment>.damaged-<byte offset>` and cut off, and reported by recovered().
// Every whole record before the damage is kept. A file that is not a segment
// (bad magic) or of another format version is refused with an error; nothing
// is changed.
//
// Thread-safety: a file_log is a sink (used by one recorder thread). Any
// number of log_readers, in this or other processes, may read the folder
// while it is written.
#pragma once

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../detail/numeric.hpp"
#include "error.hpp"
#include "format.hpp"
#include "sink.hpp"

namespace sluice {
inline namespace SLUICE_ABI {

namespace detail {

inline storage_error errno_error(const char* call, const std::string& file, int err,
                                 std::uint64_t offset = 0) {
  return storage_error::make(storage_errc::io, std::string(call) + ": " + std::strerror(err), file,
                             offset);
}

inline bool write_all(int fd, const unsigned char* p, std::size_t n, int& err) noexcept {
  while (n != 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      err = errno;
      return false;
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

// Reads up to n bytes at `at`; returns bytes read (short only at end of file),
// or -1 with err set.
inline ssize_t pread_some(int fd, unsigned char* p, std::size_t n, std::uint64_t at,
                          int& err) noexcept {
  std::size_t got = 0;
  while (got < n) {
    const ssize_t r = ::pread(fd, p + got, n - got, static_cast<off_t>(at + got));
    if (r < 0) {
      if (errno == EINTR) continue;
      err = errno;
      return -1;
    }
    if (r == 0) break;
    got += static_cast<std::size_t>(r);
  }
  return static_cast<ssize_t>(got);
}

inline int open_retry(const char* path, int flags, mode_t mode = 0644) noexcept {
  int fd;
  do {
    fd = ::open(path, flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

inline storage_error sync_dir(const std::string& dir) {
  const int fd = open_retry(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return errno_error("open (folder)", dir, errno);
  storage_error e;
  if (::fsync(fd) != 0) e = errno_error("fsync (folder)", dir, errno);
  ::close(fd);
  return e;
}

inline std::int64_t wall_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

inline storage_errc errc_of(storage::header_problem p) noexcept {
  switch (p) {
    case storage::header_problem::not_a_log:
      return storage_errc::not_a_log;
    case storage::header_problem::bad_version:
      return storage_errc::bad_version;
    case storage::header_problem::damaged:
      break;
  }
  return storage_errc::damaged;
}

struct segment_file {
  std::uint64_t base = 0;
  std::string path;
  std::uint64_t size = 0;
};

// The segments of a folder, by base offset; other files are ignored.
inline storage_error list_segments(const std::string& dir, std::vector<segment_file>& out) {
  out.clear();
  std::error_code ec;
  std::filesystem::directory_iterator it(dir, ec);
  if (ec)
    return storage_error::make(storage_errc::io, "cannot list the log folder: " + ec.message(),
                               dir);
  // increment(ec), not a range-for: errors are values here, never exceptions.
  for (const std::filesystem::directory_iterator end; it != end; it.increment(ec)) {
    if (ec)
      return storage_error::make(storage_errc::io, "cannot list the log folder: " + ec.message(),
                                 dir);
    std::uint64_t base = 0;
    const std::string name = it->path().filename().string();
    if (!storage::parse_segment_name(name, base)) continue;
    std::error_code sec;
    const auto size = it->file_size(sec);
    if (sec) continue;  // removed meanwhile (retention)
    out.push_back({base, it->path().string(), static_cast<std::uint64_t>(size)});
  }
  if (ec)
    return storage_error::make(storage_errc::io, "cannot list the log folder: " + ec.message(),
                               dir);
  std::sort(out.begin(), out.end(),
            [](const segment_file& a, const segment_file& b) { return a.base < b.base; });
  return {};
}

}  // namespace detail

struct file_log_options {
  std::string dir;                                    // the log's folder (made if missing)
  std::size_t segment_bytes = std::size_t{64} << 20;  // roll to a new segment past this size
  std::uint64_t retain_bytes = 0;      // delete oldest segments past this total (0: keep)
  std::chrono::seconds retain_age{0};  // delete segments older than this (0: keep)
  std::size_t max_record = storage::default_max_record;  // larger lengths are damage

  [[nodiscard]] const char* validate() const noexcept {
    if (dir.empty()) return "sluice: file_log_options::dir must name a folder";
    if (segment_bytes < 4096)
      return "sluice: file_log_options::segment_bytes must be at least 4096";
    if (max_record < storage::body_fixed + 1 || max_record > (std::size_t{1} << 31))
      return "sluice: file_log_options::max_record must be between 37 bytes and 2 GiB";
    if (retain_age.count() < 0) return "sluice: file_log_options::retain_age must not be negative";
    return nullptr;
  }
};

// A damaged stretch found when a log was opened: what was cut off and where
// its bytes were kept.
struct damage_report {
  std::string file;
  std::uint64_t offset = 0;  // byte offset of the first damaged byte in `file`
  std::uint64_t bytes = 0;   // bytes cut off
  std::string reason;
  std::string saved_to;  // side file holding the cut bytes (empty if none)
};

class file_log final : public sink {
 public:
  // Opens (or creates) the log in o.dir and recovers it. nullptr on error.
  static std::unique_ptr<file_log> open(file_log_options o, storage_error& err) {
    err = {};
    if (const char* why = o.validate()) {
      err = storage_error::make(storage_errc::bad_option, why);
      return nullptr;
    }
    std::unique_ptr<file_log> log(new file_log(std::move(o)));
    err = log->recover();
    if (err) return nullptr;
    return log;
  }

  file_log(const file_log&) = delete;
  file_log& operator=(const file_log&) = delete;
  ~file_log() override {
    (void)close();
    if (lock_fd_ >= 0) ::close(lock_fd_);
  }

  storage_error append(record_batch& b) override {
    if (fd_ < 0)
      return storage_error::make(storage_errc::closed, "sluice: the log is closed", opts_.dir);
    if (broken_) return broken_;
    if (b.empty()) return {};
    if (b.largest() > opts_.max_record)  // a reader would take it for damage
      return storage_error::make(storage_errc::bad_option,
                                 "sluice: a record is larger than file_log_options::max_record; "
                                 "the batch was not written",
                                 current_path(), size_);
    if (size_ >= opts_.segment_bytes && size_ > storage::segment_header_size) {
      // A failed roll loses nothing: the batch goes to the current segment
      // and the roll is tried again with the next batch.
      roll_error_ = roll();
    }
    b.seal(next_);
    int err = 0;
    if (!detail::write_all(fd_, b.data(), b.bytes(), err)) {
      // Keep the file whole: cut what part of the batch reached it. If even
      // that fails, the log refuses further appends (reopen it to recover).
      if (::ftruncate(fd_, static_cast<off_t>(size_)) != 0 ||
          ::lseek(fd_, static_cast<off_t>(size_), SEEK_SET) < 0)
        broken_ =
            detail::errno_error("ftruncate (after a failed write)", current_path(), errno, size_);
      return detail::errno_error("write", current_path(), err, size_);
    }
    size_ += b.bytes();
    segments_.back().size = size_;
    next_ += b.size();
    return {};
  }

  // A failed fdatasync is permanent: the kernel may have dropped the pages it
  // could not write, so no later sync can vouch for them. Every later sync()
  // returns the error; reopening the log (recovery) is the way on.
  storage_error sync() override {
    if (fd_ < 0)
      return storage_error::make(storage_errc::closed, "sluice: the log is closed", opts_.dir);
    if (sync_failed_) return sync_failed_;
    if (::fdatasync(fd_) != 0) {
      sync_failed_ = detail::errno_error("fdatasync", current_path(), errno);
      sync_failed_.message += " (durability is unknown until the log is reopened)";
      return sync_failed_;
    }
    return {};
  }

  storage_error close() override {
    if (fd_ < 0) return {};
    storage_error e = sync();
    ::close(fd_);
    fd_ = -1;
    if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the writer's lock
    lock_fd_ = -1;
    return e;
  }

  // Why the last segment roll failed (ok when it did not); the log goes on in
  // the current segment meanwhile.
  [[nodiscard]] const storage_error& last_roll_error() const noexcept { return roll_error_; }

  [[nodiscard]] std::size_t max_record() const noexcept override { return opts_.max_record; }

  // What recovery found and cut off when the log was opened (empty: nothing).
  [[nodiscard]] const std::vector<damage_report>& recovered() const noexcept { return recovered_; }
  // The offset the next appended record gets.
  [[nodiscard]] std::uint64_t next_offset() const noexcept { return next_; }
  // The oldest offset still stored (retention may have deleted older ones).
  [[nodiscard]] std::uint64_t first_offset() const noexcept {
    return segments_.empty() ? next_ : segments_.front().base;
  }
  [[nodiscard]] std::size_t segment_count() const noexcept { return segments_.size(); }
  [[nodiscard]] const std::string& dir() const noexcept { return opts_.dir; }

 private:
  explicit file_log(file_log_options o) : opts_(std::move(o)) {}

  [[nodiscard]] const std::string& current_path() const { return segments_.back().path; }

  storage_error recover() {
    std::error_code ec;
    std::filesystem::create_directories(opts_.dir, ec);
    if (ec)
      return storage_error::make(storage_errc::io, "cannot make the log folder: " + ec.message(),
                                 opts_.dir);
    // One writer per folder (two would overwrite each other's records): a
    // lock on the folder itself, so that a refused open leaves no trace.
    lock_fd_ = detail::open_retry(opts_.dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (lock_fd_ < 0) return detail::errno_error("open (folder)", opts_.dir, errno);
    if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
      const int e = errno;
      ::close(lock_fd_);
      lock_fd_ = -1;
      if (e == EWOULDBLOCK)
        return storage_error::make(storage_errc::locked,
                                   "the log is already open for writing (by this or another "
                                   "process)",
                                   opts_.dir);
      return detail::errno_error("flock", opts_.dir, e);
    }
    if (storage_error e = detail::list_segments(opts_.dir, segments_)) return e;
    if (segments_.empty()) return create_segment(0);
    // Every segment but the last was synced whole before the next was made:
    // check their headers only (log_reader and `sluice-log verify` check records).
    for (std::size_t i = 0; i + 1 < segments_.size(); ++i) {
      storage::segment_header h;
      if (storage_error e = read_header(segments_[i], h)) return e;
    }
    return recover_last();
  }

  storage_error read_header(const detail::segment_file& s, storage::segment_header& h) {
    const int fd = detail::open_retry(s.path.c_str(), O_RDONLY);
    if (fd < 0) return detail::errno_error("open", s.path, errno);
    unsigned char buf[storage::segment_header_size];
    int err = 0;
    const ssize_t n = detail::pread_some(fd, buf, sizeof buf, 0, err);
    ::close(fd);
    if (n < 0) return detail::errno_error("pread", s.path, err);
    if (static_cast<std::size_t>(n) < sizeof buf)
      return storage_error::make(storage_errc::damaged, "segment shorter than its header", s.path,
                                 0);
    return header_error(buf, s, h);
  }

  static storage_error header_error(const unsigned char* buf, const detail::segment_file& s,
                                    storage::segment_header& h) {
    if (const char* why = storage::read_segment_header(buf, h))
      return storage_error::make(detail::errc_of(storage::classify_header(buf)), why, s.path, 0);
    if (h.base != s.base)
      return storage_error::make(storage_errc::damaged,
                                 "segment header's first offset differs from its file name", s.path,
                                 0);
    return {};
  }

  // Checks the last segment record by record and cuts off its damaged tail.
  storage_error recover_last() {
    detail::segment_file& s = segments_.back();
    const int fd = detail::open_retry(s.path.c_str(), O_RDWR);
    if (fd < 0) return detail::errno_error("open", s.path, errno);
    fd_ = fd;
    struct stat st {};
    if (::fstat(fd, &st) != 0) return detail::errno_error("fstat", s.path, errno);
    const auto file_size = static_cast<std::uint64_t>(st.st_size);
    // Up to 1 MiB at a time (less for a small file).
    std::vector<unsigned char> buf(static_cast<std::size_t>(std::clamp<std::uint64_t>(
        file_size, storage::segment_header_size, std::uint64_t{1} << 20)));
    int err = 0;
    ssize_t n = detail::pread_some(fd, buf.data(), storage::segment_header_size, 0, err);
    if (n < 0) return detail::errno_error("pread", s.path, err);
    const bool all_zero =
        std::all_of(buf.begin(), buf.begin() + n, [](unsigned char c) { return c == 0; });
    if (static_cast<std::size_t>(n) < storage::segment_header_size || all_zero) {
      // Made but its header never reached the disk: a crash while rolling.
      // Only a torn header (zeros, or a beginning of the magic) is rewritten;
      // anything else is not ours to change.
      const std::size_t m = std::min<std::size_t>(static_cast<std::size_t>(n), 8);
      const bool torn = all_zero || std::memcmp(buf.data(), storage::segment_magic, m) == 0;
      if (!torn)
        return storage_error::make(storage_errc::not_a_log, "not a sluice log segment (bad magic)",
                                   s.path, 0);
      if (file_size > storage::segment_header_size && !all_zero)
        return storage_error::make(storage_errc::damaged, "segment shorter than its header", s.path,
                                   0);
      if (storage_error e = cut(s, 0, file_size, "segment header never completed")) return e;
      if (storage_error e = write_header(s.base)) return e;
      if (::fdatasync(fd_) != 0) return detail::errno_error("fdatasync", s.path, errno);
      return {};
    }
    storage::segment_header h;
    if (storage_error e = header_error(buf.data(), s, h)) return e;
    // Walk the records.
    std::uint64_t pos = storage::segment_header_size;  // file position of buf[0]
    std::size_t have = 0;
    std::uint64_t expected = h.base;
    const char* reason = nullptr;
    std::uint64_t good_end = pos;
    for (;;) {
      // Parse what is buffered.
      std::size_t at = detail::to_size(good_end - pos);
      stored_event e;
      storage::parse_result r{};
      while (at < have) {
        r = storage::parse_record(buf.data() + at, have - at, e, opts_.max_record);
        if (r.status != storage::parse_status::ok) break;
        if (e.offset != expected) {
          r.status = storage::parse_status::damaged;
          r.reason = "record offset out of sequence";
          break;
        }
        ++expected;
        at += r.size;
        good_end = pos + at;
      }
      if (at < have && r.status == storage::parse_status::damaged) {
        reason = r.reason;
        break;
      }
      // Need more bytes: keep the unparsed part, read on.
      const std::size_t keep = have - at;
      std::memmove(buf.data(), buf.data() + at, keep);
      pos += at;
      have = keep;
      if (r.status == storage::parse_status::need_more && r.size > buf.size()) buf.resize(r.size);
      if (pos + have >= file_size) {
        if (have != 0) reason = "incomplete record at the end (torn write)";
        break;
      }
      n = detail::pread_some(fd, buf.data() + have, buf.size() - have, pos + have, err);
      if (n < 0) return detail::errno_error("pread", s.path, err);
      if (n == 0) {
        if (have != 0) reason = "incomplete record at the end (torn write)";
        break;
      }
      have += static_cast<std::size_t>(n);
    }
    if (reason != nullptr && good_end < file_size) {
      if (storage_error e = cut(s, good_end, file_size, reason)) return e;
    }
    size_ = good_end;
    s.size = size_;
    next_ = expected;
    if (::lseek(fd, static_cast<off_t>(size_), SEEK_SET) < 0)
      return detail::errno_error("lseek", s.path, errno);
    return {};
  }

  // Copies [from, to) of segment s to a side file, then cuts the segment at `from`.
  storage_error cut(detail::segment_file& s, std::uint64_t from, std::uint64_t to,
                    const char* reason) {
    damage_report d;
    d.file = s.path;
    d.offset = from;
    d.bytes = to - from;
    d.reason = reason;
    if (to > from) {
      // A new file: an earlier recovery at the same place keeps its own.
      int out = -1;
      for (int k = 0; out < 0 && k < 1000; ++k) {
        d.saved_to =
            s.path + ".damaged-" + std::to_string(from) + (k != 0 ? "." + std::to_string(k) : "");
        out = detail::open_retry(d.saved_to.c_str(), O_WRONLY | O_CREAT | O_EXCL);
        if (out < 0 && errno != EEXIST) return detail::errno_error("open", d.saved_to, errno);
      }
      if (out < 0) return detail::errno_error("open", d.saved_to, EEXIST);
      std::vector<unsigned char> buf(
          static_cast<std::size_t>(std::min<std::uint64_t>(to - from, std::uint64_t{1} << 20)));
      std::uint64_t at = from;
      int err = 0;
      while (at < to) {
        const std::size_t want =
            static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), to - at));
        const ssize_t n = detail::pread_some(fd_, buf.data(), want, at, err);
        if (n <= 0 || !detail::write_all(out, buf.data(), static_cast<std::size_t>(n), err)) {
          ::close(out);
          return detail::errno_error(n < 0 ? "pread" : "write", n < 0 ? s.path : d.saved_to, err,
                                     at);
        }
        at += static_cast<std::uint64_t>(n);
      }
      const bool synced = ::fsync(out) == 0;
      ::close(out);
      if (!synced) return detail::errno_error("fsync", d.saved_to, errno);
      // The side file's name must be durable before the segment is cut.
      if (storage_error e = detail::sync_dir(opts_.dir)) return e;
    }
    if (::ftruncate(fd_, static_cast<off_t>(from)) != 0)
      return detail::errno_error("ftruncate", s.path, errno, from);
    if (::fsync(fd_) != 0) return detail::errno_error("fsync", s.path, errno);
    recovered_.push_back(std::move(d));
    return {};
  }

  storage_error write_header(std::uint64_t base) {
    unsigned char h[storage::segment_header_size];
    storage::write_segment_header(h, base, detail::wall_ns());
    int err = 0;
    if (::lseek(fd_, 0, SEEK_SET) < 0 || !detail::write_all(fd_, h, sizeof h, err))
      return detail::errno_error("write", current_path(), err != 0 ? err : errno);
    size_ = sizeof h;
    segments_.back().size = size_;
    next_ = base;
    return {};
  }

  // Makes the file of a new segment starting at `base`: header written and
  // synced, its name synced in the folder. On failure nothing is left behind.
  storage_error make_segment_file(std::uint64_t base, detail::segment_file& s, int& fd_out) {
    s.base = base;
    s.path = (std::filesystem::path(opts_.dir) / storage::segment_name(base)).string();
    int fd = detail::open_retry(s.path.c_str(), O_RDWR | O_CREAT | O_EXCL);
    struct stat st {};
    if (fd < 0 && errno == EEXIST && ::stat(s.path.c_str(), &st) == 0 &&
        static_cast<std::uint64_t>(st.st_size) <= storage::segment_header_size) {
      // Left by an earlier attempt that failed before any record: replace it.
      (void)::unlink(s.path.c_str());
      fd = detail::open_retry(s.path.c_str(), O_RDWR | O_CREAT | O_EXCL);
    }
    if (fd < 0) return detail::errno_error("open (new segment)", s.path, errno);
    unsigned char h[storage::segment_header_size];
    storage::write_segment_header(h, base, detail::wall_ns());
    int err = 0;
    if (!detail::write_all(fd, h, sizeof h, err) || ::fdatasync(fd) != 0) {
      if (err == 0) err = errno;
      ::close(fd);
      (void)::unlink(s.path.c_str());
      return detail::errno_error("write (new segment)", s.path, err);
    }
    // The new file's name must survive a crash as well as its bytes.
    if (storage_error e = detail::sync_dir(opts_.dir)) {
      ::close(fd);
      (void)::unlink(s.path.c_str());
      return e;
    }
    s.size = storage::segment_header_size;
    fd_out = fd;
    return {};
  }

  storage_error create_segment(std::uint64_t base) {
    detail::segment_file s;
    int fd = -1;
    if (storage_error e = make_segment_file(base, s, fd)) return e;
    fd_ = fd;
    segments_.push_back(std::move(s));
    size_ = storage::segment_header_size;
    next_ = base;
    return {};
  }

  // The current segment is synced whole before the next one is made, so only
  // the last segment can ever end in a torn record.
  storage_error roll() {
    if (storage_error e = sync()) return e;
    detail::segment_file s;
    int fd = -1;
    if (storage_error e = make_segment_file(next_, s, fd)) return e;
    ::close(fd_);
    fd_ = fd;
    segments_.push_back(std::move(s));
    size_ = storage::segment_header_size;
    retain();
    return {};
  }

  // Deletes the oldest segments past the limits (never the one being written).
  void retain() {
    if (opts_.retain_bytes == 0 && opts_.retain_age.count() == 0) return;
    const std::int64_t now = detail::wall_ns();
    const std::int64_t age_ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(opts_.retain_age).count();
    bool removed = false;
    for (;;) {
      if (segments_.size() < 2) break;
      std::uint64_t total = 0;
      for (const auto& s : segments_) total += s.size;
      bool drop = opts_.retain_bytes != 0 && total > opts_.retain_bytes;
      if (!drop && age_ns != 0) {
        // A segment's last record is older than the next segment's creation.
        storage::segment_header next;
        if (!read_header(segments_[1], next)) drop = next.created_ns < now - age_ns;
      }
      if (!drop) break;
      std::error_code ec;
      std::filesystem::remove(segments_.front().path, ec);
      if (ec) break;
      segments_.erase(segments_.begin());
      removed = true;
    }
    if (removed) (void)detail::sync_dir(opts_.dir);
  }

  file_log_options opts_;
  std::vector<detail::segment_file> segments_;
  std::vector<damage_report> recovered_;
  int fd_ = -1;
  int lock_fd_ = -1;           // holds the folder's writer lock
  storage_error sync_failed_;  // a failed fdatasync (permanent)
  storage_error broken_;       // a failed write that could not be undone
  storage_error roll_error_;   // the last failed roll
  std::uint64_t size_ = 0;     // bytes in the current segment
  std::uint64_t next_ = 0;     // the next record's offset
};

// ---- reading -------------------------------------------------------------------

struct reader_options {
  std::uint64_t from = 0;       // first offset wanted
  std::string type;             // only this event name (empty: all)
  std::optional<key_type> key;  // only events with this key
  std::size_t max_record = storage::default_max_record;
};

enum class read_status : std::uint8_t {
  event,    // `out` holds the next event
  end,      // no more for now (a writer may append more: call next() again later)
  damaged,  // a damaged record or segment: error() says where and why
};

// Reads a log folder in offset order, checking every record. A reader never
// changes the folder, so it may read a log another process is writing.
class log_reader {
 public:
  static std::unique_ptr<log_reader> open(const std::string& dir, reader_options o,
                                          storage_error& err) {
    err = {};
    if (o.max_record < storage::body_fixed + 1) {
      err = storage_error::make(storage_errc::bad_option,
                                "sluice: reader_options::max_record is too small");
      return nullptr;
    }
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) {
      err = storage_error::make(storage_errc::io, "no such log folder", dir);
      return nullptr;
    }
    std::unique_ptr<log_reader> r(new log_reader(dir, std::move(o)));
    if (storage_error e = detail::list_segments(dir, r->segments_)) {
      err = std::move(e);
      return nullptr;
    }
    for (const auto& s : r->segments_) r->total_bytes_ += s.size;
    // Start in the last segment that begins at or before `from`.
    r->cur_ = 0;
    for (std::size_t i = 0; i < r->segments_.size(); ++i)
      if (r->segments_[i].base <= r->opts_.from) r->cur_ = i;
    return r;
  }

  log_reader(const log_reader&) = delete;
  log_reader& operator=(const log_reader&) = delete;
  ~log_reader() { close_segment(); }

  // The next event at or after the `from` offset that passes the filters.
  // `out` is valid until the next call.
  read_status next(stored_event& out) {
    if (failed_) return read_status::damaged;
    for (;;) {
      if (fd_ < 0) {
        const read_status s = open_segment();
        if (s != read_status::event) return s;
      }
      if (pos_ < len_) {
        const storage::parse_result r =
            storage::parse_record(buf_.data() + pos_, len_ - pos_, out, opts_.max_record);
        if (r.status == storage::parse_status::ok) {
          if (out.offset != expected_)
            return fail("record offset out of sequence", file_pos_ - (len_ - pos_));
          ++expected_;
          pos_ += r.size;
          bytes_read_ += r.size;
          if (out.offset < opts_.from) continue;
          if (!opts_.type.empty() && out.type != opts_.type) continue;
          if (opts_.key && (!out.has_key || out.key != *opts_.key)) continue;
          return read_status::event;
        }
        if (r.status == storage::parse_status::damaged)
          return fail(r.reason, file_pos_ - (len_ - pos_));
        if (r.size > buf_.size()) buf_.resize(r.size);  // a record larger than the buffer
      }
      // Need more bytes.
      const read_status s = refill();
      if (s != read_status::event) return s;
    }
  }

  // Where and why reading stopped, after next() returned damaged.
  [[nodiscard]] const storage_error& error() const noexcept { return error_; }
  // Where reading goes on: the offset after the last record read (never
  // before the `from` asked for).
  [[nodiscard]] std::uint64_t position() const noexcept {
    return expected_ > opts_.from ? expected_ : opts_.from;
  }
  // The oldest offset in the folder when it was opened.
  [[nodiscard]] std::uint64_t first_offset() const noexcept {
    return segments_.empty() ? 0 : segments_.front().base;
  }
  // Bytes after the last whole record of the last segment (or the bytes of a
  // last segment shorter than its header): a write in progress, or (if no
  // writer is running) a torn tail.
  [[nodiscard]] std::uint64_t pending_bytes() const noexcept {
    return fd_ < 0 ? header_pending_ : len_ - pos_;
  }
  [[nodiscard]] std::uint64_t bytes_read() const noexcept { return bytes_read_; }
  [[nodiscard]] std::uint64_t total_bytes() const noexcept { return total_bytes_; }
  [[nodiscard]] const std::string& current_file() const noexcept {
    static const std::string none;
    if (!cur_path_.empty()) return cur_path_;
    return cur_ < segments_.size() ? segments_[cur_].path : none;
  }
  // Records a slow reader never saw because retention deleted them first.
  [[nodiscard]] std::uint64_t skipped() const noexcept { return skipped_; }

 private:
  log_reader(std::string dir, reader_options o) : dir_(std::move(dir)), opts_(std::move(o)) {
    buf_.resize(std::size_t{256} << 10);
  }

  read_status fail(const char* why, std::uint64_t at, storage_errc code = storage_errc::damaged) {
    failed_ = true;
    error_ = storage_error::make(code, why, current_file(), at);
    return read_status::damaged;
  }

  void close_segment() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  read_status open_segment() {
    if (cur_ >= segments_.size()) {
      // Nothing yet (or the folder was empty): look again.
      if (detail::list_segments(dir_, segments_) || cur_ >= segments_.size())
        return read_status::end;
    }
    int fd = detail::open_retry(segments_[cur_].path.c_str(), O_RDONLY);
    while (fd < 0 && errno == ENOENT) {
      // Deleted by retention since it was listed: go on with the first
      // segment after it that still exists.
      const std::uint64_t gone = segments_[cur_].base;
      std::vector<detail::segment_file> now;
      if (detail::list_segments(dir_, now)) break;
      std::size_t i = 0;
      while (i < now.size() && now[i].base <= gone) ++i;
      segments_ = std::move(now);
      cur_ = i;
      if (cur_ >= segments_.size()) return read_status::end;
      fd = detail::open_retry(segments_[cur_].path.c_str(), O_RDONLY);
    }
    const detail::segment_file& s = segments_[cur_];
    cur_path_ = s.path;
    if (fd < 0) {
      failed_ = true;
      error_ = detail::errno_error("open", s.path, errno);
      return read_status::damaged;
    }
    unsigned char h[storage::segment_header_size];
    int err = 0;
    const ssize_t n = detail::pread_some(fd, h, sizeof h, 0, err);
    if (n < 0) {
      ::close(fd);
      failed_ = true;
      error_ = detail::errno_error("pread", s.path, err);
      return read_status::damaged;
    }
    if (static_cast<std::size_t>(n) < sizeof h) {
      ::close(fd);
      const auto got = static_cast<std::size_t>(n);
      const bool torn = std::all_of(h, h + got, [](unsigned char c) { return c == 0; }) ||
                        std::memcmp(h, storage::segment_magic, std::min<std::size_t>(got, 8)) == 0;
      if (!torn) return fail("not a sluice log segment (bad magic)", 0, storage_errc::not_a_log);
      if (cur_ + 1 == segments_.size()) {  // being made, or torn by a crash while rolling
        header_pending_ = got;
        return read_status::end;
      }
      return fail("segment shorter than its header", 0);
    }
    storage::segment_header sh;
    if (const char* why = storage::read_segment_header(h, sh)) {
      ::close(fd);
      return fail(why, 0, detail::errc_of(storage::classify_header(h)));
    }
    if (sh.base != s.base) {
      ::close(fd);
      return fail("segment header's first offset differs from its file name", 0);
    }
    if (started_ && sh.base != expected_) {
      // Retention may delete segments a slow reader has not read yet: a gap
      // before the oldest segment is skipped (and counted), any other gap is
      // a missing segment.
      if (!(sh.base > expected_ && cur_ == 0)) {
        ::close(fd);
        return fail("segment does not continue the previous one (a segment is missing)", 0);
      }
      skipped_ += sh.base - expected_;
    }
    fd_ = fd;
    cur_base_ = s.base;
    next_index_ = cur_ + 1;
    header_pending_ = 0;
    started_ = true;
    expected_ = sh.base;
    file_pos_ = storage::segment_header_size;
    pos_ = len_ = 0;
    bytes_read_ += storage::segment_header_size;
    return read_status::event;
  }

  // Reads more of the current segment, or moves to the next one.
  read_status refill() {
    const std::size_t keep = len_ - pos_;
    if (keep != 0 && pos_ != 0) std::memmove(buf_.data(), buf_.data() + pos_, keep);
    pos_ = 0;
    len_ = keep;
    int err = 0;
    const ssize_t n =
        detail::pread_some(fd_, buf_.data() + len_, buf_.size() - len_, file_pos_, err);
    if (n < 0) {
      failed_ = true;
      error_ = detail::errno_error("pread", current_file(), err, file_pos_);
      return read_status::damaged;
    }
    if (n > 0) {
      len_ += static_cast<std::size_t>(n);
      file_pos_ += static_cast<std::uint64_t>(n);
      return read_status::event;
    }
    // End of this segment. Is there a later one? (Look again when this was
    // the last one known; retention may have deleted this one meanwhile.)
    const std::uint64_t here = cur_base_;
    if (next_index_ >= segments_.size()) {
      std::vector<detail::segment_file> now;
      if (!detail::list_segments(dir_, now)) {
        std::size_t i = 0;
        while (i < now.size() && now[i].base <= here) ++i;
        segments_ = std::move(now);
        next_index_ = i;
      }
    }
    if (next_index_ >= segments_.size()) return read_status::end;
    // The writer has rolled, but may have appended to this segment after our
    // read and before rolling: read once more before moving on.
    const ssize_t more =
        detail::pread_some(fd_, buf_.data() + len_, buf_.size() - len_, file_pos_, err);
    if (more < 0) {
      failed_ = true;
      error_ = detail::errno_error("pread", current_file(), err, file_pos_);
      return read_status::damaged;
    }
    if (more > 0) {
      len_ += static_cast<std::size_t>(more);
      file_pos_ += static_cast<std::uint64_t>(more);
      return read_status::event;
    }
    if (len_ != 0) return fail("incomplete record at the end of a segment", file_pos_ - len_);
    close_segment();
    cur_ = next_index_;
    return read_status::event;
  }

  std::string dir_;
  reader_options opts_;
  std::vector<detail::segment_file> segments_;
  std::size_t cur_ = 0;
  std::size_t next_index_ = 0;  // the segment after the current one, once known
  std::uint64_t cur_base_ = 0;
  std::string cur_path_;  // the segment being (or last) read
  std::uint64_t skipped_ = 0;
  int fd_ = -1;
  std::vector<unsigned char> buf_;
  std::size_t pos_ = 0, len_ = 0;   // unparsed bytes are buf_[pos_, len_)
  std::uint64_t file_pos_ = 0;      // file position of buf_[len_]
  std::size_t header_pending_ = 0;  // bytes of a last segment shorter than its header
  std::uint64_t expected_ = 0;      // offset of the next record
  bool started_ = false;
  bool failed_ = false;
  storage_error error_;
  std::uint64_t bytes_read_ = 0;
  std::uint64_t total_bytes_ = 0;
};

}  // namespace SLUICE_ABI
}  // namespace sluice
