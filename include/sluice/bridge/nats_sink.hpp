// sluice — a bridge to NATS JetStream: the outbound side (nats.hpp includes
// both sides; nats_source.hpp is the inbound one).
//
// `nats_sink` is a storage sink (storage/sink.hpp) that publishes each record
// it is given to a JetStream stream instead of writing it to a file. Put it
// under a recorder and attach the recorder to a bus: the recorder's bounded
// buffer, writer thread, full behaviour (block or drop), codecs and counters
// are the bridge's, and the lanes never wait for the network unless the
// buffer is full and the recorder was told to block.
//
//   sluice::codecs types;  types.add<order_paid>("order_paid");
//   sluice::nats_options o; o.url = "nats://127.0.0.1:4222"; o.stream = "ORDERS";
//   sluice::storage_error err;
//   auto out = sluice::nats_sink::open(o, err);           // nullptr and err on bad options
//   auto rec = std::make_shared<sluice::recorder>(std::move(out), shared_types);
//   bus.record(rec);                                       // before the bus starts
//   ...
//   rec->sync();   // returns when the server acknowledged everything recorded so far
//
// Each record becomes one message:
//  - subject `<subject_prefix>.<type name>`, or `<subject_prefix>.<type
//    name>.<partition>` with `partitions` > 0, the partition being the key's
//    hash modulo `partitions` (the producer's id for events without a key),
//    so that a consumer per partition keeps per-key order;
//  - payload: the codec's bytes; headers: Sluice-Type, Sluice-Version,
//    Sluice-Producer, Sluice-Offset, Sluice-Time (ns since the Unix epoch),
//    Sluice-Key (events with a key), Sluice-Replayed (replayed events);
//  - Nats-Msg-Id `<origin>.<run>-<offset>`: `origin` is a label of yours,
//    `run` 16 random hex digits drawn when the sink opens, and the offset the
//    record's number in this sink; so a message sent again after a lost
//    acknowledgement is removed as a duplicate by the stream (within its
//    duplicate window), and no two sinks, nor two runs of one program, share
//    an id.
// Publishing is asynchronous with at most `max_in_flight` messages awaiting
// the server's acknowledgement; a message not acknowledged within `ack_wait`
// (the server gone, a timeout) is sent again with the same id. The stream
// keeps the sink's order through lost connections, timeouts and server
// crashes: once a message failed for now, no new one goes until every
// message sent before it is answered and the failed ones, sent again in their
// order (on a new connection when the old one is gone), are acknowledged
// (limits: see recover()). sync() returns
// when every message handed over so far is acknowledged, or an error after
// `sync_timeout` (the recorder then counts those records as unsynced: their
// fate is not known). A message the stream refuses for good (too large, no
// stream for the subject) is counted in failed() and makes the next sync()
// fail.
//
// Needs the NATS C client: link the CMake target sluice::nats (it exists when
// pkg-config finds libnats; Debian: libnats-dev). The core library does not
// depend on it.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../detail/numeric.hpp"
#include "../storage/error.hpp"
#include "../storage/format.hpp"
#include "../storage/sink.hpp"
#include "nats_client.hpp"  // first: says what is missing without libnats

