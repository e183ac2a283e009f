// sluice — how a recorder (storage/recorder.hpp) sees a bus's events: the
// interface it implements, and the set of recorders one bus feeds.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../event.hpp"
#include "envelope.hpp"

namespace sluice {
inline namespace SLUICE_ABI {
namespace detail {

// Called on the delivering threads; must not throw. Each returns whether the
// events may be delivered: false only for a strict write-ahead recorder that
// could not make them durable.
class recorder_hook {
 public:
  virtual ~recorder_hook() = default;
  // Events taken from a lane for delivery, in lane order, before any stage or
  // handler sees them.
  virtual bool on_batch(const envelope* envs, std::size_t n) noexcept = 0;
  // One event: a dispatch, or a store stage.
  virtual bool on_event(std::uint32_t type, const void* ev, const metadata& m) noexcept = 0;
  // The bus has stopped: everything recorded is to be written (and synced).
  virtual void on_stop() noexcept = 0;
};

// The recorder that sees every event leaving a lane (and every dispatch), set
// once before the bus starts, and the recorders of store stages, which see
// only what their stage passes them. The caller serialises the setters (the
// bus's configuration lock).
class recorder_hooks {
 public:
  // The main recorder; nullptr when set, else why not.
  const char* set_main(std::shared_ptr<recorder_hook> h) {
    if (main_owner_ != nullptr) return "sluice: this bus already has a recorder";
    main_owner_ = std::move(h);
    main_.store(main_owner_.get(), std::memory_order_release);
    return nullptr;
  }
  void add_store(std::shared_ptr<recorder_hook> h) { stores_.push_back(std::move(h)); }

  [[nodiscard]] recorder_hook* main() const noexcept {
    return main_.load(std::memory_order_acquire);
  }

  // The store stages' recorders, each once and none that is `main`, write
  // (and sync) what they recorded. The caller holds the lock that
  // serialises the setters.
  void stop_stores(const recorder_hook* main) noexcept {
    for (std::size_t i = 0; i < stores_.size(); ++i) {
      recorder_hook* h = stores_[i].get();
      bool seen = h == main;
      for (std::size_t k = 0; k < i && !seen; ++k) seen = stores_[k].get() == h;
      if (!seen) h->on_stop();
    }
  }

  // In a fork() child, for a bus of the parent: the recorders' threads do not
  // exist here, so they are left without running their destructors.
  void abandon() noexcept {
    ::new (static_cast<void*>(&main_owner_)) std::shared_ptr<recorder_hook>();
    ::new (static_cast<void*>(&stores_)) std::vector<std::shared_ptr<recorder_hook>>();
  }

 private:
  std::shared_ptr<recorder_hook> main_owner_;
  std::vector<std::shared_ptr<recorder_hook>> stores_;
  std::atomic<recorder_hook*> main_{nullptr};
};

}  // namespace detail
}  // namespace SLUICE_ABI
}  // namespace sluice
