// The plain NATS client, for what the bridge tests check behind the bridge's
// back: what a stream holds, messages the bridge would never make, and a
// consumer's state on the server.
#pragma once

#include <nats/nats.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace test {

// One message of a stream, with the bridge's headers.
struct stored_msg {
  std::string subject, id, type, version, key, producer;
  std::string data;
};

class plain_client {
 public:
  explicit plain_client(const std::string& url) {
    natsOptions* o = nullptr;
    natsOptions_Create(&o);
    natsOptions_SetURL(o, url.c_str());
    natsOptions_SetTimeout(o, 5000);
    status_ = natsConnection_Connect(&nc_, o);
    natsOptions_Destroy(o);
    if (status_ == NATS_OK) status_ = natsConnection_JetStream(&js_, nc_, nullptr);
  }
  plain_client(const plain_client&) = delete;
  plain_client& operator=(const plain_client&) = delete;
  ~plain_client() {
    if (js_ != nullptr) jsCtx_Destroy(js_);
    if (nc_ != nullptr) natsConnection_Destroy(nc_);
  }
  [[nodiscard]] bool ok() const noexcept { return status_ == NATS_OK; }

  // Every message `stream` holds, in order.
  std::vector<stored_msg> all(const std::string& stream) {
    std::vector<stored_msg> out;
    jsStreamInfo* si = nullptr;
    if (js_GetStreamInfo(&si, js_, stream.c_str(), nullptr, nullptr) != NATS_OK) return out;
    const std::uint64_t first = si->State.FirstSeq, last = si->State.LastSeq;
    jsStreamInfo_Destroy(si);
    for (std::uint64_t seq = first; seq != 0 && seq <= last; ++seq) {
      natsMsg* m = nullptr;
      if (js_GetMsg(&m, js_, stream.c_str(), seq, nullptr, nullptr) != NATS_OK) continue;
      stored_msg s;
      s.subject = natsMsg_GetSubject(m);
      s.data.assign(natsMsg_GetData(m), static_cast<std::size_t>(natsMsg_GetDataLength(m)));
      s.id = header(m, "Nats-Msg-Id");
      s.type = header(m, "Sluice-Type");
      s.version = header(m, "Sluice-Version");
      s.key = header(m, "Sluice-Key");
      s.producer = header(m, "Sluice-Producer");
      out.push_back(std::move(s));
      natsMsg_Destroy(m);
    }
    return out;
  }

  // Makes the stream ORDERS (capturing sluice.>) if there is none.
  bool make_stream() {
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    const char* subjects[1] = {"sluice.>"};
    cfg.Name = "ORDERS";
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    const natsStatus s = js_AddStream(&si, js_, &cfg, nullptr, &jerr);
    if (si != nullptr) jsStreamInfo_Destroy(si);
    return s == NATS_OK || jerr == JSStreamNameExistErr;
  }

  // Publishes one message with the given headers (name, value pairs) and
  // waits for the stream's acknowledgement.
  bool publish(const char* subject, const std::string& data,
               const std::vector<std::pair<const char*, std::string>>& headers) {
    natsMsg* m = nullptr;
    if (natsMsg_Create(&m, subject, nullptr, data.data(), static_cast<int>(data.size())) != NATS_OK)
      return false;
    for (const auto& h : headers) natsMsgHeader_Set(m, h.first, h.second.c_str());
    jsPubAck* pa = nullptr;
    const natsStatus s = js_PublishMsg(&pa, js_, m, nullptr, nullptr);
    if (pa != nullptr) jsPubAck_Destroy(pa);
    natsMsg_Destroy(m);
    return s == NATS_OK;
  }

  // A consumer of ORDERS: messages delivered and not yet acknowledged, and
  // messages not yet delivered.
  bool consumer_state(const char* durable, std::uint64_t& ack_pending, std::uint64_t& pending) {
    jsConsumerInfo* ci = nullptr;
    if (js_GetConsumerInfo(&ci, js_, "ORDERS", durable, nullptr, nullptr) != NATS_OK) return false;
    ack_pending = static_cast<std::uint64_t>(ci->NumAckPending);
    pending = ci->NumPending;
    jsConsumerInfo_Destroy(ci);
    return true;
  }

 private:
  static std::string header(natsMsg* m, const char* key) {
    const char* v = nullptr;
    return natsMsgHeader_Get(m, key, &v) == NATS_OK && v != nullptr ? std::string(v)
                                                                    : std::string();
  }
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
  natsStatus status_ = NATS_ERR;
};

}  // namespace test
