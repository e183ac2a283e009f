// sluice — the state a bus shares with its producers and workers, and the
// delivery path every run mode uses (dispatch, poll, workers, stop).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <vector>

#include "../config.hpp"
#include "../errors.hpp"
#include "../options.hpp"
#include "../stats.hpp"
#include "lane.hpp"
#include "registry.hpp"
#include "tracking.hpp"

namespace sluice::detail {

enum class run_state : std::uint8_t { running, draining, discarding, stopped };

// What a recorder (storage/recorder.hpp) implements to see a bus's events.
// Called on the delivering threads; must not throw.
class record_hook {
 public:
  virtual ~record_hook() = default;
  // Events taken from a lane for delivery, in lane order, before any stage or
  // handler sees them.
  virtual void on_batch(const record* recs, std::size_t n) noexcept = 0;
  // One event: a dispatch, or a store stage.
  virtual void on_event(std::uint32_t type, const void* ev, const metadata& m) noexcept = 0;
  // The bus has stopped: everything recorded is to be written (and synced).
  virtual void on_stop() noexcept = 0;
};

[[nodiscard]] inline std::int64_t now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

[[nodiscard]] inline std::uint64_t mix(std::uint64_t x) noexcept {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}

class bus_core {
 public:
  explicit bus_core(bus_options opts) : options_(std::move(opts)) {
    lanes_.reserve(options_.lanes);
    for (std::size_t i = 0; i < options_.lanes; ++i)
      lanes_.push_back(std::make_unique<lane>(options_.lane_capacity, options_.expected_producers));
  }
  bus_core(const bus_core&) = delete;
  bus_core& operator=(const bus_core&) = delete;
  ~bus_core() {
    SLUICE_ASSERT(live_producers_.load() == 0, "destroy every producer before its bus");
    for (auto& r : regs_) delete r.load(std::memory_order_relaxed);
  }

  [[nodiscard]] const bus_options& options() const noexcept { return options_; }
  [[nodiscard]] std::size_t lane_count() const noexcept { return lanes_.size(); }
  [[nodiscard]] lane& lane_at(std::size_t i) noexcept { return *lanes_[i]; }
  [[nodiscard]] std::size_t lane_for(key_type key) const noexcept {
    // Multiply-shift range reduction of the hash's top 32 bits: no division.
    return static_cast<std::size_t>(((mix(key) >> 32) * lanes_.size()) >> 32);
  }

  // The registry of a type, made on first use.
  [[nodiscard]] registry& reg(std::uint32_t type) {
    std::atomic<registry*>& slot = regs_[type];
    registry* r = slot.load(std::memory_order_acquire);
    if (SLUICE_LIKELY(r != nullptr)) return *r;
    auto* fresh = new registry(type);
    if (slot.compare_exchange_strong(r, fresh, std::memory_order_acq_rel)) return *fresh;
    delete fresh;
    return *r;
  }
  [[nodiscard]] registry* find_reg(std::uint32_t type) const noexcept {
    return regs_[type].load(std::memory_order_acquire);
  }

  [[nodiscard]] run_state state() const noexcept { return state_.load(std::memory_order_seq_cst); }
  void set_state(run_state s) noexcept { state_.store(s, std::memory_order_seq_cst); }

  // Whether an event whose place is already reserved may go in. Handlers may
  // still publish while the bus drains (their events are part of the drain).
  [[nodiscard]] bool accepting(bool in_handler) const noexcept {
    const run_state s = state();
    return s == run_state::running || (s == run_state::draining && in_handler);
  }

  [[nodiscard]] std::size_t queued() const noexcept {
    std::size_t n = 0;
    for (auto& l : lanes_) n += l->pending();
    return n;
  }

