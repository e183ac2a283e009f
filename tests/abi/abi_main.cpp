// The configuration macros are part of sluice's names (the inline namespace
// SLUICE_ABI): this translation unit, built with the defaults, calls a
// function of abi_other.cpp that takes a sluice::bus. Built with other values
// there (ABI_OTHER_*), the two disagree on what a bus is, and the program
// must fail to link rather than run with two layouts of one type.
#include <cstdio>
#include <sluice/sluice.hpp>

int use_bus(sluice::bus& b);

int main() {
  sluice::bus bus;
  const int n = use_bus(bus);
  std::printf("delivered %d\n", n);
  return n == 1 ? 0 : 1;
}
