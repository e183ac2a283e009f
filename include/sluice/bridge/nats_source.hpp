// sluice — a bridge to NATS JetStream: the inbound side.
//
// `nats_source` reads a JetStream stream through a durable pull consumer and
// publishes each message into a bus as the typed event it was made from (the
// outbound side, nats_sink.hpp, or anything that sets the same headers):
//
//   sluice::nats_failures failed;                  // before the bus
//   sluice::bus_options bo;  bo.on_failure = failed.observer();
//   sluice::bus bus(bo);
//   auto sub = bus.subscribe<order_paid>(&ship);
//   bus.run(2);
//   sluice::nats_source_options o;
//   o.url = "nats://127.0.0.1:4222"; o.stream = "ORDERS"; o.durable = "shipping";
//   sluice::storage_error err;
//   auto in = sluice::nats_source::open(bus, shared_types, o, err, failed);
//
// Guarantees, in plain words:
//  - at least once: a message is acknowledged to the server only after the
//    event made from it is settled in the bus (its handlers returned, or a
//    stage dropped it); a crash before that, or a lost acknowledgement, has
//    the server deliver it again, so an event may arrive twice (the
//    `dedupe_window` removes repeats the process has already seen);
//  - a handler failure (reported to the bus's failure observer, see
//    nats_failures) asks the server to deliver the message again after
//    `nak_delay`; after `max_deliver` deliveries it is terminated, counted in
//    gave_up() and logged;
//  - a message without the headers, of a type no codec knows, or whose payload
//    does not decode is terminated (never delivered again), counted and
//    logged, and the flow goes on;
//  - order: messages are published in the stream's order through one producer,
//    so events with one key keep their order (across types); a message
//    delivered again comes after the ones that followed it;
//  - backpressure: when the bus is full the source stops fetching (and tells
//    the server it is still working on what it holds) until there is room;
//  - a new source with the same durable name resumes after the last message
//    acknowledged.
// Events are published with metadata::bridged set: recorders (and so outbound
// bridges) do not store them, and nothing loops back.
//
// How "settled" is known: after each batch the source publishes a small
// marker event (detail::nats_settle_mark) on each lane the batch used; lanes
// deliver in order, so when the markers have been delivered, so has the
// batch. The bus must be drained (workers, or a thread that polls); the
// markers appear in the bus's counters under their own type.
#pragma once

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
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
#include "../storage/codec.hpp"
#include "../storage/error.hpp"
#include "../storage/format.hpp"
#include "../subscription.hpp"
#include "nats_client.hpp"  // first: says what is missing without libnats

