// sluice — the durable file log (the embedded default sink).
//
// A log is a folder of segment files (format.hpp, docs/log-format.md), named
// by the offset of their first record. The writer appends whole batches with
// one write() each, rolls to a new segment past segment_bytes (syncing the old
// one first, so that only the last segment can end in a torn record), and
// deletes the oldest segments past the retention limits.
//
// What the writer promises:
//  - An offset, once a reader could see it, is never given to another record:
//    a write that stops part-way keeps the whole records that reached the file
//    and cuts only the torn one after them (no record that a follower may have
//    read is taken back); a failed fdatasync moves the log to a fresh segment,
//    whose header says which offsets are not known to be durable.
//  - Appends after a failed fdatasync go to that fresh segment (or fail while
//    none can be made); segments roll and retention goes on.
//  - Opening a log for writing recovers it: a torn tail of the last segment
//    (damage that runs to the end of the file, with no valid record after it)
//    is cut, its bytes kept in a side file `<segment>.damaged-<byte offset>`,
//    and reported by recovered(). Damage with valid records after it is not a
//    torn tail: open refuses it, naming file, offset and reason, and
//    repair_log (repair.hpp, `sluice-log repair`) keeps every valid record.
//    A file that is not a segment (bad magic) or of an unknown format version
//    is refused; nothing is changed.
//  - Each segment's header records the largest record its writer accepts, so
//    readers judge its records by that limit, whatever their own options.
//
// Thread-safety: a file_log is a sink (used by one recorder thread). Any
// number of log_readers (log_reader.hpp), in this or other processes, may read
// the folder while it is written.
#pragma once

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../detail/numeric.hpp"
#include "error.hpp"
#include "format.hpp"
#include "io.hpp"
#include "log_reader.hpp"
#include "sink.hpp"

