// sluice — replay (event sourcing) and consumer checkpoints.
//
// replay() reads a log and publishes every event it has a codec for into a
// bus, with its stored key, through a producer that marks them replayed
// (metadata::replayed): recorders do not store them again, and handlers with
// outside effects can skip them. As fast as possible, or at the recorded pace
// (game replays), scaled by `speed`.
//
// When a lane is full the replay drains the bus itself (poll) and tries
// again, so a bus without workers (a game's frame loop, a service rebuilding
// state before it starts its workers) can be replayed into as well.
//
// checkpoint stores a consumer's position in a log, atomically (write a
// temporary file, fsync, rename, fsync the folder): resuming from it gives
// at-least-once processing of the events after it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <thread>

#include "../bus.hpp"
#include "../config.hpp"
#include "codec.hpp"
#include "error.hpp"
#include "format.hpp"
#include "io.hpp"
#include "log_reader.hpp"

namespace sluice {
inline namespace SLUICE_ABI {

enum class replay_pace : std::uint8_t {
  as_fast_as_possible,
  recorded,  // keep the recorded gaps between events (divided by speed)
};

struct replay_options {
  replay_pace pace = replay_pace::as_fast_as_possible;
  double speed = 1.0;  // recorded pace only: 2.0 replays twice as fast
  // Called for each event before it is published; false skips it.
  std::function<bool(const stored_event&)> filter;
  // Called for each record that has no codec or does not decode; the replay
  // goes on (the record is counted).
  std::function<void(const stored_event&, const decode_error&)> on_decode_error;
};

struct replay_result {
  std::uint64_t published = 0;    // accepted by the bus
  std::uint64_t refused = 0;      // the bus refused them (stopped, or rejected)
  std::uint64_t skipped = 0;      // filtered out
  std::uint64_t unknown = 0;      // no codec under the record's name
  std::uint64_t undecodable = 0;  // the codec could not decode them
  std::uint64_t lost = 0;         // offsets the log says are missing (log_reader: lost)
  std::uint64_t next_offset = 0;  // where a later replay would go on
  // Bytes at the end of the log that are not a whole record, and where they
  // begin: a write in progress, or (no writer running) a torn or damaged tail.
  std::uint64_t unread_bytes = 0;
  std::string unread_file;
  std::uint64_t unread_at = 0;
  storage_error error;  // why reading stopped early (damage), if it did

  // Reading did not stop at damage.
  [[nodiscard]] bool ok() const noexcept { return error.ok(); }
  // Every record of the log was read: no damage, nothing missing, no bytes
  // left over. (Events may still have been refused, skipped or undecodable.)
  [[nodiscard]] bool complete() const noexcept { return ok() && lost == 0 && unread_bytes == 0; }
};

// Replays the rest of `reader` into `b`. Returns at the end of the log (or at
// the first damage, reported in the result's error).
inline replay_result replay(log_reader& reader, bus& b, const codecs& types,
                            const replay_options& o = {}) {
  replay_result res;
  producer_options po;
  po.replayed = true;
  po.override_policy = true;
  po.policy = full_policy::block;  // never drop; a full lane: drain here, then try again
  producer p = b.make_producer(po);
  const double speed = o.speed > 0 && o.speed < 1e300 ? o.speed : 1.0;  // also NaN: 1
  std::int64_t first_time = 0;
  std::chrono::steady_clock::time_point start;
  bool have_first = false;
  const codec_entry* last = nullptr;  // most logs repeat a few types
  stored_event e;
  for (;;) {
    const read_status s = reader.next(e);
    if (s == read_status::end) break;
    if (s == read_status::damaged) {
      res.error = reader.error();
      break;
    }
    if (s == read_status::lost) {
      res.lost += reader.lost().to - reader.lost().from;
      continue;
    }
    if (o.filter && !o.filter(e)) {
      ++res.skipped;
      continue;
    }
    if (last == nullptr || last->name != e.type) last = types.find(e.type);
    if (last == nullptr) {
      ++res.unknown;
      if (o.on_decode_error)
        o.on_decode_error(e, decode_failure("sluice: no codec is registered under this event name",
                                            decode_errc::unknown_type));
      continue;
    }
    if (o.pace == replay_pace::recorded) {
      if (!have_first) {
        have_first = true;
        first_time = e.time_ns;
        start = std::chrono::steady_clock::now();
      } else if (e.time_ns > first_time) {
        // In double, then clamped (a tiny speed or a huge gap must not overflow).
        double wait = (static_cast<double>(e.time_ns) - static_cast<double>(first_time)) / speed;
        if (!(wait < 1e17)) wait = 1e17;  // about three years
        const auto due = start + std::chrono::nanoseconds(static_cast<std::int64_t>(wait));
        while (std::chrono::steady_clock::now() < due) {
          if (b.workers() == 0 && b.poll() != 0) continue;
          std::this_thread::sleep_until(
              std::min(due, std::chrono::steady_clock::now() + std::chrono::milliseconds(1)));
        }
      }
    }
    for (;;) {
      publish_result r = publish_result::ok;
      bool would_block = false;
      decode_error err;
      if (!last->publish(last->codec.get(), e, p, r, would_block, err)) {
        ++res.undecodable;
        if (o.on_decode_error) o.on_decode_error(e, err);
        break;
      }
      if (r == publish_result::ok) {
        ++res.published;
        break;
      }
      if (would_block) {
        // Make room: drain on this thread (or let the workers do it).
        if (b.poll(SLUICE_DRAIN_BATCH) == 0) std::this_thread::yield();
        continue;  // decoded again: the failed publish did not consume it
      }
      ++res.refused;  // stopped
      break;
    }
  }
  res.next_offset = reader.position();
  res.unread_bytes = reader.pending_bytes();
  if (res.unread_bytes != 0) {
    res.unread_file = reader.current_file();
    res.unread_at = reader.pending_at();
  }
  return res;
}

// Opens the log in `dir` and replays it from `from` into `b`. `ro`'s `from`
// is replaced by `from`.
inline replay_result replay(const std::string& dir, bus& b, const codecs& types,
                            std::uint64_t from = 0, const replay_options& o = {},
                            reader_options ro = {}) {
  ro.from = from;
  storage_error err;
  auto reader = log_reader::open(dir, ro, err);
  if (reader == nullptr) {
    replay_result r;
    r.error = err;
    r.next_offset = from;
    return r;
  }
  return replay(*reader, b, types, o);
}

// A consumer's position in a log, kept in one small file.
// Format (24 bytes): "SLUICECK" | u64 next offset | u32 format version (1) | u32 CRC32C of the 20
// bytes before it.
class checkpoint {
 public:
  explicit checkpoint(std::string path) : path_(std::move(path)) {}

  // The stored offset; nullopt when there is none yet (err is ok) or the file
  // is damaged (err says so; the file is left as it is).
  std::optional<std::uint64_t> load(storage_error& err) const {
    err = {};
    const int fd = detail::open_retry(path_.c_str(), O_RDONLY);
    if (fd < 0) {
      if (errno != ENOENT) err = detail::errno_error("open", path_, errno);
      return std::nullopt;
    }
    unsigned char b[25];
    int e = 0;
    const ssize_t n = detail::pread_some(fd, b, sizeof b, 0, e);
    ::close(fd);
    if (n < 0) {
      err = detail::errno_error("pread", path_, e);
      return std::nullopt;
    }
    if (n != 24 || std::memcmp(b, "SLUICECK", 8) != 0 ||
        storage::load_le<std::uint32_t>(b + 16) != 1 ||
        storage::load_le<std::uint32_t>(b + 20) != detail::crc32c(b, 20)) {
      err = storage_error::make(storage_errc::damaged, "not a valid sluice checkpoint", path_, 0);
      return std::nullopt;
    }
    return storage::load_le<std::uint64_t>(b + 8);
  }

  // Stores `next_offset` (the first offset not yet processed) durably.
  storage_error store(std::uint64_t next_offset) const {
    unsigned char b[24];
    std::memcpy(b, "SLUICECK", 8);
    storage::store_le<std::uint64_t>(b + 8, next_offset);
    storage::store_le<std::uint32_t>(b + 16, 1);
    storage::store_le<std::uint32_t>(b + 20, detail::crc32c(b, 20));
    // A name of its own: stores running at once never write into one file.
    const std::string tmp = path_ + ".tmp." + std::to_string(::getpid()) + "." +
                            std::to_string(temp_counter().fetch_add(1, std::memory_order_relaxed));
    const int fd = detail::open_retry(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL);
    if (fd < 0) return detail::errno_error("open", tmp, errno);
    int e = 0;
    if (!detail::write_all(posix_io::instance(), fd, b, sizeof b, e) || ::fsync(fd) != 0) {
      if (e == 0) e = errno;
      ::close(fd);
      (void)::unlink(tmp.c_str());
      return detail::errno_error("write", tmp, e);
    }
    ::close(fd);
    if (::rename(tmp.c_str(), path_.c_str()) != 0) {
      const int e2 = errno;
      (void)::unlink(tmp.c_str());
      return detail::errno_error("rename", path_, e2);
    }
    return detail::sync_dir(detail::parent_of(path_));
  }

  [[nodiscard]] const std::string& path() const noexcept { return path_; }

 private:
  static std::atomic<std::uint64_t>& temp_counter() noexcept {
    static std::atomic<std::uint64_t> n{0};
    return n;
  }
  std::string path_;
};

}  // namespace SLUICE_ABI
}  // namespace sluice
