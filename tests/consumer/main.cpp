#include <sluice/sluice.hpp>

struct ping {
  int value;
};

int main() {
  sluice::bus bus;
  int sum = 0;
  auto sub = bus.subscribe<ping>([&](const ping& p) { sum += p.value; });
  for (int i = 1; i <= 10; ++i) bus.publish(ping{i});
  bus.poll();
  return sum == 55 ? 0 : 1;
}