  // Some lane has queued events and no drainer.
  [[nodiscard]] bool work_available() const noexcept {
    for (auto& l : lanes_)
      if (l->size() != 0 && !l->locked()) return true;
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

  // ---- parking of idle workers ---------------------------------------------

  void wake_workers(bool all = false) {
    if (sleepers_.load(std::memory_order_seq_cst) == 0) return;
    std::lock_guard<std::mutex> lock(park_mutex_);
    if (all) {
      park_cv_.notify_all();
    } else {
      park_cv_.notify_one();
    }
  }

  // Parks the calling worker until work arrives or the state changes.
  void park_worker() {
    std::unique_lock<std::mutex> lock(park_mutex_);
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    // Woken by a publish, by a drainer that leaves work in a lane it unlocks,
    // or by stop().
    if (state() == run_state::running && !work_available()) park_cv_.wait(lock);
    sleepers_.fetch_sub(1, std::memory_order_seq_cst);
  }

  void wake_everyone() {
    {
      std::lock_guard<std::mutex> lock(park_mutex_);
      park_cv_.notify_all();
    }
    for (auto& l : lanes_) l->wake_all();
  }

  // ---- delivery --------------------------------------------------------------

  void report_failure(registry& r, failure_kind kind, int code, const char* message,
                      const void* event) noexcept {
    r.failed.fetch_add(1, std::memory_order_relaxed);
    if (!options_.on_failure) return;
    failure_info info;
    info.kind = kind;
    info.type = r.type;
    info.code = code;
    info.message = message;
    info.event = event;
#if SLUICE_HAS_EXCEPTIONS
    try {
      options_.on_failure(info);
    } catch (...) {  // an observer must not throw; nothing more can be done
    }
#else
    options_.on_failure(info);
#endif
  }

  void call_one(registry& r, sub_node* n, const void* ev, const metadata& m) noexcept {
#if SLUICE_HAS_EXCEPTIONS
    try {
      const outcome o = n->invoke(n->callable, ev, m);
      if (SLUICE_UNLIKELY(!o.ok()))
        report_failure(r, failure_kind::outcome, o.code(), o.message(), ev);
    } catch (const std::exception& e) {
      report_failure(r, failure_kind::exception, 0, e.what(), ev);
    } catch (...) {
      report_failure(r, failure_kind::exception, 0, "unknown exception", ev);
    }
#else
    const outcome o = n->invoke(n->callable, ev, m);
    if (SLUICE_UNLIKELY(!o.ok()))
      report_failure(r, failure_kind::outcome, o.code(), o.message(), ev);
#endif
  }

  // Calls every open subscriber of r with the event on this thread. Returns
  // the number of handler calls made.
  std::size_t deliver(registry& r, const void* ev, const metadata& m, reader_slot& s,
                      std::uint32_t channel = 0) noexcept {
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
    if (a != nullptr) {
      for (sub_node* n : a->items) {
        if (n->channel != 0 && n->channel != channel) continue;
        announce(s.node[d], n, asym);
        if (!reader_load(n->closed, asym)) {
          ++calls;
          call_one(r, n, ev, m);
        }
        retract(s.node[d]);
      }
    }
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
               unsigned hops, std::size_t& calls, bool framed = false) noexcept {
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
      for (std::size_t i = from; go_on && i < c->stages.size(); ++i) {
        const stage& st = c->stages[i];
        switch (st.kind) {
          case stage_kind::filter: {
            bool pass = false;
            if (!st.test(st.fn, ev, pass)) stage_failed(r, ev);
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

  void stage_failed(registry& r, const void* ev) noexcept {
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
  const char* set_hook(std::shared_ptr<record_hook> h) {
    std::lock_guard<std::mutex> lock(config_mutex_);
    if (started()) return "sluice: a recorder must be attached before the bus starts";
    if (hook_owner_ != nullptr) return "sluice: this bus already has a recorder";
    hook_owner_ = std::move(h);
    hook_.store(hook_owner_.get(), std::memory_order_release);
    return nullptr;
  }
  // Recorders of store stages: stop() has them write (and sync) as well.
  void add_store_hook(std::shared_ptr<record_hook> h) {
    std::lock_guard<std::mutex> lock(config_mutex_);
    store_hooks_.push_back(std::move(h));
  }
  // Every recorder this bus feeds has written (and synced) what it recorded.
  void stop_hooks() noexcept {
    record_hook* main = hook();
    if (main != nullptr) main->on_stop();
    std::lock_guard<std::mutex> lock(config_mutex_);
    for (std::size_t i = 0; i < store_hooks_.size(); ++i) {
      record_hook* h = store_hooks_[i].get();
      bool seen = h == main;
      for (std::size_t k = 0; k < i && !seen; ++k) seen = store_hooks_[k].get() == h;
      if (!seen) h->on_stop();
    }
  }
  [[nodiscard]] record_hook* hook() const noexcept {
    return hook_.load(std::memory_order_acquire);
  }

  // Takes one batch from lane i and delivers it, holding the lane's lock so
  // that the lane's order is kept. Returns events taken (0: empty or busy).
  std::size_t drain_lane(std::size_t i, std::size_t max, bool discard = false) {
    lane& l = *lanes_[i];
    if (l.size() == 0) return 0;
    reader_slot& s = *my_slot();
    // Nested too deep to deliver: leave the events queued for a shallower
    // drainer rather than take them and fail them.
    if (s.depth >= SLUICE_MAX_DEPTH || !l.try_lock()) return 0;
    record batch[SLUICE_DRAIN_BATCH];
    const std::size_t n =
        l.q().try_dequeue_bulk(l.consumer(), batch, std::min<std::size_t>(max, SLUICE_DRAIN_BATCH));
    if (n == 0) {
      l.unlock();
      return 0;
    }
    l.begin_delivery(n);
    l.release(n);
    if (!discard) {
      if (record_hook* h = hook()) h->on_batch(batch, n);
    }
    tally t;
    for (std::size_t k = 0; k < n; ++k) {
      record& rec = batch[k];
      registry& r = reg(rec.type());
      t.switch_to(r);
      if (discard) {
        ++t.discarded;
      } else {
        std::size_t calls = 0;
        const fate f =
            r.chain.load(std::memory_order_acquire) == nullptr
                ? ((calls = deliver(r, rec.event(), rec.meta(), s)) != 0 ? fate::delivered
                                                                         : fate::unrouted)
                : process(r, rec.event(), rec.meta(), s, 0, 0, calls);
        switch (f) {
          case fate::delivered:
            ++t.delivered;
            break;
          case fate::unrouted:
            ++t.unrouted;
            break;
          case fate::filtered:
            ++t.filtered;
            break;
          case fate::transformed:
            ++t.transformed;
            break;
        }
        t.calls += calls;
      }
      rec.reset();
    }
    t.flush();
    l.end_delivery(n);
    l.unlock();
    if (l.size() != 0) wake_workers();  // a worker may have parked on this lane
    return n;
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

  bus_options options_;
  std::vector<std::unique_ptr<lane>> lanes_;
  std::atomic<registry*> regs_[SLUICE_MAX_EVENT_TYPES] = {};
  std::atomic<run_state> state_{run_state::running};
  std::atomic<int> live_producers_{0};
  std::atomic<bool> started_{false};
  std::mutex config_mutex_;
  std::shared_ptr<record_hook> hook_owner_;
  std::vector<std::shared_ptr<record_hook>> store_hooks_;  // guarded by config_mutex_
  std::atomic<record_hook*> hook_{nullptr};
  std::atomic<std::uint32_t> next_producer_id_{0};
  alignas(SLUICE_CACHE_LINE) std::atomic<std::uint32_t> sleepers_{0};
  std::mutex park_mutex_;
  std::condition_variable park_cv_;
};

}  // namespace sluice::detail
