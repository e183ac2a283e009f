// sluice — umbrella header for the core: bus, producers, subscriptions,
// options, results and counters. Optional parts have their own headers.
#pragma once

#include "bus.hpp"
#include "channel.hpp"
#include "config.hpp"
#include "dispatcher.hpp"
#include "errors.hpp"
#include "event.hpp"
#include "fwd.hpp"
#include "observer.hpp"
#include "options.hpp"
#include "pipeline.hpp"
#include "producer.hpp"
#include "resilience.hpp"
#include "stats.hpp"
#include "subscription.hpp"
#include "tracer.hpp"
#include "version.hpp"