namespace sluice {
inline namespace SLUICE_ABI {

struct nats_options {
  std::string url = "nats://127.0.0.1:4222";
  // Subjects are <subject_prefix>.<type name>[.<partition>].
  std::string subject_prefix = "sluice";
  // 0: no partition token. Else the number of partitions (at most 65536).
  std::uint32_t partitions = 0;
  // When not empty: the stream is made on the first connection if the server
  // has no stream of that name, capturing <subject_prefix>.>, stored in files,
  // with `duplicate_window`. When empty, a stream must already capture the
  // subjects.
  std::string stream;
  std::chrono::milliseconds duplicate_window{std::chrono::minutes(2)};
  // The first part of every Nats-Msg-Id (a label: which program sent it).
  std::string origin = "sluice";
  // Messages awaiting acknowledgement at most; publishing waits beyond it.
  int max_in_flight = 4096;
  // How long a message may wait for its acknowledgement before it is sent
  // again (same id).
  std::chrono::milliseconds ack_wait{std::chrono::seconds(2)};
  // How long sync() waits for the acknowledgements before it fails.
  std::chrono::milliseconds sync_timeout{std::chrono::seconds(30)};
  // How long append() keeps trying to hand a message to the client while
  // the server is away before it gives up (the rest of the batch is lost).
  std::chrono::milliseconds handover_timeout{std::chrono::seconds(30)};

  [[nodiscard]] const char* validate() const noexcept {
    if (url.empty()) return "sluice: nats_options::url is empty";
    if (subject_prefix.empty() || subject_prefix.find_first_of(" \t\r\n*>") != std::string::npos ||
        subject_prefix.front() == '.' || subject_prefix.back() == '.' ||
        subject_prefix.find("..") != std::string::npos)
      return "sluice: nats_options::subject_prefix must be a subject without wildcards, spaces or "
             "empty tokens";
    if (partitions > 65536) return "sluice: nats_options::partitions must be at most 65536";
    if (stream.find_first_of(" \t\r\n.*>/\\") != std::string::npos)
      return "sluice: nats_options::stream must not contain spaces, dots, slashes or wildcards";
    if (origin.empty() || origin.find_first_of(" \t") != std::string::npos)
      return "sluice: nats_options::origin must be a label without spaces";
    if (max_in_flight < 1 || max_in_flight > (1 << 20))
      return "sluice: nats_options::max_in_flight must be between 1 and 2^20";
    if (ack_wait.count() < 1 || sync_timeout.count() < 1 || handover_timeout.count() < 1 ||
        duplicate_window.count() < 1)
      return "sluice: nats_options timeouts and the duplicate window must be positive";
    return nullptr;
  }
};

namespace detail {
// What the client's acknowledgement callbacks share with a nats_sink. It is
// not a member of the sink: the client may call back for an acknowledgement
// it took off its list just before the sink closed (see nats_sink::shut).
struct nats_counts {
  std::uint64_t acked = 0, timed_out = 0, resent = 0, refused = 0, duplicates = 0, lost = 0;
};
struct nats_ack_state {
  std::mutex mutex;
  std::condition_variable changed;
  std::size_t capacity = 0;     // max_in_flight
  std::size_t resume_at = 0;    // a full sink publishes again below this
  std::size_t in_flight = 0;    // handed to the client, no answer yet
  std::vector<natsMsg*> retry;  // answered "not now": to be sent again
  // A message failed for now: new ones wait until the older ones are
  // acknowledged (see nats_sink::recover).
  bool fence = false;
  std::uint64_t refused_since_sync = 0;
  natsStatus last_transient = NATS_OK;
  char last_refusal[160] = {};
  bool dead = false;  // the sink is gone: a late callback only frees its message
  std::atomic<std::uint64_t> acked{0}, timed_out{0}, resent{0}, refused{0}, duplicates{0}, lost{0};

  [[nodiscard]] nats_counts snapshot() const noexcept {
    return {acked.load(std::memory_order_relaxed),      timed_out.load(std::memory_order_relaxed),
            resent.load(std::memory_order_relaxed),     refused.load(std::memory_order_relaxed),
            duplicates.load(std::memory_order_relaxed), lost.load(std::memory_order_relaxed)};
  }
};
}  // namespace detail

class nats_sink final : public sink {
 public:
  // Tries to connect once (up to a second; the server may come later: the
  // writer connects when it has something to send): nullptr and `err` only
  // for invalid options or when the client cannot be set up.
  static std::unique_ptr<nats_sink> open(nats_options o, storage_error& err) {
    err = {};
    if (const char* why = o.validate()) {
      err = storage_error::make(storage_errc::bad_option, why);
      return nullptr;
    }
    std::unique_ptr<nats_sink> s(new nats_sink(std::move(o)));
    if (storage_error e = s->start()) {
      err = std::move(e);
      return nullptr;
    }
    return s;
  }

  nats_sink(const nats_sink&) = delete;
  nats_sink& operator=(const nats_sink&) = delete;
  ~nats_sink() override { shut(); }

  storage_error append(record_batch& batch) override {
    if (closed_)
      return storage_error::make(storage_errc::closed, "sluice: the nats sink is closed");
    // Records are numbered by the sink (the message ids), not checksummed:
    // the server keeps its own. The numbers of a batch are used up whatever
    // becomes of it: a message that failed to go may have reached the server
    // all the same, and a later record with its id would be taken for it.
    const std::uint64_t first = next_offset_;
    next_offset_ += batch.size();
    batch.number(first);
    const unsigned char* p = batch.data();
    const unsigned char* end = p + batch.bytes();
    std::size_t handled = 0;
    stored_event e;
    while (p < end) {
      const std::uint32_t body = storage::load_le<std::uint32_t>(p);
      storage::read_body(p + storage::frame_size, body, e);
      p += storage::frame_size + body;
      ++handled;  // handed over below, or refused for good (counted in failed())
      if (!subject_token(e.type)) {
        note_refusal("the event's name is not one subject token (it has '.', '*' or '>')");
        continue;
      }
      natsMsg* m = make_message(e);
      if (m == nullptr) {
        batch.set_stored(handled - 1);
        return storage_error::make(storage_errc::io, "sluice: nats: cannot make a message");
      }
      if (!hand_over(m)) {
        batch.set_stored(handled - 1);
        return storage_error::make(storage_errc::io,
                                   "sluice: nats: the server stayed unreachable for "
                                   "handover_timeout; the rest of the batch is lost");
      }
    }
    batch.set_stored(handled);
    return {};
  }

  // Everything handed over so far is acknowledged by the server, or an error
  // (not acknowledged within sync_timeout, or some message refused for good
  // since the last sync).
  storage_error sync() override {
    if (closed_)
      return storage_error::make(storage_errc::closed, "sluice: the nats sink is closed");
    const auto deadline = std::chrono::steady_clock::now() + opts_.sync_timeout;
    for (;;) {
      recover();
      std::unique_lock<std::mutex> lock(state_->mutex);
      if (state_->in_flight == 0 && state_->retry.empty()) break;
      if (std::chrono::steady_clock::now() >= deadline) {
        const std::size_t left = state_->in_flight + state_->retry.size();
        const char* why = natsStatus_GetText(state_->last_transient);
        lock.unlock();
        return storage_error::make(storage_errc::io,
                                   "sluice: nats: " + std::to_string(left) +
                                       " messages not acknowledged within sync_timeout (last "
                                       "answer: " +
                                       why + ")");
      }
      state_->changed.wait_for(lock, std::chrono::milliseconds(20));
    }
    std::lock_guard<std::mutex> lock(state_->mutex);
    if (state_->refused_since_sync != 0) {
      const std::uint64_t n = state_->refused_since_sync;
      state_->refused_since_sync = 0;
      return storage_error::make(storage_errc::io, "sluice: nats: " + std::to_string(n) +
                                                       " messages refused for good (last: " +
                                                       std::string(state_->last_refusal) + ")");
    }
    return {};
  }
  storage_error flush() override { return {}; }
  storage_error close() override {
    if (closed_) return {};
    storage_error e = sync();
    shut();
    return e;
  }
  // The server's default max_payload (1 MiB) less room for the headers.
  [[nodiscard]] std::size_t max_record() const noexcept override {
    return (std::size_t{1} << 20) - header_room;
  }

  // Counters (any thread).
  [[nodiscard]] std::uint64_t acknowledged() const noexcept { return counts().acked; }
  // Acknowledgements that did not come (timed out, no server, no stream, the
  // connection lost): each such message is sent again.
  [[nodiscard]] std::uint64_t not_acknowledged() const noexcept { return counts().timed_out; }
  [[nodiscard]] std::uint64_t sent_again() const noexcept { return counts().resent; }
  // Messages the stream had already (sent again after a lost acknowledgement).
  [[nodiscard]] std::uint64_t duplicates() const noexcept { return counts().duplicates; }
  // Messages refused for good (the client or the stream said no).
  [[nodiscard]] std::uint64_t failed() const noexcept { return counts().refused; }
  // Connections to the server that were lost (the sink makes a new one).
  [[nodiscard]] std::uint64_t connections_lost() const noexcept { return counts().lost; }
  // What every message id of this sink starts with: "<origin>.<run>-".
  [[nodiscard]] const std::string& id_prefix() const noexcept { return id_prefix_; }
  [[nodiscard]] const nats_options& options() const noexcept { return opts_; }

 private:
  static constexpr std::size_t header_room = 2048;
  enum class sent : std::uint8_t { yes, later, refused, full };

  explicit nats_sink(nats_options o) : opts_(std::move(o)), state_(new detail::nats_ack_state) {
    std::random_device rd;
    const std::uint64_t r = (std::uint64_t{rd()} << 32) ^ rd();
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(r));
    id_prefix_ = opts_.origin + "." + buf + "-";
    // In flight plus waiting to be sent again never exceeds max_in_flight, so
    // the callback's push_back never allocates.
    const auto cap = static_cast<std::size_t>(opts_.max_in_flight);
    state_->capacity = cap;
    state_->resume_at = cap - cap / 8;  // wake the writer once per eighth, not per message
    state_->retry.reserve(cap);
    resend_buf_.reserve(cap);
    resend_order_.reserve(cap);
  }

  [[nodiscard]] detail::nats_counts counts() const noexcept {
    return state_ != nullptr ? state_->snapshot() : final_;
  }

  storage_error start() {
    // The first connection, if the server is there; else the writer makes it
    // when it has something to send.
    const natsStatus s = connect();
    if (s != NATS_OK && !detail::nats_passing(s)) {
      storage_error e = storage_error::make(
          storage_errc::io,
          std::string("sluice: nats: cannot set up the client: ") + natsStatus_GetText(s));
      shut();
      return e;
    }
    return {};
  }

  // A new connection and its JetStream context. The client does not
  // reconnect by itself: what it would publish while reconnecting could be
  // stored before older messages lost with the old connection. The sink
  // makes the next connection, and sends the old messages on it first.
  natsStatus connect() {
    last_connect_ = std::chrono::steady_clock::now();
    stream_checked_ = false;
    natsStatus s = detail::nats_connect(nc_, opts_.url, opts_.ack_wait, /*reconnect=*/false);
    jsOptions jo;
    if (s == NATS_OK) s = jsOptions_Init(&jo);
    if (s == NATS_OK) {
      jo.PublishAsync.MaxPending = opts_.max_in_flight;
      jo.PublishAsync.AckHandler = &on_ack;
      jo.PublishAsync.AckHandlerClosure = state_;
      jo.PublishAsync.StallWait = 50;
      jo.Wait = 2000;
      s = natsConnection_JetStream(&js_, nc_, &jo);
    }
    if (s != NATS_OK) {
      drop_connection(true);
      std::lock_guard<std::mutex> lock(state_->mutex);
      state_->last_transient = s;
    }
    return s;
  }

  // Lets the connection go. What awaits an acknowledgement on it is taken
  // back: kept to be sent again (`keep`), or freed. (A callback the client
  // had already taken off its list still comes, for its own message.)
  void drop_connection(bool keep) noexcept {
    if (js_ != nullptr) {
      natsMsgList pending{};  // left as it is when nothing is pending
      // (The client makes its list on the first asynchronous publish that
      // goes through, and must not be asked for it before.)
      natsStatus got = NATS_NOT_FOUND;
      for (int attempt = 0; js_has_list_ && attempt < 3; ++attempt) {
        got = js_PublishAsyncGetPendingList(&pending, js_);
        if (got == NATS_OK || got == NATS_NOT_FOUND) break;
      }
      if (got != NATS_OK && got != NATS_NOT_FOUND) {
        // No memory to take them back: they go with the context, and are
        // counted as refused for good (never acknowledged, so never synced;
        // the next sync() says so).
        std::lock_guard<std::mutex> lock(state_->mutex);
        const std::size_t n = state_->in_flight;
        state_->in_flight = 0;
        state_->refused.fetch_add(n, std::memory_order_relaxed);
        state_->refused_since_sync += n;
        std::snprintf(state_->last_refusal, sizeof state_->last_refusal, "%s",
                      "messages lost with a connection: no memory to take them back");
        state_->changed.notify_all();
      }
      if (got == NATS_OK) {
        std::lock_guard<std::mutex> lock(state_->mutex);
        const auto n = static_cast<std::size_t>(pending.Count);
        state_->in_flight -= n < state_->in_flight ? n : state_->in_flight;
        // In flight plus waiting never exceeds max_in_flight: the retry list
        // has the room (reserved), so push_back does not allocate.
        for (int i = 0; keep && i < pending.Count; ++i) {
          state_->retry.push_back(pending.Msgs[i]);
          pending.Msgs[i] = nullptr;
        }
        if (keep && n != 0) {
          state_->fence = true;
          state_->timed_out.fetch_add(n, std::memory_order_relaxed);  // no answer will come
        }
        state_->changed.notify_all();
      }
      natsMsgList_Destroy(&pending);  // frees what was not kept
      jsCtx_Destroy(js_);
      js_ = nullptr;
      js_has_list_ = false;
    }
    if (nc_ != nullptr) {
      natsConnection_Destroy(nc_);
      nc_ = nullptr;
    }
    stream_checked_ = false;
  }

  void shut() noexcept {
    closed_ = true;
    drop_connection(false);
    if (state_ == nullptr) return;
    std::unique_lock<std::mutex> lock(state_->mutex);
    for (natsMsg* m : state_->retry) natsMsg_Destroy(m);
    state_->retry.clear();
    final_ = state_->snapshot();
    // A callback the client had already taken off its list may still come:
    // then the state stays (a few hundred bytes, once per sink closed with
    // messages unanswered), marked so that the callback only frees its
    // message.
    state_->dead = true;
    const bool quiet = state_->in_flight == 0;
    lock.unlock();
    if (quiet) delete state_;
    state_ = nullptr;
  }

  // Connected (a new connection at most every 100 ms while the server is
  // away), and the stream there. The stream is looked at once per
  // connection: after a restart the server answers for it only once it has
  // read its store back, and a message sent before would be refused "for
  // now" while the next one is stored.
  bool ready() {
    if (js_ == nullptr) {
      if (std::chrono::steady_clock::now() - last_connect_ < std::chrono::milliseconds(100))
        return false;
      if (connect() != NATS_OK) return false;
    }
    if (!stream_checked_) {
      // A connection that died while nothing was sent on it (a restart while
      // idle): made again, after the messages it held (if any).
      if (!connection_up()) return false;
      stream_checked_ = check_stream();
    }
    return stream_checked_;
  }

  // Whether the connection is there; one that is gone is let go (what was
  // in flight on it is taken back, to be sent again first).
  bool connection_up() {
    if (js_ == nullptr) return false;
    if (natsConnection_Status(nc_) == NATS_CONN_STATUS_CONNECTED) return true;
    state_->lost.fetch_add(1, std::memory_order_relaxed);
    drop_connection(true);
    return false;
  }

  // The stream, if the sink was given its name: there, or made.
  bool check_stream() {
    if (opts_.stream.empty()) return true;
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_GetStreamInfo(&si, js_, opts_.stream.c_str(), nullptr, &jerr);
    if (s == NATS_OK) {
      jsStreamInfo_Destroy(si);
      return true;
    }
    if (s != NATS_NOT_FOUND && jerr != JSStreamNotFoundErr) return false;  // not reachable yet
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    const std::string all = opts_.subject_prefix + ".>";
    const char* subjects[1] = {all.c_str()};
    cfg.Name = opts_.stream.c_str();
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    cfg.Duplicates =
        std::chrono::duration_cast<std::chrono::nanoseconds>(opts_.duplicate_window).count();
    si = nullptr;
    s = js_AddStream(&si, js_, &cfg, nullptr, &jerr);
    if (si != nullptr) jsStreamInfo_Destroy(si);
    return s == NATS_OK || jerr == JSStreamNameExistErr;
  }

  static bool subject_token(std::string_view name) noexcept {
    return name.find_first_of(".*>") == std::string_view::npos;
  }

  // Writer thread only; the strings are members so that their buffers are
  // reused from one message to the next.
  natsMsg* make_message(const stored_event& e) {
    subject_.assign(opts_.subject_prefix);
    subject_ += '.';
    subject_.append(e.type.data(), e.type.size());
    if (opts_.partitions != 0) {
      const std::uint64_t h = detail::mix(e.has_key ? e.key : std::uint64_t{e.producer});
      subject_ += '.';
      append_number(subject_, h % opts_.partitions);
    }
    natsMsg* m = nullptr;
    if (natsMsg_Create(&m, subject_.c_str(), nullptr, reinterpret_cast<const char*>(e.payload.data),
                       static_cast<int>(e.payload.size)) != NATS_OK)
      return nullptr;
    const auto set = [m, this](const char* name, std::uint64_t v) {
      number_.clear();
      append_number(number_, v);
      return natsMsgHeader_Set(m, name, number_.c_str()) == NATS_OK;
    };
    id_.assign(id_prefix_);
    append_number(id_, e.offset);
    type_.assign(e.type.data(), e.type.size());
    bool ok = natsMsgHeader_Set(m, "Nats-Msg-Id", id_.c_str()) == NATS_OK;
    ok = ok && natsMsgHeader_Set(m, "Sluice-Type", type_.c_str()) == NATS_OK;
    ok = ok && set("Sluice-Version", e.version);
    ok = ok && set("Sluice-Producer", e.producer);
    ok = ok && set("Sluice-Offset", e.offset);
    if (e.time_ns < 0) {  // (before 1970: not from a clock, but said as it is)
      ok = ok && natsMsgHeader_Set(m, "Sluice-Time", std::to_string(e.time_ns).c_str()) == NATS_OK;
    } else {
      ok = ok && set("Sluice-Time", static_cast<std::uint64_t>(e.time_ns));
    }
    if (e.has_key) ok = ok && set("Sluice-Key", e.key);
    if (e.replayed) ok = ok && natsMsgHeader_Set(m, "Sluice-Replayed", "1") == NATS_OK;
    if (!ok) {
      natsMsg_Destroy(m);
      return nullptr;
    }
    return m;
  }

  static void append_number(std::string& out, std::uint64_t v) {
    char buf[24];
    char* p = buf + sizeof buf;
    do {
      *--p = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v != 0);
    out.append(p, static_cast<std::size_t>(buf + sizeof buf - p));
  }

  // Hands one message over (the client owns it from then on), or counts it
  // refused for good; true unless the server stayed away for
  // handover_timeout (the message is then dropped).
  bool hand_over(natsMsg* m) {
    const auto deadline = std::chrono::steady_clock::now() + opts_.handover_timeout;
    for (;;) {
      const bool up = ready();
      const sent r = up ? publish(m, false) : sent::later;
      if (r == sent::yes || r == sent::refused) return true;  // refused: counted, the batch goes on
      if (r == sent::later && recover() && up) continue;      // older messages settled just now
      if (std::chrono::steady_clock::now() >= deadline) {
        natsMsg_Destroy(m);
        return false;
      }
      std::unique_lock<std::mutex> lock(state_->mutex);
      if (r == sent::full) {  // until an eighth is free
        state_->changed.wait_for(lock, std::chrono::milliseconds(20), [this] {
          return state_->in_flight + state_->retry.size() < state_->resume_at;
        });
      } else {
        state_->changed.wait_for(lock, std::chrono::milliseconds(20));
      }
    }
  }

  void note_refusal(const char* why) noexcept {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->refused.fetch_add(1, std::memory_order_relaxed);
    ++state_->refused_since_sync;
    std::snprintf(state_->last_refusal, sizeof state_->last_refusal, "%s", why);
    state_->changed.notify_all();
  }

  // One asynchronous publish, if in flight plus waiting to be sent again
  // stays under max_in_flight, and (unless `again`: one of those) no older
  // message waits to be sent again. `later` and `full`: the message is still
  // the caller's.
  sent publish(natsMsg*& m, bool again) {
    {
      std::lock_guard<std::mutex> lock(state_->mutex);
      if (state_->fence && !again) return sent::later;
      if (state_->in_flight + state_->retry.size() >= state_->capacity) return sent::full;
      ++state_->in_flight;
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = opts_.ack_wait.count();
    natsMsg* handed = m;
    const natsStatus s = js_PublishMsgAsync(js_, &handed, &po);
    if (s == NATS_OK) {
      m = nullptr;
      js_has_list_ = true;
      return sent::yes;
    }
    const bool passing = detail::nats_passing(s);
    {
      std::lock_guard<std::mutex> lock(state_->mutex);
      --state_->in_flight;
      state_->last_transient = s;
      if (passing) state_->fence = true;  // (the connection, most likely: see recover)
      state_->changed.notify_all();
    }
    if (passing) return sent::later;
    note_refusal(natsStatus_GetText(s));  // too large, a bad subject, ...
    natsMsg_Destroy(m);
    m = nullptr;
    return sent::refused;
  }

  // Keeps the stream in the sink's order after a message failed for now
  // (the fence is up): new messages wait while
  //  1. messages are in flight: each is answered within ack_wait, or taken
  //     back with its connection when that is gone;
  //  2. then the failed ones are sent again, in their order, on a new
  //     connection if needed, and are in flight in their turn (back to 1).
  // Once nothing is in flight and nothing waits, the fence comes down (true).
  // A connection delivers in order and a server stores what it reads in
  // that order, so a message is not stored after a later one it preceded on
  // it; and every message of an old connection is settled or sent again
  // before anything new goes on the next. Not covered (docs/nats.md): a
  // message refused "for now" while the next is stored (a clustered stream
  // without a leader for a moment, a stream deleted under the sink), and a
  // copy that comes after the stream's duplicate window.
  // At most every 50 ms (a stream that answers "no" at once must not spin
  // the writer).
  // Also called by sync() while messages are in flight: on a connection that
  // went away no answer comes for them, so they are taken back here.
  bool recover() {
    {
      std::lock_guard<std::mutex> lock(state_->mutex);
      if (!state_->fence && state_->in_flight == 0) return true;
    }
    const auto now = std::chrono::steady_clock::now();
    if (now - last_resend_ < std::chrono::milliseconds(50)) return false;
    last_resend_ = now;
    connection_up();
    {
      std::lock_guard<std::mutex> lock(state_->mutex);
      if (state_->in_flight != 0) return false;
      if (state_->retry.empty()) {
        state_->fence = false;
        return true;
      }
    }
    if (!ready()) return false;
    resend_buf_.clear();
    {
      std::lock_guard<std::mutex> lock(state_->mutex);
      resend_buf_.swap(state_->retry);  // both keep max_in_flight of capacity
    }
    resend_order_.clear();
    for (natsMsg* m : resend_buf_) resend_order_.emplace_back(offset_of(m), m);
    std::sort(resend_order_.begin(), resend_order_.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    for (std::size_t i = 0; i < resend_order_.size(); ++i) {
      const sent r = publish(resend_order_[i].second, true);
      if (r == sent::yes) {
        state_->resent.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      if (r == sent::refused) continue;
      // Away again: the rest waits for the next round.
      std::lock_guard<std::mutex> lock(state_->mutex);
      for (std::size_t j = i; j < resend_order_.size(); ++j)
        state_->retry.push_back(resend_order_[j].second);
      break;
    }
    resend_buf_.clear();
    resend_order_.clear();
    return false;  // until what was sent again is acknowledged
  }

  // The record's number in this sink (its Sluice-Offset header).
  static std::uint64_t offset_of(natsMsg* m) noexcept {
    const char* v = nullptr;
    if (natsMsgHeader_Get(m, "Sluice-Offset", &v) != NATS_OK || v == nullptr) return 0;
    return std::strtoull(v, nullptr, 10);
  }

  // On the client's thread, once per message: acknowledged, or not. Must
  // not throw (C frames) and does not allocate.
  static void on_ack(jsCtx*, natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae, void* closure) {
    auto* st = static_cast<detail::nats_ack_state*>(closure);
    std::lock_guard<std::mutex> lock(st->mutex);
    // Waiters wait for room (hand_over: below resume_at) or for nothing in
    // flight (sync): an acknowledgement that gives neither wakes nobody (a
    // wake-up per message would cost a context switch each).
    if (st->in_flight != 0) --st->in_flight;
    const bool room = st->in_flight + st->retry.size() + 1 == st->resume_at;
    if (st->dead) {
      natsMsg_Destroy(msg);
      return;
    }
    if (pa != nullptr) {
      st->acked.fetch_add(1, std::memory_order_relaxed);
      if (pa->Duplicate) st->duplicates.fetch_add(1, std::memory_order_relaxed);
      natsMsg_Destroy(msg);
      if (room || st->in_flight == 0) st->changed.notify_all();
      return;
    } else if (pae != nullptr && pae->ErrCode == 0 && detail::nats_passing(pae->Err)) {
      st->timed_out.fetch_add(1, std::memory_order_relaxed);
      st->last_transient = pae->Err;
      st->retry.push_back(msg);  // within the reserved capacity (see publish)
      st->fence = true;
    } else {
      st->refused.fetch_add(1, std::memory_order_relaxed);
      ++st->refused_since_sync;
      const char* why = pae != nullptr && pae->ErrText != nullptr
                            ? pae->ErrText
                            : natsStatus_GetText(pae != nullptr ? pae->Err : NATS_ERR);
      std::snprintf(st->last_refusal, sizeof st->last_refusal, "%s", why);
      natsMsg_Destroy(msg);
    }
    st->changed.notify_all();
  }

  nats_options opts_;
  std::string id_prefix_;
  detail::nats_ack_state* state_;
  detail::nats_counts final_;  // the counters, once the state is let go
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
  bool closed_ = false;
  // Writer thread only:
  bool stream_checked_ = false;
  bool js_has_list_ = false;  // an asynchronous publish went through on js_
  std::uint64_t next_offset_ = 0;
  std::vector<natsMsg*> resend_buf_;
  std::vector<std::pair<std::uint64_t, natsMsg*>> resend_order_;
  std::string subject_, id_, type_, number_;
  std::chrono::steady_clock::time_point last_resend_{}, last_connect_{};
};

}  // namespace SLUICE_ABI
}  // namespace sluice
