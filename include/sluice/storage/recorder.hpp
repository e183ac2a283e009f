// sluice — the recorder: encodes events into a bounded buffer and writes them
// to a sink on its own thread, with group commit.
//
// The threads that deliver events (workers, poll, dispatch, a store stage)
// only encode into the buffer: no I/O, no system call, no allocation once the
// buffer has reached its size. The writer thread swaps the buffer out and
// hands everything gathered meanwhile to the sink in one append, then syncs as
// the sync policy says: one fdatasync covers every record of the batch, from
// every lane (group commit).
//
// Full buffer: with full_behaviour::block (the default) a delivering thread
// waits for the writer, so a slow disk backs up into the lanes, where the
// bus's own full_policy applies to publishers (block, drop_newest or reject):
// the recorder never loses an accepted event. With full_behaviour::drop the
// record is counted as dropped and delivery goes on (for logs that matter less
// than delivery).
//
// Losses: a record whose append failed, or whose sync failed (its durability
// is unknown), is lost. Every flush() (for failed appends) and sync() (for
// both) that covers a lost record returns an error saying how many records are
// lost, until the program acknowledges them with acknowledge_losses(): an
// acknowledgement never covers a lost record, whichever thread asks. With
// durable_before_delivery an event whose record is lost is not delivered
// (counted filtered, reported as failure_kind::not_durable).
//
// Codecs run on the delivering thread while the recorder's lock is held: a codec
// must not call the recorder.
//
// Thread-safety: every member may be called from any thread. Lifetime: a bus
// holds the recorder attached to it (shared ownership); the destructor
// closes it (writes, syncs, joins the writer).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "../bus.hpp"
#include "../config.hpp"
#include "../detail/core.hpp"
#include "../detail/envelope.hpp"
#include "../metrics/histogram.hpp"
#include "byte_buffer.hpp"
#include "codec.hpp"
#include "error.hpp"
#include "file_log.hpp"
#include "format.hpp"
#include "loss_ledger.hpp"
#include "record_options.hpp"
#include "sink.hpp"

