// sluice — the dead-letter log: dead letters recorded durably, read back,
// and redriven into a bus once what failed is fixed (docs/resilience.md).
//
// A dead_letter_log is a file log of its own (file_log.hpp) in its own
// folder. Each dead letter is two records appended and synced together: an
// info record (name "sluice.dead_letter": why it failed, how many calls, the
// subscription) and the event's own record (its codec's name, version and
// bytes, its key and producer). A redrive publishes chosen events back into
// a bus, marked redriven (metadata::redriven), and appends a marker record
// ("sluice.redriven": the event record's offset) for each one the bus
// accepted, so that a later redrive does not send it again.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include "../bus.hpp"
#include "../config.hpp"
#include "../errors.hpp"
#include "../event.hpp"
#include "../resilience.hpp"
#include "codec.hpp"
#include "error.hpp"
#include "file_log.hpp"
#include "format.hpp"
#include "log_reader.hpp"

namespace sluice {
inline namespace SLUICE_ABI {

// One dead letter as the log holds it.
struct dead_letter_entry {
  std::uint64_t offset = 0;  // the event record's offset (what redrive ranges count)
  std::string type;          // the event's stored name
  std::int64_t time_ns = 0;  // when it was dead-lettered, ns since the Unix epoch
  key_type key = 0;
  bool has_key = false;
  std::uint32_t producer = 0;
  failure_kind kind = failure_kind::exception;
  int code = 0;
  std::uint32_t attempts = 0;
  std::string message;
  std::string subscription;
  bool redriven = false;  // a redrive has sent it back already
};

// Which dead letters a redrive sends back (all of them by default).
struct redrive_options {
  std::string type;  // only this stored event name (empty: every type)
  bool by_key = false;
  key_type key = 0;        // with by_key: only this key
  std::uint64_t from = 0;  // event record offsets in [from, to)
  std::uint64_t to = ~std::uint64_t{0};

  redrive_options& of_type(std::string name) {
    type = std::move(name);
    return *this;
  }
  redrive_options& with_key(key_type k) noexcept {
    by_key = true;
    key = k;
    return *this;
  }
  redrive_options& offsets(std::uint64_t first, std::uint64_t end) noexcept {
    from = first;
    to = end;
    return *this;
  }
};

struct redrive_result {
  std::uint64_t redriven = 0;     // published back (accepted by the bus) and marked
  std::uint64_t already = 0;      // marked by an earlier redrive: not sent again
  std::uint64_t skipped = 0;      // not chosen by the options
  std::uint64_t refused = 0;      // the bus refused them (stopped): not marked, try again
  std::uint64_t unknown = 0;      // no codec under the record's name
  std::uint64_t undecodable = 0;  // the codec could not decode them
  // Why reading the log or writing the markers failed, if it did. A marker
  // that could not be written leaves its event unmarked: a later redrive
  // sends it again (at least once).
  storage_error error;
  [[nodiscard]] bool ok() const noexcept { return error.ok(); }
};

struct dead_letter_log_stats {
  std::uint64_t recorded = 0;      // dead letters made durable
  std::uint64_t not_recorded = 0;  // dead letters lost: no codec, or the log could not take them
  std::uint64_t redriven = 0;      // events sent back by redrives through this object
};

class dead_letter_log {
 public:
  static constexpr std::string_view info_name = "sluice.dead_letter";
  static constexpr std::string_view marker_name = "sluice.redriven";

  // Opens (or creates) the log in `dir`; `types` must hold a codec for every
  // event type recorded. nullptr, with `err` set, on error (a locked,
  // damaged or unusable folder).
  static std::unique_ptr<dead_letter_log> open(std::string dir, std::shared_ptr<const codecs> types,
                                               storage_error& err, file_log_options o = {}) {
    err = {};
    if (types == nullptr) {
      err = storage_error::make(storage_errc::bad_option,
                                "sluice: a dead-letter log needs the codecs of its event types");
      return nullptr;
    }
    o.dir = std::move(dir);
    auto log = file_log::open(o, err);
    if (log == nullptr) return nullptr;
    return std::unique_ptr<dead_letter_log>(
        new dead_letter_log(std::move(log), std::move(types), o.dir));
  }

  dead_letter_log(const dead_letter_log&) = delete;
  dead_letter_log& operator=(const dead_letter_log&) = delete;
  // Stops recording (its subscriptions end first), then closes the log.
  ~dead_letter_log() {
    subs_.clear();
    std::lock_guard<std::mutex> lock(mutex_);
    (void)log_->close();
  }

  // Records every dead_letter<Event> that `b` hands out from now on (a
  // subscription of this object's, which ends with it). Returns nullptr, or
  // why not (no codec for Event).
  template <class Event>
  const char* record(bus& b) {
    if (types_->find<Event>() == nullptr)
      return "sluice: the dead-letter log has no codec for this event type (codecs::add)";
    subs_.push_back(b.subscribe([this](const dead_letter<Event>& d) -> outcome {
      const storage_error e = append(d);
      return e.ok() ? outcome::success()
                    : outcome::failure(1, "sluice: the dead-letter log could not record it");
    }));
    return nullptr;
  }

  // Appends one dead letter and syncs: durable when this returns ok.
  // Thread-safe.
  template <class Event>
  storage_error append(const dead_letter<Event>& d) {
    const codec_entry* c = types_->find<Event>();
    std::lock_guard<std::mutex> lock(mutex_);
    if (c == nullptr) {
      ++stats_.not_recorded;
      return storage_error::make(storage_errc::bad_option,
                                 "sluice: the dead-letter log has no codec for this event type");
    }
    std::vector<unsigned char>& out = scratch_;
    out.clear();
    const std::int64_t now = detail::clock_ns<std::chrono::system_clock>();
    std::size_t largest = put_record(out, now, d.meta, 1, info_name, [&](byte_writer& w) {
      w.put<std::uint8_t>(1);  // the info record's layout
      w.put<std::uint8_t>(static_cast<std::uint8_t>(d.kind));
      w.put<std::int32_t>(d.code);
      w.put<std::uint32_t>(d.attempts);
      put_string(w, d.subscription);
      put_string(w, d.message);
    });
    const std::size_t body = put_record(out, now, d.meta, c->version, c->name, [&](byte_writer& w) {
      c->encode(c->codec.get(), &d.event, w);
    });
    if (body > largest) largest = body;
    storage_error e = write(out, 2, largest);
    if (e)
      ++stats_.not_recorded;
    else
      ++stats_.recorded;
    return e;
  }

  // Every dead letter in the log, in order, with whether it was redriven.
  [[nodiscard]] std::vector<dead_letter_entry> entries(storage_error& err) const {
    std::vector<dead_letter_entry> out;
    std::unordered_set<std::uint64_t> marked;
    err = scan(
        [&](const stored_event& info, const stored_event& ev) {
          dead_letter_entry x;
          if (!read_info(info, x)) return;
          x.offset = ev.offset;
          x.type.assign(ev.type);
          x.time_ns = info.time_ns;
          x.key = ev.key;
          x.has_key = ev.has_key;
          x.producer = ev.producer;
          out.push_back(std::move(x));
        },
        marked);
    for (auto& x : out) x.redriven = marked.count(x.offset) != 0;
    return out;
  }

  // Publishes the chosen dead letters back into `b` (through a producer of
  // its own, marked redriven, with their keys; waiting when a lane is full),
  // and marks each one the bus accepted. Events dead-lettered again while
  // this runs are appended after the ones it reads: they wait for the next
  // redrive.
  redrive_result redrive(bus& b, const redrive_options& o = {}) {
    // One redrive at a time: two would both send what neither has marked yet.
    std::lock_guard<std::mutex> one_at_a_time(redrive_mutex_);
    redrive_result res;
    std::uint64_t end = 0;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      end = log_->next_offset();
    }
    // The events to send, in the log's order (their records are copied:
    // publishing may append to the log meanwhile).
    struct pending {
      std::uint64_t offset;
      std::vector<unsigned char> record;
    };
    std::vector<pending> chosen;
    std::unordered_set<std::uint64_t> marked;
    res.error = scan(
        [&](const stored_event& info, const stored_event& ev) {
          (void)info;
          if (ev.offset >= end) return;
          if (ev.offset < o.from || ev.offset >= o.to || (!o.type.empty() && ev.type != o.type) ||
              (o.by_key && (!ev.has_key || ev.key != o.key))) {
            ++res.skipped;
            return;
          }
          pending p;
          p.offset = ev.offset;
          copy_record(ev, p.record);
          chosen.push_back(std::move(p));
        },
        marked);
    if (res.error) return res;
    producer_options po;
    po.redriven = true;
    po.override_policy = true;
    po.policy = full_policy::block;
    producer prod = b.make_producer(po);
    std::vector<unsigned char> markers;
    std::size_t marker_count = 0;
    const std::int64_t now = detail::clock_ns<std::chrono::system_clock>();
    for (const pending& p : chosen) {
      if (marked.count(p.offset) != 0) {
        ++res.already;
        continue;
      }
      stored_event ev;
      storage::read_body(p.record.data() + storage::frame_size,
                         static_cast<std::uint32_t>(p.record.size() - storage::frame_size), ev);
      const codec_entry* c = types_->find(ev.type);
      if (c == nullptr) {
        ++res.unknown;
        continue;
      }
      bool sent = false;
      for (;;) {
        publish_result r = publish_result::ok;
        bool would_block = false;
        decode_error derr;
        if (!c->publish(c->codec.get(), ev, prod, r, would_block, derr)) {
          ++res.undecodable;
          break;
        }
        if (r == publish_result::ok) {
          sent = true;
          break;
        }
        if (would_block) {
          if (b.poll(SLUICE_DRAIN_BATCH) == 0) std::this_thread::yield();
          continue;
        }
        ++res.refused;
        break;
      }
      if (!sent) continue;
      ++res.redriven;
      (void)put_record(markers, now, metadata{}, 1, marker_name,
                       [&](byte_writer& w) { w.put<std::uint64_t>(p.offset); });
      ++marker_count;
    }
    if (marker_count != 0) {
      std::lock_guard<std::mutex> lock(mutex_);
      stats_.redriven += res.redriven;
      res.error = write(markers, marker_count, storage::body_fixed + marker_name.size() + 8);
    }
    return res;
  }

  [[nodiscard]] dead_letter_log_stats stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }
  [[nodiscard]] const std::string& dir() const noexcept { return dir_; }

