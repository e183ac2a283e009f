// sluice — the state a bus shares with its producers and workers, and the
// delivery path every run mode uses (dispatch, poll, workers, stop).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <vector>

#include "../config.hpp"
#include "../errors.hpp"
#include "../options.hpp"
#include "../stats.hpp"
#include "clock.hpp"
#include "lane.hpp"
#include "numeric.hpp"
#include "process.hpp"
#include "registry.hpp"
#include "sync.hpp"
#include "tracking.hpp"

namespace sluice {
inline namespace SLUICE_ABI {
namespace detail {

enum class run_state : std::uint8_t { running, draining, discarding, stopped };

// What a recorder (storage/recorder.hpp) implements to see a bus's events.
// Called on the delivering threads; must not throw. Each returns whether the
// events may be delivered: false only for a strict write-ahead recorder that
// could not make them durable.
class recorder_hook {
 public:
  virtual ~recorder_hook() = default;
  // Events taken from a lane for delivery, in lane order, before any stage or
  // handler sees them.
  virtual bool on_batch(const envelope* envs, std::size_t n) noexcept = 0;
  // One event: a dispatch, or a store stage.
  virtual bool on_event(std::uint32_t type, const void* ev, const metadata& m) noexcept = 0;
  // The bus has stopped: everything recorded is to be written (and synced).
  virtual void on_stop() noexcept = 0;
};

[[nodiscard]] inline std::uint64_t mix(std::uint64_t x) noexcept {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}

class bus_core {
 public:
  explicit bus_core(bus_options opts)
      : options_(std::move(opts)),
        chunk_(chunk_for(options_)),
        epoch_(detail::process().forks.load(std::memory_order_relaxed)) {
    lanes_.reserve(options_.lanes);
    for (std::size_t i = 0; i < options_.lanes; ++i)
      lanes_.push_back(std::make_unique<lane>(options_.lane_capacity, options_.expected_producers));
    fork_.owner = this;
    fork_.on_child = &on_fork_child;
    link_bus(fork_);
  }
  bus_core(const bus_core&) = delete;
  bus_core& operator=(const bus_core&) = delete;
  ~bus_core() {
    unlink_bus(fork_);
    if (forked()) {
      // A bus of the parent, in a fork() child: its recorder's thread and
      // the threads that may hold its locks do not exist here. Leave it all
      // (the handles are ended without running their destructors).
      for (auto& l : lanes_) (void)l.release();
      ::new (static_cast<void*>(&hook_owner_)) std::shared_ptr<recorder_hook>();
      ::new (static_cast<void*>(&store_hooks_)) std::vector<std::shared_ptr<recorder_hook>>();
      // A condition variable that the parent's (vanished) workers waited on
      // counts them as waiters: destroying it would wait for them for ever.
      // Fresh ones take their place (they hold no resource to free).
      ::new (static_cast<void*>(&park_cv_)) condition_variable();
      ::new (static_cast<void*>(&idle_cv_)) condition_variable();
      return;
    }
    SLUICE_ASSERT(live_producers_.load() == 0, "destroy every producer before its bus");
    for (auto& r : regs_) delete r.load(std::memory_order_relaxed);
  }

  [[nodiscard]] const bus_options& options() const noexcept { return options_; }

  // Places a producer reserves in a lane at once (see bus_options::reserve_chunk).
  [[nodiscard]] std::size_t reserve_chunk() const noexcept { return chunk_; }
  static std::size_t chunk_for(const bus_options& o) noexcept {
    if (o.reserve_chunk != 0) return o.reserve_chunk;
    // At most an eighth of a lane held as credit by the expected producers
    // together; 32 places at most each (one shared update per 32 publishes).
    const std::size_t producers = o.expected_producers == 0 ? 1 : o.expected_producers;
    const std::size_t share = o.lane_capacity / (8 * producers);
    return share < 1 ? 1 : (share > 32 ? 32 : share);
  }

  // Publishes through credit write no shared atomic; stop() calls this after
  // it changed the state, so that every such publish either saw the new
  // state or is complete (and its event counted) when this returns.
  void settle_credit_publishes() noexcept {
    if (chunk_ <= 1) return;
    heavy_fence();
    for (auto& l : lanes_) l->wait_credit_publishes();
  }
  [[nodiscard]] std::size_t lane_count() const noexcept { return lanes_.size(); }
  [[nodiscard]] lane& lane_at(std::size_t i) noexcept { return *lanes_[i]; }
  [[nodiscard]] std::size_t lane_for(key_type key) const noexcept {
    // Multiply-shift range reduction of the hash's top 32 bits: no division.
    return to_size(((mix(key) >> 32) * lanes_.size()) >> 32);
  }

  // The registry of a type, made on first use.
  [[nodiscard]] registry& reg(std::uint32_t type) {
    std::atomic<registry*>& slot = regs_[type];
    registry* r = slot.load(std::memory_order_acquire);
    if (SLUICE_LIKELY(r != nullptr)) return *r;
    auto* fresh = new registry(type, epoch_);
    if (slot.compare_exchange_strong(r, fresh, std::memory_order_acq_rel)) return *fresh;
    delete fresh;
    return *r;
  }
  [[nodiscard]] registry* find_reg(std::uint32_t type) const noexcept {
    return regs_[type].load(std::memory_order_acquire);
  }

  [[nodiscard]] run_state state() const noexcept {
    SLUICE_SCHEDULE_POINT();
    return state_.load(std::memory_order_seq_cst);
  }
  void set_state(run_state s) noexcept {
    SLUICE_SCHEDULE_POINT();
    state_.store(s, std::memory_order_seq_cst);
  }

  // Whether an event whose place is already reserved may go in. Handlers may
  // still publish while the bus drains (their events are part of the drain).
  [[nodiscard]] bool accepting(bool in_handler) const noexcept {
    const run_state s = state();
    return s == run_state::running || (s == run_state::draining && in_handler);
  }

  // accepting() as a hint, without a schedule point: publish's early
  // refusal, which a stale answer only delays (the check after reserving
  // decides).
  [[nodiscard]] bool surely_refusing(bool in_handler) const noexcept {
    const run_state s = state_.load(std::memory_order_relaxed);
    return !(s == run_state::running || (s == run_state::draining && in_handler));
  }

  // This bus was made before a fork() and this is the child: it is inert.
  [[nodiscard]] bool forked() const noexcept {
    return epoch_ != detail::process().forks.load(std::memory_order_relaxed);
  }
  // Events accepted and not yet settled: queued, carried or being delivered.
  [[nodiscard]] std::size_t queued() const noexcept {
    std::size_t n = 0;
    for (auto& l : lanes_) n += l->pending();
    return n;
  }

  // Nothing queued, carried or being delivered, checked so that an event a
  // handler publishes just before it ends is never missed: the lanes are read
  // one after another, between two sums of their generations (which change
  // with every publish); equal sums mean nothing was published meanwhile.
  [[nodiscard]] bool idle() const noexcept {
    auto generations = [this] {
      std::uint64_t g = 0;
      for (auto& l : lanes_) g += l->generation();
      return g;
    };
    const std::uint64_t before = generations();
    if (queued() != 0) return false;
    // (Mutation 3: the lanes' sums alone, as before the generations.)
    return generations() == before || SLUICE_MODEL_MUTATION(3);
  }

  // Some lane has events and no drainer.
  [[nodiscard]] bool work_available() const noexcept {
    for (auto& l : lanes_)
      if (l->has_work() && !l->locked()) return true;
    return false;
  }

  void producer_made(bool shared) {
    live_producers_.fetch_add(1, std::memory_order_relaxed);
    if (!shared) mark_started();  // the bus's own pool is made with the bus
  }
  void producer_gone() noexcept { live_producers_.fetch_sub(1, std::memory_order_relaxed); }
  [[nodiscard]] std::uint32_t next_producer_id() noexcept {
    return next_producer_id_.fetch_add(1, std::memory_order_relaxed) + 1;
  }

  // ---- who drains ------------------------------------------------------------

  void worker_started() noexcept { live_workers_.fetch_add(1, std::memory_order_seq_cst); }
  void worker_ended() noexcept { live_workers_.fetch_sub(1, std::memory_order_seq_cst); }
  [[nodiscard]] std::size_t live_workers() const noexcept {
    return live_workers_.load(std::memory_order_seq_cst);
  }

  // Remembers that this thread drains the bus by polling.
  void note_poller() noexcept {
    const std::uint32_t me = thread_number();
    std::uint32_t first = first_poller_.load(std::memory_order_relaxed);
    if (SLUICE_LIKELY(first == me)) return;
    if (first == 0 && first_poller_.compare_exchange_strong(first, me)) return;
    if (first != me) several_pollers_.store(true, std::memory_order_relaxed);
  }
  // Whether anyone but this thread is known to drain: a worker, or another
  // thread that has polled. A blocking publish waits only then; otherwise it
  // would wait for itself forever (a program that only polls, on one thread).
  [[nodiscard]] bool drained_by_others() const noexcept {
    if (live_workers() != 0 || several_pollers_.load(std::memory_order_relaxed)) return true;
    const std::uint32_t first = first_poller_.load(std::memory_order_relaxed);
    return first != 0 && first != thread_number();
  }

  // ---- parking of idle workers ---------------------------------------------

  void wake_workers(bool all = false) {
    SLUICE_SCHEDULE_POINT();
    if (sleepers_.load(std::memory_order_seq_cst) == 0) return;
    std::lock_guard<mutex> lock(park_mutex_);
    if (all) {
      park_cv_.notify_all();
    } else {
      park_cv_.notify_one();
    }
  }

  // Workers parked (or about to park) right now.
  [[nodiscard]] std::size_t parked_workers() const noexcept {
    return sleepers_.load(std::memory_order_seq_cst);
  }

  // Parks the calling worker until work arrives or the state changes.
  void park_worker() {
    std::unique_lock<mutex> lock(park_mutex_);
    SLUICE_SCHEDULE_POINT();
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    // A publish through credit writes no shared atomic before it reads
    // sleepers_: the fence makes its event visible here, or the count there.
    if (chunk_ > 1) heavy_fence();
    // Woken by a publish, by a drainer that leaves work in a lane it unlocks,
    // or by stop().
    if (state() == run_state::running && !work_available()) park_cv_.wait(lock);
    SLUICE_SCHEDULE_POINT();
    sleepers_.fetch_sub(1, std::memory_order_seq_cst);
  }

  void wake_everyone() {
    {
      std::lock_guard<mutex> lock(park_mutex_);
      park_cv_.notify_all();
    }
    for (auto& l : lanes_) l->wake_all();
    notify_idle();
  }

  // ---- waiting until idle ------------------------------------------------------

  // Waits until nothing is queued, carried or being delivered, or `expired()`.
  template <class Expired>
  bool wait_idle(Expired&& expired) {
    idle_waiters_.fetch_add(1, std::memory_order_seq_cst);
    bool settled = false;
    {
      std::unique_lock<mutex> lock(idle_mutex_);
      for (;;) {
        if (idle()) {
          settled = true;
          break;
        }
        if (expired() || state() == run_state::stopped) break;
        // Woken by drainers as lanes go idle; the bounded wait only lets the
        // deadline be checked.
        idle_cv_.wait_for(lock, std::chrono::milliseconds(10));
      }
    }
    idle_waiters_.fetch_sub(1, std::memory_order_seq_cst);
    return settled;
  }

  // ---- failures --------------------------------------------------------------

  // Reports a problem that is not a failed call (nothing is counted in
  // `failed`): to the failure observer, if any.
  void report_problem(failure_kind kind, std::uint32_t type, int code,
                      const char* message) noexcept(!SLUICE_HAS_EXCEPTIONS) {
    if (!options_.on_failure) return;
    failure_info info;
    info.kind = kind;
    info.type = type;
    info.code = code;
    info.message = message;
    observe(info);
  }

  // Not noexcept with exceptions: an observer may end its thread
  // (pthread_exit), which unwinds through here.
  void report_failure(registry& r, failure_kind kind, int code, const char* message,
                      const void* event) noexcept(!SLUICE_HAS_EXCEPTIONS) {
    r.failed.fetch_add(1, std::memory_order_relaxed);
    if (!options_.on_failure) return;
    failure_info info;
    info.kind = kind;
    info.type = r.type;
    info.code = code;
    info.message = message;
    info.event = event;
    observe(info);
  }

  // ---- delivery --------------------------------------------------------------

  void call_one(registry& r, const sub_entry& sub, const void* ev,
                const metadata& m) noexcept(!SLUICE_HAS_EXCEPTIONS) {
#if SLUICE_HAS_EXCEPTIONS
    try {
      const outcome o = sub.invoke(sub.callable, ev, m);
      if (SLUICE_UNLIKELY(!o.ok()))
        report_failure(r, failure_kind::outcome, o.code(), o.message(), ev);
    } catch (const std::exception& e) {
      report_failure(r, failure_kind::exception, 0, e.what(), ev);
    } catch (...) {
      SLUICE_PASS_FORCED_UNWIND();  // a handler that ends its thread (pthread_exit)
      report_failure(r, failure_kind::exception, 0, "unknown exception", ev);
    }
#else
    const outcome o = sub.invoke(sub.callable, ev, m);
    if (SLUICE_UNLIKELY(!o.ok()))
      report_failure(r, failure_kind::outcome, o.code(), o.message(), ev);
#endif
  }

  // Calls every open subscriber of r with the event on this thread. Returns
  // the number of handler calls made.
  std::size_t deliver(registry& r, const void* ev, const metadata& m, reader_slot& s,
                      std::uint32_t channel = 0) {
    const unsigned d = s.depth;
    if (SLUICE_UNLIKELY(d >= SLUICE_MAX_DEPTH)) {
      report_failure(r, failure_kind::too_deep, 0, "dispatch nested deeper than SLUICE_MAX_DEPTH",
                     ev);
      return 0;
    }
    const bool asym = asymmetric_mode();
    s.depth = d + 1;
    s.bus[d] = this;
    const sub_array* a = reader_load(r.current, asym);
    for (;;) {
      announce(s.array[d], a, asym);
      const sub_array* b = reader_load(r.current, asym);
      if (b == a) break;
      a = b;
    }
    std::size_t calls = 0;
#if SLUICE_HAS_EXCEPTIONS
    try {
#endif
      if (a != nullptr) {
        for (const sub_entry& e : a->items) {
          if (e.channel != 0 && e.channel != channel) continue;
          announce(s.node[d], e.node, asym);
          // Open unless a close was counted since the array was made (then
          // the node's own flag says).
          if (SLUICE_LIKELY(reader_load(r.closes, asym) == a->closes_seen) ||
              !reader_load(e.node->closed, asym)) {
            ++calls;
            call_one(r, e, ev, m);
          }
          retract(s.node[d]);
        }
      }
#if SLUICE_HAS_EXCEPTIONS
    } catch (...) {  // only a thread's forced unwind gets here: leave the slot clean
      leave_frames(s, d);
      throw;
    }
#endif
    retract(s.array[d]);
    s.bus[d] = nullptr;
    s.depth = d;
    return calls;
  }

  // Runs the event through its type's stage chain from stage `from`, then
  // delivers it on the channel a route picked. `calls` gets the handler calls.
  // Stages run inside a frame of this bus (so that what they call knows it
  // runs inside the bus); a failing stage is reported and drops the event.
  // `framed`: the event's frame is already open (an enrichment continuing).
  fate process(registry& r, const void* ev, const metadata& m, reader_slot& s, std::size_t from,
               unsigned hops, std::size_t& calls, bool framed = false) {
    calls = 0;
    const stage_chain* c = r.chain.load(std::memory_order_acquire);
    std::uint32_t channel = 0;
    if (c != nullptr && from < c->stages.size()) {
      const unsigned d = s.depth;
      if (!framed) {
        if (SLUICE_UNLIKELY(d >= SLUICE_MAX_DEPTH)) {
          report_failure(r, failure_kind::too_deep, 0, "stages nested deeper than SLUICE_MAX_DEPTH",
                         ev);
          return fate::filtered;
        }
        s.depth = d + 1;
        s.bus[d] = this;
      }
      bool go_on = true;
      fate f = fate::filtered;
#if SLUICE_HAS_EXCEPTIONS
      try {
#endif
        for (std::size_t i = from; go_on && i < c->stages.size(); ++i) {
          const stage& st = c->stages[i];
          switch (st.kind) {
            case stage_kind::filter: {
              bool pass = false;
              if (!st.test(st.fn, ev, m, pass)) stage_failed(r, ev);
              if (!pass) go_on = false;  // f stays filtered
              break;
            }
            case stage_kind::tap:
              if (!st.observe(st.fn, ev, m)) stage_failed(r, ev);
              break;
            case stage_kind::route:
              if (!st.pick(st.fn, ev, channel)) {
                stage_failed(r, ev);
                go_on = false;
              }
              i = c->stages.size();  // a route ends the chain
              break;
            case stage_kind::enrich:
            case stage_kind::transform: {
              stage_context ctx{this, &s, hops};
              if (!st.convert(st.fn, ev, m, ctx, i + 1, f)) {
                stage_failed(r, ev);
                f = fate::filtered;
              }
              calls = ctx.calls;
              if (!framed) {
                s.bus[d] = nullptr;
                s.depth = d;
              }
              return f;
            }
          }
        }
#if SLUICE_HAS_EXCEPTIONS
      } catch (...) {  // a forced unwind (see deliver)
        if (!framed) leave_frames(s, d);
        throw;
      }
#endif
      if (!framed) {
        s.bus[d] = nullptr;
        s.depth = d;
      }
      if (!go_on) return f;
    }
    if (SLUICE_UNLIKELY(s.depth >= SLUICE_MAX_DEPTH)) {
      report_failure(r, failure_kind::too_deep, 0, "delivery nested deeper than SLUICE_MAX_DEPTH",
                     ev);
      return fate::filtered;  // not delivered, whether or not it had subscribers
    }
    calls = deliver(r, ev, m, s, channel);
    return calls != 0 ? fate::delivered : fate::unrouted;
  }

  // Counts the end of an event that no batch tally covers (a transform's output).
  static void settle(registry& r, fate f, std::size_t calls) noexcept {
    switch (f) {
      case fate::delivered:
        r.delivered.fetch_add(1, std::memory_order_relaxed);
        break;
      case fate::unrouted:
        r.unrouted.fetch_add(1, std::memory_order_relaxed);
        break;
      case fate::filtered:
        r.filtered.fetch_add(1, std::memory_order_relaxed);
        break;
      case fate::transformed:
        r.transformed.fetch_add(1, std::memory_order_relaxed);
        break;
    }
    if (calls != 0) r.handler_calls.fetch_add(calls, std::memory_order_relaxed);
  }

  void stage_failed(registry& r, const void* ev) noexcept(!SLUICE_HAS_EXCEPTIONS) {
#if SLUICE_HAS_EXCEPTIONS
    report_failure(r, failure_kind::stage, 0, stage_error_message(), ev);
#else
    report_failure(r, failure_kind::stage, 0, "a stage failed", ev);
#endif
  }

  // Configuration of stages and key extractors is allowed until the bus
  // starts: the first producer, publish, dispatch or run().
  // The first start takes the configuration lock, so a configuration either
  // completes before the bus starts or is refused.
  void mark_started() {
    if (SLUICE_LIKELY(started_.load(std::memory_order_acquire))) return;
    std::lock_guard<std::mutex> lock(config_mutex_);
    started_.store(true, std::memory_order_release);
  }
  [[nodiscard]] bool started() const noexcept {
    return started_.load(std::memory_order_acquire);
  }
  std::mutex& config_mutex() noexcept {
    return config_mutex_;
  }

  // Sets the recorder that sees every event leaving a lane (and every
  // dispatch). Before the bus starts only; nullptr when set, else why not.
  const char* set_hook(std::shared_ptr<recorder_hook> h) {
    std::lock_guard<std::mutex> lock(config_mutex_);
    if (started()) return "sluice: a recorder must be attached before the bus starts";
    if (hook_owner_ != nullptr) return "sluice: this bus already has a recorder";
    hook_owner_ = std::move(h);
    hook_.store(hook_owner_.get(), std::memory_order_release);
    return nullptr;
  }
  // Recorders of store stages: stop() has them write (and sync) as well.
  void add_store_hook(std::shared_ptr<recorder_hook> h) {
    std::lock_guard<std::mutex> lock(config_mutex_);
    store_hooks_.push_back(std::move(h));
  }
  // Every recorder this bus feeds has written (and synced) what it recorded.
  void stop_hooks() noexcept {
    recorder_hook* main = hook();
    if (main != nullptr) main->on_stop();
    std::lock_guard<std::mutex> lock(config_mutex_);
    for (std::size_t i = 0; i < store_hooks_.size(); ++i) {
      recorder_hook* h = store_hooks_[i].get();
      bool seen = h == main;
      for (std::size_t k = 0; k < i && !seen; ++k) seen = store_hooks_[k].get() == h;
      if (!seen) h->on_stop();
    }
  }
  [[nodiscard]] recorder_hook* hook() const noexcept {
    return hook_.load(std::memory_order_acquire);
  }

  // ---- draining ----------------------------------------------------------------

  // Delivers up to `max` events of lane i, holding the lane's lock so that the
  // lane's order is kept: first the events a previous drainer left in the
  // lane's batch, else one batch taken from the queue. With a budget
  // (poll_for) it stops as soon as the budget is spent; what is left of the
  // batch stays in the lane for the next drainer. Returns events settled
  // (0: the lane is empty or another thread holds it).
  std::size_t drain_lane(std::size_t i, std::size_t max, bool discard = false,
                         budget* b = nullptr) {
    lane& l = *lanes_[i];
    if (!l.may_have_work()) return 0;
    reader_slot& s = *my_slot();
    // Nested too deep to deliver: leave the events queued for a shallower
    // drainer rather than take them and fail them.
    if (s.depth >= SLUICE_MAX_DEPTH || !l.try_lock()) return 0;
    drain_guard g(*this, l);
    if (l.batch_pos == l.batch_end) {
      SLUICE_SCHEDULE_POINT();
      const std::size_t n =
          SLUICE_SPURIOUS_EMPTY()
              ? 0
              : queue_io::dequeue_bulk(l.q(), l.consumer(), l.batch(),
                                       std::min<std::size_t>(max, SLUICE_DRAIN_BATCH));
      if (n == 0) return 0;  // the guard unlocks, and wakes a worker if work is left
      l.begin_delivery(n);
      l.release(n);
      l.batch_pos = 0;
      l.batch_end = n;
      l.not_durable_end = 0;
      if (!discard) {
        // The write-ahead log could not keep them: not delivered (kept in the
        // lane with the batch, for whichever drainer settles them).
        if (recorder_hook* h = hook(); h != nullptr && !h->on_batch(l.batch(), n))
          l.not_durable_end = n;
      }
    }
    envelope* batch = l.batch();
    // The registry (and whether it has stages: fixed once the bus started)
    // of the last event's type: looked up again only when the type changes,
    // so that a run of one type costs one lookup.
    const envelope_ops* run_ops = nullptr;
    registry* run_reg = nullptr;
    bool run_staged = false;
    while (l.batch_pos != l.batch_end && g.settled < max) {
      const std::size_t at = l.batch_pos++;
      envelope& rec = batch[at];  // taken: from here on it is this call's to settle
      if (rec.ops() != run_ops) {
        run_ops = rec.ops();
        run_reg = &reg(run_ops->type);
        run_staged = run_reg->chain.load(std::memory_order_acquire) != nullptr;
      }
      registry& r = *run_reg;
      g.t.switch_to(r);
      if (discard) {
        ++g.t.discarded;
      } else if (SLUICE_UNLIKELY(at < l.not_durable_end)) {
        g.current = &rec;  // (an observer that ends its thread still settles it)
        g.current_fate = fate::filtered;
        report_failure(r, failure_kind::not_durable, 0,
                       "sluice: the recorder could not make the event durable "
                       "(durable_before_delivery): it was not delivered",
                       rec.event());
        g.current = nullptr;
        g.current_fate = fate::delivered;
        g.t.count(fate::filtered, 0);
      } else {
        g.current = &rec;
        std::size_t calls = 0;
        const fate f =
            !run_staged ? ((calls = deliver(r, rec.event(), rec.meta(), s)) != 0 ? fate::delivered
                                                                                 : fate::unrouted)
                        : process(r, rec.event(), rec.meta(), s, 0, 0, calls);
        g.current = nullptr;
        g.t.count(f, calls);
      }
      rec.reset();
      ++g.settled;
      if (b != nullptr && b->spent()) break;
    }
    return g.settled;
  }

  // One pass over the lanes from `start`, at most `max` events.
  std::size_t drain_pass(std::size_t start, std::size_t max, bool discard = false) {
    std::size_t done = 0;
    const std::size_t nl = lanes_.size();
    for (std::size_t k = 0; k < nl && done < max; ++k)
      done += drain_lane((start + k) % nl, max - done, discard);
    return done;
  }

  // Drains (or discards) until every lane is empty, waiting for lanes that
  // other threads hold.
  void drain_all(bool discard) {
    backoff b;
    while (queued() != 0) {
      if (drain_pass(0, static_cast<std::size_t>(-1), discard) == 0) b.pause();
    }
  }

  // Per type, the events counted unrouted so far (0 for unused indices).
  void unrouted_counts(std::uint64_t (&out)[SLUICE_MAX_EVENT_TYPES]) const noexcept {
    for (std::size_t t = 0; t < SLUICE_MAX_EVENT_TYPES; ++t) {
      const registry* r = regs_[t].load(std::memory_order_acquire);
      out[t] = r != nullptr ? r->unrouted.load(std::memory_order_relaxed) : 0;
    }
  }
  // Reports the types whose unrouted count grew since `before` (the
  // destructor's drain): events that reached no handler because, most
  // often, their subscriptions were destroyed before the bus.
  void report_unrouted_since(const std::uint64_t (&before)[SLUICE_MAX_EVENT_TYPES]) noexcept {
    for (std::size_t t = 0; t < SLUICE_MAX_EVENT_TYPES; ++t) {
      const registry* r = regs_[t].load(std::memory_order_acquire);
      if (r == nullptr) continue;
      const std::uint64_t lost = r->unrouted.load(std::memory_order_relaxed) - before[t];
      if (lost == 0) continue;
      const char* why =
          "sluice: the bus's destructor delivered events to no handler (were the "
          "subscriptions destroyed before the bus? stop() the bus first)";
#if SLUICE_HAS_EXCEPTIONS
      try {
        report_problem(failure_kind::unrouted_in_destructor, r->type,
                       lost > 0x7fffffffu ? 0x7fffffff : static_cast<int>(lost), why);
      } catch (...) {  // a destructor does not let anything through
      }
#else
      report_problem(failure_kind::unrouted_in_destructor, r->type,
                     lost > 0x7fffffffu ? 0x7fffffff : static_cast<int>(lost), why);
#endif
#ifndef NDEBUG
      std::fprintf(stderr, "%s: %llu events of type index %u\n", why,
                   static_cast<unsigned long long>(lost), static_cast<unsigned>(r->type));
#endif
    }
  }

  lane_stats lane_info(std::size_t i) const noexcept {
    lane_stats st;
    st.depth = lanes_[i]->size();
    st.high_water = lanes_[i]->high_water();
    st.capacity = lanes_[i]->capacity();
    return st;
  }

  type_stats stats_of(std::uint32_t type) const {
    type_stats st;
    registry* r = find_reg(type);
    if (r == nullptr) return st;
    for (counter_cell* c = r->cells.load(std::memory_order_acquire); c != nullptr; c = c->next) {
      st.published += c->published.load(std::memory_order_relaxed);
      st.dropped += c->dropped.load(std::memory_order_relaxed);
      st.rejected += c->rejected.load(std::memory_order_relaxed);
    }
    st.delivered = r->delivered.load(std::memory_order_relaxed);
    st.unrouted = r->unrouted.load(std::memory_order_relaxed);
    st.failed = r->failed.load(std::memory_order_relaxed);
    st.discarded = r->discarded.load(std::memory_order_relaxed);
    st.handler_calls = r->handler_calls.load(std::memory_order_relaxed);
    st.filtered = r->filtered.load(std::memory_order_relaxed);
    st.dead_lettered = r->dead_lettered.load(std::memory_order_relaxed);
    st.transformed = r->transformed.load(std::memory_order_relaxed);
    st.published += r->derived.load(std::memory_order_relaxed);
    return st;
  }

  // A counter cell for one producer and one type (made or reused; never freed
  // before the bus, so its counts survive the producer).
  counter_cell* take_cell(std::uint32_t type) {
    registry& r = reg(type);
    for (counter_cell* c = r.cells.load(std::memory_order_acquire); c != nullptr; c = c->next) {
      bool expected = false;
      if (!c->in_use.load(std::memory_order_relaxed) &&
          c->in_use.compare_exchange_strong(expected, true, std::memory_order_acquire))
        return c;
    }
    auto* c = new counter_cell;
    c->owner = &r;
    c->in_use.store(true, std::memory_order_relaxed);
    counter_cell* head = r.cells.load(std::memory_order_relaxed);
    do {
      c->next = head;
    } while (!r.cells.compare_exchange_weak(head, c, std::memory_order_release,
                                            std::memory_order_relaxed));
    return c;
  }

 private:
  // Per-batch counter accumulation: one atomic add per type run, not per event.
  struct tally {
    registry* r = nullptr;
    std::uint64_t delivered = 0, unrouted = 0, discarded = 0, calls = 0, filtered = 0,
                  transformed = 0;
    void switch_to(registry& next) {
      if (r == &next) return;
      flush();
      r = &next;
    }
    void count(fate f, std::size_t handler_calls) noexcept {
      switch (f) {
        case fate::delivered:
          ++delivered;
          break;
        case fate::unrouted:
          ++unrouted;
          break;
        case fate::filtered:
          ++filtered;
          break;
        case fate::transformed:
          ++transformed;
          break;
      }
      calls += handler_calls;
    }
    void flush() {
      if (r == nullptr) return;
      if (delivered) r->delivered.fetch_add(delivered, std::memory_order_relaxed);
      if (unrouted) r->unrouted.fetch_add(unrouted, std::memory_order_relaxed);
      if (discarded) r->discarded.fetch_add(discarded, std::memory_order_relaxed);
      if (calls) r->handler_calls.fetch_add(calls, std::memory_order_relaxed);
      if (filtered) r->filtered.fetch_add(filtered, std::memory_order_relaxed);
      if (transformed) r->transformed.fetch_add(transformed, std::memory_order_relaxed);
      delivered = unrouted = discarded = calls = filtered = transformed = 0;
    }
  };

  // Ends a drain_lane call on every path, a thread's forced unwind included:
  // counts what was settled, keeps what was not for the next drainer, unlocks
  // the lane, and wakes a worker if the lane still has work (whoever drains
  // next may be parked: a lane is never left with work and nobody told).
  struct drain_guard {
    bus_core& core;
    lane& l;
    tally t;
    std::size_t settled = 0;
    envelope* current = nullptr;          // an event whose delivery is under way
    fate current_fate = fate::delivered;  // how it counts if the thread ends meanwhile
    drain_guard(bus_core& c, lane& ln) noexcept : core(c), l(ln) {}
    drain_guard(const drain_guard&) = delete;
    drain_guard& operator=(const drain_guard&) = delete;
    ~drain_guard() {
      if (current != nullptr) {
        // The thread ends inside a handler or stage: the event was handed
        // over, and counts as delivered; its other handlers are not called.
        t.count(current_fate, current_fate == fate::delivered ? 1 : 0);
        current->reset();
        ++settled;
      }
      t.flush();
      if (settled != 0) l.end_delivery(settled);
      l.note_carried();
      l.unlock();
      // (Mutation 1: the wake of a drainer that took nothing is skipped.)
      // Sleepers first: a busy pool has none, and has_work() reads every
      // producer's credit cell. (The unlock above and the sleepers' count
      // pair as before: a worker counts itself, then looks for unlocked
      // lanes with work.)
      if (core.parked_workers() != 0 && l.has_work() && !(settled == 0 && SLUICE_MODEL_MUTATION(1)))
        core.wake_workers();
      if (settled != 0) core.notify_idle();
    }
  };

  // Clears this thread's frames from depth d up (a forced unwind leaving).
  static void leave_frames(reader_slot& s, unsigned d) noexcept {
    for (unsigned k = d; k < SLUICE_MAX_DEPTH; ++k) {
      retract(s.node[k]);
      retract(s.array[k]);
      s.bus[k] = nullptr;
    }
    s.depth = d;
  }

  void observe(const failure_info& info) noexcept(!SLUICE_HAS_EXCEPTIONS) {
#if SLUICE_HAS_EXCEPTIONS
    try {
      options_.on_failure(info);
    } catch (...) {  // an observer must not throw; nothing more can be done
      SLUICE_PASS_FORCED_UNWIND();
    }
#else
    options_.on_failure(info);
#endif
  }

  void notify_idle() {
    SLUICE_SCHEDULE_POINT();
    if (idle_waiters_.load(std::memory_order_seq_cst) == 0) return;
    std::lock_guard<mutex> lock(idle_mutex_);
    idle_cv_.notify_all();
  }

  // Every bus of the parent, in the child: refuse everything from now on.
  static void on_fork_child(void* self) noexcept {
    static_cast<bus_core*>(self)->state_.store(run_state::stopped, std::memory_order_relaxed);
  }

  bus_options options_;
  const std::size_t chunk_;
  std::vector<std::unique_ptr<lane>> lanes_;
  std::atomic<registry*> regs_[SLUICE_MAX_EVENT_TYPES] = {};
  std::atomic<run_state> state_{run_state::running};
  std::atomic<int> live_producers_{0};
  std::atomic<bool> started_{false};
  std::mutex config_mutex_;
  std::shared_ptr<recorder_hook> hook_owner_;
  std::vector<std::shared_ptr<recorder_hook>> store_hooks_;  // guarded by config_mutex_
  std::atomic<recorder_hook*> hook_{nullptr};
  std::atomic<std::uint32_t> next_producer_id_{0};
  std::atomic<std::size_t> live_workers_{0};
  std::atomic<std::uint32_t> first_poller_{0};  // thread number of the first poller
  std::atomic<bool> several_pollers_{false};
  const std::uint64_t epoch_;  // process().forks when the bus was made
  fork_link fork_;
  alignas(SLUICE_CACHE_LINE) std::atomic<std::uint32_t> sleepers_{0};
  mutex park_mutex_;
  condition_variable park_cv_;
  std::atomic<std::uint32_t> idle_waiters_{0};
  mutex idle_mutex_;
  condition_variable idle_cv_;
};

}  // namespace detail
}  // namespace SLUICE_ABI
}  // namespace sluice