namespace sluice {
inline namespace SLUICE_ABI {

struct file_log_options {
  std::string dir;                                    // the log's folder (made if missing)
  std::size_t segment_bytes = std::size_t{64} << 20;  // roll past this size (4 KiB to 1 GiB)
  std::uint64_t retain_bytes = 0;      // delete oldest segments past this total (0: keep)
  std::chrono::seconds retain_age{0};  // delete segments older than this (0: keep)
  // The largest record body this writer accepts (larger ones are refused when
  // recorded). Stored in each segment's header: readers judge a segment's
  // records by its own writer's limit.
  std::size_t max_record = storage::default_max_record;
  // The system calls (nullptr: POSIX). A seam for failures and crashes.
  file_io* io = nullptr;

  [[nodiscard]] const char* validate() const noexcept {
    if (dir.empty()) return "sluice: file_log_options::dir must name a folder";
    if (segment_bytes < 4096 || segment_bytes > (std::size_t{1} << 30))
      return "sluice: file_log_options::segment_bytes must be between 4096 and 1 GiB (opening "
             "a log reads its last segment into memory)";
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
    if (err) {
      log->abandon();  // a log that failed to open is left as recovery found it
      return nullptr;
    }
    return log;
  }

  file_log(const file_log&) = delete;
  file_log& operator=(const file_log&) = delete;
  ~file_log() override {
    (void)close();
    if (lock_fd_ >= 0) (void)io_->close(lock_fd_);
  }

  // Appends the batch with one write. If the write stops part-way, the whole
  // records that reached the file stay (b.stored() says how many) and the torn
  // rest is cut; the error says how many were lost.
  storage_error append(record_batch& b) override {
    b.set_stored(0);
    if (fd_ < 0)
      return storage_error::make(storage_errc::closed, "sluice: the log is closed", opts_.dir);
    if (broken_) return broken_;
    if (b.empty()) return {};
    if (b.largest() > opts_.max_record)  // a reader would take it for damage
      return storage_error::make(storage_errc::bad_option,
                                 "sluice: a record is larger than file_log_options::max_record; "
                                 "the batch was not written",
                                 current_path(), size_);
    if (must_roll_) {
      // After a failed fdatasync (or with another record limit than the last
      // segment's): nothing more goes into the old segment.
      if (storage_error e = roll()) {
        roll_error_ = e;
        e.message =
            "the log cannot take records until it can start a new segment (" + e.message + ")";
        return e;
      }
    } else if (size_ >= opts_.segment_bytes && size_ > storage::segment_header_size) {
      // A failed roll loses nothing: the batch goes to the current segment
      // and the roll is tried again with the next batch.
      roll_error_ = roll();
      if (must_roll_) return roll_error_;  // the roll's own sync failed, and so did it
    }
    b.seal(next_);
    int err = 0;
    std::size_t done = 0;
    if (!detail::write_all(*io_, fd_, b.data(), b.bytes(), err, done)) {
      // Keep the whole records that reached the file (a follower may have read
      // them already); cut the torn one after them. If even that fails, the
      // log refuses further appends (reopening it recovers the tail).
      std::size_t keep = 0;
      const std::size_t whole = b.records_within(done, keep);
      if (done != keep && (io_->ftruncate(fd_, static_cast<off_t>(size_ + keep)) != 0 ||
                           io_->lseek(fd_, static_cast<off_t>(size_ + keep), SEEK_SET) < 0))
        broken_ = detail::errno_error("ftruncate (after a failed write)", current_path(), errno,
                                      size_ + keep);
      size_ += keep;
      segments_.back().size = size_;
      next_ += whole;
      b.set_stored(whole);
      storage_error e = detail::errno_error("write", current_path(), err, size_);
      e.message += "; " + std::to_string(b.size() - whole) + " of " + std::to_string(b.size()) +
                   " records were lost";
      return e;
    }
    size_ += b.bytes();
    segments_.back().size = size_;
    next_ += b.size();
    b.set_stored(b.size());
    return {};
  }

  // Makes everything appended durable. A failed fdatasync is not trusted
  // again for this segment (the kernel may have dropped the pages it could
  // not write, and reports that once): the records after the last good sync
  // are not known to be durable, the error says from which offset, and the
  // log moves to a fresh segment (now, or before the next append) whose header
  // says so. Syncs after that vouch for the new segment's records.
  storage_error sync() override {
    if (fd_ < 0)
      return storage_error::make(storage_errc::closed, "sluice: the log is closed", opts_.dir);
    if (distrust_) {  // not asked of this segment again
      unreported_sync_error_ = false;
      return sync_error_;
    }
    if (!sync_current()) {
      unreported_sync_error_ = false;
      if (storage_error r = roll()) roll_error_ = r;  // else: before the next append
      return sync_error_;
    }
    if (unreported_sync_error_) {
      // A roll's sync of the previous segment failed since the last sync():
      // its records are not known to be durable, whatever this sync did.
      unreported_sync_error_ = false;
      return sync_error_;
    }
    return {};
  }

  storage_error close() override {
    if (fd_ < 0) return {};
    storage_error e = sync();
    (void)io_->close(fd_);
    fd_ = -1;
    if (lock_fd_ >= 0) (void)io_->close(lock_fd_);  // releases the writer's lock
    lock_fd_ = -1;
    return e;
  }

  // Why the last segment roll failed (ok when it did not); the log goes on in
  // the current segment meanwhile (unless a failed sync requires a new one).
  [[nodiscard]] const storage_error& last_roll_error() const noexcept { return roll_error_; }
  // The last failed fdatasync (ok when none), and how many there were.
  [[nodiscard]] const storage_error& last_sync_error() const noexcept { return sync_error_; }
  [[nodiscard]] std::uint64_t sync_failures() const noexcept { return sync_failures_; }

  [[nodiscard]] std::size_t max_record() const noexcept override { return opts_.max_record; }

  // What recovery found and cut off when the log was opened (empty: nothing).
  [[nodiscard]] const std::vector<damage_report>& recovered() const noexcept { return recovered_; }
  // The offset the next appended record gets.
  [[nodiscard]] std::uint64_t next_offset() const noexcept { return next_; }
  // Records below this offset are durable (the last successful sync).
  [[nodiscard]] std::uint64_t synced_offset() const noexcept { return synced_next_; }
  // The oldest offset still stored (retention may have deleted older ones).
  [[nodiscard]] std::uint64_t first_offset() const noexcept {
    return segments_.empty() ? next_ : segments_.front().base;
  }
  [[nodiscard]] std::size_t segment_count() const noexcept { return segments_.size(); }
  [[nodiscard]] const std::string& dir() const noexcept { return opts_.dir; }

 private:
  explicit file_log(file_log_options o)
      : opts_(std::move(o)), io_(opts_.io != nullptr ? opts_.io : &posix_io::instance()) {}

  [[nodiscard]] const std::string& current_path() const { return segments_.back().path; }

  // fdatasync of the current segment. On failure nothing more goes into it,
  // and the next one's header says which offsets are not known to be durable.
  bool sync_current() {
    if (io_->fdatasync(fd_) == 0) {
      synced_next_ = next_;
      return true;
    }
    sync_error_ = detail::errno_error("fdatasync", current_path(), errno);
    sync_error_.offset = synced_next_;
    sync_error_.message +=
        "; records from offset " + std::to_string(synced_next_) + " on are not known to be durable";
    ++sync_failures_;
    distrust_ = true;
    must_roll_ = true;
    return false;
  }

  storage_error recover() {
    if (storage_error e = detail::make_dirs(*io_, opts_.dir)) return e;
    // One writer per folder (two would overwrite each other's records): a
    // lock on the folder itself, so that a refused open leaves no trace.
    lock_fd_ = detail::open_retry(*io_, opts_.dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (lock_fd_ < 0) return detail::errno_error("open (folder)", opts_.dir, errno);
    if (io_->flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
      const int e = errno;
      (void)io_->close(lock_fd_);
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
    const int fd = detail::open_retry(*io_, s.path.c_str(), O_RDONLY);
    if (fd < 0) return detail::errno_error("open", s.path, errno);
    unsigned char buf[storage::segment_header_size];
    int err = 0;
    const ssize_t n = detail::pread_some(*io_, fd, buf, sizeof buf, 0, err);
    (void)io_->close(fd);
    if (n < 0) return detail::errno_error("pread", s.path, err);
    if (static_cast<std::size_t>(n) < sizeof buf)
      return storage_error::make(storage_errc::damaged, "segment shorter than its header", s.path,
                                 0);
    return header_error(buf, s, h);
  }

  static storage_error header_error(const unsigned char* buf, const detail::segment_file& s,
                                    storage::segment_header& h) {
    if (const char* why = storage::read_segment_header(buf, h)) {
      storage_error e =
          storage_error::make(detail::errc_of(storage::classify_header(buf)), why, s.path, 0);
      if (e.code == storage_errc::damaged)
        e.message += " (repair the log: `sluice-log repair`, or sluice::repair_log)";
      return e;
    }
    if (h.base != s.base)
      return storage_error::make(storage_errc::damaged,
                                 "segment header's first offset differs from its file name", s.path,
                                 0);
    return {};
  }

  // Reads the whole last segment, checks it record by record, and cuts off a
  // torn tail. Damage followed by a valid record is refused.
  storage_error recover_last() {
    detail::segment_file& s = segments_.back();
    const int fd = detail::open_retry(*io_, s.path.c_str(), O_RDWR);
    if (fd < 0) return detail::errno_error("open", s.path, errno);
    fd_ = fd;
    struct stat st {};
    if (io_->fstat(fd, &st) != 0) return detail::errno_error("fstat", s.path, errno);
    const auto file_size = static_cast<std::uint64_t>(st.st_size);
    std::vector<unsigned char> buf;
    if (!detail::try_resize(buf, file_size))
      return storage_error::make(
          storage_errc::io,
          "not enough memory to check the last segment (" + std::to_string(file_size) + " bytes)",
          s.path);
    int err = 0;
    const ssize_t n = detail::pread_some(*io_, fd, buf.data(), buf.size(), 0, err);
    if (n < 0) return detail::errno_error("pread", s.path, err);
    buf.resize(static_cast<std::size_t>(n));
    const std::size_t head = std::min(buf.size(), storage::segment_header_size);
    const bool all_zero = std::all_of(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(head),
                                      [](unsigned char c) { return c == 0; });
    if (buf.size() < storage::segment_header_size || all_zero) {
      // Made but its header never reached the disk: a crash while rolling.
      // Only a torn header (zeros, or a beginning of the magic) is rewritten;
      // anything else is not ours to change.
      const std::size_t m = std::min<std::size_t>(buf.size(), 8);
      const bool torn = all_zero || std::memcmp(buf.data(), storage::segment_magic, m) == 0;
      if (!torn)
        return storage_error::make(storage_errc::not_a_log, "not a sluice log segment (bad magic)",
                                   s.path, 0);
      if (buf.size() > storage::segment_header_size && !all_zero)
        return storage_error::make(storage_errc::damaged, "segment shorter than its header", s.path,
                                   0);
      if (buf.size() > storage::segment_header_size) {
        // Records are written only after the header is synced: a zeroed
        // header with a valid record after it is damage, not a crash.
        stored_event later;
        const std::size_t from = storage::segment_header_size - 1;
        const std::size_t found = storage::find_next_record(
            buf.data() + from, buf.size() - from, s.base,
            std::max(opts_.max_record, storage::default_max_record), later);
        if (from + found < buf.size())
          return storage_error::make(
              storage_errc::damaged,
              "zero-filled segment header, with valid records after it (offset " +
                  std::to_string(later.offset) + " at byte " + std::to_string(from + found) +
                  "): repair the log to keep them (`sluice-log repair`, or sluice::repair_log)",
              s.path, 0);
      }
      if (storage_error e = cut(s, 0, file_size, "segment header never completed")) return e;
      head_ = fresh_header(s.base);
      if (storage_error e = write_header(head_)) return e;
      if (io_->fdatasync(fd_) != 0) return detail::errno_error("fdatasync", s.path, errno);
      synced_next_ = next_;
      return {};
    }
    storage::segment_header h;
    if (storage_error e = header_error(buf.data(), s, h)) return e;
    head_ = h;
    const std::size_t limit = storage::record_limit(h, opts_.max_record);
    // Walk the records.
    std::size_t at = storage::segment_header_size;
    std::uint64_t expected = h.base;
    stored_event e;
    const char* reason = nullptr;
    for (;;) {
      if (at == buf.size()) break;
      const storage::parse_result r =
          storage::parse_record(buf.data() + at, buf.size() - at, e, limit);
      if (r.status == storage::parse_status::ok && e.offset == expected) {
        ++expected;
        at += r.size;
        continue;
      }
      reason = r.status == storage::parse_status::need_more
                   ? "incomplete record at the end (torn write)"
                   : (r.status == storage::parse_status::ok ? "record offset out of sequence"
                                                            : r.reason);
      break;
    }
    if (reason != nullptr) {
      // A torn tail only if no valid record follows the damage.
      stored_event later;
      const std::size_t found =
          storage::find_next_record(buf.data() + at, buf.size() - at, expected, limit, later);
      if (found < buf.size() - at)
        return storage_error::make(
            storage_errc::damaged,
            std::string(reason) + ", with valid records after it (offset " +
                std::to_string(later.offset) + " at byte " + std::to_string(at + found) +
                "): not a torn tail; repair the log to keep them (`sluice-log repair`, or "
                "sluice::repair_log)",
            s.path, at);
      if (storage_error err2 = cut(s, at, file_size, reason)) return err2;
    }
    size_ = at;
    s.size = size_;
    next_ = expected;
    // What is in the file now was there before this writer came; a sync makes
    // sure it is on the disk (a process crash leaves it in the page cache).
    if (io_->fdatasync(fd) != 0) return detail::errno_error("fdatasync", s.path, errno);
    synced_next_ = next_;
    if (h.version != storage::format_version ||
        h.max_record != static_cast<std::uint32_t>(opts_.max_record))
      must_roll_ = true;  // new records go to a segment whose header says this writer's limit
    if (io_->lseek(fd, static_cast<off_t>(size_), SEEK_SET) < 0)
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
        out = detail::open_retry(*io_, d.saved_to.c_str(), O_WRONLY | O_CREAT | O_EXCL);
        if (out < 0 && errno != EEXIST) return detail::errno_error("open", d.saved_to, errno);
      }
      if (out < 0) return detail::errno_error("open", d.saved_to, EEXIST);
      std::vector<unsigned char> buf(
          detail::to_size(std::min<std::uint64_t>(to - from, std::uint64_t{1} << 20)));
      std::uint64_t at = from;
      int err = 0;
      while (at < to) {
        const std::size_t want = detail::to_size(std::min<std::uint64_t>(buf.size(), to - at));
        const ssize_t n = detail::pread_some(*io_, fd_, buf.data(), want, at, err);
        if (n <= 0 || !detail::write_all(*io_, out, buf.data(), static_cast<std::size_t>(n), err)) {
          (void)io_->close(out);
          if (n == 0) err = EIO;
          return detail::errno_error(n < 0 ? "pread" : "write", n < 0 ? s.path : d.saved_to, err,
                                     at);
        }
        at += static_cast<std::uint64_t>(n);
      }
      const bool synced = io_->fsync(out) == 0;
      const int sync_errno = errno;
      (void)io_->close(out);
      if (!synced) return detail::errno_error("fsync", d.saved_to, sync_errno);
      // The side file's name must be durable before the segment is cut.
      if (storage_error e = detail::sync_dir(*io_, opts_.dir)) return e;
    }
    if (io_->ftruncate(fd_, static_cast<off_t>(from)) != 0)
      return detail::errno_error("ftruncate", s.path, errno, from);
    if (io_->fsync(fd_) != 0) return detail::errno_error("fsync", s.path, errno);
    recovered_.push_back(std::move(d));
    return {};
  }

  [[nodiscard]] storage::segment_header fresh_header(std::uint64_t base) const noexcept {
    storage::segment_header h;
    h.base = base;
    h.created_ns = detail::wall_ns();
    h.lost_from = base;
    h.max_record = static_cast<std::uint32_t>(opts_.max_record);
    return h;
  }

  storage_error write_header(const storage::segment_header& h) {
    unsigned char b[storage::segment_header_size];
    storage::write_segment_header(b, h);
    int err = 0;
    if (io_->lseek(fd_, 0, SEEK_SET) < 0 || !detail::write_all(*io_, fd_, b, sizeof b, err))
      return detail::errno_error("write", current_path(), err != 0 ? err : errno);
    size_ = sizeof b;
    segments_.back().size = size_;
    next_ = h.base;
    return {};
  }

  // Closes the files of a log whose open() failed, without a sync or a roll.
  void abandon() noexcept {
    if (fd_ >= 0) (void)io_->close(fd_);
    fd_ = -1;
    if (lock_fd_ >= 0) (void)io_->close(lock_fd_);
    lock_fd_ = -1;
  }

  // Makes the file of a new segment: header written and synced, its name
  // synced in the folder. A file of no records already there (an empty
  // segment being replaced, or left by an earlier attempt) is replaced by
  // renaming the new file over it: a failure or a crash leaves one of the
  // two, never neither (the old one may announce lost offsets). On failure
  // nothing new is left behind.
  storage_error make_segment_file(const storage::segment_header& h, detail::segment_file& s,
                                  int& fd_out) {
    s.base = h.base;
    s.path = opts_.dir + "/" + storage::segment_name(h.base);
    std::string made = s.path;
    int fd = detail::open_retry(*io_, s.path.c_str(), O_RDWR | O_CREAT | O_EXCL);
    struct stat st {};
    const bool replacing = fd < 0 && errno == EEXIST && ::stat(s.path.c_str(), &st) == 0 &&
                           static_cast<std::uint64_t>(st.st_size) <= storage::segment_header_size;
    if (replacing) {
      made = s.path + ".new";  // not a segment name: readers never list it
      (void)io_->unlink(made.c_str());
      fd = detail::open_retry(*io_, made.c_str(), O_RDWR | O_CREAT | O_EXCL);
    }
    if (fd < 0) return detail::errno_error("open (new segment)", made, errno);
    unsigned char b[storage::segment_header_size];
    storage::write_segment_header(b, h);
    int err = 0;
    if (!detail::write_all(*io_, fd, b, sizeof b, err) || io_->fdatasync(fd) != 0) {
      if (err == 0) err = errno;
      (void)io_->close(fd);
      (void)io_->unlink(made.c_str());
      return detail::errno_error("write (new segment)", made, err);
    }
    if (replacing && io_->rename(made.c_str(), s.path.c_str()) != 0) {
      err = errno;
      (void)io_->close(fd);
      (void)io_->unlink(made.c_str());
      return detail::errno_error("rename (new segment)", s.path, err);
    }
    // The new file's name must survive a crash as well as its bytes. (A
    // replacement stays: it says at least what the file it replaced said.)
    if (storage_error e = detail::sync_dir(*io_, opts_.dir)) {
      (void)io_->close(fd);
      if (!replacing) (void)io_->unlink(s.path.c_str());
      return e;
    }
    s.size = storage::segment_header_size;
    fd_out = fd;
    return {};
  }

  storage_error create_segment(std::uint64_t base) {
    detail::segment_file s;
    int fd = -1;
    head_ = fresh_header(base);
    if (storage_error e = make_segment_file(head_, s, fd)) return e;
    fd_ = fd;
    segments_.push_back(std::move(s));
    size_ = storage::segment_header_size;
    next_ = base;
    synced_next_ = base;
    return {};
  }

  // Starts a new segment at next_. The current one is synced first, so that
  // only the last segment can ever end in a torn record; after a failed sync
  // it is not trusted again, and the new header says which offsets may be
  // missing. An empty current segment is replaced rather than followed.
  storage_error roll() {
    if (!distrust_ && !sync_current()) unreported_sync_error_ = true;  // the next sync() says so
    storage::segment_header h = fresh_header(next_);
    if (distrust_ && synced_next_ < next_) {
      h.lost_from = synced_next_;
      h.reason = storage::lost_reason::failed_sync;
    }
    const bool empty = segments_.back().base == next_;  // no record in the current segment
    if (empty && head_.reason != storage::lost_reason::none &&
        (h.reason == storage::lost_reason::none || head_.lost_from < h.lost_from)) {
      // The segment it replaces announced missing offsets: so does this one.
      h.lost_from = head_.lost_from;
      h.reason = head_.reason;
    }
    if (empty && !distrust_) {
      // Give it this writer's header instead of following it.
      if (storage_error e = write_header(h)) return e;
      if (io_->fdatasync(fd_) != 0) return detail::errno_error("fdatasync", current_path(), errno);
      head_ = h;
      settle_roll();
      return {};
    }
    // A new file (for an empty, distrusted segment: in its place).
    detail::segment_file s;
    int fd = -1;
    if (storage_error e = make_segment_file(h, s, fd)) return e;
    (void)io_->close(fd_);
    fd_ = fd;
    if (empty) {
      segments_.back() = std::move(s);
    } else {
      segments_.push_back(std::move(s));
    }
    size_ = storage::segment_header_size;
    head_ = h;
    settle_roll();
    retain();
    return {};
  }

  void settle_roll() noexcept {
    must_roll_ = false;
    distrust_ = false;
    synced_next_ = next_;
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
      if (io_->unlink(segments_.front().path.c_str()) != 0 && errno != ENOENT) break;
      segments_.erase(segments_.begin());
      removed = true;
    }
    if (removed) (void)detail::sync_dir(*io_, opts_.dir);
  }

  file_log_options opts_;
  file_io* io_;
  std::vector<detail::segment_file> segments_;
  std::vector<damage_report> recovered_;
  int fd_ = -1;
  int lock_fd_ = -1;          // holds the folder's writer lock
  storage_error broken_;      // a failed write that could not be undone
  storage_error roll_error_;  // the last failed roll
  storage_error sync_error_;  // the last failed fdatasync
  std::uint64_t sync_failures_ = 0;
  std::uint64_t size_ = 0;              // bytes in the current segment
  std::uint64_t next_ = 0;              // the next record's offset
  std::uint64_t synced_next_ = 0;       // records below it are durable
  bool must_roll_ = false;              // the current segment takes no more records
  bool distrust_ = false;               // its fdatasync failed: never asked again
  bool unreported_sync_error_ = false;  // a roll's sync failed; the next sync() says so
  storage::segment_header head_;        // the current segment's header
};

}  // namespace SLUICE_ABI
}  // namespace sluice
