// sluice — repairing a damaged file log (also `sluice-log repair`).
//
// A writer refuses to open a log whose last segment has damage followed by
// valid records, or a damaged header, and readers stop at damage in any
// segment. repair_log() makes such a log whole again without losing a valid
// record and without renumbering one:
//  - every valid record stays, at its offset;
//  - damaged bytes are moved to side files (`<segment>.damaged-<byte offset>`),
//    never deleted;
//  - where records after damage continue, they go into a new segment named by
//    their first offset, whose header says that the offsets in between were
//    removed by a repair (log_reader reports them as lost); a segment whose
//    header was damaged gets a new one, from its first valid record;
//  - a torn tail of the last segment is cut, as a writer's recovery would.
// It reports each change: file, byte offset, bytes, the offsets that are now
// missing, why, and where the bytes went. With dry_run nothing is changed.
//
// It takes the log's writer lock: it refuses a log that a writer has open.
#pragma once

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
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

struct repair_options {
  std::string dir;
  // The largest record body of version 1 segments (version 2 segments say
  // their own).
  std::size_t max_record = storage::default_max_record;
  bool dry_run = false;   // report what would change, change nothing
  file_io* io = nullptr;  // the system calls (nullptr: POSIX)
};

// One thing a repair did (or would do).
struct repair_change {
  std::string file;             // the segment
  std::uint64_t at = 0;         // byte offset in it
  std::uint64_t bytes = 0;      // bytes removed (moved aside)
  std::uint64_t lost_from = 0;  // offsets now missing: [lost_from, lost_to)
  std::uint64_t lost_to = 0;
  std::string reason;
  std::string saved_to;  // the side file with the removed bytes (empty: none)
};

struct repair_report {
  std::vector<repair_change> changes;
  std::vector<std::string> segments_made;      // new segment files
  std::vector<std::string> headers_rewritten;  // segments given a new header
  std::uint64_t records = 0;                   // valid records kept
  storage_error error;                         // why the repair stopped (nothing after it done)
  [[nodiscard]] bool changed() const noexcept {
    return !changes.empty() || !segments_made.empty() || !headers_rewritten.empty();
  }
  [[nodiscard]] bool ok() const noexcept { return error.ok(); }
};

namespace detail {

class log_repair {
 public:
  explicit log_repair(const repair_options& o)
      : o_(o), io_(o.io != nullptr ? o.io : &posix_io::instance()) {}

