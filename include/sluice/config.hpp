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

// glibc ends a thread (pthread_exit, pthread_cancel) by unwinding its stack
// with a "forced unwind" that a catch (...) must not swallow. Called first in
// sluice's catch-all handlers, this rethrows it, and any other exception that
// is not a C++ one: libstdc++'s std::current_exception() is empty for those
// (it checks the exception's class, the one field a foreign exception is
// sure to have).
#if SLUICE_HAS_EXCEPTIONS && defined(__GLIBCXX__)
#include <exception>
#define SLUICE_PASS_FORCED_UNWIND()       \
  do {                                    \
    if (!std::current_exception()) throw; \
  } while (false)
#else
#define SLUICE_PASS_FORCED_UNWIND() ((void)0)
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

// Visibility of the few process-wide objects sluice keeps (type identities,
// handler-tracking slots, channel names, fork handling). They must be one per
// process even when sluice is compiled into several shared libraries built
// with -fvisibility=hidden, so they are exported; ELF then merges the copies
// (GCC and Clang emit them as unique symbols). On other platforms define it as
// your export/import attribute. See docs/shared-libraries.md.
#ifndef SLUICE_API
#if defined(__GNUC__) && !defined(_WIN32)
#define SLUICE_API __attribute__((visibility("default")))
#else
#define SLUICE_API
#endif
#endif

// Seams for the interleaving checker (tests/model): a schedule point before
// each step of the hand-rolled protocols, a choice that lets a dequeue come
// back empty as moodycamel documents it may, and mutations. Nothing in normal
// builds; the checker defines them (and SLUICE_MODEL_CHECK) itself.
#ifndef SLUICE_MODEL_CHECK
#define SLUICE_MODEL_CHECK 0
#endif
#if !SLUICE_MODEL_CHECK
#define SLUICE_SCHEDULE_POINT() ((void)0)
#define SLUICE_SPURIOUS_EMPTY() false
// The checker's positive controls switch a step of a protocol off (mutation
// n) to show that it finds the bug that step prevents.
#define SLUICE_MODEL_MUTATION(n) false
#endif

// The inline namespace that every sluice name lives in. It spells out the
// settings that change sluice's layouts or behaviour, so that translation
// units built with different values never share a definition: when they pass
// sluice objects to each other the program fails to link, instead of
// silently disagreeing (see docs/config.md). The settings must therefore be
// plain decimal literals.
#define SLUICE_PP_CAT2(a, b) a##b
#define SLUICE_PP_CAT(a, b) SLUICE_PP_CAT2(a, b)
#define SLUICE_ABI                                                                              \
  SLUICE_PP_CAT(                                                                                \
      SLUICE_PP_CAT(                                                                            \
          SLUICE_PP_CAT(SLUICE_PP_CAT(SLUICE_PP_CAT(SLUICE_PP_CAT(v0_i, SLUICE_INLINE_SIZE),    \
                                                    SLUICE_PP_CAT(_t, SLUICE_MAX_EVENT_TYPES)), \
                                      SLUICE_PP_CAT(SLUICE_PP_CAT(_d, SLUICE_MAX_DEPTH),        \
                                                    SLUICE_PP_CAT(_h, SLUICE_MAX_HOPS))),       \
                        SLUICE_PP_CAT(SLUICE_PP_CAT(_b, SLUICE_DRAIN_BATCH),                    \
                                      SLUICE_PP_CAT(_c, SLUICE_CACHE_LINE))),                   \
          SLUICE_PP_CAT(SLUICE_PP_CAT(_e, SLUICE_HAS_EXCEPTIONS),                               \
                        SLUICE_PP_CAT(_m, SLUICE_USE_MEMBARRIER))),                             \
      SLUICE_PP_CAT(_x, SLUICE_MODEL_CHECK))

#if defined(__GNUC__)
#define SLUICE_LIKELY(x) __builtin_expect(!!(x), 1)
#define SLUICE_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define SLUICE_NOINLINE __attribute__((noinline))
#else
#define SLUICE_LIKELY(x) (x)
#define SLUICE_UNLIKELY(x) (x)
#define SLUICE_NOINLINE
#endif

// A spin-wait hint, without <immintrin.h> (which costs every including file
// about half a second of compile time).
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define SLUICE_PAUSE() __builtin_ia32_pause()
#elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
#include <intrin.h>
#define SLUICE_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define SLUICE_PAUSE() __asm__ __volatile__("yield")
#else
#define SLUICE_PAUSE() ((void)0)
#endif
