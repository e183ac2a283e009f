// sluice — the one place that names moodycamel's header. Debian installs it as
// <concurrentqueue/concurrentqueue.h>; upstream's CMake package and a plain
// checkout expose <concurrentqueue.h> (or <moodycamel/concurrentqueue.h>).
//
// The queue is not sluice's code, so it is kept out of the user's warnings and
// macros: this header is a system header (so are the files it includes), and
// a BLOCK_SIZE macro (<linux/fs.h>, <sys/mount.h>) is set aside while the
// queue's header is read. Nothing after this header spells BLOCK_SIZE.
#pragma once

#if defined(__GNUC__)
#pragma GCC system_header
#endif

#include <cstddef>
#include <new>
#include <utility>

#pragma push_macro("BLOCK_SIZE")
#undef BLOCK_SIZE
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#pragma GCC diagnostic ignored "-Wnull-dereference"

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

#pragma GCC diagnostic pop
#include "../config.hpp"

namespace sluice {
inline namespace SLUICE_ABI {
namespace detail {

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

// Envelopes per queue block.
inline constexpr std::size_t queue_block = lane_traits::BLOCK_SIZE;

// Every enqueue and dequeue goes through here. Under ThreadSanitizer these
// are real calls (never inlined), so that tests/tsan.supp can name them: the
// queue orders the reuse of its blocks with standalone fences, which TSan
// does not model, and its reports about the envelopes inside the queue's slots
// are false (see tests/tsan.supp for what that leaves unchecked).
#if SLUICE_TSAN
#define SLUICE_QUEUE_CALL __attribute__((noinline))
#else
#define SLUICE_QUEUE_CALL
#endif
struct queue_io {
  template <class T, class V>
  SLUICE_QUEUE_CALL static bool enqueue(queue<T>& q, producer_token& t, V&& v) {
    return q.enqueue(t, std::forward<V>(v));
  }
  template <class T, class It>
  SLUICE_QUEUE_CALL static bool enqueue_bulk(queue<T>& q, producer_token& t, It first,
                                             std::size_t n) {
    return q.enqueue_bulk(t, first, n);
  }
  template <class T, class It>
  SLUICE_QUEUE_CALL static std::size_t dequeue_bulk(queue<T>& q, consumer_token& c, It out,
                                                    std::size_t max) {
    return q.try_dequeue_bulk(c, out, max);
  }
};

}  // namespace detail
}  // namespace SLUICE_ABI
}  // namespace sluice

#pragma pop_macro("BLOCK_SIZE")