 private:
  dead_letter_log(std::unique_ptr<file_log> log, std::shared_ptr<const codecs> types,
                  std::string dir)
      : log_(std::move(log)), types_(std::move(types)), dir_(std::move(dir)) {}

  // Appends a record (its header, then what `payload` writes) to `out`;
  // returns its body's size.
  template <class Payload>
  static std::size_t put_record(std::vector<unsigned char>& out, std::int64_t time_ns,
                                const metadata& m, std::uint32_t version, std::string_view name,
                                Payload&& payload) {
    const std::size_t start = out.size();
    out.resize(start + storage::frame_size + storage::body_fixed + name.size());
    storage::begin_record(out.data() + start, time_ns, m, version, name);
    byte_writer w(out);
    payload(w);
    const std::size_t body = out.size() - start - storage::frame_size;
    storage::set_length(out.data() + start, body);
    return body;
  }
  static void put_string(byte_writer& w, const std::string& s) {
    const std::size_t n = s.size() < 65535 ? s.size() : 65535;
    w.put<std::uint16_t>(static_cast<std::uint16_t>(n));
    w.append(s.data(), n);
  }
  static bool get_string(byte_reader& r, std::string& s) {
    std::uint16_t n = 0;
    return r.get(n) && r.string(n, s);
  }
  static bool read_info(const stored_event& info, dead_letter_entry& x) {
    byte_reader r(info.payload);
    std::uint8_t layout = 0;
    std::uint8_t kind = 0;
    std::int32_t code = 0;
    if (!r.get(layout) || layout != 1 || !r.get(kind) || !r.get(code) || !r.get(x.attempts) ||
        !get_string(r, x.subscription) || !get_string(r, x.message))
      return false;
    x.kind = static_cast<failure_kind>(kind);
    x.code = code;
    return true;
  }
  static void copy_record(const stored_event& ev, std::vector<unsigned char>& out) {
    out.clear();
    metadata m;
    m.key = ev.key;
    m.has_key = ev.has_key;
    m.producer = ev.producer;
    (void)put_record(out, ev.time_ns, m, ev.version, ev.type,
                     [&](byte_writer& w) { w.append(ev.payload.data, ev.payload.size); });
    // The offset, for read_body.
    storage::store_le<std::uint64_t>(out.data() + storage::frame_size, ev.offset);
  }

