// sluice — errors of the storage layer.
//
// One rule, as in the core: what a program cannot prevent (a full disk, a
// failed sync, a damaged file, bytes that do not decode) is a value, never an
// exception: storage_error here, decode_error in codec.hpp, read_status in
// log_reader.hpp. Every function that returns a storage_error reports all its
// problems that way, bad options included (storage_errc::bad_option).
// Mistakes in setting things up that have no storage_error to return them in
// (a recorder made with impossible options, a codec name registered twice, a
// recorder attached after the bus started) are refused as the core refuses
// them: with exceptions, by throwing std::invalid_argument or
// std::logic_error (both std::logic_error); without, by a returned message or
// valid() == false.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "../config.hpp"

namespace sluice {
inline namespace SLUICE_ABI {

enum class storage_errc : std::uint8_t {
  ok,
  io,           // the operating system refused (see message: it names the call and errno)
  bad_option,   // an impossible option
  not_a_log,    // a file where a segment should be is not one
  bad_version,  // a segment of another format version
  damaged,      // a record or header failed its checks (see file and offset)
  closed,       // the sink or recorder is closed
  locked,       // another writer has the log open
};

// What went wrong and where. `file` and `offset` (bytes into the file) are set
// when the error concerns a place in a file.
struct storage_error {
  storage_errc code = storage_errc::ok;
  std::string message;
  std::string file;
  std::uint64_t offset = 0;

  [[nodiscard]] bool ok() const noexcept { return code == storage_errc::ok; }
  explicit operator bool() const noexcept { return !ok(); }

  static storage_error make(storage_errc c, std::string msg, std::string file = {},
                            std::uint64_t offset = 0) {
    storage_error e;
    e.code = c;
    e.message = std::move(msg);
    e.file = std::move(file);
    e.offset = offset;
    return e;
  }

  // "file:offset: message" (or just the message).
  [[nodiscard]] std::string describe() const {
    if (file.empty()) return message;
    return file + ":" + std::to_string(offset) + ": " + message;
  }
};

[[nodiscard]] constexpr const char* to_string(storage_errc c) noexcept {
  switch (c) {
    case storage_errc::ok:
      return "ok";
    case storage_errc::io:
      return "io";
    case storage_errc::bad_option:
      return "bad_option";
    case storage_errc::not_a_log:
      return "not_a_log";
    case storage_errc::bad_version:
      return "bad_version";
    case storage_errc::damaged:
      return "damaged";
    case storage_errc::closed:
      return "closed";
    case storage_errc::locked:
      return "locked";
  }
  return "unknown";
}

}  // namespace SLUICE_ABI
}  // namespace sluice
