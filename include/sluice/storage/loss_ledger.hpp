// sluice — which recorded events a recorder lost, and which of those losses
// the program has acknowledged.
//
// Records are numbered 1, 2, ... in the order they are put in the recorder's
// buffer. A record is lost when the sink's append of it failed, or when a
// sync that covered it failed (its durability is unknown). The ledger keeps
// the lost numbers as sorted ranges; the program acknowledges them
// (recorder::acknowledge_losses), after which flush() and sync() no longer
// fail for them, and acknowledged ranges are forgotten once nothing needs
// them. Not thread-safe: the recorder calls it with its lock held.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "../config.hpp"

namespace sluice {
inline namespace SLUICE_ABI {
namespace detail {

class loss_ledger {
 public:
  // Records [lo, hi] are lost; `sync`: by a failed sync (else an append).
  // `synced`: the last record covered by a sync (durable or known lost).
  void lose(std::uint64_t lo, std::uint64_t hi, bool sync, std::uint64_t synced) {
    if (hi < lo) return;
    total_ += hi - lo + 1;
    // Merged only within the batches since the last sync: lose_unsynced()
    // relies on every range that reaches past the last sync starting after it.
    if (!ranges_.empty() && ranges_.back().sync == sync && !ranges_.back().acknowledged &&
        ranges_.back().hi + 1 == lo && ranges_.back().lo > synced) {
      ranges_.back().hi = hi;
    } else {
      ranges_.push_back({lo, hi, sync, false});
    }
  }

  // Records [lo, hi], whose sync failed, are lost; those already lost by a
  // failed append are not counted twice. Returns how many are newly lost.
  // `lo` is one past the last synced record.
  std::uint64_t lose_unsynced(std::uint64_t lo, std::uint64_t hi) {
    if (hi < lo) return 0;
    // Ranges at or after lo are append losses of batches since the last sync
    // (sync losses end where the last sync ended): take them off the end and
    // put them back between the new ranges, so that the list stays sorted.
    std::vector<range> tail;
    while (!ranges_.empty() && ranges_.back().lo >= lo) {
      tail.push_back(ranges_.back());
      ranges_.pop_back();
    }
    std::uint64_t at = lo, added = 0;
    for (auto it = tail.rbegin(); it != tail.rend(); ++it) {
      if (it->lo > at) {
        ranges_.push_back({at, it->lo - 1, true, false});
        added += it->lo - at;
      }
      ranges_.push_back(*it);
      at = it->hi + 1;
    }
    if (at <= hi) {
      ranges_.push_back({at, hi, true, false});
      added += hi - at + 1;
    }
    total_ += added;
    return added;
  }

  // The program has seen every loss so far. Returns how many records that is.
  std::uint64_t acknowledge() noexcept {
    std::uint64_t n = 0;
    for (range& l : ranges_) {
      if (l.acknowledged) continue;
      l.acknowledged = true;
      n += l.hi - l.lo + 1;
    }
    acknowledged_ += n;
    return n;
  }

  // How many records in (from, through] are lost and not acknowledged
  // (`durable`: lost either way; else only by a failed append); `first` gets
  // the first of them.
  [[nodiscard]] std::uint64_t unacknowledged_in(std::uint64_t from, std::uint64_t through,
                                                bool durable, std::uint64_t& first) const noexcept {
    std::uint64_t n = 0;
    first = 0;
    for (const range& l : ranges_) {
      if (l.acknowledged || (!durable && l.sync)) continue;
      const std::uint64_t lo = std::max(l.lo, from + 1);
      const std::uint64_t hi = std::min(l.hi, through);
      if (hi < lo) continue;
      if (n == 0) first = lo;
      n += hi - lo + 1;
    }
    return n;
  }

  // Whether a record in [first, last] is lost, acknowledged or not (the
  // ranges are kept while someone may ask: see prune).
  [[nodiscard]] bool any_in(std::uint64_t first, std::uint64_t last) const noexcept {
    for (const range& l : ranges_)
      if (l.lo <= last && l.hi >= first) return true;
    return false;
  }

  // Forgets acknowledged ranges up to `synced` (the caller makes sure that
  // no write-ahead delivery still needs to see them; ranges after the last
  // sync stay, so that a failed sync does not count a failed append's
  // records twice).
  void prune(std::uint64_t synced) {
    ranges_.erase(std::remove_if(ranges_.begin(), ranges_.end(),
                                 [&](const range& l) { return l.acknowledged && l.hi <= synced; }),
                  ranges_.end());
  }

  [[nodiscard]] std::uint64_t unacknowledged() const noexcept { return total_ - acknowledged_; }
  [[nodiscard]] std::size_t ranges() const noexcept { return ranges_.size(); }

 private:
  struct range {
    std::uint64_t lo, hi;
    bool sync;          // by a failed sync (else by a failed append)
    bool acknowledged;  // the program has seen it: flush/sync no longer fail for it
  };
  std::vector<range> ranges_;  // sorted, disjoint
  std::uint64_t total_ = 0;
  std::uint64_t acknowledged_ = 0;
};

}  // namespace detail
}  // namespace SLUICE_ABI
}  // namespace sluice
