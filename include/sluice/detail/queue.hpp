// sluice — the one place that names moodycamel's header. Debian installs it as
// <concurrentqueue/concurrentqueue.h>; upstream's CMake package and a plain
// checkout expose <concurrentqueue.h> (or <moodycamel/concurrentqueue.h>).
#pragma once

#if defined(SLUICE_CONCURRENTQUEUE_HEADER)
#include SLUICE_CONCURRENTQUEUE_HEADER
#elif __has_include(<concurrentqueue/concurrentqueue.h>)
#include <concurrentqueue/concurrentqueue.h>
#elif __has_include(<moodycamel/concurrentqueue.h>)
#include <moodycamel/concurrentqueue.h>
#elif __has_include(<concurrentqueue.h>)
#include <concurrentqueue.h>
#else
#error \
    "sluice: moodycamel concurrentqueue not found (Debian: apt-get install libconcurrentqueue-dev)"
#endif

#include <cstddef>
#include <new>

namespace sluice::detail {

// Queue traits: blocks come from the global operator new (so allocation
// counters see them) and are larger than the default to cut per-block work.
struct lane_traits : moodycamel::ConcurrentQueueDefaultTraits {
  static const std::size_t BLOCK_SIZE = 64;
  static const std::size_t EXPLICIT_INITIAL_INDEX_SIZE = 64;
  static void* malloc(std::size_t size) { return ::operator new(size, std::nothrow); }
  static void free(void* ptr) { ::operator delete(ptr); }
};

template <class T>
using queue = moodycamel::ConcurrentQueue<T, lane_traits>;
using producer_token = moodycamel::ProducerToken;
using consumer_token = moodycamel::ConsumerToken;

}  // namespace sluice::detail
