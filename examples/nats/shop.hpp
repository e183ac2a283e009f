// The events the two NATS example programs share (nats_orders.cpp sends them,
// nats_shipping.cpp receives them), their codecs, and a small argument reader.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <sluice/storage.hpp>
#include <string>

namespace shop {

struct order_placed {
  std::uint64_t order;
  std::uint32_t customer;
  std::uint32_t items;
};
struct order_paid {
  std::uint64_t order;
  std::int64_t cents;
};

// The stable names and versions both programs agree on.
inline std::shared_ptr<const sluice::codecs> codecs() {
  auto c = std::make_shared<sluice::codecs>();
  c->add<order_placed>("order_placed", 1);
  c->add<order_paid>("order_paid", 1);
  return c;
}

inline constexpr const char* stream = "SHOP";
inline constexpr const char* prefix = "shop";
inline constexpr std::uint32_t partitions = 4;

// --name value pairs; a bad one ends the program with status 2.
struct args {
  int argc;
  char** argv;
  [[noreturn]] void usage(const char* why) const {
    std::fprintf(stderr, "%s: %s\n", argv[0], why);
    std::exit(2);
  }
  std::string text(const char* name, const char* fallback) const {
    for (int i = 1; i < argc; ++i)
      if (std::strcmp(argv[i], name) == 0) {
        if (i + 1 >= argc) usage("an option is missing its value");
        return argv[i + 1];
      }
    return fallback;
  }
  std::uint64_t number(const char* name, std::uint64_t fallback) const {
    const std::string v = text(name, "");
    if (v.empty()) return fallback;
    char* end = nullptr;
    const unsigned long long n = std::strtoull(v.c_str(), &end, 10);
    if (*end != '\0' || v[0] == '-') usage("a number option is not a number");
    return n;
  }
};

}  // namespace shop
