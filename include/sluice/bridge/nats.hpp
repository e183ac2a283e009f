// sluice — a bridge to NATS JetStream: the outbound side.
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
// (the server gone, a timeout) is sent again with the same id. sync() returns
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

#if !__has_include(<nats/nats.h>)
#error \
    "sluice/bridge/nats.hpp needs the NATS C client (<nats/nats.h>): install libnats-dev (Debian) and link the CMake target sluice::nats"
#endif

#include <nats/nats.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../config.hpp"
#include "../detail/numeric.hpp"
#include "../storage/error.hpp"
#include "../storage/format.hpp"
#include "../storage/sink.hpp"

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
    if (subject_prefix.empty() || subject_prefix.find_first_of(" \t*>") != std::string::npos ||
        subject_prefix.front() == '.' || subject_prefix.back() == '.')
      return "sluice: nats_options::subject_prefix must be a subject without wildcards, spaces or "
             "a leading or trailing dot";
    if (partitions > 65536) return "sluice: nats_options::partitions must be at most 65536";
    if (stream.find_first_of(" \t.*>") != std::string::npos)
      return "sluice: nats_options::stream must not contain spaces, dots or wildcards";
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

class nats_sink final : public sink {
 public:
  // Connects in the background (the server may come later): nullptr and
  // `err` only for invalid options or when the client cannot be set up.
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
    // the server keeps its own.
    batch.number(next_offset_);
    const unsigned char* p = batch.data();
    const unsigned char* end = p + batch.bytes();
    std::size_t handed = 0;
    stored_event e;
    while (p < end) {
      const std::uint32_t body = storage::load_le<std::uint32_t>(p);
      storage::read_body(p + storage::frame_size, body, e);
      natsMsg* m = make_message(e);
      if (m == nullptr) {
        batch.set_stored(handed);
        return storage_error::make(storage_errc::io, "sluice: nats: cannot make a message");
      }
      if (!hand_over(m)) {
        batch.set_stored(handed);
        return storage_error::make(storage_errc::io,
                                   "sluice: nats: the server stayed unreachable for "
                                   "handover_timeout; the rest of the batch is lost");
      }
      ++handed;
      ++next_offset_;
      p += storage::frame_size + body;
    }
    batch.set_stored(handed);
    return {};
  }

  // Everything handed over so far is acknowledged by the server, or an error
  // (the server did not acknowledge within sync_timeout, or refused some
  // message for good since the last sync).
  storage_error sync() override {
    if (closed_)
      return storage_error::make(storage_errc::closed, "sluice: the nats sink is closed");
    const auto deadline = std::chrono::steady_clock::now() + opts_.sync_timeout;
    for (;;) {
      resend_due();
      {
        std::unique_lock<std::mutex> lock(mutex_);
        if (in_flight_ == 0 && retry_.empty()) break;
        if (std::chrono::steady_clock::now() >= deadline)
          return storage_error::make(storage_errc::io,
                                     "sluice: nats: " + std::to_string(in_flight_ + retry_.size()) +
                                         " messages not acknowledged within sync_timeout");
        changed_.wait_for(lock, std::chrono::milliseconds(20));
      }
    }
    std::lock_guard<std::mutex> lock(mutex_);
    if (refused_since_sync_ != 0) {
      const std::uint64_t n = refused_since_sync_;
      refused_since_sync_ = 0;
      return storage_error::make(storage_errc::io, "sluice: nats: the server refused " +
                                                       std::to_string(n) +
                                                       " messages for good: " + last_refusal_);
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
  [[nodiscard]] std::size_t max_record() const noexcept override {
    return std::size_t{1} << 20;  // the server's default max_payload
  }

  // Counters (any thread).
  [[nodiscard]] std::uint64_t acknowledged() const noexcept { return acked_.load(); }
  // Acknowledgements that did not come (timed out, no server): each such
  // message is sent again.
  [[nodiscard]] std::uint64_t not_acknowledged() const noexcept { return timed_out_.load(); }
  [[nodiscard]] std::uint64_t sent_again() const noexcept { return resent_.load(); }
  // Messages the stream had already (sent again after a lost acknowledgement).
  [[nodiscard]] std::uint64_t duplicates() const noexcept { return duplicates_.load(); }
  // Messages the stream refused for good.
  [[nodiscard]] std::uint64_t failed() const noexcept { return refused_.load(); }
  // What every message id of this sink starts with: "<origin>.<run>-".
  [[nodiscard]] const std::string& id_prefix() const noexcept { return id_prefix_; }
  [[nodiscard]] const nats_options& options() const noexcept { return opts_; }

 private:
  explicit nats_sink(nats_options o) : opts_(std::move(o)) {
    std::random_device rd;
    const std::uint64_t r = (std::uint64_t{rd()} << 32) ^ rd();
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(r));
    id_prefix_ = opts_.origin + "." + buf + "-";
  }

  storage_error start() {
    natsOptions* no = nullptr;
    natsStatus s = natsOptions_Create(&no);
    if (s == NATS_OK) s = natsOptions_SetURL(no, opts_.url.c_str());
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(no, -1);
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(no, 100);
    if (s == NATS_OK) s = natsOptions_SetTimeout(no, 1000);
    if (s == NATS_OK) s = natsOptions_SetRetryOnFailedConnect(no, true, &on_connected, this);
    if (s == NATS_OK) {
      s = natsConnection_Connect(&nc_, no);
      if (s == NATS_NOT_YET_CONNECTED) s = NATS_OK;  // it goes on trying
    }
    natsOptions_Destroy(no);
    jsOptions jo;
    if (s == NATS_OK) s = jsOptions_Init(&jo);
    if (s == NATS_OK) {
      jo.PublishAsync.MaxPending = opts_.max_in_flight;
      jo.PublishAsync.AckHandler = &on_ack;
      jo.PublishAsync.AckHandlerClosure = this;
      jo.PublishAsync.StallWait = 50;
      jo.Wait = 2000;
      s = natsConnection_JetStream(&js_, nc_, &jo);
    }
    if (s != NATS_OK) {
      storage_error e = storage_error::make(
          storage_errc::io,
          std::string("sluice: nats: cannot set up the client: ") + natsStatus_GetText(s));
      shut();
      return e;
    }
    return {};
  }

  void shut() noexcept {
    closed_ = true;
    if (js_ != nullptr) {
      jsCtx_Destroy(js_);
      js_ = nullptr;
    }
    if (nc_ != nullptr) {
      natsConnection_Destroy(nc_);  // closes it; acknowledgement callbacks are over
      nc_ = nullptr;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    for (natsMsg* m : retry_) natsMsg_Destroy(m);
    retry_.clear();
  }

  static void on_connected(natsConnection*, void*) {}

  // The stream, made once when asked for (retried until the server answers).
  bool ensure_stream() {
    if (opts_.stream.empty() || stream_ready_) return true;
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_GetStreamInfo(&si, js_, opts_.stream.c_str(), nullptr, &jerr);
    if (s == NATS_OK) {
      jsStreamInfo_Destroy(si);
      stream_ready_ = true;
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
    if (s == NATS_OK || jerr == JSStreamNameExistErr) stream_ready_ = true;
    return stream_ready_;
  }

  natsMsg* make_message(const stored_event& e) {
    std::string subject = opts_.subject_prefix;
    subject += '.';
    subject.append(e.type.data(), e.type.size());
    if (opts_.partitions != 0) {
      const std::uint64_t h = detail::mix(e.has_key ? e.key : std::uint64_t{e.producer});
      subject += '.';
      subject += std::to_string(h % opts_.partitions);
    }
    natsMsg* m = nullptr;
    if (natsMsg_Create(&m, subject.c_str(), nullptr, reinterpret_cast<const char*>(e.payload.data),
                       static_cast<int>(e.payload.size)) != NATS_OK)
      return nullptr;
    const std::string type(e.type.data(), e.type.size());
    const std::string id = id_prefix_ + std::to_string(e.offset);
    bool ok = natsMsgHeader_Set(m, "Nats-Msg-Id", id.c_str()) == NATS_OK;
    ok = ok && natsMsgHeader_Set(m, "Sluice-Type", type.c_str()) == NATS_OK;
    ok = ok && natsMsgHeader_Set(m, "Sluice-Version", std::to_string(e.version).c_str()) == NATS_OK;
    ok = ok &&
         natsMsgHeader_Set(m, "Sluice-Producer", std::to_string(e.producer).c_str()) == NATS_OK;
    ok = ok && natsMsgHeader_Set(m, "Sluice-Offset", std::to_string(e.offset).c_str()) == NATS_OK;
    ok = ok && natsMsgHeader_Set(m, "Sluice-Time", std::to_string(e.time_ns).c_str()) == NATS_OK;
    if (e.has_key)
      ok = ok && natsMsgHeader_Set(m, "Sluice-Key", std::to_string(e.key).c_str()) == NATS_OK;
    if (e.replayed) ok = ok && natsMsgHeader_Set(m, "Sluice-Replayed", "1") == NATS_OK;
    if (!ok) {
      natsMsg_Destroy(m);
      return nullptr;
    }
    return m;
  }

  // Hands one message to the client (which owns it from then on), trying
  // again while the server is away, up to handover_timeout.
  bool hand_over(natsMsg* m) {
    const auto deadline = std::chrono::steady_clock::now() + opts_.handover_timeout;
    for (;;) {
      resend_due();
      if (ensure_stream() && publish(m)) return true;
      if (std::chrono::steady_clock::now() >= deadline) {
        natsMsg_Destroy(m);
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  // One asynchronous publish; true when the client took the message.
  bool publish(natsMsg*& m) {
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = opts_.ack_wait.count();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++in_flight_;
    }
    natsMsg* handed = m;
    const natsStatus s = js_PublishMsgAsync(js_, &handed, &po);
    if (s == NATS_OK) {
      m = nullptr;
      return true;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    --in_flight_;
    changed_.notify_all();
    return false;
  }

  // Sends again the messages whose acknowledgement did not come.
  void resend_due() {
    std::vector<natsMsg*> again;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      again.swap(retry_);
    }
    for (std::size_t i = 0; i < again.size(); ++i) {
      if (ensure_stream() && publish(again[i])) {
        resent_.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      // The server is still away: keep the rest for later.
      std::lock_guard<std::mutex> lock(mutex_);
      retry_.insert(retry_.end(), again.begin() + static_cast<std::ptrdiff_t>(i), again.end());
      changed_.notify_all();
      return;
    }
  }

  static bool transient(const jsPubAckErr* pae) noexcept {
    switch (pae->Err) {
      case NATS_TIMEOUT:
      case NATS_NO_RESPONDERS:
      case NATS_CONNECTION_CLOSED:
      case NATS_CONNECTION_DISCONNECTED:
      case NATS_NOT_YET_CONNECTED:
      case NATS_IO_ERROR:
        return true;
      default:
        return pae->ErrCode == 0 && pae->Err != NATS_ERR;
    }
  }

  // On the client's thread, once per message: acknowledged, or failed.
  static void on_ack(jsCtx*, natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae, void* closure) {
    auto* self = static_cast<nats_sink*>(closure);
    std::lock_guard<std::mutex> lock(self->mutex_);
    --self->in_flight_;
    if (pa != nullptr) {
      self->acked_.fetch_add(1, std::memory_order_relaxed);
      if (pa->Duplicate) self->duplicates_.fetch_add(1, std::memory_order_relaxed);
      natsMsg_Destroy(msg);
    } else if (pae != nullptr && transient(pae)) {
      self->timed_out_.fetch_add(1, std::memory_order_relaxed);
      self->retry_.push_back(msg);  // sent again (same id) by the writer thread
    } else {
      self->refused_.fetch_add(1, std::memory_order_relaxed);
      ++self->refused_since_sync_;
      self->last_refusal_ =
          pae != nullptr && pae->ErrText != nullptr
              ? std::string(pae->ErrText)
              : std::string(natsStatus_GetText(pae != nullptr ? pae->Err : NATS_ERR));
      natsMsg_Destroy(msg);
    }
    self->changed_.notify_all();
  }

  nats_options opts_;
  std::string id_prefix_;
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
  bool closed_ = false;
  bool stream_ready_ = false;
  std::uint64_t next_offset_ = 0;  // writer thread only
  std::mutex mutex_;
  std::condition_variable changed_;
  std::size_t in_flight_ = 0;             // guarded by mutex_
  std::vector<natsMsg*> retry_;           // guarded by mutex_
  std::uint64_t refused_since_sync_ = 0;  // guarded by mutex_
  std::string last_refusal_;              // guarded by mutex_
  std::atomic<std::uint64_t> acked_{0}, timed_out_{0}, resent_{0}, refused_{0}, duplicates_{0};
};

}  // namespace SLUICE_ABI
}  // namespace sluice
