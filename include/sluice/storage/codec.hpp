// sluice — codecs: how an event type becomes stored bytes and back.
//
// Every stored type has a stable, user-given name (what the log stores, so
// renaming a C++ type does not break old logs) and a version number (bump it
// when the layout changes; decoders get the version a record was written
// with). Types whose bytes are all value (trivially copyable, with unique
// object representations: no padding, no floating point) are stored with
// memcpy by default; for others the bytes of padding would be stored (stack
// garbage in a durable file, and equal events with different checksums), so
// they need a codec: sluice::fields(&T::a, &T::b, ...) stores chosen members
// one after the other, memcpy_codec<T> given explicitly says "T has no
// padding" (floating-point members), and any serializer can be plugged in:
//
//   struct note_codec {
//     void encode(const note& n, sluice::byte_writer& out) const;
//     sluice::decoded<note> decode(sluice::byte_view in, std::uint32_t version) const;
//   };
//   sluice::codecs types;
//   types.add<order>("order");                  // memcpy, version 1
//   types.add<shot>("shot", 1, sluice::fields(&shot::x, &shot::y, &shot::kind));
//   types.add<note>("note", 2, note_codec{});   // a codec of one's own
//
// A codec whose payloads all have one size may say so, as the memcpy and
// fields() codecs do: `static constexpr std::size_t encoded_size` and
// `void encode_to(const T&, unsigned char* out) const noexcept`, which writes
// exactly encoded_size bytes. The recorder then writes the payload straight
// into its buffer instead of going through a byte_writer.
//
// Decoding errors are values (sluice::decoded holds an event or an error),
// never undefined behaviour: the memcpy codec checks the size and version, and
// a throwing codec is caught and reported as an error.
//
// Thread-safety: add() before use; after that a codecs object is read-only and
// may be shared by any number of threads (recorders, readers, replays).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../detail/type_id.hpp"
#include "../errors.hpp"
#include "../event.hpp"
#include "../producer.hpp"
#include "byte_buffer.hpp"
#include "format.hpp"

#if SLUICE_HAS_EXCEPTIONS
#include <exception>
#include <stdexcept>
#endif

