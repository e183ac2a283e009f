// sluice — a bounded in-memory ring of the last N records: for tests,
// debugging and "last N events" dumps.
//
// Thread-safety: the recorder's writer appends; events() and size() may be
// called from any thread at the same time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "../config.hpp"
#include "codec.hpp"
#include "format.hpp"
#include "sink.hpp"

namespace sluice {
inline namespace SLUICE_ABI {

// A stored event that owns its bytes.
struct owned_event {
  std::uint64_t offset = 0;
  std::int64_t time_ns = 0;
  key_type key = 0;
  std::uint32_t producer = 0;
  std::uint32_t version = 0;
  bool has_key = false;
  bool replayed = false;
  std::string type;
  std::vector<unsigned char> payload;

  // A view of it (valid while this object lives and is not changed).
  [[nodiscard]] stored_event view() const noexcept {
    stored_event e;
    e.offset = offset;
    e.time_ns = time_ns;
    e.key = key;
    e.producer = producer;
    e.version = version;
    e.has_key = has_key;
    e.replayed = replayed;
    e.type = type;
    e.payload.data = payload.data();
    e.payload.size = payload.size();
    return e;
  }
  static owned_event from(const stored_event& e) {
    owned_event o;
    o.assign(e);
    return o;
  }
  // Becomes a copy of `e`, reusing its buffers (no allocation once they are
  // large enough).
  void assign(const stored_event& e) {
    offset = e.offset;
    time_ns = e.time_ns;
    key = e.key;
    producer = e.producer;
    version = e.version;
    has_key = e.has_key;
    replayed = e.replayed;
    type.assign(e.type.data(), e.type.size());
    payload.assign(e.payload.data, e.payload.data + e.payload.size);
  }
};

class memory_sink final : public sink {
 public:
  // Keeps the last `capacity` records (at least 1).
  explicit memory_sink(std::size_t capacity) : ring_(capacity == 0 ? 1 : capacity) {}

  storage_error append(record_batch& b) override {
    std::lock_guard<std::mutex> lock(mutex_);
    b.number(next_);
    next_ += b.size();
    b.for_each([&](const stored_event& e) {
      ring_[head_].assign(e);
      head_ = (head_ + 1) % ring_.size();
      if (count_ < ring_.size()) ++count_;
    });
    return {};
  }

  // A copy of the records held, oldest first.
  [[nodiscard]] std::vector<owned_event> events() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<owned_event> out;
    out.reserve(count_);
    const std::size_t first = (head_ + ring_.size() - count_) % ring_.size();
    for (std::size_t i = 0; i < count_; ++i) out.push_back(ring_[(first + i) % ring_.size()]);
    return out;
  }
  [[nodiscard]] std::size_t size() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return count_;
  }
  [[nodiscard]] std::size_t capacity() const noexcept { return ring_.size(); }
  // Records ever appended (the next record's offset).
  [[nodiscard]] std::uint64_t appended() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return next_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<owned_event> ring_;
  std::size_t head_ = 0;
  std::size_t count_ = 0;
  std::uint64_t next_ = 0;
};

}  // namespace SLUICE_ABI
}  // namespace sluice
