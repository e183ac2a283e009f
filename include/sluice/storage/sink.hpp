// sluice — sinks: where a recorder's records go.
//
// A recorder (recorder.hpp) encodes events on the threads that deliver them
// and hands them, in batches, to its sink on its own writer thread. A sink's
// members are only ever called from that one thread, so a sink needs no
// locking of its own against the recorder (only against its own readers).
//
// Batches hold records already laid out as in a log file (format.hpp) but not
// yet numbered: a sink numbers them with seal(first_offset), which also
// computes their checksums, or reads them with for_each.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "../config.hpp"
#include "crc32c.hpp"
#include "error.hpp"
#include "format.hpp"

namespace sluice {
inline namespace SLUICE_ABI {

// A batch refers to bytes it does not own: those of `bytes` as they are when
// the batch is made (a vector changed afterwards leaves the batch pointing at
// what it held). Records without a time get the batch's time when the sink
// first seals, numbers or reads them: data() and for_each() may write into
// the bytes, so a sink calls them on its own (the writer's) thread, not from
// several threads at once.
class record_batch {
 public:
  record_batch(std::vector<unsigned char>& bytes, std::size_t count) noexcept
      : data_(bytes.data()), bytes_(bytes.size()), count_(count) {}
  record_batch(unsigned char* data, std::size_t bytes, std::size_t count) noexcept
      : data_(data), bytes_(bytes), count_(count) {}

  [[nodiscard]] std::size_t size() const noexcept { return count_; }
  [[nodiscard]] bool empty() const noexcept { return count_ == 0; }
  [[nodiscard]] const unsigned char* data() const noexcept {
    stamp_pending();
    return data_;
  }
  [[nodiscard]] std::size_t bytes() const noexcept { return bytes_; }

  // What the batch's maker knows, so that the sink need not find it out with
  // a pass of its own over the bytes. (The recorder sets both.)
  // The largest record body in the batch (exactly that).
  void set_largest(std::size_t body) noexcept { largest_ = body; }
  // The time records without one (time 0) get, given when they are sealed,
  // numbered or read, in the same pass.
  void set_time_of_unstamped(std::int64_t time_ns) noexcept {
    unstamped_time_ = time_ns;
    stamp_pending_ = time_ns != 0;
  }

  // Numbers the records first_offset, first_offset + 1, ... and checksums
  // them, four records at a time.
  void seal(std::uint64_t first_offset) noexcept {
    unsigned char* p = data_;
    unsigned char* end = p + bytes_;
    std::uint64_t off = first_offset;
    const unsigned char* body[4];
    std::size_t len[4];
    unsigned char* at[4];
    int k = 0;
    while (p < end) {
      const std::uint32_t n = storage::load_le<std::uint32_t>(p);
      prepare(p, off++);
      at[k] = p;
      body[k] = p + storage::frame_size;
      len[k] = n;
      if (++k == 4) {
        std::uint32_t crc[4];
        detail::crc32c_x4(body, len, crc);
        for (int i = 0; i < 4; ++i) storage::store_le<std::uint32_t>(at[i] + 4, crc[i]);
        k = 0;
      }
      p += storage::frame_size + n;
    }
    for (int i = 0; i < k; ++i)
      storage::store_le<std::uint32_t>(at[i] + 4, detail::crc32c(body[i], len[i]));
    stamp_pending_ = false;
  }

  // How many of the batch's records the sink stored (the first ones): all of
  // them after a successful append; after a failed one, those that are in
  // the sink all the same (a write that stopped part-way).
  [[nodiscard]] std::size_t stored() const noexcept { return stored_; }
  void set_stored(std::size_t n) noexcept { stored_ = n < count_ ? n : count_; }

  // How many whole records the first `bytes` bytes hold; `used` gets their size.
  [[nodiscard]] std::size_t records_within(std::size_t bytes, std::size_t& used) const noexcept {
    std::size_t n = 0;
    used = 0;
    while (n < count_) {
      const std::size_t next = storage::frame_size + storage::load_le<std::uint32_t>(data_ + used);
      if (used + next > bytes) break;
      used += next;
      ++n;
    }
    return n;
  }

  // The largest record body in the batch.
  [[nodiscard]] std::size_t largest() const noexcept {
    if (largest_ != unknown) return largest_;
    std::size_t most = 0;
    const unsigned char* p = data_;
    const unsigned char* end = p + bytes_;
    while (p < end) {
      const std::uint32_t body = storage::load_le<std::uint32_t>(p);
      most = body > most ? body : most;
      p += storage::frame_size + body;
    }
    return most;
  }

  // Numbers the records without checksumming them: for sinks that keep no
  // checksum (memory, text).
  void number(std::uint64_t first_offset) noexcept {
    unsigned char* p = data_;
    unsigned char* end = p + bytes_;
    std::uint64_t off = first_offset;
    while (p < end) {
      prepare(p, off++);
      p += storage::frame_size + storage::load_le<std::uint32_t>(p);
    }
    stamp_pending_ = false;
  }

  // Calls f(const stored_event&) for each record, in order.
  template <class F>
  void for_each(F&& f) const {
    stamp_pending();
    const unsigned char* p = data_;
    const unsigned char* end = p + bytes_;
    stored_event e;
    while (p < end) {
      const std::uint32_t body = storage::load_le<std::uint32_t>(p);
      storage::read_body(p + storage::frame_size, body, e);
      f(static_cast<const stored_event&>(e));
      p += storage::frame_size + body;
    }
  }

 private:
  static constexpr std::size_t unknown = ~std::size_t{0};

  // Numbers one record, and gives it the batch's time if it has none.
  void prepare(unsigned char* p, std::uint64_t offset) const noexcept {
    storage::store_le<std::uint64_t>(p + storage::frame_size, offset);
    if (stamp_pending_) stamp(p);
  }
  void stamp(unsigned char* p) const noexcept {
    unsigned char* t = p + storage::frame_size + 8;
    if (storage::load_le<std::int64_t>(t) == 0) storage::store_le<std::int64_t>(t, unstamped_time_);
  }
  // Gives the records without a time the batch's time, unless done already.
  void stamp_pending() const noexcept {
    if (!stamp_pending_) return;
    unsigned char* p = data_;
    unsigned char* end = p + bytes_;
    while (p < end) {
      stamp(p);
      p += storage::frame_size + storage::load_le<std::uint32_t>(p);
    }
    stamp_pending_ = false;
  }

  unsigned char* data_;
  std::size_t bytes_;
  std::size_t count_;
  std::size_t stored_ = 0;
  std::size_t largest_ = unknown;
  std::int64_t unstamped_time_ = 0;
  mutable bool stamp_pending_ = false;
};

class sink {
 public:
  virtual ~sink() = default;
  // Takes a batch of records, in order. The bytes may be changed (seal).
  // On success the sink has them all. On an error it says in
  // batch.set_stored() how many of the first records it has all the same
  // (0 by default); the rest are lost, and the recorder reports them.
  virtual storage_error append(record_batch& batch) = 0;
  // Hands what is buffered to the operating system.
  virtual storage_error flush() { return {}; }
  // Makes everything appended durable (fdatasync for files).
  virtual storage_error sync() { return flush(); }
  // Flushes, syncs and releases resources; later calls may fail with closed.
  virtual storage_error close() { return sync(); }
  // The largest record body the sink stores; the recorder refuses larger
  // records when it encodes them (counted as rejected), so that nothing is
  // acknowledged that a reader would take for damage.
  [[nodiscard]] virtual std::size_t max_record() const noexcept {
    return storage::default_max_record;
  }
};

}  // namespace SLUICE_ABI
}  // namespace sluice
