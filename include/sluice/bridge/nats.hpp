// sluice — a bridge to NATS JetStream: events of a bus go to a stream
// (nats_sink, under a recorder: nats_sink.hpp) and come from one into another
// bus, in another process or on another machine (nats_source:
// nats_source.hpp). See docs/nats.md.
//
// Needs the NATS C client: link the CMake target sluice::nats (it exists when
// pkg-config finds libnats; Debian: libnats-dev). The core library does not
// depend on it.
#pragma once

#include "nats_client.hpp"  // first: says what is missing without libnats
#include "nats_sink.hpp"
#include "nats_source.hpp"
