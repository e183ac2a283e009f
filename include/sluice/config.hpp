// sluice — configuration macros. Every macro here may be defined by the user
// before the first sluice include (or on the command line); docs/config.md
// lists them with their defaults.
#pragma once

#include <cstddef>
#include <cstdio>
#include <cstdlib>

// Bytes of event payload stored inside a queue slot without heap allocation.
// Events larger than this (or over-aligned) are boxed on the heap.
#ifndef SLUICE_INLINE_SIZE
#define SLUICE_INLINE_SIZE 48
#endif

// Cache-line size used to keep hot counters apart.
#ifndef SLUICE_CACHE_LINE
#define SLUICE_CACHE_LINE 64
#endif

// Number of distinct event types a program may use with sluice. Each type gets
// a dense index on first use; a bus keeps one pointer per index.
#ifndef SLUICE_MAX_EVENT_TYPES
#define SLUICE_MAX_EVENT_TYPES 256
#endif

// How deeply handlers may nest dispatches (a handler that dispatches, whose
// handler dispatches, ...). A deeper dispatch is refused and counted as failed.
#ifndef SLUICE_MAX_DEPTH
#define SLUICE_MAX_DEPTH 16
#endif

// How many type-changing transforms one event may go through (A -> B -> C
// ...). Cycles are refused when stages are configured; this bounds the rest.
#ifndef SLUICE_MAX_HOPS
#define SLUICE_MAX_HOPS 8
#endif

// Events taken from a lane in one bulk dequeue.
#ifndef SLUICE_DRAIN_BATCH
#define SLUICE_DRAIN_BATCH 64
#endif

// Use Linux membarrier(2) so that the reader side of handler tracking needs no
// hardware fence. 0 forces plain sequentially consistent atomics.
#ifndef SLUICE_USE_MEMBARRIER
#if defined(__linux__)
#define SLUICE_USE_MEMBARRIER 1
#else
#define SLUICE_USE_MEMBARRIER 0
#endif
#endif

// Thread sanitizer does not model membarrier: fall back to plain atomics.
#if defined(__SANITIZE_THREAD__)
#define SLUICE_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SLUICE_TSAN 1
#endif
#endif
#ifndef SLUICE_TSAN
#define SLUICE_TSAN 0
#endif
#if SLUICE_TSAN
#undef SLUICE_USE_MEMBARRIER
#define SLUICE_USE_MEMBARRIER 0
#endif

// Exceptions: detected from the compiler, may be forced off with
// SLUICE_NO_EXCEPTIONS.
#if !defined(SLUICE_NO_EXCEPTIONS) && (defined(__cpp_exceptions) || defined(__EXCEPTIONS))
#define SLUICE_HAS_EXCEPTIONS 1
#define SLUICE_TRY try
#define SLUICE_CATCH(x) catch (x)
#define SLUICE_THROW(x) throw x
#else
#define SLUICE_HAS_EXCEPTIONS 0
#define SLUICE_TRY if (true)
#define SLUICE_CATCH(x) else if (false)
#define SLUICE_THROW(x) std::abort()
#endif

// Checks of the library's own invariants and of API misuse that cannot be
// reported as a value (for instance a producer used after its bus died).
// Enabled unless NDEBUG; define it to route into your own handler.
#ifndef SLUICE_ASSERT
#ifdef NDEBUG
#define SLUICE_ASSERT(cond, msg) ((void)0)
#else
#define SLUICE_ASSERT(cond, msg)                                                                 \
  ((cond) ? (void)0                                                                              \
          : (std::fprintf(stderr, "sluice: assertion failed: %s (%s:%d): %s\n", #cond, __FILE__, \
                          __LINE__, msg),                                                        \
             std::abort()))
#endif
#endif

#if defined(__GNUC__)
#define SLUICE_LIKELY(x) __builtin_expect(!!(x), 1)
#define SLUICE_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define SLUICE_NOINLINE __attribute__((noinline))
#else
#define SLUICE_LIKELY(x) (x)
#define SLUICE_UNLIKELY(x) (x)
#define SLUICE_NOINLINE
#endif