namespace sluice {
inline namespace SLUICE_ABI {

class recorder final : public detail::recorder_hook {
 public:
  // Starts the writer thread. Invalid options: the constructor throws
  // std::invalid_argument; no memory for the two buffers: std::bad_alloc
  // (without exceptions: valid() is false, error() says why, and every record
  // is counted as dropped).
  recorder(std::unique_ptr<sink> s, std::shared_ptr<const codecs> types, record_options o = {})
      : sink_(std::move(s)), types_(std::move(types)), opts_(std::move(o)) {
    error_ = opts_.validate();
    if (error_ == nullptr && (sink_ == nullptr || types_ == nullptr))
      error_ = "sluice: a recorder needs a sink and codecs";
    if (error_ != nullptr) {
      closed_ = true;
      close_done_ = true;  // flush() and sync() return at once
#if SLUICE_HAS_EXCEPTIONS
      throw std::invalid_argument(error_);
#else
      return;
#endif
    }
    // Lengths are 32-bit on disk; 2 GiB bounds what one record may hold.
    max_record_ = std::min<std::size_t>(sink_->max_record(), std::size_t{1} << 31);
    if (!open_.reserve(opts_.buffer_bytes + 4096) || !spare_.reserve(opts_.buffer_bytes + 4096)) {
      error_ = "sluice: no memory for the recorder's buffers";
      closed_ = true;
      close_done_ = true;
#if SLUICE_HAS_EXCEPTIONS
      throw std::bad_alloc();
#else
      return;
#endif
    }
    last_sync_ = std::chrono::steady_clock::now();
    writer_running_ = true;
    writer_ = std::thread([this] { write_loop(); });
  }

  recorder(const recorder&) = delete;
  recorder& operator=(const recorder&) = delete;
  ~recorder() override {
    (void)close();
  }

  [[nodiscard]] bool valid() const noexcept {
    return error_ == nullptr;
  }
  [[nodiscard]] const char* error() const noexcept {
    return error_;
  }

  // Records one event directly (no bus). False when it was not recorded
  // (no codec, dropped, closed, or the codec failed).
  template <class T>
  bool write(const T& e, const metadata& m = {}) {
    const std::int64_t t = time_of(m);  // clocks are read before the lock
    std::unique_lock<std::mutex> lock(mutex_);
    return put(lock, detail::type_index<T>(), &e, m, t);
  }
  // Records events[0], ..., events[n - 1], in that order, each with `m`,
  // taking the recorder's lock once rather than per event. Returns how many
  // were recorded (each one that was not is counted as write() would count
  // it). Not atomic: when the buffer is full and the recorder waits for
  // room, other threads' records may come between them.
  template <class T>
  std::size_t write_n(const T* events, std::size_t n, const metadata& m = {}) {
    const std::int64_t t = time_of(m);
    std::size_t recorded = 0;
    std::unique_lock<std::mutex> lock(mutex_);
    for (std::size_t i = 0; i < n; ++i)
      recorded += put(lock, detail::type_index<T>(), events + i, m, t) ? 1 : 0;
    return recorded;
  }

  // Returns when everything recorded so far has been handed to the sink; an
  // error when a record recorded before the call (and not acknowledged with
  // acknowledge_losses) was lost by a failed append.
  storage_error flush() {
    return wait_for(false);
  }
  // Returns when everything recorded so far is durable; an error when a
  // record recorded before the call (and not acknowledged) was lost: its
  // append or its sync failed.
  storage_error sync() {
    return wait_for(true);
  }

  // The program has seen the losses reported so far (and re-sent the events,
  // or accepted their loss): later flush() and sync() calls no longer fail for
  // them. Returns how many records they were.
  std::uint64_t acknowledge_losses() {
    std::lock_guard<std::mutex> lock(mutex_);
    const std::uint64_t n = losses_.acknowledge();
    prune_losses();
    return n;
  }

  // Writes and syncs everything, stops the writer and closes the sink. Later
  // records are counted as dropped.
  storage_error close() {
    std::unique_lock<std::mutex> lock(mutex_);
    if (closed_) return {};
    closed_ = true;
    // (A sync() that is waiting keeps its request, whatever the policy.)
    sync_wanted_ = sync_wanted_ || opts_.sync != sync_policy::never;
    wake_.notify_all();
    room_.notify_all();
    lock.unlock();
    if (writer_.joinable()) writer_.join();
    storage_error e = guarded([&] { return sink_->close(); });
    lock.lock();
    if (!e) {
      // The sink's close() syncs: what was written is durable now.
      // (Records whose earlier sync failed stay lost: a later sync does not
      // vouch for them.)
      if (stats_.synced + stats_.unsynced != stats_.written) ++stats_.syncs;
      stats_.synced = stats_.written - stats_.unsynced;
      synced_seq_ = written_seq_;
    } else {
      stats_.unsynced += losses_.lose_unsynced(synced_seq_ + 1, written_seq_);
      synced_seq_ = written_seq_;
    }
    close_done_ = true;
    done_.notify_all();
    // The writer's last pass: a lost record is this call's error too.
    storage_error lost = loss_since(0, seq_, true);
    lock.unlock();
    // Reported once close is done: the observer may call sync() or flush().
    if (e) report(e);
    if (lost) return lost;
    return e;
  }

  // How long the writer's syncs took (ns), failed ones included; not the
  // sync done by close(). A copy, taken under the recorder's lock.
  [[nodiscard]] duration_histogram sync_durations() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return sync_ns_;
  }

  [[nodiscard]] recorder_stats stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    recorder_stats st = stats_;
    st.unrecorded = unrecorded_.load(std::memory_order_relaxed);
    st.unacknowledged = losses_.unacknowledged();
    return st;
  }
  // The last sink error (ok when none).
  [[nodiscard]] storage_error last_error() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return last_error_;
  }
  [[nodiscard]] const record_options& options() const noexcept {
    return opts_;
  }

  // ---- recorder_hook -------------------------------------------------------------

  bool on_batch(const detail::envelope* recs, std::size_t n) noexcept override {
    // The clocks are read once per batch, and only when the bus stamps
    // events: their stamp is converted to wall-clock time. Unstamped events
    // get the time the writer takes them.
    std::int64_t delta = 0;
    if (n != 0 && recs[0].meta().timestamp != 0) delta = detail::wall_ns() - detail::now_ns();
    std::uint64_t first = 0, mine = 0;
    bool kept_all = true;  // every record to be stored was put in the buffer
    {
      std::unique_lock<std::mutex> lock(mutex_);
      // Write-ahead: no loss of these records may be forgotten before
      // wait_until_synced has looked (registered with the records).
      if (opts_.durable_before_delivery) ++durable_waiters_;
      first = seq_ + 1;
      for (std::size_t i = 0; i < n; ++i) {
        const detail::envelope& r = recs[i];
        const std::int64_t ts = r.meta().timestamp;
        if (!put(lock, r.type(), r.event(), r.meta(), ts != 0 ? saturated_add(ts, delta) : 0) &&
            recordable(r.type(), r.meta()))
          kept_all = false;  // rejected by its codec or the sink's limit, or closed
      }
      mine = seq_;
    }
    if (!opts_.durable_before_delivery) return true;
    // Write-ahead: the batch is delivered when all of it is durable.
    return wait_until_synced(first, mine, kept_all);
  }

  bool on_event(std::uint32_t type, const void* ev, const metadata& m) noexcept override {
    // Types without a codec, replayed and bridged events cost no lock
    // (dispatch is hot).
    if (!origin_recorded(m)) return true;
    if (types_ == nullptr || types_->find(type) == nullptr) {
      unrecorded_.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
    const std::int64_t t = time_of(m);
    std::uint64_t mine = 0;
    bool put_ok = false;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (opts_.durable_before_delivery) ++durable_waiters_;  // see on_batch
      put_ok = put(lock, type, ev, m, t);
      mine = seq_;
    }
    if (opts_.durable_before_delivery) return wait_until_synced(mine, mine, put_ok);
    return true;
  }

  // Waits like flush() (or sync()), leaving any append error to be reported
  // to the user's next flush(), sync() or close().
  void on_stop() noexcept override {
    (void)wait_for(opts_.sync != sync_policy::never, false);
  }

 private:
  // Wall-clock time of an event: its steady-clock stamp converted, or 0 for
  // "when the writer takes it" (filled in per append: no clock read per event).
  static std::int64_t time_of(const metadata& m) noexcept {
    if (m.timestamp == 0) return 0;
    return saturated_add(m.timestamp, detail::wall_ns() - detail::now_ns());
  }
  // a + b, held at the int64 limits instead of overflowing (a stamp from
  // outside may be anything).
  static std::int64_t saturated_add(std::int64_t a, std::int64_t b) noexcept {
    std::int64_t r = 0;
    if (__builtin_add_overflow(a, b, &r)) return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
  }

  // Whether an event of this type and metadata is to be stored at all.
  [[nodiscard]] bool recordable(std::uint32_t type, const metadata& m) const noexcept {
    return origin_recorded(m) && types_ != nullptr && types_->find(type) != nullptr;
  }
  // Replayed and bridged events are stored only when asked for.
  [[nodiscard]] bool origin_recorded(const metadata& m) const noexcept {
    return (!m.replayed || opts_.record_replayed) && (!m.bridged || opts_.record_bridged);
  }

  // Encodes one event into the open buffer (mutex_ held).
  bool put(std::unique_lock<std::mutex>& lock, std::uint32_t type, const void* ev,
           const metadata& m, std::int64_t time_ns) noexcept {
    if (!origin_recorded(m)) return false;
    const codec_entry* c = types_ != nullptr ? types_->find(type) : nullptr;
    if (c == nullptr) {
      unrecorded_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    while (!closed_ && open_.size() >= opts_.buffer_bytes && open_count_ != 0) {
      // The writer itself (an on_error callback that records) must not wait
      // for itself: it drops.
      if (opts_.when_full == full_behaviour::drop || std::this_thread::get_id() == writer_id_) {
        ++stats_.dropped;
        return false;
      }
      wake_.notify_all();
      room_.wait(lock);
    }
    if (closed_) {
      ++stats_.dropped;
      return false;
    }
    if (encode(*c, ev, m, time_ns) == nullptr) {
      ++stats_.rejected;
      return false;
    }
    ++open_count_;
    ++seq_;
    ++stats_.recorded;
    // Wake the writer only when it has to act: every_batch takes records at
    // once; otherwise it gathers them (linger) unless it sleeps or half the
    // buffer is full. One wake per writer pass at most.
    if (!woken_ &&
        (writer_asleep_ || (opts_.sync == sync_policy::every_batch && open_count_ == 1) ||
         open_.size() >= opts_.buffer_bytes / 2)) {
      woken_ = true;
      wake_.notify_all();
    }
    return true;
  }

  // Appends the record of `ev` to the open buffer and returns where it
  // starts; nullptr (and the buffer as it was) when the codec failed, the
  // record is larger than the sink takes, or there is no memory for it.
  // mutex_ held.
  unsigned char* encode(const codec_entry& c, const void* ev, const metadata& m,
                        std::int64_t time_ns) noexcept {
    const std::size_t head = storage::frame_size + storage::body_fixed + c.name.size();
    if (c.encode_fixed != nullptr) {
      // Straight into the buffer.
      const std::size_t body = head - storage::frame_size + c.fixed_size;
      if (body > max_record_) return nullptr;  // larger records would read as damage
      unsigned char* p = open_.grow(storage::frame_size + body);
      if (p == nullptr) return nullptr;
      storage::begin_record(p, time_ns, m, c.version, c.name);
      c.encode_fixed(c.codec.get(), ev, p + head);
      storage::set_length(p, body);
      note_body(body);
      return p;
    }
    return encode_through_writer(c, ev, m, time_ns, head);
  }
  // Codecs without a fixed size: through their byte_writer, straight into
  // the buffer. (Out of line: the fixed-size path above stays small enough
  // to be inlined into put.)
  SLUICE_NOINLINE unsigned char* encode_through_writer(const codec_entry& c, const void* ev,
                                                       const metadata& m, std::int64_t time_ns,
                                                       std::size_t head) noexcept {
    const std::size_t start = open_.size();
    unsigned char* p = open_.grow(head);
    if (p == nullptr) return nullptr;
    storage::begin_record(p, time_ns, m, c.version, c.name);
    bool ok = true;
#if SLUICE_HAS_EXCEPTIONS
    try {
#endif
      byte_writer out(open_);
      c.encode(c.codec.get(), ev, out);
      ok = !out.failed();  // no memory for the payload
#if SLUICE_HAS_EXCEPTIONS
    } catch (...) {
      ok = false;
    }
#endif
    const std::size_t body = open_.size() - start - storage::frame_size;
    if (!ok || body > max_record_) {  // larger records would read as damage
      open_.shrink_to(start);
      return nullptr;
    }
    p = open_.data() + start;  // the buffer may have moved
    storage::set_length(p, body);
    note_body(body);
    return p;
  }
  void note_body(std::size_t body) noexcept {
    if (body > open_largest_) open_largest_ = body;
  }

  storage_error wait_for(bool durable, bool report_lost = true) {
    std::unique_lock<std::mutex> lock(mutex_);
    const std::uint64_t target = seq_;
    // From the writer itself (an on_error callback): nothing to wait for.
    if (std::this_thread::get_id() == writer_id_)
      return report_lost ? loss_since(0, target, durable) : storage_error{};
    if (!writer_running_) {
      // Closing: its sync decides what is durable; wait for it.
      if (closed_) done_.wait(lock, [&] { return close_done_; });
      return report_lost ? loss_since(0, target, durable) : storage_error{};
    }
    if (durable) {
      sync_wanted_ = true;
      wake_.notify_all();
      done_.wait(lock, [&] { return sync_tried_ >= target || !writer_running_; });
    } else {
      flush_wanted_ = true;
      wake_.notify_all();
      done_.wait(lock, [&] { return written_seq_ >= target || !writer_running_; });
    }
    if (!report_lost) return {};
    return loss_since(0, target, durable);
  }

  // Runs a sink call; an exception from it becomes an error (the writer
  // thread must not end with one).
  template <class F>
  static storage_error guarded(F&& f) noexcept {
#if SLUICE_HAS_EXCEPTIONS
    try {
      return f();
    } catch (const std::exception& e) {
      return storage_error::make(storage_errc::io, std::string("the sink threw: ") + e.what());
    } catch (...) {
      return storage_error::make(storage_errc::io, "the sink threw");
    }
#else
    return f();
#endif
  }

  // An error when a record in (from, through] that is not acknowledged is
  // lost (`durable`: by a failed append or sync; else by a failed append).
  // mutex_ held.
  storage_error loss_since(std::uint64_t from, std::uint64_t through, bool durable) {
    prune_losses();
    std::uint64_t first = 0;
    const std::uint64_t n = losses_.unacknowledged_in(from, through, durable, first);
    if (n == 0) return {};
    storage_error e = last_loss_error_;
    if (e.ok()) e.code = storage_errc::io;
    e.message =
        std::to_string(n) + " recorded event(s) lost (from the " + std::to_string(first) +
        "th recorded on; acknowledge them with acknowledge_losses()): " + last_loss_error_.message;
    return e;
  }

  // Waits until records [first, mine] have been synced: true when they are
  // durable, false when one of them is lost.
  // The caller registered itself in durable_waiters_ when it put the
  // records [first, mine] (none when mine < first); `kept_all`: every record
  // it had to store was put.
  bool wait_until_synced(std::uint64_t first, std::uint64_t mine, bool kept_all) {
    std::unique_lock<std::mutex> lock(mutex_);
    struct unregister {
      std::size_t& n;
      ~unregister() { --n; }
    } registered{durable_waiters_};
    if (!kept_all) return false;
    if (mine < first) return true;
    if (!writer_running_ || std::this_thread::get_id() == writer_id_) return false;
    sync_wanted_ = true;
    wake_.notify_all();
    done_.wait(lock, [&] { return sync_tried_ >= mine || !writer_running_; });
    if (sync_tried_ < mine) return false;
    // Acknowledged or not: a lost record is not durable.
    return !losses_.any_in(first, mine);
  }

  // Forgets acknowledged losses that nobody needs any more: not while a
  // write-ahead delivery waits (it must see every loss of its records), and
  // not those after the last sync (a failed sync must not count a failed
  // append's records twice). mutex_ held.
  void prune_losses() {
    if (durable_waiters_ == 0) losses_.prune(synced_seq_);
  }

  void report(const storage_error& e) noexcept {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      last_error_ = e;
    }
    if (opts_.on_error) {
#if SLUICE_HAS_EXCEPTIONS
      try {
        opts_.on_error(e);
      } catch (...) {
      }
#else
      opts_.on_error(e);
#endif
    }
  }

  void write_loop() {
    std::unique_lock<std::mutex> lock(mutex_);
    writer_id_ = std::this_thread::get_id();
    bool unsynced = false;  // records written since the last sync
    const bool lazy = opts_.sync != sync_policy::every_batch && opts_.linger.count() > 0;
    for (;;) {
      auto urgent = [&] { return closed_ || sync_wanted_ || flush_wanted_; };
      if (open_count_ == 0 && !urgent()) {
        // Nothing to write: sleep until a record arrives (or an interval sync is due).
        const bool timed = opts_.sync == sync_policy::interval && unsynced;
        const auto deadline = last_sync_ + opts_.sync_interval;
        auto ready = [&] { return open_count_ != 0 || urgent(); };
        writer_asleep_ = true;
        if (timed) {
          wake_.wait_until(lock, deadline, ready);
        } else {
          wake_.wait(lock, ready);
        }
        writer_asleep_ = false;
        woken_ = false;  // lingering below may need a wake at half the buffer
      }
      if (lazy && open_count_ != 0 && !urgent() && open_.size() < opts_.buffer_bytes / 2) {
        // Let records gather: one append for many lane batches.
        wake_.wait_for(lock, opts_.linger,
                       [&] { return urgent() || open_.size() >= opts_.buffer_bytes / 2; });
      }
      woken_ = false;
      flush_wanted_ = false;
      if (open_count_ == 0 && closed_ && !sync_wanted_) break;
      // Take the whole buffer: every lane's records since the last append.
      open_.swap(spare_);
      const std::size_t largest = open_largest_;
      open_largest_ = 0;
      const std::size_t n = open_count_;
      open_count_ = 0;
      const std::uint64_t upto = seq_;
      bool want_sync = sync_wanted_;
      sync_wanted_ = false;
      room_.notify_all();
      lock.unlock();

      storage_error append_error;
      std::size_t stored = 0;
      if (n != 0) {
        record_batch b(spare_.data(), spare_.size(), n);
        b.set_largest(largest);
        b.set_time_of_unstamped(detail::wall_ns());
        append_error = guarded([&] { return sink_->append(b); });
        stored = append_error ? b.stored() : n;
      }
      const std::size_t bytes = spare_.size();
      spare_.clear();
      const auto now = std::chrono::steady_clock::now();
      if (stored != 0) unsynced = true;
      if (opts_.sync == sync_policy::every_batch && n != 0) want_sync = true;
      if (opts_.sync == sync_policy::interval && unsynced &&
          now - last_sync_ >= opts_.sync_interval)
        want_sync = true;
      storage_error sync_error;
      bool synced = false;
      std::uint64_t sync_took = 0;
      if (want_sync) {
        sync_error = guarded([&] { return sink_->sync(); });
        synced = !sync_error;
        last_sync_ = now;
        sync_took = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                   std::chrono::steady_clock::now() - now)
                                                   .count());
      }
      if (append_error) report(append_error);
      if (sync_error) report(sync_error);

      lock.lock();
      const std::uint64_t first = upto - n + 1;  // the batch's records: [first, upto]
      if (n != 0) {
        stats_.written += stored;
        if (stored != 0) ++stats_.batches;
        stats_.bytes += stored == n ? bytes : 0;
        if (append_error) {
          stats_.failed += n - stored;
          ++stats_.append_failures;
          last_loss_error_ = append_error;
          losses_.lose(first + stored, upto, false, synced_seq_);
        }
      }
      written_seq_ = upto;
      if (want_sync) {
        sync_tried_ = upto;
        sync_ns_.record(sync_took);
        if (synced) {
          ++stats_.syncs;
          stats_.synced = stats_.written - stats_.unsynced;  // not those lost before
          synced_seq_ = upto;
          unsynced = false;
        } else {
          // Everything written since the last good sync is of unknown
          // durability: lost, as far as acknowledgements go.
          ++stats_.sync_failures;
          last_loss_error_ = sync_error;
          stats_.unsynced += losses_.lose_unsynced(synced_seq_ + 1, upto);
          synced_seq_ = upto;  // each record is lost once, not again by a later sync
          unsynced = false;
        }
      }
      done_.notify_all();
    }
    writer_running_ = false;
    // A thread made later may get the same id: it is not the writer.
    writer_id_ = std::thread::id{};
    done_.notify_all();
    room_.notify_all();
  }

  std::unique_ptr<sink> sink_;
  std::shared_ptr<const codecs> types_;
  record_options opts_;
  const char* error_ = nullptr;
  std::size_t max_record_ = storage::default_max_record;
  std::atomic<std::uint64_t> unrecorded_{0};

  mutable std::mutex mutex_;
  std::condition_variable wake_;  // the writer waits here
  std::condition_variable room_;  // delivering threads wait here for room
  std::condition_variable done_;  // flush/sync callers wait here
  detail::byte_buffer open_;      // being filled
  detail::byte_buffer spare_;     // being written (writer only)
  std::size_t open_largest_ = 0;  // the largest record body in open_
  std::size_t open_count_ = 0;
  std::uint64_t seq_ = 0;            // records put so far
  std::uint64_t written_seq_ = 0;    // records the writer has handled
  std::uint64_t sync_tried_ = 0;     // records covered by the last sync attempt
  std::uint64_t synced_seq_ = 0;     // records up to here: durable or known lost
  detail::loss_ledger losses_;       // lost records (by seq) and their acknowledgement
  std::size_t durable_waiters_ = 0;  // write-ahead deliveries waiting for a sync
  bool close_done_ = false;          // close() has closed the sink
  storage_error last_loss_error_;
  storage_error last_error_;
  bool sync_wanted_ = false;
  bool flush_wanted_ = false;   // a flush() waits: no lingering
  bool writer_asleep_ = false;  // the writer waits for a first record
  bool woken_ = false;          // the writer was notified since its last pass
  bool closed_ = false;
  bool writer_running_ = false;
  std::thread::id writer_id_;
  std::chrono::steady_clock::time_point last_sync_;
  recorder_stats stats_;
  duration_histogram sync_ns_;  // the writer's syncs, under mutex_
  std::thread writer_;
};

