// sluice — the state a bus shares with its producers and workers (lanes,
// registries, run state, who drains), and draining: taking a lane's events
// and settling each one (every run mode ends here: poll, workers, stop).
// The pieces it is made of have their own headers: delivery.hpp (calling the
// handlers), stage_run.hpp (stage chains), failures.hpp, counters.hpp,
// parking.hpp (idle workers and idle waiters), recorder_hook.hpp, and
// policy_run.hpp (failure policies: retries, held keys, breakers).
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
#include <thread>
#include <vector>

#include "../config.hpp"
#include "../errors.hpp"
#include "../options.hpp"
#include "../stats.hpp"
#include "clock.hpp"
#include "counters.hpp"
#include "delivery.hpp"
#include "failures.hpp"
#include "lane.hpp"
#include "numeric.hpp"
#include "parking.hpp"
#include "process.hpp"
#include "recorder_hook.hpp"
#include "registry.hpp"
#include "retry.hpp"
#include "stage_run.hpp"
#include "sync.hpp"
#include "tracking.hpp"

namespace sluice {
inline namespace SLUICE_ABI {
namespace detail {

enum class run_state : std::uint8_t { running, draining, discarding, stopped };

class bus_core {
 public:
  explicit bus_core(bus_options opts)
      : options_(std::move(opts)),
        chunk_(chunk_for(options_)),
        epoch_(detail::process().forks.load(std::memory_order_relaxed)),
        observer_(options_.observer.get()),
        tracer_(options_.tracer.get()),
        watches_publish_(observer_ != nullptr || tracer_ != nullptr),
        sample_every_(observer_ != nullptr ? 1 : options_.latency_sample_every),
        failures_(options_.on_failure || observer_ != nullptr ? this : nullptr, &call_observer,
                  this, &policy_thunk),
        regs_(epoch_) {
    lanes_.reserve(options_.lanes);
    for (std::size_t i = 0; i < options_.lanes; ++i) {
      lanes_.push_back(std::make_unique<lane>(options_.lane_capacity, options_.expected_producers));
      if (sample_every_ != 0) lanes_.back()->start_sampling();
    }
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
      hooks_.abandon();
      regs_.abandon();
      parking_.abandon();
      idle_.abandon();
      return;
    }
    SLUICE_ASSERT(live_producers_.load() == 0, "destroy every producer before its bus");
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
  [[nodiscard]] registry& reg(std::uint32_t type) { return regs_.get(type); }
  [[nodiscard]] registry* find_reg(std::uint32_t type) const noexcept { return regs_.find(type); }

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

  void wake_workers(bool all = false) { parking_.wake(all); }
  [[nodiscard]] std::size_t parked_workers() const noexcept { return parking_.parked(); }

  // Parks the calling worker until work arrives or the state changes: woken
  // by a publish, by a drainer that leaves work in a lane it unlocks, or by
  // stop().
  void park_worker() {
    parking_.park(
        [this] {
          // A publish through credit writes no shared atomic before it reads
          // the count of sleepers: the fence makes its event visible here, or
          // the count there.
          if (chunk_ > 1) heavy_fence();
        },
        [this] { return state() != run_state::running || work_available(); },
        // Read after the worker is counted: publish_after stores an earlier
        // due time, then wakes the sleepers it counts.
        [this] { return next_due(); });
  }

  void wake_everyone() {
    parking_.wake_all();
    for (auto& l : lanes_) l->wake_all();
    notify_idle();
  }

  // Waits until nothing is queued, carried or being delivered, or `expired()`.
  template <class Expired>
  bool wait_idle(Expired&& expired) {
    return idle_.wait([this] { return idle(); }, expired,
                      [this] { return state() == run_state::stopped; });
  }

  // ---- failures and delivery -------------------------------------------------

  [[nodiscard]] const failure_reporter& failures() const noexcept { return failures_; }
  void report_problem(failure_kind kind, std::uint32_t type, int code,
                      const char* message) noexcept(!SLUICE_HAS_EXCEPTIONS) {
    failures_.problem(kind, type, code, message);
  }
  void report_failure(registry& r, failure_kind kind, int code, const char* message,
                      const void* event, const metadata* meta) noexcept(!SLUICE_HAS_EXCEPTIONS) {
    failures_.failure(r, kind, code, message, event, meta);
  }

  // Calls r's handlers without a channel on this thread (delivery.hpp).
  std::size_t deliver(registry& r, const void* ev, const metadata& m, reader_slot& s) {
    return detail::deliver(this, failures_, r, ev, m, s);
  }
  // Runs r's stage chain, then delivers (stage_run.hpp).
  fate process(registry& r, const void* ev, const metadata& m, reader_slot& s, unsigned hops,
               std::size_t& calls) {
    return run_stages(this, failures_, r, ev, m, s, hops, calls);
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
  [[nodiscard]] bool started() const noexcept { return started_.load(std::memory_order_acquire); }
  std::mutex& config_mutex() noexcept { return config_mutex_; }

  // Sets the recorder that sees every event leaving a lane (and every
  // dispatch). Before the bus starts only; nullptr when set, else why not.
  const char* set_hook(std::shared_ptr<recorder_hook> h) {
    std::lock_guard<std::mutex> lock(config_mutex_);
    if (started()) return "sluice: a recorder must be attached before the bus starts";
    return hooks_.set_main(std::move(h));
  }
  // Recorders of store stages: stop() has them write (and sync) as well.
  void add_store_hook(std::shared_ptr<recorder_hook> h) {
    std::lock_guard<std::mutex> lock(config_mutex_);
    hooks_.add_store(std::move(h));
  }
  // Every recorder this bus feeds has written (and synced) what it recorded.
  void stop_hooks() noexcept {
    recorder_hook* main = hooks_.main();
    if (main != nullptr) main->on_stop();
    std::lock_guard<std::mutex> lock(config_mutex_);
    hooks_.stop_stores(main);
  }
  [[nodiscard]] recorder_hook* hook() const noexcept { return hooks_.main(); }

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
    if (!l.may_have_work() && !(discard && (l.delayed() != 0 || l.retrying() != 0))) return 0;
    reader_slot& s = *my_slot();
    // Nested too deep to deliver: leave the events queued for a shallower
    // drainer rather than take them and fail them.
    if (s.depth >= SLUICE_MAX_DEPTH || !l.try_lock()) return 0;
    // What the failure path needs to move a failed event's fate to its
    // retries (restored on every way out: drains nest through poll()).
    retry_context ctx;
    ctx.depth = s.depth;
    ctx.lane = i;
    ctx.bus = this;
    drain_guard g(*this, l, ctx);
    ctx.current = &g.current;
    ctx.current_fate = &g.current_fate;
    context_scope scope(ctx);
    std::size_t retried = 0;  // retry calls made (progress, but not events settled)
    // Timing is on, or tracing (locals: handlers may alias `this`, a member
    // would be loaded again after every call).
    const bool timing = sample_every_ != 0;
    sluice::tracer* const tracing = tracer_;
    const bool watching = timing || tracing != nullptr;
    if (l.batch_pos == l.batch_end) {
      std::size_t want = std::min<std::size_t>(max, SLUICE_DRAIN_BATCH);
      // Retries that fell due, one at a time, before the next batch; they
      // count against `max` and the budget as events do.
      if (SLUICE_UNLIKELY(l.retrying() != 0)) {
        retried = run_retries(l, s, want, discard, b);
        want -= retried;
        if (want == 0 || (b != nullptr && b->over())) return retried;
      }
      // Delayed events that fell due (publish_after), unless the last batch
      // was theirs and the queue has events: they take turns.
      std::size_t n = 0;
      if (!l.last_from_timers || l.places_taken() == 0) n = l.take_due(l.batch(), want, discard);
      l.last_from_timers = n != 0;
      if (n == 0) {
        SLUICE_SCHEDULE_POINT();
        n = SLUICE_SPURIOUS_EMPTY() ? 0
                                    : queue_io::dequeue_bulk(l.q(), l.consumer(), l.batch(), want);
        if (n == 0) return retried;  // the guard unlocks, and wakes a worker if work is left
        l.begin_delivery(n);
        l.release(n);
      }
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
      // Timed (latency metrics, an observer: one event in sample_every_;
      // a traced flow's).
      const unsigned timed = SLUICE_UNLIKELY(watching) && !discard
                                 ? timed_now(l, r.type, rec.meta(), timing, tracing)
                                 : 0u;
      const bool sampled = timed != 0;
      if (!discard && !run_staged && at >= l.not_durable_end && SLUICE_LIKELY(!gating(l, r)) &&
          !sampled) {
        // A run of this type's events without stages: one frame and one
        // announcement of the subscriber array for the run (delivery.hpp).
        // The run's events are destroyed after its frame is closed, as they
        // were after each event's own frame: an event's destructor never
        // runs inside a handler frame. (A thread that ends in a handler
        // leaves the run's earlier events to be destroyed when the batch
        // slot is reused, or with the lane.)
        bool spent = false;
        {
          run_frame frame(this, r, s);
          for (;;) {
            envelope& ev = batch[l.batch_pos - 1];  // taken: this call's to settle
            g.current = &ev;
            const std::size_t calls = frame.call(failures_, ev.event(), ev.meta());
            g.current = nullptr;
            if (SLUICE_LIKELY(ctx.block == nullptr)) {
              g.t.count(calls != 0 ? fate::delivered : fate::unrouted, calls);
            } else {
              moved_to_retries(ctx, g.t, calls);
            }
            ++g.settled;
            if (b != nullptr && b->spent()) {
              spent = true;
              break;
            }
            if (l.batch_pos == l.batch_end || g.settled >= max ||
                batch[l.batch_pos].ops() != run_ops || SLUICE_UNLIKELY(gating(l, r)) ||
                SLUICE_UNLIKELY(watching && !untimed_next(l, r.type, batch[l.batch_pos].meta(),
                                                          timing, tracing)))
              break;
            ++l.batch_pos;
          }
        }
        for (std::size_t k = at; k < l.batch_pos; ++k) batch[k].reset();
        if (spent) break;
        continue;
      }
      if (discard) {
        ++g.t.discarded;
      } else if (SLUICE_UNLIKELY(at < l.not_durable_end)) {
        g.current = &rec;  // (an observer that ends its thread still settles it)
        g.current_fate = fate::filtered;
        report_failure(r, failure_kind::not_durable, 0,
                       "sluice: the recorder could not make the event durable "
                       "(durable_before_delivery): it was not delivered",
                       rec.event(), &rec.meta());
        g.current = nullptr;
        g.current_fate = fate::delivered;
        g.t.count(fate::filtered, 0);
      } else {
        g.current = &rec;
        std::size_t calls = 0;
        const fate f =
            SLUICE_UNLIKELY(sampled)
                ? deliver_timed(l, i, r, rec, s, run_staged, calls, (timed & timed_counted) != 0)
            : SLUICE_UNLIKELY(needs_gate(l, r, rec.meta()))
                ? deliver_gated(l, r, rec, s, run_staged, calls)
            : !run_staged ? ((calls = deliver(r, rec.event(), rec.meta(), s)) != 0 ? fate::delivered
                                                                                   : fate::unrouted)
                          : process(r, rec.event(), rec.meta(), s, 0, calls);
        g.current = nullptr;
        if (SLUICE_LIKELY(ctx.block == nullptr)) {
          g.t.count(f, calls);
        } else {
          moved_to_retries(ctx, g.t, calls);
        }
      }
      rec.reset();
      ++g.settled;
      if (b != nullptr && b->spent()) break;
    }
    return g.settled + retried;
  }

  // ---- failure policies (defined in policy_run.hpp; retry.hpp) --------------

  // Whether `ev` is the event a drainer is delivering, at its own depth: only
  // that one has a fate to move to retries. A dispatch, a handler's nested
  // dispatch, an event a transform made, get no retry, no hold and no
  // breaker (a dead letter at once, if the policy says so).
  static retry_context* own_event(const void* ev) noexcept {
    thread_state& t = this_thread();
    retry_context* ctx = t.retry;
    const reader_slot* s = t.slot;
    const envelope* current = ctx != nullptr ? *ctx->current : nullptr;
    const bool queued = current != nullptr && *ctx->current_fate == fate::delivered &&
                        s != nullptr && current->event() == ev && s->depth == ctx->depth + 1;
    return queued ? ctx : nullptr;
  }

  // A handler with a failure policy failed its first call of `ev`.
  void on_handler_failure(registry& r, sub_node& n, failure_kind kind, int code,
                          const char* message, const void* ev, const metadata& m);

  // The policy's answer to a first attempt that failed (or that an open
  // breaker did not make): a retry, else its end.
  void first_failure(registry& r, sub_node& n, const retry_spec& spec, failure_kind kind, int code,
                     const char* message, const void* ev, const metadata& m, retry_context* ctx);

  // ---- the delivery gate: held keys and watched breakers ------------------

  // Some event of r's type in lane l may be kept from a subscriber: the lane
  // holds keys, or a breaker of the type is watched. Under l's lock.
  [[nodiscard]] static bool gating(lane& l, const registry& r) noexcept {
    return l.holds().count() != 0 || r.gated.load(std::memory_order_relaxed) != 0;
  }
  [[nodiscard]] static bool needs_gate(lane& l, const registry& r, const metadata& m) noexcept {
    return l.holds().may_hold(hold_key::of(m)) || r.gated.load(std::memory_order_relaxed) != 0;
  }

  struct gate_self {
    bus_core* core;
    lane* l;
  };
  static gate_result gate_thunk(void* self, registry& r, const sub_entry& e, const void* ev,
                                const metadata& m) {
    auto* g = static_cast<gate_self*>(self);
    return g->core->gate(*g->l, r, e, ev, m);
  }

  // Delivers a lane's event asking the gate about each subscriber.
  fate deliver_gated(lane& l, registry& r, envelope& rec, reader_slot& s, bool staged,
                     std::size_t& calls);

  // One subscriber of the lane's event: held if a retry of its key is
  // pending for it (hold_key); not called if its breaker is open; called
  // here, its result noted, if its breaker is watched (and `*ok` set to
  // whether it succeeded).
  gate_result gate(lane& l, registry& r, const sub_entry& e, const void* ev, const metadata& m,
                   bool* ok = nullptr);

  // call_one, telling whether the call succeeded (a failure is reported,
  // and its policy applied, as call_one does).
  bool call_watched(registry& r, const sub_entry& e, const void* ev, const metadata& m) {
    std::int64_t unused = 0;
    return call_timed<false>(r, e, ev, m, unused);
  }
  // The same; with Timed, `end` is stamp_now() as the handler returned
  // (before a failure is handled). monitor_run.hpp.
  template <bool Timed>
  bool call_timed(registry& r, const sub_entry& e, const void* ev, const metadata& m,
                  std::int64_t& end);

  // Holds the event for n behind the retry of its key: `kept`. A full hold
  // (or no memory for the copy or its block) dead-letters it (`kept`; with
  // no block, `called`: it counts as handed over, as a dead letter without a
  // settle block does elsewhere) or lets it be called now (`pass`).
  gate_result hold_event(lane& l, registry& r, sub_node& n, const retry_spec& spec, hold* h,
                         const void* ev, const metadata& m, retry_context& ctx);

  // Applies what a breaker's result changed: the watched count, the opens,
  // the reports.
  void note_breaker(registry& r, sub_node& n, const retry_spec& spec, const breaker::change& c,
                    const void* ev, const metadata* m);

  // ---- latency metrics and the observer (monitor_run.hpp) -------------------

  // The lane's next event of `type` is timed (the first, then every
  // sample_every_-th: a countdown per lane and type, so that types that
  // take turns are each sampled). Under l's lock.
  [[nodiscard]] bool take_sample(lane& l, std::uint32_t type) const noexcept {
    std::uint32_t& left = l.sample_left()[type];
    if (--left != 0) return false;
    left = sample_every_;
    return true;
  }
  // In a run of `type`, with timing on: false when the lane's next event
  // is to be timed (it leaves the run for take_sample), else counts it.
  // Under l's lock.
  [[nodiscard]] static bool untimed_next(lane& l, std::uint32_t type) noexcept {
    std::uint32_t& left = l.sample_left()[type];
    if (left == 1) return false;
    --left;
    return true;
  }
  // The same with tracing: false also when the next event's flow is traced
  // (then it is not counted here: timed_now counts it).
  [[nodiscard]] static bool untimed_next(lane& l, std::uint32_t type, const metadata& next,
                                         bool timing, const sluice::tracer* tr) noexcept {
    if (tr != nullptr && traced(tr, next)) return false;
    return !timing || untimed_next(l, type);
  }
  // Whether the lane's next event (of `type`, with metadata m) is timed:
  // timed_counted when it is latency sampling's (one in sample_every_),
  // timed_traced when its flow is traced; 0: not timed.
  static constexpr unsigned timed_counted = 1;
  static constexpr unsigned timed_traced = 2;
  [[nodiscard]] unsigned timed_now(lane& l, std::uint32_t type, const metadata& m, bool timing,
                                   const sluice::tracer* tr) const noexcept {
    const unsigned counted = timing && take_sample(l, type) ? timed_counted : 0u;
    return counted | (tr != nullptr && traced(tr, m) ? timed_traced : 0u);
  }
  [[nodiscard]] static bool traced(const sluice::tracer* tr, const metadata& m) noexcept;
  [[nodiscard]] bool histograms_on() const noexcept { return options_.latency_sample_every != 0; }
  [[nodiscard]] bus_observer* observer() const noexcept { return observer_; }
  // Whether publishes are told to anyone (observe_publish).
  [[nodiscard]] bool watches_publish() const noexcept { return watches_publish_; }
  // With watches_publish(): whether this publish is told, given the
  // correlation its producer stamped last (without an observer, only an
  // accepted event of a traced flow is, so that the tracer costs one
  // multiplication per publish of an untraced flow).
  [[nodiscard]] bool tells_publish(publish_result r, std::uint64_t flow) const noexcept;
  [[nodiscard]] std::uint64_t metrics_lost() const noexcept {
    return metrics_lost_.load(std::memory_order_relaxed);
  }

  // What the timing gate needs for one event.
  struct timed_self {
    bus_core* core;
    lane* l;
    std::size_t lane_index;
    bool gated;                // the delivery gate has a say too
    bool fresh;                // the next call reads the clock before it starts
    std::uint64_t queue_wait;  // ns, or 0 when unknown
    std::int64_t last;         // stamp_now() when the last call ended (or delivery began)
    bool traced;               // its flow is traced: each call goes to the tracer
    bool histograms;           // its values go to the latency histograms (sampled for them)
  };
  static gate_result timed_thunk(void* self, registry& r, const sub_entry& e, const void* ev,
                                 const metadata& m) {
    auto* t = static_cast<timed_self*>(self);
    return t->core->timed_call(*t, r, e, ev, m);
  }
  // Delivers lane li's event, timing its queue wait and each handler call
  // (into the histograms when `counted`: sampled for them, not only traced).
  fate deliver_timed(lane& l, std::size_t li, registry& r, envelope& rec, reader_slot& s,
                     bool staged, std::size_t& calls, bool counted);
  // One subscriber of a timed event: asks the delivery gate if it has a
  // say, calls, records the call's duration, tells the observer.
  gate_result timed_call(timed_self& t, registry& r, const sub_entry& e, const void* ev,
                         const metadata& m);
  // Records v in lane li's histogram of `slot` (made on first use: then
  // it returns true, having spent more than bookkeeping).
  bool record_latency(std::atomic<lane_histograms*>& slot, std::size_t li,
                      std::uint64_t v) noexcept;
  // A publish's outcome, for the observer.
  void observe_publish(const publish_info& info) const noexcept;

  // Runs the retries of lane l that are due (all of them, discarding, as
  // dead letters without a call), at most `max`. Under l's lock.
  std::size_t run_retries(lane& l, reader_slot& s, std::size_t max, bool discard, budget* b);

  // One pass over the lanes from `start`, at most `max` events.
  std::size_t drain_pass(std::size_t start, std::size_t max, bool discard = false) {
    std::size_t done = 0;
    const std::size_t nl = lanes_.size();
    for (std::size_t k = 0; k < nl && done < max; ++k)
      done += drain_lane((start + k) % nl, max - done, discard);
    return done;
  }

  // Drains (or discards) until every lane is empty, waiting for lanes that
  // other threads hold, and (draining) for delayed events to fall due.
  void drain_all(bool discard) {
    backoff b;
    while (queued() != 0) {
      if (drain_pass(0, static_cast<std::size_t>(-1), discard) != 0) continue;
#if !SLUICE_MODEL_CHECK
      // Only delayed events left, none due: sleep until the first is (at
      // most 1 ms at a time: an event published meanwhile may need us).
      const std::int64_t due = next_due();
      const std::int64_t now = now_ns();
      if (!discard && due != lane::no_due && due > now && due - now > 100000) {
        std::this_thread::sleep_for(
            std::chrono::nanoseconds(std::min<std::int64_t>(due - now, 1000000)));
        continue;
      }
#endif
      b.pause();
    }
  }

  // When the earliest delayed event of any lane may fall due (steady-clock
  // ns), or lane::no_due.
  [[nodiscard]] std::int64_t next_due() const noexcept {
    std::int64_t d = lane::no_due;
    for (auto& l : lanes_) d = std::min(d, l->next_due());
    return d;
  }
  // Events waiting for their time (publish_after), in all lanes.
  [[nodiscard]] std::size_t delayed() const noexcept {
    std::size_t n = 0;
    for (auto& l : lanes_) n += l->delayed();
    return n;
  }

  // The latency histograms of a type (merged over lanes, and for `handler`
  // over its subscriptions, those that ended included). Merges under the
  // type's subscriber lock (a few us per subscription and lane).
  void latency_of(std::uint32_t type, type_latency& out) const {
    registry* r = find_reg(type);
    if (r == nullptr) return;
    if (const lane_histograms* h = r->queue_wait.load(std::memory_order_acquire))
      h->add_to(out.queue_wait);
    std::lock_guard<detail::mutex> lock(r->writer_mutex);
    if (r->ended_handler_time != nullptr) out.handler.merge(*r->ended_handler_time);
    for (const sub_node* n = r->nodes; n != nullptr; n = n->next_all)
      if (const lane_histograms* h = n->handler_time.load(std::memory_order_acquire))
        h->add_to(out.handler);
  }
  // fn(const sub_node&) for each node of the type's registry (newest
  // first), under its subscriber lock.
  template <class Fn>
  void each_subscription(std::uint32_t type, Fn&& fn) const {
    registry* r = find_reg(type);
    if (r == nullptr) return;
    std::lock_guard<detail::mutex> lock(r->writer_mutex);
    for (const sub_node* n = r->nodes; n != nullptr; n = n->next_all) fn(*n);
  }

  // Per type, the events counted unrouted so far (0 for unused indices).
  void unrouted_counts(std::uint64_t (&out)[SLUICE_MAX_EVENT_TYPES]) const noexcept {
    for (std::size_t t = 0; t < SLUICE_MAX_EVENT_TYPES; ++t) {
      const registry* r = regs_.find(static_cast<std::uint32_t>(t));
      out[t] = r != nullptr ? r->unrouted.load(std::memory_order_relaxed) : 0;
    }
  }
  // Reports the types whose unrouted count grew since `before` (the
  // destructor's drain): events that reached no handler because, most
  // often, their subscriptions were destroyed before the bus.
  void report_unrouted_since(const std::uint64_t (&before)[SLUICE_MAX_EVENT_TYPES]) noexcept {
    for (std::size_t t = 0; t < SLUICE_MAX_EVENT_TYPES; ++t) {
      const registry* r = regs_.find(static_cast<std::uint32_t>(t));
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
    st.delayed = lanes_[i]->delayed();
    st.capacity = lanes_[i]->capacity();
    return st;
  }

  type_stats stats_of(std::uint32_t type) const {
    return detail::stats_of(find_reg(type));
  }
  // A counter cell for one producer and one type (counters.hpp).
  counter_cell* take_cell(std::uint32_t type) {
    return detail::take_cell(reg(type));
  }

 private:
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
    retry_context& ctx;                   // the drain's (outlives the guard)
    drain_guard(bus_core& c, lane& ln, retry_context& rc) noexcept : core(c), l(ln), ctx(rc) {}
    drain_guard(const drain_guard&) = delete;
    drain_guard& operator=(const drain_guard&) = delete;
    ~drain_guard() {
      if (current != nullptr) {
        // The thread ends inside a handler or stage: the event was handed
        // over, and counts as delivered (or is its retries' to settle, if a
        // handler that failed before scheduled one); its other handlers are
        // not called.
        if (ctx.block != nullptr) {
          moved_to_retries(ctx, t, 1);
        } else {
          t.count(current_fate, current_fate == fate::delivered ? 1 : 0);
        }
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

  void notify_idle() {
    idle_.notify();
  }

  // Sets this thread's retry context for a drain_lane call, and restores
  // the one of the drain it nests in (and the cause set by a scope around
  // it: the drain's events are the causes of what their handlers publish).
  struct context_scope {
    thread_state& t;
    retry_context* saved;
    const metadata* saved_cause;
    explicit context_scope(retry_context& c) noexcept
        : t(this_thread()), saved(t.retry), saved_cause(t.cause) {
      t.retry = &c;
      t.cause = nullptr;
    }
    context_scope(const context_scope&) = delete;
    context_scope& operator=(const context_scope&) = delete;
    ~context_scope() {
      t.retry = saved;
      t.cause = saved_cause;
    }
  };

  // The event just delivered failed a handler with a failure policy: it is
  // settled by its retries when they end, or now if none was scheduled.
  static void moved_to_retries(retry_context& ctx, tally& t, std::size_t calls) noexcept {
    settle_block* b = ctx.block;
    ctx.block = nullptr;
    t.calls += calls;
    if (b->chains != 0) return;
    ++(b->dead ? t.dead_lettered : t.delivered);
    delete b;
  }

  static std::uint64_t next_random() noexcept {
    static thread_local std::uint64_t x = 0;
    if (x == 0)
      x = (static_cast<std::uint64_t>(now_ns()) ^ (std::uint64_t{thread_number()} << 32)) | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  }

  [[nodiscard]] std::int64_t retry_due(const retry_spec& spec, std::uint32_t next_call) {
    return deadline_after(now_ns(), spec.policy.backoff.wait_before(next_call, next_random()));
  }

  // Makes and schedules the first retry of `ev` for n. False when it could
  // not (no memory, or the lane's retry wheel is full).
  bool schedule_first_retry(registry& r, sub_node& n, const retry_spec& spec, failure_kind kind,
                            int code, const char* message, const void* ev, const metadata& m,
                            settle_block* block, lane& l);

  // Calls the subscriber of `rec` again, in a frame of this bus; then
  // schedules the next retry, or ends the record.
  void run_retry(lane& l, reader_slot& s, retry_record* rec);

  // Keeps what a retry's failure said (its message may not outlive the call).
  static void note_retry_failure(retry_record* rec, failure_kind kind, int code,
                                 const char* message) noexcept {
    rec->kind = kind;
    rec->code = code;
    SLUICE_TRY {
      rec->message = message != nullptr ? message : "";
    }
    SLUICE_CATCH(const std::bad_alloc&) {
      rec->message.clear();
    }
  }

  // A retry record is over: the event is settled if it was its last, the
  // node let go, the record freed, and the lane told (in that order: a
  // stop() that sees nothing pending sees the counts).
  void end_retry(lane& l, retry_record* rec) noexcept;

  static void policy_thunk(void* self, registry& r, sub_node& n, failure_kind kind, int code,
                           const char* message, const void* ev, const metadata& m) {
    static_cast<bus_core*>(self)->on_handler_failure(r, n, kind, code, message, ev, m);
  }

  // The failure observers: bus_options::on_failure, then the observer's
  // (also when on_failure threw: its throw is contained here, as the
  // reporter contains the rest).
  static void call_observer(const void* self, const failure_info& info) {
    const auto* core = static_cast<const bus_core*>(self);
    if (core->options_.on_failure) {
      SLUICE_TRY {
        core->options_.on_failure(info);
      }
      SLUICE_CATCH(...) {
        SLUICE_PASS_FORCED_UNWIND();
      }
    }
    if (core->observer_ != nullptr) core->observer_->on_failure(info);
  }

  // Every bus of the parent, in the child: refuse everything from now on.
  static void on_fork_child(void* self) noexcept {
    static_cast<bus_core*>(self)->state_.store(run_state::stopped, std::memory_order_relaxed);
  }

  bus_options options_;
  const std::size_t chunk_;
  const std::uint64_t epoch_;                   // process().forks when the bus was made
  bus_observer* const observer_;                // options_.observer's, or nullptr
  sluice::tracer* const tracer_;                // options_.tracer's, or nullptr
  const bool watches_publish_;                  // an observer or a tracer is told of publishes
  const std::uint32_t sample_every_;            // events timed: one in this many per lane (0: none)
  std::atomic<std::uint64_t> metrics_lost_{0};  // values with no memory for their histogram
  std::vector<std::unique_ptr<lane>> lanes_;
  failure_reporter failures_;
  std::atomic<run_state> state_{run_state::running};
  std::atomic<int> live_producers_{0};
  std::atomic<bool> started_{false};
  std::mutex config_mutex_;
  recorder_hooks hooks_;  // setters guarded by config_mutex_
  std::atomic<std::uint32_t> next_producer_id_{0};
  std::atomic<std::size_t> live_workers_{0};
  std::atomic<std::uint32_t> first_poller_{0};  // thread number of the first poller
  std::atomic<bool> several_pollers_{false};
  fork_link fork_;
  parking parking_;
  idle_waiters idle_;
  // Last, so destroyed first: the handlers (and store stages' recorders) go
  // while everything else of the bus still exists.
  registry_table regs_;
};

}  // namespace detail
}  // namespace SLUICE_ABI
}  // namespace sluice

#include "monitor_run.hpp"  // IWYU pragma: export
#include "policy_run.hpp"   // IWYU pragma: export