  repair_report run() {
    struct stat st {};
    if (::stat(o_.dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      rep_.error = storage_error::make(storage_errc::io, "no such log folder", o_.dir);
      return std::move(rep_);
    }
    lock_fd_ = open_retry(*io_, o_.dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (lock_fd_ < 0) {
      rep_.error = errno_error("open (folder)", o_.dir, errno);
      return std::move(rep_);
    }
    if (io_->flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
      rep_.error = storage_error::make(
          storage_errc::locked, "the log is open for writing: close its writer first", o_.dir);
      (void)io_->close(lock_fd_);
      return std::move(rep_);
    }
    std::vector<segment_file> segs;
    if (storage_error e = list_segments(o_.dir, segs)) {
      rep_.error = std::move(e);
    } else {
      for (std::size_t i = 0; i < segs.size() && rep_.ok(); ++i) {
        // A segment this run has just written (or found written by an
        // interrupted run, with the same records) holds records already
        // accounted for: not checked again as if it followed them.
        if (std::find(made_.begin(), made_.end(), segs[i].path) != made_.end()) continue;
        repair_segment(segs[i], i + 1 == segs.size(), i + 1 < segs.size() ? &segs[i + 1] : nullptr);
      }
      if (rep_.ok() && rep_.changed() && !o_.dry_run) {
        if (storage_error se = sync_dir(*io_, o_.dir)) rep_.error = std::move(se);
      }
    }
    (void)io_->close(lock_fd_);
    return std::move(rep_);
  }

 private:
  // A run of valid records: bytes [begin, end) of the file, offsets [base, next).
  struct piece {
    std::size_t begin = 0, end = 0;
    std::uint64_t base = 0, next = 0;
  };
  // Damaged bytes [begin, end) between the records before them (which end at
  // offset `before`) and after them (from offset `after`).
  struct damage {
    std::size_t begin = 0, end = 0;
    std::uint64_t before = 0, after = 0;
    const char* why = "";
  };

  void repair_segment(const segment_file& s, bool last, const segment_file* following) {
    std::vector<unsigned char> b;
    if (!read_all(s.path, b)) return;
    storage::segment_header h;
    bool header_ok = b.size() >= storage::segment_header_size &&
                     storage::read_segment_header(b.data(), h) == nullptr && h.base == s.base;
    if (b.size() >= storage::segment_header_size && !header_ok &&
        storage::classify_header(b.data()) == storage::header_problem::bad_version) {
      rep_.error = storage_error::make(storage_errc::bad_version,
                                       "a segment of another format version: not repaired", s.path);
      return;
    }
    const char* header_why = "damaged segment header";
    if (header_ok && prev_known_ && h.base < prev_end_) {
      // Its records would repeat offsets of the segments before: from the
      // first one after them, it gets a new header (and name).
      header_ok = false;
      header_why = "offsets overlap the previous segment's";
    }
    const std::size_t limit = header_ok ? storage::record_limit(h, o_.max_record) : max_limit();
    // Where this segment's records should begin: after the previous segment's,
    // or (the first segment) where its name says.
    const std::uint64_t floor = prev_known_ ? prev_end_ : s.base;
    std::vector<piece> pieces;
    std::vector<damage> damages;
    largest_ = 0;
    stored_event e;
    std::size_t at = storage::segment_header_size;
    std::uint64_t expected = h.base;
    if (!header_ok) {
      // Records may still be there after a damaged header: from the first valid one.
      const std::size_t from = storage::segment_header_size - 1;
      const std::size_t found =
          b.size() > from
              ? storage::find_next_record(b.data() + from, b.size() - from, floor, limit, e)
              : 0;
      if (b.size() <= storage::segment_header_size || from + found >= b.size()) {
        whole_file_damaged(s, b, last);
        return;
      }
      at = from + found;
      expected = e.offset;
      damages.push_back({0, at, floor, expected, header_why});
    }
    piece cur{at, at, expected, expected};
    for (;;) {
      if (at == b.size()) {
        cur.end = at;
        cur.next = expected;
        pieces.push_back(cur);
        break;
      }
      const storage::parse_result r = storage::parse_record(b.data() + at, b.size() - at, e, limit);
      if (r.status == storage::parse_status::ok && e.offset == expected) {
        largest_ = std::max(largest_, r.size - storage::frame_size);
        at += r.size;
        ++expected;
        ++rep_.records;
        continue;
      }
      const char* why =
          r.status == storage::parse_status::need_more
              ? "incomplete record (torn write)"
              : (r.status == storage::parse_status::ok ? "record offset out of sequence"
                                                       : r.reason);
      cur.end = at;
      cur.next = expected;
      pieces.push_back(cur);
      const std::size_t found =
          storage::find_next_record(b.data() + at, b.size() - at, expected, limit, e);
      if (found >= b.size() - at) {
        // Damage to the end: what follows this segment is missing from here on.
        const std::uint64_t after =
            following != nullptr ? std::max(expected, following->base) : expected;
        damages.push_back({at, b.size(), expected, after, why});
        break;
      }
      damages.push_back({at, at + found, expected, e.offset, why});
      at += found;
      expected = e.offset;
      cur = piece{at, at, expected, expected};
    }
    // Drop empty pieces (a damaged start leaves none before it).
    pieces.erase(std::remove_if(pieces.begin(), pieces.end(),
                                [](const piece& p) { return p.begin == p.end; }),
                 pieces.end());
    if (pieces.empty()) {
      if (!header_ok) {
        whole_file_damaged(s, b, last);
        return;
      }
      // No valid record, but a valid header: it stays, with nothing after it
      // (and says what is missing before it, like any other first run).
      pieces.push_back(
          piece{storage::segment_header_size, storage::segment_header_size, h.base, h.base});
    }
    // 1. The damaged bytes go to side files, and the changes are reported.
    for (const damage& d : damages) {
      repair_change c;
      c.file = s.path;
      c.at = d.begin;
      c.bytes = d.end - d.begin;
      c.reason = d.why;
      c.lost_from = d.before;
      c.lost_to = std::max(d.before, d.after);
      if (c.bytes != 0) {
        c.saved_to = o_.dry_run ? s.path + ".damaged-" + std::to_string(d.begin)
                                : save_aside(s.path, d.begin, b.data() + d.begin, c.bytes);
        if (!rep_.ok()) return;
      }
      rep_.changes.push_back(std::move(c));
    }
    // 2. Runs of records after damage go to new segments, which say what
    //    is missing before them.
    for (std::size_t k = 1; k < pieces.size(); ++k) {
      storage::segment_header nh =
          header_for(pieces[k].base, pieces[k - 1].next, header_ok ? &h : nullptr,
                     storage::lost_reason::repaired);
      const std::string path = o_.dir + "/" + storage::segment_name(nh.base);
      if (!write_segment(path, nh, b.data() + pieces[k].begin, pieces[k].end - pieces[k].begin))
        return;
      rep_.segments_made.push_back(path);
    }
    // 3. The first run stays where it is: with a new header where the old one
    //    was damaged, names another offset, or keeps quiet about offsets
    //    missing before it, and rewritten where damage precedes it (right
    //    after the header); cut after its last record where damage follows.
    //    The files made above must be durable (names included) before the
    //    original is changed: a power cut in between loses nothing.
    if (!names_durable()) return;
    {
      const piece& p = pieces.front();
      const bool announced =
          header_ok && h.reason != storage::lost_reason::none && h.lost_from <= floor;
      const bool gap_before = p.base > floor && !announced;
      if (!header_ok || p.base != s.base || gap_before || p.begin != storage::segment_header_size) {
        storage::segment_header nh =
            header_for(p.base, floor, header_ok ? &h : nullptr,
                       announced ? h.reason : storage::lost_reason::repaired);
        const std::string path = o_.dir + "/" + storage::segment_name(p.base);
        const bool moved = path != s.path;
        if (!write_segment(path, nh, b.data() + p.begin, p.end - p.begin, moved ? "" : s.path))
          return;
        if (moved && !o_.dry_run) {
          if (!names_durable()) return;  // the new name first, then the old one goes
          if (io_->unlink(s.path.c_str()) != 0) {
            rep_.error = errno_error("unlink", s.path, errno);
            return;
          }
        }
        rep_.headers_rewritten.push_back(path);
      } else if (p.end < b.size() && !truncate_to(s.path, p.end)) {
        return;
      }
    }
    prev_known_ = true;
    prev_end_ = pieces.back().next;
  }

  // The header of a segment from `base`, after records that end at `before`.
  storage::segment_header header_for(std::uint64_t base, std::uint64_t before,
                                     const storage::segment_header* old,
                                     storage::lost_reason reason) const {
    storage::segment_header nh;
    nh.base = base;
    nh.created_ns = old != nullptr ? old->created_ns : wall_ns();
    // A new header states the largest record, so that every record kept
    // (found with the widest limit) reads back.
    // (a version 1 segment's records were checked against o_.max_record).
    nh.max_record =
        old != nullptr && old->max_record != 0
            ? old->max_record
            : static_cast<std::uint32_t>(std::clamp<std::size_t>(
                  std::max(largest_, o_.max_record), storage::body_fixed + 1, UINT32_MAX));
    if (before < base) {
      nh.lost_from = before;
      nh.reason = reason;
    } else {
      nh.lost_from = base;
      nh.reason = storage::lost_reason::none;
    }
    return nh;
  }

  void whole_file_damaged(const segment_file& s, const std::vector<unsigned char>& b, bool last) {
    repair_change c;
    c.file = s.path;
    c.at = 0;
    c.bytes = b.size();
    c.reason = last && b.size() <= storage::segment_header_size
                   ? "segment header never completed"
                   : "no valid header and no valid record";
    c.lost_from = prev_known_ ? prev_end_ : s.base;
    c.lost_to = c.lost_from;
    // A side file of its own: never over one kept earlier.
    struct stat st {};
    for (int k = 0; k < 1000; ++k) {
      c.saved_to = s.path + ".damaged-0" + (k != 0 ? "." + std::to_string(k) : "");
      if (::lstat(c.saved_to.c_str(), &st) != 0) break;
    }
    if (!o_.dry_run && io_->rename(s.path.c_str(), c.saved_to.c_str()) != 0) {
      rep_.error = errno_error("rename", s.path, errno);
      return;
    }
    rep_.changes.push_back(std::move(c));
  }

  // Syncs the folder when this run made a file in it since the last time.
  bool names_durable() {
    if (!dir_dirty_ || o_.dry_run) return true;
    if (storage_error e = sync_dir(*io_, o_.dir)) {
      rep_.error = std::move(e);
      return false;
    }
    dir_dirty_ = false;
    return true;
  }

  [[nodiscard]] std::size_t max_limit() const noexcept {
    return std::max<std::size_t>(o_.max_record, std::size_t{1} << 31);
  }

  bool read_all(const std::string& path, std::vector<unsigned char>& out) {
    const int fd = open_retry(*io_, path.c_str(), O_RDONLY);
    if (fd < 0) {
      rep_.error = errno_error("open", path, errno);
      return false;
    }
    struct stat st {};
    if (io_->fstat(fd, &st) != 0) {
      rep_.error = errno_error("fstat", path, errno);
      (void)io_->close(fd);
      return false;
    }
    if (!try_resize(out, static_cast<std::uint64_t>(st.st_size))) {
      rep_.error =
          storage_error::make(storage_errc::io, "not enough memory to read the segment", path);
      (void)io_->close(fd);
      return false;
    }
    int err = 0;
    const ssize_t n = pread_some(*io_, fd, out.data(), out.size(), 0, err);
    (void)io_->close(fd);
    if (n < 0) {
      rep_.error = errno_error("pread", path, err);
      return false;
    }
    out.resize(static_cast<std::size_t>(n));
    return true;
  }

  // Writes bytes to a new side file (never over an existing one); its path.
  std::string save_aside(const std::string& path, std::uint64_t at, const unsigned char* p,
                         std::size_t n) {
    std::string name;
    int fd = -1;
    for (int k = 0; fd < 0 && k < 1000; ++k) {
      name = path + ".damaged-" + std::to_string(at) + (k != 0 ? "." + std::to_string(k) : "");
      fd = open_retry(*io_, name.c_str(), O_WRONLY | O_CREAT | O_EXCL);
      if (fd < 0 && errno != EEXIST) break;
    }
    int err = 0;
    if (fd < 0 || !write_all(*io_, fd, p, n, err) || io_->fsync(fd) != 0) {
      rep_.error =
          errno_error("write (side file)", name, fd < 0 ? errno : (err != 0 ? err : errno));
      if (fd >= 0) (void)io_->close(fd);
      return name;
    }
    (void)io_->close(fd);
    dir_dirty_ = true;
    return name;
  }

  // Writes a segment: header and records, to `path`, through a temporary
  // file renamed into place (over `replace`, the file it replaces, if any), so
  // that a crash never leaves a partial segment under a segment's name. A
  // segment file of that name with no record in it is replaced; one with the
  // same records (an interrupted repair made it) is kept.
  bool write_segment(const std::string& path, const storage::segment_header& h,
                     const unsigned char* records, std::size_t n, const std::string& replace = "") {
    if (o_.dry_run) return true;
    struct stat st {};
    if (replace.empty() && ::stat(path.c_str(), &st) == 0 &&
        static_cast<std::uint64_t>(st.st_size) > storage::segment_header_size) {
      std::vector<unsigned char> have;
      const storage_error before = rep_.error;
      if (read_all(path, have) && have.size() == storage::segment_header_size + n &&
          std::equal(records, records + n, have.begin() + storage::segment_header_size)) {
        made_.push_back(path);
        return true;
      }
      rep_.error = before.ok() ? storage_error::make(storage_errc::io,
                                                     "a segment file with this name exists "
                                                     "already, with other records",
                                                     path)
                               : before;
      return false;
    }
    const std::string tmp = path + ".repair";
    (void)io_->unlink(tmp.c_str());  // left by an interrupted repair
    const int fd = open_retry(*io_, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL);
    if (fd < 0) {
      rep_.error = errno_error("open (new segment)", tmp, errno);
      return false;
    }
    unsigned char hb[storage::segment_header_size];
    storage::write_segment_header(hb, h);
    int err = 0;
    const bool ok = write_all(*io_, fd, hb, sizeof hb, err) &&
                    (n == 0 || write_all(*io_, fd, records, n, err)) && io_->fsync(fd) == 0;
    if (!ok && err == 0) err = errno;
    (void)io_->close(fd);
    if (!ok) {
      rep_.error = errno_error("write (new segment)", tmp, err);
      (void)io_->unlink(tmp.c_str());
      return false;
    }
    // (Over a segment file of this name with no record in it, if any.)
    if (io_->rename(tmp.c_str(), path.c_str()) != 0) {
      rep_.error = errno_error("rename", path, errno);
      return false;
    }
    dir_dirty_ = true;
    made_.push_back(path);
    return true;
  }

  bool truncate_to(const std::string& path, std::size_t size) {
    if (o_.dry_run) return true;
    const int fd = open_retry(*io_, path.c_str(), O_RDWR);
    if (fd < 0 || io_->ftruncate(fd, static_cast<off_t>(size)) != 0 || io_->fsync(fd) != 0) {
      rep_.error = errno_error("ftruncate", path, errno, size);
      if (fd >= 0) (void)io_->close(fd);
      return false;
    }
    (void)io_->close(fd);
    return true;
  }

  const repair_options& o_;
  file_io* io_;
  int lock_fd_ = -1;
  repair_report rep_;
  bool prev_known_ = false;        // a segment before this one was read
  std::size_t largest_ = 0;        // the largest record body of this segment
  std::vector<std::string> made_;  // segment files this run wrote (or found written)
  bool dir_dirty_ = false;         // a file was made since the folder was last synced
  std::uint64_t prev_end_ = 0;
};

}  // namespace detail

// Repairs the log in o.dir (see above). A second run finds nothing to do.
inline repair_report repair_log(const repair_options& o) {
  return detail::log_repair(o).run();
}

}  // namespace SLUICE_ABI
}  // namespace sluice