namespace sluice {
inline namespace SLUICE_ABI {

// Appends encoded bytes (little-endian helpers for integers).
class byte_writer {
 public:
  explicit byte_writer(std::vector<unsigned char>& out) noexcept : out_(&out) {}
  // Into a recorder's buffer: growing it never throws; when there is no
  // memory, the bytes are not appended and failed() says so.
  explicit byte_writer(detail::byte_buffer& out) noexcept : buf_(&out) {}
  void append(const void* p, std::size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    if (buf_ != nullptr) {
      unsigned char* to = failed_ ? nullptr : buf_->grow(n);
      if (to == nullptr) {
        failed_ = true;
        return;
      }
      if (n != 0) std::memcpy(to, b, n);
      return;
    }
    out_->insert(out_->end(), b, b + n);
  }
  // Whether an append found no memory (a byte_buffer's writer only).
  [[nodiscard]] bool failed() const noexcept { return failed_; }
  void append(std::string_view s) { append(s.data(), s.size()); }
  template <class Int>
  void put(Int v) {
    static_assert(std::is_integral_v<Int>, "sluice: byte_writer::put takes integers");
    unsigned char b[sizeof(Int)];
    storage::store_le<Int>(b, v);
    append(b, sizeof b);
  }

 private:
  std::vector<unsigned char>* out_ = nullptr;
  detail::byte_buffer* buf_ = nullptr;
  bool failed_ = false;
};

// Reads encoded bytes without ever reading past the end: every getter returns
// false (and reads nothing) when too few bytes are left.
class byte_reader {
 public:
  explicit byte_reader(byte_view in) noexcept : p_(in.data), left_(in.size) {}
  template <class Int>
  [[nodiscard]] bool get(Int& v) noexcept {
    static_assert(std::is_integral_v<Int>, "sluice: byte_reader::get takes integers");
    if (left_ < sizeof(Int)) return false;
    v = storage::load_le<Int>(p_);
    p_ += sizeof(Int);
    left_ -= sizeof(Int);
    return true;
  }
  [[nodiscard]] bool bytes(std::size_t n, byte_view& out) noexcept {
    if (left_ < n) return false;
    out.data = p_;
    out.size = n;
    p_ += n;
    left_ -= n;
    return true;
  }
  [[nodiscard]] bool string(std::size_t n, std::string& out) {
    byte_view v;
    if (!bytes(n, v)) return false;
    out.assign(reinterpret_cast<const char*>(v.data), v.size);
    return true;
  }
  [[nodiscard]] std::size_t left() const noexcept { return left_; }
  [[nodiscard]] bool done() const noexcept { return left_ == 0; }

 private:
  const unsigned char* p_;
  std::size_t left_;
};

enum class decode_errc : std::uint8_t {
  ok,
  unknown_type,         // no codec is registered under the record's name
  wrong_type,           // the record holds another type than the one asked for
  wrong_size,           // the payload's size does not fit the type
  unsupported_version,  // the codec does not read this version
  malformed,            // the codec found the payload invalid
  codec_failed,         // the codec threw
};

struct decode_error {
  decode_errc code = decode_errc::ok;
  const char* message = "";
};

// Either an event or why decoding failed.
template <class T>
class decoded {
 public:
  decoded(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  decoded(decode_error e) : error_(e) {}          // NOLINT
  [[nodiscard]] bool ok() const noexcept { return value_.has_value(); }
  explicit operator bool() const noexcept { return ok(); }
  [[nodiscard]] T& value() noexcept { return *value_; }
  [[nodiscard]] const T& value() const noexcept { return *value_; }
  T& operator*() noexcept { return *value_; }
  const T& operator*() const noexcept { return *value_; }
  T* operator->() noexcept { return &*value_; }
  const T* operator->() const noexcept { return &*value_; }
  [[nodiscard]] const decode_error& error() const noexcept { return error_; }

 private:
  std::optional<T> value_;
  decode_error error_;
};

[[nodiscard]] inline decode_error decode_failure(const char* why,
                                                 decode_errc c = decode_errc::malformed) noexcept {
  return decode_error{c, why};
}

// The default codec of trivially copyable types: the object's bytes.
// Its decoder trusts the bytes of a (checksummed) record: T must be valid for
// every byte pattern of its size (no bool or enum members: use fields(),
// which checks bools, or a codec of one's own).
template <class T>
struct memcpy_codec {
  static_assert(std::is_trivially_copyable_v<T>,
                "sluice: memcpy_codec needs a trivially copyable type; give a codec for others");
  using version_set_by_add = void;  // codecs::add sets `version`
  std::uint32_t version = 1;
  void encode(const T& v, byte_writer& out) const { out.append(&v, sizeof(T)); }
  // Every event encodes to the same bytes count (what the recorder's fast
  // path needs, see codecs::add).
  static constexpr std::size_t encoded_size = sizeof(T);
  void encode_to(const T& v, unsigned char* out) const noexcept {
    std::memcpy(out, static_cast<const void*>(&v), sizeof(T));
  }
  decoded<T> decode(byte_view in, std::uint32_t v) const noexcept {
    if (v != version)
      return decode_failure("sluice: stored with another version; give a codec that reads it",
                            decode_errc::unsupported_version);
    if (in.size != sizeof(T))
      return decode_failure("sluice: payload size differs from sizeof(T)", decode_errc::wrong_size);
    static_assert(std::is_default_constructible_v<T>,
                  "sluice: memcpy_codec needs a default constructible type");
    T value;
    std::memcpy(static_cast<void*>(&value), in.data, sizeof(T));
    return value;
  }
};

// A codec that stores chosen members, each trivially copyable, one after the
// other (no padding between them), and reads them back into a
// value-initialised T. Made by sluice::fields(&T::a, &T::b, ...). A bool
// member stored as anything but 0 or 1 is malformed (never an invalid bool);
// like memcpy_codec, other members must be valid for every byte pattern.
template <class T, class... Members>
struct fields_codec {
  static_assert(sizeof...(Members) > 0, "sluice: fields() needs at least one member");
  static_assert(std::is_default_constructible_v<T>,
                "sluice: fields() decodes into a value-initialised T: T needs a default "
                "constructor");
  using version_set_by_add = void;  // codecs::add sets `version`
  std::tuple<Members T::*...> members;
  std::uint32_t version = 1;
  static constexpr std::size_t size = (sizeof(Members) + ...);

  void encode(const T& v, byte_writer& out) const {
    std::apply([&](auto... m) { (out.append(&(v.*m), sizeof(v.*m)), ...); }, members);
  }
  static constexpr std::size_t encoded_size = size;
  void encode_to(const T& v, unsigned char* out) const noexcept {
    std::apply(
        [&](auto... m) {
          ((std::memcpy(out, static_cast<const void*>(&(v.*m)), sizeof(v.*m)), out += sizeof(v.*m)),
           ...);
        },
        members);
  }
  decoded<T> decode(byte_view in, std::uint32_t v) const noexcept {
    if (v != version)
      return decode_failure("sluice: stored with another version; give a codec that reads it",
                            decode_errc::unsupported_version);
    if (in.size != size)
      return decode_failure("sluice: payload size differs from the fields' sizes",
                            decode_errc::wrong_size);
    T value{};
    std::size_t at = 0;
    const bool ok = std::apply(
        [&](auto... m) {
          return (load(value.*m, in.data + std::exchange(at, at + sizeof(value.*m))) && ...);
        },
        members);
    if (!ok) return decode_failure("sluice: a bool field holds neither 0 nor 1");
    return value;
  }

 private:
  template <class M>
  static bool load(M& dst, const unsigned char* p) noexcept {
    if constexpr (std::is_same_v<M, bool>) {
      if (*p > 1) return false;
      dst = *p == 1;
    } else {
      std::memcpy(static_cast<void*>(&dst), p, sizeof(M));
    }
    return true;
  }
};

template <class T, class... Members>
[[nodiscard]] fields_codec<T, Members...> fields(Members T::*... members) {
  static_assert((std::is_trivially_copyable_v<Members> && ...),
                "sluice: fields() stores trivially copyable members; give a codec for others");
  return fields_codec<T, Members...>{std::make_tuple(members...), 1};
}

// One registered type, type-erased.
struct codec_entry {
  std::string name;
  std::uint32_t version = 1;
  std::uint32_t type = 0;  // sluice's type index
  std::shared_ptr<void> codec;
  // Appends the payload of the event at `ev`.
  void (*encode)(const void* codec, const void* ev, byte_writer& out) = nullptr;
  // For codecs whose every payload is fixed_size bytes (encoded_size and
  // encode_to, see codecs::add): writes the payload of `ev` at `out`;
  // otherwise nullptr.
  void (*encode_fixed)(const void* codec, const void* ev, unsigned char* out) noexcept = nullptr;
  std::size_t fixed_size = 0;
  // Decodes and publishes through `p` with the stored key, without waiting
  // (`would_block`: the lane is full, drain and try again); false with `err`
  // set when the payload could not be decoded.
  bool (*publish)(const void* codec, const stored_event& e, producer& p, publish_result& r,
                  bool& would_block, decode_error& err) = nullptr;
  // Decodes into `out`, a decoded<T> of the entry's type.
  void (*decode_into)(const void* codec, byte_view in, std::uint32_t version, void* out) = nullptr;
};

namespace detail {
// A codec whose payloads all have one size says so with
//   static constexpr std::size_t encoded_size;  // > 0
//   void encode_to(const T&, unsigned char* out) const noexcept;  // writes encoded_size bytes
// encode and encode_to must be declared in the same class: a codec that
// derives from one of fixed size and writes its own encode is not taken for
// one (its encode_to would write the base's layout). Sizes beyond 2^30 are
// not taken either (no record is that large).
template <class M>
struct member_class {};
template <class R, class K, class... A>
struct member_class<R (K::*)(A...) const> {
  using type = K;
};
template <class R, class K, class... A>
struct member_class<R (K::*)(A...) const noexcept> {
  using type = K;
};
template <class C, class T, class = void>
struct fixed_size_codec : std::false_type {};
template <class C, class T>
struct fixed_size_codec<
    C, T,
    std::enable_if_t<std::is_same_v<decltype(C::encoded_size), const std::size_t>&& noexcept(
                         std::declval<const C&>().encode_to(std::declval<const T&>(),
                                                            std::declval<unsigned char*>())) &&
                     std::is_same_v<typename member_class<decltype(&C::encode)>::type,
                                    typename member_class<decltype(&C::encode_to)>::type>>>
    : std::bool_constant<(C::encoded_size > 0 && C::encoded_size <= (std::size_t{1} << 30))> {};

template <class C, class = void>
struct version_set_by_add : std::false_type {};
template <class C>
struct version_set_by_add<C, std::void_t<typename C::version_set_by_add>> : std::true_type {};

template <class T, class Codec>
decoded<T> run_decode(const Codec& c, byte_view in, std::uint32_t version) noexcept {
#if SLUICE_HAS_EXCEPTIONS
  try {
    return c.decode(in, version);
  } catch (...) {
    return decode_failure("sluice: the codec threw while decoding", decode_errc::codec_failed);
  }
#else
  return c.decode(in, version);
#endif
}
}  // namespace detail

class codecs {
 public:
  codecs() = default;
  codecs(const codecs&) = delete;
  codecs& operator=(const codecs&) = delete;
  codecs(codecs&&) = default;
  codecs& operator=(codecs&&) = default;

  // Registers a type stored with memcpy: its bytes must all be value.
  template <class T>
  const char* add(std::string_view name, std::uint32_t version = 1) {
    static_assert(std::is_trivially_copyable_v<T>,
                  "sluice: a type that is not trivially copyable needs a codec: "
                  "add<T>(name, version, codec)");
    static_assert(std::has_unique_object_representations_v<T>,
                  "sluice: T may have padding bytes (or floating-point members), and memcpy "
                  "would store whatever they hold: give a codec, e.g. add<T>(name, 1, "
                  "sluice::fields(&T::a, &T::b, ...)), or, if T has no padding, "
                  "add<T>(name, 1, sluice::memcpy_codec<T>{})");
    memcpy_codec<T> c;
    c.version = version;
    return add<T>(name, version, c);
  }

  // Registers a type with its codec. Returns nullptr, or why it was refused
  // (and throws std::invalid_argument with it when exceptions are on).
  template <class T, class Codec>
  const char* add(std::string_view name, std::uint32_t version, Codec codec) {
    static_assert(check_event_type<T>(), "");
    using C = std::decay_t<Codec>;
    static_assert(std::is_invocable_v<decltype(&C::encode), const C&, const T&, byte_writer&>,
                  "sluice: a codec needs void encode(const T&, sluice::byte_writer&) const");
    static_assert(std::is_same_v<decltype(std::declval<const C&>().decode(std::declval<byte_view>(),
                                                                          std::uint32_t{})),
                                 decoded<T>>,
                  "sluice: a codec needs sluice::decoded<T> decode(sluice::byte_view, "
                  "std::uint32_t version) const");
    const char* why = check_name(name);
    const std::uint32_t type = detail::type_index<T>();
    if (why == nullptr && find(name) != nullptr) why = "sluice: an event name is registered twice";
    if (why == nullptr && type < by_type_.size() && by_type_[type] != nullptr)
      why = "sluice: an event type is registered twice";
    if (why != nullptr) {
#if SLUICE_HAS_EXCEPTIONS
      throw std::invalid_argument(why);
#else
      return why;
#endif
    }
    if constexpr (detail::version_set_by_add<C>::value) codec.version = version;
    auto e = std::make_unique<codec_entry>();
    e->name = std::string(name);
    e->version = version;
    e->type = type;
    e->codec = std::make_shared<C>(std::move(codec));
    e->encode = [](const void* c, const void* ev, byte_writer& out) {
      static_cast<const C*>(c)->encode(*std::launder(static_cast<const T*>(ev)), out);
    };
    if constexpr (detail::fixed_size_codec<C, T>::value) {
      e->fixed_size = C::encoded_size;
      e->encode_fixed = [](const void* c, const void* ev, unsigned char* out) noexcept {
        static_cast<const C*>(c)->encode_to(*std::launder(static_cast<const T*>(ev)), out);
      };
    }
    e->publish = [](const void* c, const stored_event& se, producer& p, publish_result& r,
                    bool& would_block, decode_error& err) -> bool {
      decoded<T> d = detail::run_decode<T>(*static_cast<const C*>(c), se.payload, se.version);
      if (!d) {
        err = d.error();
        return false;
      }
      r = detail::producer_access::probe(p, std::move(d.value()), se.has_key, se.key, would_block);
      return true;
    };
    e->decode_into = [](const void* c, byte_view in, std::uint32_t v, void* out) {
      auto* o = static_cast<decoded<T>*>(out);
      *o = detail::run_decode<T>(*static_cast<const C*>(c), in, v);
    };
    if (by_type_.size() <= type) by_type_.resize(type + 1, nullptr);
    by_type_[type] = e.get();
    by_name_.emplace(std::hash<std::string_view>{}(e->name), e.get());
    entries_.push_back(std::move(e));
    return nullptr;
  }

  [[nodiscard]] const codec_entry* find(std::uint32_t type) const noexcept {
    return type < by_type_.size() ? by_type_[type] : nullptr;
  }
  template <class T>
  [[nodiscard]] const codec_entry* find() const noexcept {
    return find(detail::type_index<T>());
  }
  // By name, without allocating.
  [[nodiscard]] const codec_entry* find(std::string_view name) const noexcept {
    auto range = by_name_.equal_range(std::hash<std::string_view>{}(name));
    for (auto it = range.first; it != range.second; ++it)
      if (it->second->name == name) return it->second;
    return nullptr;
  }
  [[nodiscard]] std::size_t size() const noexcept {
    return entries_.size();
  }

  // Decodes a stored event as T: an error if it holds another type, or its
  // payload does not decode.
  template <class T>
  [[nodiscard]] decoded<T> decode(const stored_event& e) const {
    const codec_entry* c = find(e.type);
    if (c == nullptr)
      return decode_failure("sluice: no codec is registered under this event name",
                            decode_errc::unknown_type);
    if (c->type != detail::type_index<T>())
      return decode_failure("sluice: the record holds another event type", decode_errc::wrong_type);
    decoded<T> out = decode_failure("", decode_errc::malformed);
    c->decode_into(c->codec.get(), e.payload, e.version, &out);
    return out;
  }

  // Why a name cannot be used, or nullptr: 1 to 255 printable ASCII
  // characters, no quote or backslash (names appear in JSON as they are).
  [[nodiscard]] static const char* check_name(std::string_view name) noexcept {
    if (name.empty() || name.size() > storage::max_name)
      return "sluice: an event name must have 1 to 255 characters";
    for (char ch : name)
      if (ch <= ' ' || ch > '~' || ch == '"' || ch == '\\')
        return "sluice: an event name must be printable ASCII without spaces, quotes or "
               "backslashes";
    return nullptr;
  }

 private:
  std::vector<std::unique_ptr<codec_entry>> entries_;
  std::vector<const codec_entry*> by_type_;
  std::unordered_multimap<std::size_t, const codec_entry*> by_name_;  // by name's hash
};

}  // namespace SLUICE_ABI
}  // namespace sluice
