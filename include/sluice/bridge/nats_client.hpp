// sluice — what both sides of the NATS JetStream bridge share: the check that
// the NATS C client is there, the connection they make, and which client
// errors mean "not now" rather than "never".
#pragma once

#if !__has_include(<nats/nats.h>)
#error \
    "sluice/bridge/nats.hpp needs the NATS C client (<nats/nats.h>): install libnats-dev (Debian) and link the CMake target sluice::nats"
#endif

#include <nats/nats.h>

#include <chrono>
#include <string>

#include "../config.hpp"

namespace sluice {
inline namespace SLUICE_ABI {
namespace detail {

inline void nats_on_connected(natsConnection*, void*) {}

// Connects to `url`. A frozen or unreachable server must not hold a write
// (and the connection's lock) for ever: writes give up after
// `write_deadline`, and a silent connection is noticed within a few seconds
// (pings every second, three unanswered).
//
// With `reconnect`, in the background: the server may come later, and the
// connection is made again for as long as it is away (what is published
// meanwhile waits in the client's buffer). Without it, one attempt (an
// error when the server is away), and a lost connection stays closed: the
// caller makes a new one, and decides itself what is sent again on it and in
// which order (the outbound side does, to keep the order of its messages).
inline natsStatus nats_connect(natsConnection*& nc, const std::string& url,
                               std::chrono::milliseconds write_deadline, bool reconnect = true) {
  natsOptions* no = nullptr;
  natsStatus s = natsOptions_Create(&no);
  if (s == NATS_OK) s = natsOptions_SetURL(no, url.c_str());
  if (s == NATS_OK) s = natsOptions_SetTimeout(no, 1000);
  if (s == NATS_OK) s = natsOptions_SetWriteDeadline(no, write_deadline.count());
  if (s == NATS_OK) s = natsOptions_SetPingInterval(no, 1000);
  if (s == NATS_OK) s = natsOptions_SetMaxPingsOut(no, 3);
  if (reconnect) {
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(no, -1);
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(no, 100);
    if (s == NATS_OK)
      s = natsOptions_SetRetryOnFailedConnect(no, true, &nats_on_connected, nullptr);
  } else if (s == NATS_OK) {
    s = natsOptions_SetAllowReconnect(no, false);
  }
  if (s == NATS_OK) {
    s = natsConnection_Connect(&nc, no);
    if (s == NATS_NOT_YET_CONNECTED) s = NATS_OK;  // it goes on trying
    if (s != NATS_OK) nc = nullptr;
  }
  natsOptions_Destroy(no);
  return s;
}

// Errors that say "not now" (the connection), as opposed to "never".
inline bool nats_passing(natsStatus s) noexcept {
  switch (s) {
    case NATS_TIMEOUT:
    case NATS_NO_RESPONDERS:  // no stream (yet): the server is starting, or none captures it
    case NATS_CONNECTION_CLOSED:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_NOT_YET_CONNECTED:
    case NATS_IO_ERROR:
    case NATS_NO_SERVER:
    case NATS_STALE_CONNECTION:
    case NATS_INSUFFICIENT_BUFFER:  // the client's buffer while reconnecting
      return true;
    default:
      return false;
  }
}

}  // namespace detail
}  // namespace SLUICE_ABI
}  // namespace sluice
