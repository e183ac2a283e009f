// sluice — reporting failures: a failed handler call is counted on its type's
// registry and, like the problems that are not failed calls, handed to the
// failure observer (bus_options::on_failure), if one is set.
#pragma once

#include <atomic>
#include <cstdint>

#include "../config.hpp"
#include "../errors.hpp"
#include "process.hpp"
#include "registry.hpp"

namespace sluice {
inline namespace SLUICE_ABI {
namespace detail {

// Holds no callable of its own: it calls its owner's observer (a bus's
// bus_options::on_failure, a dispatcher's) through a pointer and a thunk, so
// that this header needs no <functional>.
class failure_reporter {
 public:
  using thunk = void (*)(const void* observer, const failure_info& info);
  // The owner's failure policy path (a bus's: retries and dead letters).
  using policy_thunk = void (*)(void* owner, registry& r, sub_node& node, failure_kind kind,
                                int code, const char* message, const void* event,
                                const metadata& meta);

  failure_reporter() = default;
  // `observer` (which outlives this) is called as call(observer, info);
  // nullptr: nobody observes.
  failure_reporter(const void* observer, thunk call, void* owner = nullptr,
                   policy_thunk policy = nullptr) noexcept
      : observer_(observer),
        call_(observer != nullptr ? call : nullptr),
        owner_(owner),
        policy_(owner != nullptr ? policy : nullptr) {}

  // A failed call of a handler or stage of r's type: counted in `failed`,
  // then observed. Not noexcept with exceptions: an observer may end its
  // thread (pthread_exit), which unwinds through here.
  void failure(registry& r, failure_kind kind, int code, const char* message, const void* event,
               const metadata* meta, std::uint32_t attempt = 1) const
      noexcept(!SLUICE_HAS_EXCEPTIONS) {
    r.failed.fetch_add(1, std::memory_order_relaxed);
    if (call_ == nullptr && policy_ == nullptr) return;
    after_failure(r, kind, code, message, event, meta, attempt);
  }

  // A handler's first call failed (a retry's failures are the owner's to
  // handle): the handler is the node this thread announced at its current
  // depth; with a failure policy, the owner applies it. Out of line: the
  // delivery loops' speed depends on their failure branch staying small
  // (see call_one).
  SLUICE_NOINLINE void handler_failed(registry& r, failure_kind kind, int code, const char* message,
                                      const void* event, const metadata& meta) const {
    const reader_slot* s = this_thread().slot;
    if (s == nullptr || s->depth == 0 || s->depth > SLUICE_MAX_DEPTH) return;
    auto* node = static_cast<sub_node*>(
        const_cast<void*>(s->node[s->depth - 1].load(std::memory_order_relaxed)));
    if (node == nullptr) return;
    node->failed.fetch_add(1, std::memory_order_relaxed);
    if (node->retry != nullptr) policy_(owner_, r, *node, kind, code, message, event, meta);
  }

  // The rest of failure(), out of line: call_one inlines failure() into
  // every delivery loop, and a larger failure() made call_one a call of its
  // own (about 1 ns more per handler, measured on dispatch to ten handlers).
  SLUICE_NOINLINE void after_failure(registry& r, failure_kind kind, int code, const char* message,
                                     const void* event, const metadata* meta,
                                     std::uint32_t attempt) const noexcept(!SLUICE_HAS_EXCEPTIONS) {
    if (call_ != nullptr) report(kind, r.type, code, message, event, meta, attempt, "");
    if (policy_ != nullptr && attempt == 1 && meta != nullptr &&
        (kind == failure_kind::exception || kind == failure_kind::outcome))
      handler_failed(r, kind, code, message, event, *meta);
  }

  // A failed attempt that a failure policy runs itself (a retry, the first
  // call of a held event, an attempt an open breaker did not make):
  // counted in `failed` and observed, with the subscription's name; the
  // policy is the caller's to apply.
  SLUICE_NOINLINE void policy_failure(registry& r, failure_kind kind, int code, const char* message,
                                      const void* event, const metadata* meta,
                                      std::uint32_t attempt, const char* subscription) const
      noexcept(!SLUICE_HAS_EXCEPTIONS) {
    r.failed.fetch_add(1, std::memory_order_relaxed);
    if (call_ != nullptr) report(kind, r.type, code, message, event, meta, attempt, subscription);
  }

  // What a failure policy reports that is not a failed call (a breaker
  // opened or closed, a hold was full), with the event if there is one.
  SLUICE_NOINLINE void policy_problem(failure_kind kind, std::uint32_t type, int code,
                                      const char* message, const void* event, const metadata* meta,
                                      const char* subscription) const
      noexcept(!SLUICE_HAS_EXCEPTIONS) {
    if (call_ != nullptr) report(kind, type, code, message, event, meta, 1, subscription);
  }

  // A problem that is not a failed call (nothing is counted in `failed`).
  void problem(failure_kind kind, std::uint32_t type, int code, const char* message) const
      noexcept(!SLUICE_HAS_EXCEPTIONS) {
    if (call_ != nullptr) report(kind, type, code, message, nullptr, nullptr, 1, "");
  }

  // A delivery or stage refused for nesting deeper than SLUICE_MAX_DEPTH
  // (out of line: the paths it leaves are the hot ones).
  SLUICE_NOINLINE void too_deep(registry& r, const void* event, const metadata& meta,
                                const char* message) const noexcept(!SLUICE_HAS_EXCEPTIONS) {
    failure(r, failure_kind::too_deep, 0, message, event, &meta);
  }

 private:
  // Hands the observer (set) what happened.
  void report(failure_kind kind, std::uint32_t type, int code, const char* message,
              const void* event, const metadata* meta, std::uint32_t attempt,
              const char* subscription) const noexcept(!SLUICE_HAS_EXCEPTIONS) {
    failure_info info;
    info.kind = kind;
    info.type = type;
    info.code = code;
    info.message = message;
    info.event = event;
    info.meta = meta;
    info.attempt = attempt;
    info.subscription = subscription;
    observe(info);
  }
  void observe(const failure_info& info) const noexcept(!SLUICE_HAS_EXCEPTIONS) {
#if SLUICE_HAS_EXCEPTIONS
    try {
      call_(observer_, info);
    } catch (...) {  // an observer must not throw; nothing more can be done
      SLUICE_PASS_FORCED_UNWIND();
    }
#else
    call_(observer_, info);
#endif
  }

  const void* observer_ = nullptr;
  thunk call_ = nullptr;
  void* owner_ = nullptr;
  policy_thunk policy_ = nullptr;
};

}  // namespace detail
}  // namespace SLUICE_ABI
}  // namespace sluice
