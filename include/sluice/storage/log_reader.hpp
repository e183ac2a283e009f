// sluice — reading a file log (file_log.hpp): in offset order, every record
// checked, from an offset, by type or key, following a log that is being
// written.
//
// What a reader reports besides events:
//  - read_status::lost: offsets that are not in the log, and why (an
//    fdatasync failed before they were acknowledged; a repair removed them as
//    damaged; or, with skip_damaged, damage this reader skipped). lost() says
//    which. Reading goes on with the next call.
//  - read_status::damaged: damage it cannot pass (or will not: skip_damaged is
//    off), with file, byte offset and reason in error(). Reading stops.
//  - read_status::end: nothing more now. pending_bytes() counts the bytes at
//    the end of the last segment that are not (yet) a whole record: a write in
//    progress, or, when no writer runs, a torn tail that the next writer will
//    cut.
// A segment that shrinks under the reader is noticed: bytes it had not
// consumed are dropped (recovery cutting a torn tail), but records it already
// returned being cut is damage.
//
// Thread-safety: one reader is used by one thread at a time. A reader never
// changes the folder, so it may read a log another process is writing.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../detail/numeric.hpp"
#include "error.hpp"
#include "format.hpp"
#include "io.hpp"

namespace sluice {
inline namespace SLUICE_ABI {

struct reader_options {
  std::uint64_t from = 0;       // first offset wanted
  std::string type;             // only this event name (empty: all)
  std::optional<key_type> key;  // only events with this key
  // The largest record body in version 1 segments, whose headers do not say
  // what their writer accepted (a version 2 segment's own limit is used).
  std::size_t max_record = storage::default_max_record;
  // Go on after damage: skip to the next valid record and report the offsets
  // in between as lost, instead of stopping.
  bool skip_damaged = false;
};

enum class read_status : std::uint8_t {
  event,    // `out` holds the next event
  end,      // no more for now (a writer may append more: call next() again later)
  lost,     // offsets missing here: lost() says which and why; next() goes on after them
  damaged,  // a damaged record or segment: error() says where and why; reading stops
};

// Offsets [from, to) that are not in the log.
struct lost_records {
  std::uint64_t from = 0;
  std::uint64_t to = 0;
  std::string why;
  std::string file;          // where it was noticed
  std::uint64_t offset = 0;  // byte offset in `file`
};

// Reads a log folder in offset order, checking every record.
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
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
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
    r->expected_ = r->opts_.from;
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
            storage::parse_record(buf_.data() + pos_, len_ - pos_, out, limit_);
        if (r.status == storage::parse_status::ok && out.offset == expected_) {
          expected_ = out.offset + 1;
          pos_ += r.size;
          bytes_read_ += r.size;
          if (out.offset < opts_.from) continue;
          if (!opts_.type.empty() && out.type != opts_.type) continue;
          if (opts_.key && (!out.has_key || out.key != *opts_.key)) continue;
          return read_status::event;
        }
        if (r.status != storage::parse_status::need_more) {
          const read_status s = on_damage(
              r.status == storage::parse_status::ok ? "record offset out of sequence" : r.reason);
          if (s != read_status::event) return s;
          continue;  // passed over, nothing to report
        }
        // A record larger than the buffer: make room, if the file can hold it.
        if (r.size > buf_.size() && r.size - (len_ - pos_) <= file_left()) {
          compact();
          buf_.resize(r.size);
        }
      }
      // Need more bytes.
      const read_status s = refill();
      if (s != read_status::event) return s;
    }
  }

  // Where and why reading stopped, after next() returned damaged.
  [[nodiscard]] const storage_error& error() const noexcept { return error_; }
  // What is missing, after next() returned lost.
  [[nodiscard]] const lost_records& lost() const noexcept { return lost_; }
  // Offsets reported lost so far.
  [[nodiscard]] std::uint64_t lost_count() const noexcept { return lost_count_; }
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
  // Where those bytes begin (file and byte offset).
  [[nodiscard]] std::uint64_t pending_at() const noexcept {
    return fd_ < 0 ? 0 : file_pos_ - (len_ - pos_);
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
  // Damaged bytes passed over (skip_damaged).
  [[nodiscard]] std::uint64_t skipped_bytes() const noexcept { return skipped_bytes_; }

 private:
  log_reader(std::string dir, reader_options o) : dir_(std::move(dir)), opts_(std::move(o)) {
    buf_.resize(std::size_t{256} << 10);
    limit_ = opts_.max_record;
  }

  // The file position of buf_[pos_].
  [[nodiscard]] std::uint64_t here() const noexcept { return file_pos_ - (len_ - pos_); }

  [[nodiscard]] std::uint64_t file_left() const noexcept {
    struct stat st {};
    if (fd_ < 0 || ::fstat(fd_, &st) != 0) return 0;
    const auto size = static_cast<std::uint64_t>(st.st_size);
    return size > file_pos_ ? size - file_pos_ : 0;
  }

  void compact() noexcept {
    const std::size_t keep = len_ - pos_;
    if (keep != 0 && pos_ != 0) std::memmove(buf_.data(), buf_.data() + pos_, keep);
    pos_ = 0;
    len_ = keep;
  }

  read_status fail(const char* why, std::uint64_t at, storage_errc code = storage_errc::damaged) {
    failed_ = true;
    error_ = storage_error::make(code, why, current_file(), at);
    return read_status::damaged;
  }

  read_status report_lost(std::uint64_t from, std::uint64_t to, std::string why, std::uint64_t at) {
    lost_.from = from;
    lost_.to = to;
    lost_.why = std::move(why);
    lost_.file = current_file();
    lost_.offset = at;
    lost_count_ += to - from;
    return read_status::lost;
  }

  // Damage where the buffer's pos_ is. Without skip_damaged: stop. With it:
  // go on at the next valid record (reporting the offsets in between as
  // lost), or at the next segment; at the end of the log, what is left is not
  // a record (pending_bytes() counts it). Returns event to read on with
  // nothing to report.
  read_status on_damage(const char* why) {
    const std::uint64_t at = here();
    if (reread_at_ != at + 1) {
      // The buffered bytes may be stale: a writer cuts a torn tail and
      // appends over it, and the file may have grown back past where this
      // reader was before it looked. Read from the file once more.
      reread_at_ = at + 1;
      file_pos_ = at;
      len_ = pos_;
      return read_status::event;
    }
    if (!opts_.skip_damaged) return fail(why, at);
    std::vector<unsigned char> rest;
    if (!read_rest(at, rest)) return read_status::damaged;
    stored_event e;
    const std::size_t found =
        storage::find_next_record(rest.data(), rest.size(), expected_, limit_, e);
    std::string text = std::string("damaged bytes skipped: ") + why;
    if (found < rest.size()) {
      skipped_bytes_ += found;
      file_pos_ = at + found;
      pos_ = len_ = 0;
      const std::uint64_t from = expected_;
      expected_ = e.offset;
      if (e.offset == from) return read_status::event;
      return report_lost(from, e.offset, std::move(text), at);
    }
    if (!refresh_listing()) {
      // The end of the log: leave the bytes where they are.
      return read_status::end;
    }
    // Nothing valid after it in this segment: on with the next one.
    skipped_bytes_ += rest.size();
    const std::uint64_t from = expected_;
    const std::uint64_t to = segments_[next_index_].base;
    close_segment();
    cur_ = next_index_;
    if (to <= from) return read_status::event;  // the next segment checks its own start
    expected_ = to;
    return report_lost(from, to, std::move(text), at);
  }

  bool read_rest(std::uint64_t at, std::vector<unsigned char>& out) {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) {
      failed_ = true;
      error_ = detail::errno_error("fstat", current_file(), errno);
      return false;
    }
    const auto size = static_cast<std::uint64_t>(st.st_size);
    out.resize(size > at ? detail::to_size(size - at) : 0);
    int err = 0;
    const ssize_t n = detail::pread_some(fd_, out.data(), out.size(), at, err);
    if (n < 0) {
      failed_ = true;
      error_ = detail::errno_error("pread", current_file(), err, at);
      return false;
    }
    out.resize(static_cast<std::size_t>(n));
    return true;
  }

  // Lists the folder again; true when a segment after the current one exists
  // (next_index_ then names it).
  bool refresh_listing() {
    std::vector<detail::segment_file> now;
    if (detail::list_segments(dir_, now)) return next_index_ < segments_.size();
    std::size_t i = 0;
    while (i < now.size() && now[i].base <= cur_base_) ++i;
    segments_ = std::move(now);
    next_index_ = i;
    return next_index_ < segments_.size();
  }

  void close_segment() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    reread_at_ = 0;
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
    fd_ = fd;
    cur_base_ = s.base;
    next_index_ = cur_ + 1;
    header_pending_ = 0;
    file_pos_ = storage::segment_header_size;
    pos_ = len_ = 0;
    limit_ = storage::record_limit(sh, opts_.max_record);
    bytes_read_ += storage::segment_header_size;
    // Does it continue where reading is (the offset after the last record
    // read, or `from` for the first segment)?
    const std::uint64_t e = expected_;
    const bool first = !started_;
    started_ = true;
    if (sh.base == e || (first && sh.base < e)) {
      expected_ = sh.base;  // its records are checked from its first one
      return read_status::event;
    }
    if (sh.base < e) {
      close_segment();
      return fail("segment starts before the previous one ends (offsets overlap)", 0);
    }
    expected_ = sh.base;
    if (sh.reason != storage::lost_reason::none && sh.lost_from <= e)
      return report_lost(e, sh.base,
                         std::string(storage::to_string(sh.reason)) + " (said by this segment)", 0);
    if (first || cur_ == 0) {
      // Retention deleted segments this reader had not read yet (or the log
      // starts after `from`): a gap before the oldest segment is skipped.
      skipped_ += sh.base - e;
      return read_status::event;
    }
    if (opts_.skip_damaged)
      return report_lost(e, sh.base, "a segment is missing (damage skipped)", 0);
    expected_ = e;
    close_segment();
    return fail("segment does not continue the previous one (a segment is missing)", 0);
  }

  // Reads more of the current segment, or moves to the next one.
  read_status refill() {
    compact();
    if (const read_status s = read_more(); s != read_status::end) return s;
    // The end of this segment, as far as it goes now. Did it shrink?
    struct stat st {};
    if (::fstat(fd_, &st) == 0 && static_cast<std::uint64_t>(st.st_size) < file_pos_) {
      const auto size = static_cast<std::uint64_t>(st.st_size);
      const std::uint64_t consumed = file_pos_ - (len_ - pos_);
      if (size < consumed)
        return fail(
            "the segment was cut back under this reader: records it read are no longer "
            "in the log",
            size);
      len_ -= detail::to_size(file_pos_ - size);  // bytes not consumed yet: dropped
      file_pos_ = size;
    }
    // Is there a later segment? (Look again when this was the last one known;
    // retention may have deleted this one meanwhile.)
    if (next_index_ >= segments_.size() && !refresh_listing()) {
      // The end of the log. Bytes left over that are followed by a valid
      // record are not a write in progress: damage.
      if (len_ != pos_) {
        stored_event e;
        const std::size_t found =
            storage::find_next_record(buf_.data() + pos_, len_ - pos_, expected_, limit_, e);
        if (found < len_ - pos_)
          return on_damage("a record's length runs past valid records after it");
      }
      return read_status::end;
    }
    // The writer has rolled, but may have appended to this segment after our
    // read and before rolling: read once more before moving on.
    if (const read_status s = read_more(); s != read_status::end) return s;
    if (len_ != pos_) {
      // An incomplete record at the end of a segment that is not the last:
      // fine only where the next segment says offsets from here on may be
      // missing (a failed sync); the offsets are reported there.
      if (!next_announces_loss()) return on_damage("incomplete record at the end of a segment");
      pos_ = len_;
    }
    close_segment();
    cur_ = next_index_;
    return read_status::event;
  }

  // Reads what follows in the buffer: event when bytes came, end when none
  // (end of the file, or no room), damaged on an error.
  read_status read_more() {
    if (len_ >= buf_.size()) return read_status::end;
    int err = 0;
    const ssize_t n =
        detail::pread_some(fd_, buf_.data() + len_, buf_.size() - len_, file_pos_, err);
    if (n < 0) {
      failed_ = true;
      error_ = detail::errno_error("pread", current_file(), err, file_pos_);
      return read_status::damaged;
    }
    if (n == 0) return read_status::end;
    len_ += static_cast<std::size_t>(n);
    file_pos_ += static_cast<std::uint64_t>(n);
    return read_status::event;
  }

  // Whether the next segment's header says offsets from expected_ on may be
  // missing.
  bool next_announces_loss() {
    const int fd = detail::open_retry(segments_[next_index_].path.c_str(), O_RDONLY);
    if (fd < 0) return false;
    unsigned char h[storage::segment_header_size];
    int err = 0;
    const ssize_t n = detail::pread_some(fd, h, sizeof h, 0, err);
    ::close(fd);
    storage::segment_header sh;
    return n == static_cast<ssize_t>(sizeof h) && storage::read_segment_header(h, sh) == nullptr &&
           sh.reason != storage::lost_reason::none && sh.lost_from <= expected_;
  }

  std::string dir_;
  reader_options opts_;
  std::vector<detail::segment_file> segments_;
  std::size_t cur_ = 0;
  std::size_t next_index_ = 0;  // the segment after the current one, once known
  std::uint64_t cur_base_ = 0;
  std::string cur_path_;  // the segment being (or last) read
  std::uint64_t skipped_ = 0;
  std::uint64_t skipped_bytes_ = 0;
  int fd_ = -1;
  std::vector<unsigned char> buf_;
  std::size_t pos_ = 0, len_ = 0;   // unparsed bytes are buf_[pos_, len_)
  std::uint64_t file_pos_ = 0;      // file position of buf_[len_]
  std::size_t header_pending_ = 0;  // bytes of a last segment shorter than its header
  std::size_t limit_ = 0;           // the current segment's largest record
  std::uint64_t expected_ = 0;      // offset of the next record
  bool started_ = false;            // a segment was opened
  bool failed_ = false;
  std::uint64_t reread_at_ = 0;  // 1 + the file position of damage read again from the file
  storage_error error_;
  lost_records lost_;
  std::uint64_t lost_count_ = 0;
  std::uint64_t bytes_read_ = 0;
  std::uint64_t total_bytes_ = 0;
};

}  // namespace SLUICE_ABI
}  // namespace sluice