  // mutex_ held: appends `count` records and syncs.
  storage_error write(std::vector<unsigned char>& bytes, std::size_t count, std::size_t largest) {
    record_batch batch(bytes, count);
    batch.set_largest(largest);
    if (storage_error e = log_->append(batch)) return e;
    return log_->sync();
  }

  // Reads the whole log: each info record with the event record after it,
  // and the offsets markers name (into `marked`).
  template <class Fn>
  storage_error scan(Fn&& fn, std::unordered_set<std::uint64_t>& marked) const {
    storage_error err;
    auto reader = log_reader::open(dir_, reader_options{}, err);
    if (reader == nullptr) return err;
    stored_event e;
    std::vector<unsigned char> info_copy;
    stored_event info;
    bool have_info = false;
    for (;;) {
      const read_status s = reader->next(e);
      if (s == read_status::end) break;
      if (s == read_status::damaged) return reader->error();
      if (s == read_status::lost) {
        have_info = false;
        continue;
      }
      if (e.type == marker_name) {
        byte_reader r(e.payload);
        std::uint64_t off = 0;
        if (r.get(off)) marked.insert(off);
        have_info = false;
        continue;
      }
      if (e.type == info_name) {
        // Kept until its event record (the reader's view ends at next()).
        copy_record(e, info_copy);
        storage::read_body(info_copy.data() + storage::frame_size,
                           static_cast<std::uint32_t>(info_copy.size() - storage::frame_size),
                           info);
        have_info = true;
        continue;
      }
      if (have_info && e.offset == info.offset + 1) fn(info, e);
      have_info = false;
    }
    return {};
  }

  std::unique_ptr<file_log> log_;
  std::shared_ptr<const codecs> types_;
  std::string dir_;
  mutable std::mutex mutex_;
  std::mutex redrive_mutex_;            // held for a whole redrive
  std::vector<unsigned char> scratch_;  // under mutex_
  dead_letter_log_stats stats_;         // under mutex_
  std::vector<subscription> subs_;
};

}  // namespace SLUICE_ABI
}  // namespace sluice
