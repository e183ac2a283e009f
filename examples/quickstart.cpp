// quickstart — subscribe, publish, poll, print.
#include <sluice/sluice.hpp>

#include <cstdio>

struct greeting {
  int id;
};

int main() {
  sluice::bus bus;
  sluice::subscription sub =
      bus.subscribe<greeting>([](const greeting& g) { std::printf("hello #%d\n", g.id); });

  for (int i = 1; i <= 3; ++i) bus.publish(greeting{i});  // queued
  const std::size_t handled = bus.poll();                  // delivered here, on this thread

  bus.stop();
  const sluice::type_stats st = bus.stats<greeting>();
  std::printf("handled %zu, published %llu, delivered %llu\n", handled,
              static_cast<unsigned long long>(st.published),
              static_cast<unsigned long long>(st.delivered));
  return st.balanced() && st.delivered == 3 ? 0 : 1;
}
