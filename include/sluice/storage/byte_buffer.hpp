// sluice — a growable byte buffer that does not zero what it hands out.
//
// The recorder encodes records into one of these: grow(n) returns n bytes
// that the caller overwrites at once, so zero-filling them first (as
// std::vector::resize does) would write every recorded byte twice. Growth
// never throws: when memory runs out grow() returns nullptr and the buffer is
// as it was.
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <new>
#include <utility>

#include "../config.hpp"

namespace sluice {
inline namespace SLUICE_ABI {
namespace detail {

class byte_buffer {
 public:
  byte_buffer() = default;
  byte_buffer(const byte_buffer&) = delete;
  byte_buffer& operator=(const byte_buffer&) = delete;

  [[nodiscard]] unsigned char* data() noexcept { return data_.get(); }
  [[nodiscard]] const unsigned char* data() const noexcept { return data_.get(); }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }

  // Makes room for `n` bytes in all; false (and nothing changed) when there
  // is no memory for them.
  [[nodiscard]] bool reserve(std::size_t n) noexcept {
    if (n <= capacity_) return true;
    std::unique_ptr<unsigned char[]> bigger(new (std::nothrow) unsigned char[n]);
    if (bigger == nullptr) return false;
    if (size_ != 0) std::memcpy(bigger.get(), data_.get(), size_);
    data_ = std::move(bigger);
    capacity_ = n;
    return true;
  }

  // Appends `n` bytes, not initialised, and returns where they start; nullptr
  // (and nothing changed) when there is no memory for them.
  [[nodiscard]] unsigned char* grow(std::size_t n) noexcept {
    if (n > capacity_ - size_) {
      if (n > max_size() - size_) return nullptr;
      const std::size_t want = size_ + n;
      const std::size_t doubled = capacity_ <= max_size() / 2 ? capacity_ * 2 : max_size();
      if (!reserve(want > doubled ? want : doubled) && !reserve(want)) return nullptr;
    }
    unsigned char* p = data_.get() + size_;
    size_ += n;
    return p;
  }

  // Drops the bytes from `n` on (n <= size()).
  void shrink_to(std::size_t n) noexcept {
    if (n < size_) size_ = n;
  }
  void clear() noexcept { size_ = 0; }

  void swap(byte_buffer& o) noexcept {
    data_.swap(o.data_);
    std::swap(size_, o.size_);
    std::swap(capacity_, o.capacity_);
  }

 private:
  static constexpr std::size_t max_size() noexcept { return ~std::size_t{0} / 2; }

  std::unique_ptr<unsigned char[]> data_;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};

}  // namespace detail
}  // namespace SLUICE_ABI
}  // namespace sluice