namespace sluice {
inline namespace SLUICE_ABI {

struct nats_source_options {
  std::string url = "nats://127.0.0.1:4222";
  // The stream to read (it must exist; the outbound side can make it).
  std::string stream;
  // The durable consumer's name: the server keeps its position, so a source
  // opened again with this name resumes where the last one stopped.
  std::string durable;
  // Only messages on these subjects (wildcards allowed: "sluice.*.3" is
  // partition 3 of every type); empty: every message of the stream. Fixed
  // when the consumer is made.
  std::string filter_subject;
  // Messages asked for at once (at most 65536).
  int batch = 256;
  // How long one fetch waits for messages (also how soon close() is noticed).
  std::chrono::milliseconds fetch_wait{100};
  // The consumer's ack wait: a message not acknowledged within it is
  // delivered again (the source says "still working" while it waits for room
  // or for the bus, so only a stalled or dead process lets it run out).
  std::chrono::milliseconds ack_wait{std::chrono::seconds(30)};
  // How long the server waits before delivering again a message whose
  // handler failed.
  std::chrono::milliseconds nak_delay{std::chrono::seconds(1)};
  // A message whose event fails on its max_deliver-th delivery or later
  // (deliveries counted by the server, hand-backs included) is terminated
  // and counted in gave_up(); 0: failed messages are always handed back.
  int max_deliver = 5;
  // Message ids (Nats-Msg-Id) remembered after their acknowledgement; a
  // message whose id is remembered is acknowledged again, not published. 0: off.
  std::size_t dedupe_window = 0;
  // Called on the source's thread with one line per bad message or error
  // (must not throw). Empty: the line goes to stderr.
  std::function<void(const std::string&)> on_error;

  [[nodiscard]] const char* validate() const noexcept {
    if (url.empty()) return "sluice: nats_source_options::url is empty";
    if (stream.empty() || stream.find_first_of(" \t\r\n.*>/\\") != std::string::npos)
      return "sluice: nats_source_options::stream must be a stream name (no spaces, dots, "
             "slashes or wildcards)";
    if (durable.empty() || durable.find_first_of(" \t\r\n.*>/\\") != std::string::npos)
      return "sluice: nats_source_options::durable must be a name without spaces, dots, slashes "
             "or wildcards";
    if (filter_subject.find_first_of(" \t\r\n") != std::string::npos ||
        (!filter_subject.empty() &&
         (filter_subject.front() == '.' || filter_subject.back() == '.' ||
          filter_subject.find("..") != std::string::npos)))
      return "sluice: nats_source_options::filter_subject must be a subject (no spaces or empty "
             "tokens)";
    if (batch < 1 || batch > 65536)
      return "sluice: nats_source_options::batch must be between 1 and 65536";
    if (fetch_wait.count() < 1 || ack_wait.count() < 1 || nak_delay.count() < 0)
      return "sluice: nats_source_options::fetch_wait and ack_wait must be positive, nak_delay "
             "not negative";
    if (ack_wait < std::chrono::milliseconds(100))
      return "sluice: nats_source_options::ack_wait must be at least 100 ms";
    if (max_deliver < 0) return "sluice: nats_source_options::max_deliver must not be negative";
    return nullptr;
  }
};

// Counters of a source (a snapshot).
struct nats_source_counts {
  std::uint64_t received = 0;      // messages fetched (deliveries again included)
  std::uint64_t published = 0;     // events published into the bus
  std::uint64_t acknowledged = 0;  // messages acknowledged (their events settled)
  std::uint64_t failed = 0;        // events a handler or stage failed
  std::uint64_t redelivery = 0;    // messages handed back for delivery again (nak)
  std::uint64_t gave_up = 0;       // failed on their last delivery: terminated
  std::uint64_t malformed = 0;     // headers missing or not numbers: terminated
  std::uint64_t unknown_type = 0;  // no codec under the type name: terminated
  std::uint64_t undecodable = 0;   // the codec refused the payload: terminated
  std::uint64_t duplicates = 0;    // ids in the dedupe window: acknowledged, not published
  [[nodiscard]] std::uint64_t bad() const noexcept {
    return malformed + unknown_type + undecodable;
  }
};

namespace detail {

struct nats_source_state;

// Published by a source on each lane its batch used (see the top of this
// file). Its handler only counts it down.
struct nats_settle_mark {
  nats_source_state* to;
  std::uint64_t batch;
};

struct nats_source_state {
  std::mutex mutex;
  std::condition_variable settled;
  std::uint64_t batch = 0;     // the batch whose marks are awaited
  std::size_t marks_left = 0;  // of that batch
};

// Failures of the sources' events, as the bus's failure observer reports
// them.
struct nats_failure_state {
  static constexpr std::size_t capacity = 4096;
  std::mutex mutex;
  std::vector<std::uint32_t> sources;                           // their producers' ids
  std::vector<std::pair<std::uint32_t, std::uint64_t>> failed;  // producer, sequence
  // Sources whose failures found no room (more than `capacity` at once):
  // every event of their batch counts as failed.
  std::vector<std::uint32_t> overflowed;

  nats_failure_state() { failed.reserve(capacity); }
  void note(const failure_info& i) noexcept {
    if (i.meta == nullptr || !i.meta->bridged) return;
    std::lock_guard<std::mutex> lock(mutex);
    if (std::find(sources.begin(), sources.end(), i.meta->producer) == sources.end()) return;
    if (failed.size() < capacity) {
      failed.emplace_back(i.meta->producer, i.meta->sequence);  // within the reserve
    } else if (std::find(overflowed.begin(), overflowed.end(), i.meta->producer) ==
               overflowed.end()) {
      overflowed.push_back(i.meta->producer);  // within the reserve (one per source)
    }
  }
};

}  // namespace detail

// Tells sources which of their events failed in a handler or stage. Make it
// before the bus and give its observer to bus_options::on_failure (or call
// note() from an observer of your own); give it to nats_source::open. One
// object may serve several sources of one bus (not several buses: producer
// ids are per bus). Without it a failed event's
// message is acknowledged all the same (the bus counts the failure).
class nats_failures {
 public:
  nats_failures() : s_(std::make_shared<detail::nats_failure_state>()) {}

  [[nodiscard]] std::function<void(const failure_info&)> observer() const {
    return [s = s_](const failure_info& i) { s->note(i); };
  }
  void note(const failure_info& i) const noexcept { s_->note(i); }

 private:
  friend class nats_source;
  std::shared_ptr<detail::nats_failure_state> s_;
};

class nats_source {
 public:
  // Starts the source's thread, which connects in the background (the server
  // may come later). nullptr and `err` for invalid options, an invalid bus,
  // no codecs, or a client that cannot be set up. The bus must outlive the
  // source.
  static std::unique_ptr<nats_source> open(bus& b, std::shared_ptr<const codecs> types,
                                           nats_source_options o, storage_error& err,
                                           nats_failures failures = nats_failures()) {
    err = {};
    const char* why = o.validate();
    if (why == nullptr && !b.valid()) why = "sluice: nats_source: the bus is not valid";
    if (why == nullptr && types == nullptr) why = "sluice: nats_source: no codecs given";
    if (why != nullptr) {
      err = storage_error::make(storage_errc::bad_option, why);
      return nullptr;
    }
    std::unique_ptr<nats_source> s(
        new nats_source(b, std::move(types), std::move(o), std::move(failures)));
    if (storage_error e = s->start()) {
      err = std::move(e);
      return nullptr;
    }
    return s;
  }

  nats_source(const nats_source&) = delete;
  nats_source& operator=(const nats_source&) = delete;
  ~nats_source() { close(); }

  // Stops fetching. Messages held and not yet settled are handed back to the
  // server for delivery at once (to this durable's next reader). Idempotent;
  // called by one thread at a time (the owner's), not from on_error (there
  // it only asks the source to stop).
  void close() {
    stop_.store(true, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lock(state_->mutex);
      state_->settled.notify_all();
    }
    if (thread_.joinable() && thread_.get_id() == std::this_thread::get_id()) return;
    if (thread_.joinable()) thread_.join();
    marks_.reset();
    if (producer_) {  // what is noted of this source's events no longer matters
      detail::nats_failure_state& fs = *failures_.s_;
      std::lock_guard<std::mutex> lock(fs.mutex);
      const std::uint32_t me = producer_.id();
      fs.sources.erase(std::remove(fs.sources.begin(), fs.sources.end(), me), fs.sources.end());
      fs.failed.erase(std::remove_if(fs.failed.begin(), fs.failed.end(),
                                     [me](const auto& f) { return f.first == me; }),
                      fs.failed.end());
    }
    if (sub_ != nullptr) natsSubscription_Destroy(sub_);  // the durable stays
    sub_ = nullptr;
    if (js_ != nullptr) jsCtx_Destroy(js_);
    js_ = nullptr;
    if (nc_ != nullptr) natsConnection_Destroy(nc_);
    nc_ = nullptr;
  }

  [[nodiscard]] nats_source_counts counts() const noexcept {
    nats_source_counts c;
    c.received = received_.load(std::memory_order_relaxed);
    c.published = published_.load(std::memory_order_relaxed);
    c.acknowledged = acknowledged_.load(std::memory_order_relaxed);
    c.failed = failed_.load(std::memory_order_relaxed);
    c.redelivery = redelivery_.load(std::memory_order_relaxed);
    c.gave_up = gave_up_.load(std::memory_order_relaxed);
    c.malformed = malformed_.load(std::memory_order_relaxed);
    c.unknown_type = unknown_type_.load(std::memory_order_relaxed);
    c.undecodable = undecodable_.load(std::memory_order_relaxed);
    c.duplicates = duplicates_.load(std::memory_order_relaxed);
    return c;
  }
  [[nodiscard]] const nats_source_options& options() const noexcept { return opts_; }
  // The producer id its events carry (metadata::producer) in the bus.
  [[nodiscard]] std::uint32_t producer_id() const noexcept { return producer_.id(); }

 private:
  enum class fate : std::uint8_t { open, published, done };
  struct held {
    natsMsg* msg = nullptr;
    fate state = fate::open;
    std::uint64_t sequence = 0;  // in the bus, once published
  };

  nats_source(bus& b, std::shared_ptr<const codecs> types, nats_source_options o,
              nats_failures failures)
      : bus_(&b),
        types_(std::move(types)),
        opts_(std::move(o)),
        failures_(std::move(failures)),
        state_(std::make_unique<detail::nats_source_state>()) {
    producer_options po;
    po.bridged = true;
    po.override_policy = true;
    po.policy = full_policy::block;  // never drop: a full lane stops the fetching
    producer_ = b.make_producer(po);
    {
      detail::nats_failure_state& fs = *failures_.s_;
      std::lock_guard<std::mutex> lock(fs.mutex);
      fs.sources.push_back(producer_.id());
      fs.overflowed.reserve(fs.sources.size());
    }
    // One key per lane, for the marks.
    const std::size_t lanes = b.lane_count();
    lane_keys_.assign(lanes, 0);
    std::vector<bool> found(lanes, false);
    std::size_t left = lanes;
    for (key_type k = 0; left != 0 && k < (key_type{1} << 24); ++k) {
      const std::size_t l = b.lane_of(k);
      if (!found[l]) {
        found[l] = true;
        lane_keys_[l] = k;
        --left;
      }
    }
    for (std::size_t l = 0; l < lanes; ++l)
      if (found[l]) mark_lanes_.push_back(l);
    used_.assign(lanes, false);
    items_.reserve(static_cast<std::size_t>(opts_.batch));
    detail::nats_source_state* st = state_.get();
    marks_ = b.subscribe<detail::nats_settle_mark>([st](const detail::nats_settle_mark& m) {
      if (m.to != st) return;  // another source's
      std::lock_guard<std::mutex> lock(st->mutex);
      if (m.batch == st->batch && st->marks_left != 0 && --st->marks_left == 0)
        st->settled.notify_all();
    });
  }

  storage_error start() {
    natsStatus s = detail::nats_connect(nc_, opts_.url, std::chrono::milliseconds(2000));
    jsOptions jo;
    if (s == NATS_OK) s = jsOptions_Init(&jo);
    if (s == NATS_OK) {
      jo.Wait = 2000;
      s = natsConnection_JetStream(&js_, nc_, &jo);
    }
    if (s != NATS_OK) {
      storage_error e = storage_error::make(
          storage_errc::io,
          std::string("sluice: nats source: cannot set up the client: ") + natsStatus_GetText(s));
      close();
      return e;
    }
    if (!marks_ || mark_lanes_.size() != bus_->lane_count()) {
      close();
      return storage_error::make(storage_errc::io,
                                 "sluice: nats source: cannot mark every lane of the bus");
    }
    thread_ = std::thread([this] { run(); });
    return {};
  }

  void log(const std::string& line) {
    if (opts_.on_error) {
      opts_.on_error(line);
    } else {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
  }
  std::string where(natsMsg* m) const {
    std::string w = "sluice: nats source " + opts_.durable + ": message";
    jsMsgMetaData* md = nullptr;
    if (natsMsg_GetMetaData(&md, m) == NATS_OK) {
      w += " " + std::to_string(md->Sequence.Stream);
      jsMsgMetaData_Destroy(md);
    }
    const char* subject = natsMsg_GetSubject(m);
    w += std::string(" on '") + (subject != nullptr ? subject : "") + "'";
    return w;
  }

  // Sleeps up to `d` unless close() is called.
  void pause(std::chrono::milliseconds d) {
    std::unique_lock<std::mutex> lock(state_->mutex);
    state_->settled.wait_for(lock, d, [this] { return stop_.load(std::memory_order_relaxed); });
  }

  // The durable consumer, made if the server has none of that name, and the
  // pull subscription bound to it.
  bool subscribed() {
    if (sub_ != nullptr) return true;
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = opts_.durable.c_str();
    cc.AckPolicy = js_AckExplicit;
    cc.DeliverPolicy = js_DeliverAll;
    cc.AckWait = std::chrono::duration_cast<std::chrono::nanoseconds>(opts_.ack_wait).count();
    // No limit on the server: it would count hand-backs (close, a stopped
    // bus) and ack_wait expiries, and drop a message silently at the limit.
    // The source ends failed messages itself at max_deliver (settle()).
    cc.MaxDeliver = -1;
    cc.MaxAckPending = std::max<std::int64_t>(1000, 2 * std::int64_t{opts_.batch});
    if (!opts_.filter_subject.empty()) cc.FilterSubject = opts_.filter_subject.c_str();
    jsConsumerInfo* ci = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_AddConsumer(&ci, js_, opts_.stream.c_str(), &cc, nullptr, &jerr);
    if (ci != nullptr) jsConsumerInfo_Destroy(ci);
    if (s != NATS_OK && detail::nats_passing(s)) return false;  // the server is away
    if (s != NATS_OK && jerr == JSStreamNotFoundErr) {
      if (!said_no_stream_)
        log("sluice: nats source " + opts_.durable + ": the stream " + opts_.stream +
            " does not exist (yet): waiting for it");
      said_no_stream_ = true;
      return false;
    }
    if (s != NATS_OK && !said_exists_) {
      // Made earlier with another configuration (or refused): read it as it is.
      said_exists_ = true;
      log("sluice: nats source " + opts_.durable + ": the consumer could not be made as asked (" +
          natsStatus_GetText(s) + ", " + std::to_string(static_cast<int>(jerr)) +
          "); reading it as the server has it");
    }
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = opts_.stream.c_str();
    so.Consumer = opts_.durable.c_str();
    so.ManualAck = true;
    s = js_PullSubscribe(&sub_, js_,
                         opts_.filter_subject.empty() ? nullptr : opts_.filter_subject.c_str(),
                         opts_.durable.c_str(), nullptr, &so, &jerr);
    if (s != NATS_OK) {
      sub_ = nullptr;
      if (!detail::nats_passing(s) && !said_bind_) {
        said_bind_ = true;
        log("sluice: nats source " + opts_.durable +
            ": cannot read the consumer: " + natsStatus_GetText(s) + " (trying again)");
      }
      return false;
    }
    said_bind_ = false;
    return true;
  }

  void run() {
    while (!stop_.load(std::memory_order_relaxed)) {
      if (refused_) {  // the bus stopped: fetch nothing more (it would only be handed back)
        pause(std::chrono::milliseconds(100));
        continue;
      }
      if (!subscribed()) {
        pause(std::chrono::milliseconds(100));
        continue;
      }
      natsMsgList list{};
      jsErrCode jerr = static_cast<jsErrCode>(0);
      // libnats before 3.8.3 (Debian 12 has 3.4.1) writes past the array it
      // makes for a fetch when messages of an earlier pull arrived after that
      // fetch returned (a slow or reconnecting server): take those one at a
      // time. (A message arriving between the check and the fetch is the
      // window this leaves.)
      int waiting = 0, bytes = 0;
      const int batch =
          natsSubscription_GetPending(sub_, &waiting, &bytes) == NATS_OK && waiting > 0
              ? 1
              : opts_.batch;
      const natsStatus s =
          natsSubscription_Fetch(&list, sub_, batch, opts_.fetch_wait.count(), &jerr);
      if (s == NATS_OK && list.Count > batch) list.Count = batch;  // never read past it
      if (s == NATS_OK && list.Count > 0) {
        handle_guarded(list);
      } else if (s != NATS_OK && s != NATS_TIMEOUT) {
        if (!detail::nats_passing(s)) {
          // The consumer may be gone (deleted on the server): bind again.
          natsSubscription_Destroy(sub_);
          sub_ = nullptr;
        }
        pause(std::chrono::milliseconds(100));
      }
      natsMsgList_Destroy(&list);
    }
  }

  // Tells the server that every message held is still being worked on.
  void keep_alive() {
    for (held& h : items_)
      if (h.state != fate::done) natsMsg_InProgress(h.msg, nullptr);
    last_keep_alive_ = std::chrono::steady_clock::now();
  }
  void keep_alive_if_due() {
    if (std::chrono::steady_clock::now() - last_keep_alive_ >= opts_.ack_wait / 3) keep_alive();
  }

  // Hands a held message back for delivery again after `delay`.
  void hand_back(held& h, std::chrono::milliseconds delay) {
    natsMsg_NakWithDelay(h.msg, delay.count(), nullptr);
    redelivery_.fetch_add(1, std::memory_order_relaxed);
    h.state = fate::done;
  }
  void terminate(held& h, std::atomic<std::uint64_t>& counter, const std::string& why) {
    log(where(h.msg) + ": " + why + "; terminated (not delivered again)");
    natsMsg_Term(h.msg, nullptr);
    counter.fetch_add(1, std::memory_order_relaxed);
    h.state = fate::done;
  }

  static bool header(natsMsg* m, const char* key, std::string_view& out) noexcept {
    const char* v = nullptr;
    if (natsMsgHeader_Get(m, key, &v) != NATS_OK || v == nullptr) return false;
    out = v;
    return true;
  }
  template <class Int>
  static bool number(std::string_view s, Int& out) noexcept {
    if (s.empty()) return false;
    const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
    return r.ec == std::errc() && r.ptr == s.data() + s.size();
  }

  // Reads a message into `e` (views into the message); why not, or nullptr.
  static const char* read(natsMsg* m, stored_event& e) noexcept {
    std::string_view type, v;
    if (!header(m, "Sluice-Type", type) || type.empty()) return "no Sluice-Type header";
    e.type = type;
    if (!header(m, "Sluice-Version", v) || !number(v, e.version))
      return "no Sluice-Version header, or not a number";
    e.has_key = header(m, "Sluice-Key", v);
    if (e.has_key && !number(v, e.key)) return "the Sluice-Key header is not a number";
    e.time_ns = 0;
    if (header(m, "Sluice-Time", v) && !number(v, e.time_ns))
      return "the Sluice-Time header is not a number";
    e.producer = 0;
    if (header(m, "Sluice-Producer", v) && !number(v, e.producer))
      return "the Sluice-Producer header is not a number";
    e.replayed = false;
    e.payload.data = reinterpret_cast<const unsigned char*>(natsMsg_GetData(m));
    e.payload.size = static_cast<std::size_t>(std::max(0, natsMsg_GetDataLength(m)));
    return nullptr;
  }

  bool seen(natsMsg* m, std::string& id) const {
    if (opts_.dedupe_window == 0) return false;
    std::string_view v;
    if (!header(m, "Nats-Msg-Id", v)) return false;
    id.assign(v.data(), v.size());
    return seen_.count(id) != 0;
  }
  void remember(natsMsg* m) {
    if (opts_.dedupe_window == 0) return;
    std::string_view v;
    if (!header(m, "Nats-Msg-Id", v)) return;
    std::string id(v);
    if (!seen_.insert(id).second) return;
    order_.push_back(std::move(id));
    if (order_.size() > opts_.dedupe_window) {
      seen_.erase(order_.front());
      order_.pop_front();
    }
  }

  // handle(), with what an exception leaves (a throwing key extractor or
  // event copy, no memory, a throwing on_error) handed back, not lost, and
  // the thread going on.
  void handle_guarded(natsMsgList& list) {
#if SLUICE_HAS_EXCEPTIONS
    try {
      handle(list);
    } catch (...) {
      SLUICE_PASS_FORCED_UNWIND();
      for (held& h : items_)
        if (h.state != fate::done) hand_back(h, opts_.nak_delay);
      failed_.fetch_add(1, std::memory_order_relaxed);
      try {
        log("sluice: nats source " + opts_.durable +
            ": handling a batch threw; its messages are handed back");
      } catch (...) {  // a throwing on_error: nothing more to say
        SLUICE_PASS_FORCED_UNWIND();
      }
    }
#else
    handle(list);
#endif
  }

  // Decodes and publishes one event without waiting; false if it did not
  // decode, or (`threw`) if the publish threw (a key extractor, the event's
  // copy, no memory).
  bool publish_one(const codec_entry& c, const stored_event& e, publish_result& r,
                   bool& would_block, decode_error& de, bool& threw) {
#if SLUICE_HAS_EXCEPTIONS
    try {
      return c.publish(c.codec.get(), e, producer_, r, would_block, de);
    } catch (...) {
      SLUICE_PASS_FORCED_UNWIND();
      threw = true;
      return false;
    }
#else
    threw = false;
    return c.publish(c.codec.get(), e, producer_, r, would_block, de);
#endif
  }

  // One fetched batch: publish, wait until settled, acknowledge.
  void handle(natsMsgList& list) {
    items_.clear();
    std::fill(used_.begin(), used_.end(), false);
    bool every_lane = false, published_any = false, stopping = false;
    for (int i = 0; i < list.Count; ++i) {
      if (list.Msgs[i] == nullptr) continue;
      items_.push_back(held{list.Msgs[i]});
      received_.fetch_add(1, std::memory_order_relaxed);
    }
    last_keep_alive_ = std::chrono::steady_clock::now();
    std::string id;
    for (held& h : items_) {
      if (stopping || stop_.load(std::memory_order_relaxed)) {
        stopping = true;
        hand_back(h, std::chrono::milliseconds(0));
        continue;
      }
      stored_event e;
      if (const char* why = read(h.msg, e)) {
        terminate(h, malformed_, why);
        continue;
      }
      const codec_entry* c = types_->find(e.type);
      if (c == nullptr) {
        terminate(h, unknown_type_,
                  "no codec is registered under the type '" + std::string(e.type) + "'");
        continue;
      }
      if (seen(h.msg, id)) {
        natsMsg_Ack(h.msg, nullptr);
        duplicates_.fetch_add(1, std::memory_order_relaxed);
        h.state = fate::done;
        continue;
      }
      for (;;) {
        publish_result r = publish_result::ok;
        bool would_block = false;
        decode_error de;
        bool threw = false;
        if (!publish_one(*c, e, r, would_block, de, threw)) {
          if (threw) {  // this message only: handed back, the batch goes on
            hand_back(h, opts_.nak_delay);
            failed_.fetch_add(1, std::memory_order_relaxed);
            log(where(h.msg) + ": publishing its event threw; handed back");
          } else {
            terminate(h, undecodable_, std::string("the payload does not decode: ") + de.message);
          }
          break;
        }
        if (r == publish_result::ok) {
          h.state = fate::published;
          h.sequence = producer_.last_sequence();
          published_.fetch_add(1, std::memory_order_relaxed);
          published_any = true;
          if (e.has_key)
            used_[bus_->lane_of(e.key)] = true;
          else
            every_lane = true;  // its home lane, or a key extractor's
          break;
        }
        if (would_block && !stop_.load(std::memory_order_relaxed)) {
          keep_alive_if_due();  // the bus is full: fetch nothing more, hold on
          std::this_thread::sleep_for(std::chrono::microseconds(200));
          continue;
        }
        stopping = true;  // the bus refuses (stopping), or close() was called
        if (r == publish_result::stopped && !stop_.load(std::memory_order_relaxed) && !refused_) {
          refused_ = true;
          log("sluice: nats source " + opts_.durable + ": the bus refuses events (" + to_string(r) +
              "): fetching stops; messages held are handed back");
        }
        hand_back(h, std::chrono::milliseconds(0));
        break;
      }
    }
    if (published_any) settle(every_lane);
  }

  // Publishes the marks, waits for them, then acknowledges or hands back each
  // published message.
  void settle(bool every_lane) {
    std::uint64_t batch = 0;
    {
      std::lock_guard<std::mutex> lock(state_->mutex);
      // Numbers unique in the process: a mark left in the bus by a closed
      // source must not match a batch of a source made in its place.
      static std::atomic<std::uint64_t> next_batch{0};
      batch = next_batch.fetch_add(1, std::memory_order_relaxed) + 1;
      state_->batch = batch;
      state_->marks_left = 0;
    }
    bool marked = true;
    for (std::size_t l : mark_lanes_) {
      if (!every_lane && !used_[l]) continue;
      {
        std::lock_guard<std::mutex> lock(state_->mutex);
        ++state_->marks_left;  // before it can be delivered
      }
      for (;;) {
        bool would_block = false;
        const publish_result r =
            detail::producer_access::probe(producer_, detail::nats_settle_mark{state_.get(), batch},
                                           true, lane_keys_[l], would_block);
        if (r == publish_result::ok) break;
        if (would_block && !stop_.load(std::memory_order_relaxed)) {
          keep_alive_if_due();
          std::this_thread::sleep_for(std::chrono::microseconds(200));
          continue;
        }
        marked = false;
        break;
      }
      if (!marked) break;
    }
    bool settled = false;
    if (marked) {
      std::unique_lock<std::mutex> lock(state_->mutex);
      for (;;) {
        if (state_->marks_left == 0) {
          settled = true;
          break;
        }
        if (stop_.load(std::memory_order_relaxed) || bus_->stopped()) break;
        lock.unlock();
        keep_alive_if_due();
        lock.lock();
        state_->settled.wait_for(lock, std::chrono::milliseconds(20));
      }
      state_->marks_left = 0;
    }
    if (!settled) {
      // Not known to be settled (closing, or the bus stopped): delivered
      // again, perhaps twice.
      for (held& h : items_)
        if (h.state == fate::published) hand_back(h, std::chrono::milliseconds(0));
      return;
    }
    std::vector<std::uint64_t>& failed = failed_seqs_;
    failed.clear();
    bool all_failed = false;
    {
      detail::nats_failure_state& fs = *failures_.s_;
      std::lock_guard<std::mutex> lock(fs.mutex);
      const std::uint32_t me = producer_.id();
      auto keep = std::remove_if(fs.failed.begin(), fs.failed.end(), [&](const auto& f) {
        if (f.first != me) return false;
        failed.push_back(f.second);
        return true;
      });
      fs.failed.erase(keep, fs.failed.end());
      const auto o = std::find(fs.overflowed.begin(), fs.overflowed.end(), me);
      if (o != fs.overflowed.end()) {
        all_failed = true;
        fs.overflowed.erase(o);
      }
    }
    std::sort(failed.begin(), failed.end());
    for (held& h : items_) {
      if (h.state != fate::published) continue;
      const bool bad = all_failed || std::binary_search(failed.begin(), failed.end(), h.sequence);
      if (!bad) {
        natsMsg_Ack(h.msg, nullptr);
        acknowledged_.fetch_add(1, std::memory_order_relaxed);
        remember(h.msg);
        h.state = fate::done;
        continue;
      }
      failed_.fetch_add(1, std::memory_order_relaxed);
      jsMsgMetaData* md = nullptr;
      std::uint64_t delivered = 0;
      if (natsMsg_GetMetaData(&md, h.msg) == NATS_OK) {
        delivered = md->NumDelivered;
        jsMsgMetaData_Destroy(md);
      }
      if (opts_.max_deliver != 0 && delivered >= static_cast<std::uint64_t>(opts_.max_deliver)) {
        terminate(h, gave_up_,
                  "a handler failed on its delivery " + std::to_string(delivered) +
                      " of max_deliver " + std::to_string(opts_.max_deliver));
      } else {
        hand_back(h, opts_.nak_delay);
      }
    }
  }

  bus* bus_;
  std::shared_ptr<const codecs> types_;
  nats_source_options opts_;
  nats_failures failures_;
  std::unique_ptr<detail::nats_source_state> state_;
  producer producer_;
  subscription marks_;
  std::vector<key_type> lane_keys_;  // a key of each lane
  std::vector<std::size_t> mark_lanes_;
  std::vector<bool> used_;   // lanes the batch's keyed events went to
  std::vector<held> items_;  // the batch
  std::vector<std::uint64_t> failed_seqs_;
  std::unordered_set<std::string> seen_;  // dedupe window
  std::deque<std::string> order_;
  std::chrono::steady_clock::time_point last_keep_alive_{};
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
  natsSubscription* sub_ = nullptr;
  bool said_exists_ = false, said_bind_ = false, said_no_stream_ = false;
  bool refused_ = false;  // the bus refused an event: it is stopping or stopped
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::atomic<std::uint64_t> received_{0}, published_{0}, acknowledged_{0}, failed_{0},
      redelivery_{0}, gave_up_{0}, malformed_{0}, unknown_type_{0}, undecodable_{0}, duplicates_{0};
};

}  // namespace SLUICE_ABI
}  // namespace sluice
