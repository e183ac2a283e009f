// sluice — channels: names that route stages pick and subscribers listen on.
//
// A channel is a small value (an interned id). Making one from a name takes a
// lock and may allocate the first time that name is seen, so make channels
// once (e.g. `static const sluice::channel pager{"pager"};`) and copy them.
// The default channel (id 0) is where events go when no route stage picks
// one; a subscription made without a channel listens on every channel.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "config.hpp"
#include "detail/process.hpp"

namespace sluice {
inline namespace SLUICE_ABI {
namespace detail {
// The process's channel names (process_state::channels).
struct channel_names {
  std::unordered_map<std::string, std::uint32_t> ids;
  std::uint32_t next = 1;
};
}  // namespace detail

class channel {
 public:
  // The default channel.
  constexpr channel() noexcept = default;
  // The channel of that name (the same id for the same name, process-wide).
  // The empty name is the default channel.
  explicit channel(std::string_view name) {
    if (name.empty()) return;
    // One table per process (shared by every library that uses sluice), never
    // destroyed: channels may be made from static destructors too.
    detail::need_fork_handlers();
    detail::process_state& p = detail::process();
    std::lock_guard<std::mutex> lock(p.channel_mutex);
    if (p.channels == nullptr) p.channels = new detail::channel_names;
    detail::channel_names& t = *p.channels;
    auto [it, fresh] = t.ids.try_emplace(std::string(name), t.next);
    if (fresh) ++t.next;
    id_ = it->second;
  }
  [[nodiscard]] constexpr std::uint32_t id() const noexcept { return id_; }
  [[nodiscard]] constexpr bool is_default() const noexcept { return id_ == 0; }
  friend constexpr bool operator==(channel a, channel b) noexcept { return a.id_ == b.id_; }
  friend constexpr bool operator!=(channel a, channel b) noexcept { return a.id_ != b.id_; }

 private:
  std::uint32_t id_ = 0;
};

}  // namespace SLUICE_ABI
}  // namespace sluice
