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
#include "error.hpp"
#include "format.hpp"

namespace sluice {
inline namespace SLUICE_ABI {

class record_batch {
 public:
  record_batch(std::vector<unsigned char>& bytes, std::size_t count) noexcept
      : bytes_(&bytes), count_(count) {}

  [[nodiscard]] std::size_t size() const noexcept { return count_; }
  [[nodiscard]] bool empty() const noexcept { return count_ == 0; }
  [[nodiscard]] const unsigned char* data() const noexcept { return bytes_->data(); }
  [[nodiscard]] std::size_t bytes() const noexcept { return bytes_->size(); }

  // Numbers the records first_offset, first_offset + 1, ... and checksums them.
  void seal(std::uint64_t first_offset) noexcept {
    unsigned char* p = bytes_->data();
    unsigned char* end = p + bytes_->size();
    std::uint64_t off = first_offset;
    while (p < end) {
      storage::seal_record(p, off++);
      p += storage::frame_size + storage::load_le<std::uint32_t>(p);
    }
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
    const unsigned char* p = bytes_->data();
    while (n < count_) {
      const std::size_t next = storage::frame_size + storage::load_le<std::uint32_t>(p + used);
      if (used + next > bytes) break;
      used += next;
      ++n;
    }
    return n;
  }

  // The largest record body in the batch.
  [[nodiscard]] std::size_t largest() const noexcept {
    std::size_t most = 0;
    const unsigned char* p = bytes_->data();
    const unsigned char* end = p + bytes_->size();
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
    unsigned char* p = bytes_->data();
    unsigned char* end = p + bytes_->size();
    std::uint64_t off = first_offset;
    while (p < end) {
      storage::store_le<std::uint64_t>(p + storage::frame_size, off++);
      p += storage::frame_size + storage::load_le<std::uint32_t>(p);
    }
  }

  // Calls f(const stored_event&) for each record, in order.
  template <class F>
  void for_each(F&& f) const {
    const unsigned char* p = bytes_->data();
    const unsigned char* end = p + bytes_->size();
    stored_event e;
    while (p < end) {
      const std::uint32_t body = storage::load_le<std::uint32_t>(p);
      storage::read_body(p + storage::frame_size, body, e);
      f(static_cast<const stored_event&>(e));
      p += storage::frame_size + body;
    }
  }

 private:
  std::vector<unsigned char>* bytes_;
  std::size_t count_;
  std::size_t stored_ = 0;
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
