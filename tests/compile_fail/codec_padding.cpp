// A type with padding bytes must not be stored with memcpy by default: the
// padding would go to the log. fields() names the members to store instead.
#include <cstdint>
#include <sluice/storage.hpp>

struct shot {
  std::uint8_t kind;  // three bytes of padding follow
  std::int32_t x;
};

int main() {
  sluice::codecs types;
#ifdef SLUICE_COMPILE_FAIL
  types.add<shot>("shot");
#else
  types.add<shot>("shot", 1, sluice::fields(&shot::kind, &shot::x));
#endif
  return 0;
}