// What record_to_folder gives: the attached recorder, or why there is none,
// and what recovery cut off when the log was opened.
struct folder_recording {
  std::shared_ptr<recorder> rec;
  storage_error error;
  std::vector<damage_report> recovered;
  explicit operator bool() const noexcept { return rec != nullptr; }
};

// Opens (or creates) a file log in `dir`, makes a recorder for it and attaches
// it to the bus: the one call that gives a bus a durable log.
inline folder_recording record_to_folder(bus& b, const std::string& dir,
                                         std::shared_ptr<const codecs> types,
                                         record_options ro = {}, file_log_options fo = {}) {
  folder_recording out;
  fo.dir = dir;
  std::unique_ptr<file_log> log = file_log::open(std::move(fo), out.error);
  if (log == nullptr) return out;
  out.recovered = log->recovered();
#if SLUICE_HAS_EXCEPTIONS
  try {
#endif
    auto rec = std::make_shared<recorder>(std::move(log), std::move(types), std::move(ro));
    if (!rec->valid()) {
      out.error = storage_error::make(storage_errc::bad_option, rec->error());
      return out;
    }
    if (const char* why = b.record(rec)) {
      out.error = storage_error::make(storage_errc::bad_option, why);
      return out;
    }
    out.rec = std::move(rec);
#if SLUICE_HAS_EXCEPTIONS
  } catch (const std::exception& e) {
    out.error = storage_error::make(storage_errc::bad_option, e.what());
  }
#endif
  return out;
}

}  // namespace SLUICE_ABI
}  // namespace sluice
