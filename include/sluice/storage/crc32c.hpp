// sluice — CRC32C (Castagnoli), the checksum of every stored record.
//
// On x86-64 the SSE4.2 crc32 instruction is used when the processor has it
// (checked once at run time); elsewhere a slicing-by-8 table. Both give the
// same value: crc32c("123456789") == 0xE3069283.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SLUICE_CRC32C_X86 1
#include <nmmintrin.h>

#include "../config.hpp"
#else
#define SLUICE_CRC32C_X86 0
#endif

namespace sluice {
inline namespace SLUICE_ABI {
namespace detail {

struct crc32c_tables {
  std::uint32_t t[8][256];
};

constexpr crc32c_tables make_crc32c_tables() noexcept {
  crc32c_tables r{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1U) ? (c >> 1) ^ 0x82F63B78U : c >> 1;
    r.t[0][i] = c;
  }
  for (std::uint32_t i = 0; i < 256; ++i)
    for (int s = 1; s < 8; ++s) r.t[s][i] = (r.t[s - 1][i] >> 8) ^ r.t[0][r.t[s - 1][i] & 0xFFU];
  return r;
}

inline constexpr crc32c_tables crc32c_table = make_crc32c_tables();

// Continues a CRC (pass the previous result; start with 0).
inline std::uint32_t crc32c_portable(std::uint32_t crc, const void* data, std::size_t n) noexcept {
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint32_t c = ~crc;
  const auto& t = crc32c_table.t;
  while (n >= 8) {
    std::uint32_t lo = 0, hi = 0;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + 4, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    lo = __builtin_bswap32(lo);
    hi = __builtin_bswap32(hi);
#endif
    lo ^= c;
    c = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^
        t[3][hi & 0xFF] ^ t[2][(hi >> 8) & 0xFF] ^ t[1][(hi >> 16) & 0xFF] ^ t[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n-- != 0) c = (c >> 8) ^ t[0][(c ^ *p++) & 0xFFU];
  return ~c;
}

#if SLUICE_CRC32C_X86
__attribute__((target("sse4.2"))) inline std::uint32_t crc32c_sse42(std::uint32_t crc,
                                                                    const void* data,
                                                                    std::size_t n) noexcept {
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint64_t c = ~crc;
  while (n >= 8) {
    std::uint64_t v = 0;
    std::memcpy(&v, p, 8);
    c = _mm_crc32_u64(c, v);
    p += 8;
    n -= 8;
  }
  auto c32 = static_cast<std::uint32_t>(c);
  while (n-- != 0) c32 = _mm_crc32_u8(c32, *p++);
  return ~c32;
}

// Four CRCs at once (each from 0): the crc32 instruction takes three cycles
// before its result can be used again, so four independent records keep it
// busy where one record would leave it idle two cycles in three.
__attribute__((target("sse4.2"))) inline void crc32c_x4_sse42(const unsigned char* const p[4],
                                                              const std::size_t n[4],
                                                              std::uint32_t out[4]) noexcept {
  std::size_t common = n[0];
  for (int k = 1; k < 4; ++k) common = n[k] < common ? n[k] : common;
  common &= ~std::size_t{7};
  std::uint64_t c0 = 0xFFFFFFFFU, c1 = 0xFFFFFFFFU, c2 = 0xFFFFFFFFU, c3 = 0xFFFFFFFFU;
  for (std::size_t i = 0; i < common; i += 8) {
    std::uint64_t v0 = 0, v1 = 0, v2 = 0, v3 = 0;
    std::memcpy(&v0, p[0] + i, 8);
    std::memcpy(&v1, p[1] + i, 8);
    std::memcpy(&v2, p[2] + i, 8);
    std::memcpy(&v3, p[3] + i, 8);
    c0 = _mm_crc32_u64(c0, v0);
    c1 = _mm_crc32_u64(c1, v1);
    c2 = _mm_crc32_u64(c2, v2);
    c3 = _mm_crc32_u64(c3, v3);
  }
  const std::uint64_t c[4] = {c0, c1, c2, c3};
  // The rest of each: crc32c_sse42 continues from a finished value.
  for (int k = 0; k < 4; ++k)
    out[k] = crc32c_sse42(~static_cast<std::uint32_t>(c[k]), p[k] + common, n[k] - common);
}

inline bool crc32c_hardware() noexcept {
  static const bool has = __builtin_cpu_supports("sse4.2") != 0;
  return has;
}
#endif

inline std::uint32_t crc32c(std::uint32_t crc, const void* data, std::size_t n) noexcept {
#if SLUICE_CRC32C_X86
  if (crc32c_hardware()) return crc32c_sse42(crc, data, n);
#endif
  return crc32c_portable(crc, data, n);
}

inline std::uint32_t crc32c(const void* data, std::size_t n) noexcept {
  return crc32c(0, data, n);
}

// out[k] = crc32c(p[k], n[k]) for k < 4.
inline void crc32c_x4(const unsigned char* const p[4], const std::size_t n[4],
                      std::uint32_t out[4]) noexcept {
#if SLUICE_CRC32C_X86
  if (crc32c_hardware()) {
    crc32c_x4_sse42(p, n, out);
    return;
  }
#endif
  for (int k = 0; k < 4; ++k) out[k] = crc32c_portable(0, p[k], n[k]);
}

}  // namespace detail
}  // namespace SLUICE_ABI
}  // namespace sluice
