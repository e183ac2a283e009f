// thermostat — the processing layer on an IoT gateway.
//
// Sensors publish readings. A stage chain drops invalid readings (a filter),
// turns a reading over a threshold into an alert (a transform: reading ->
// optional<alert>), and routes each alert to the "pager" (urgent) or the
// "dashboard" channel (a route). Readings are keyed by sensor id through a key
// extractor, so each sensor's readings stay in order. Runs on a worker pool,
// prints what each channel received and the counters, and exits 0 when every
// reading and alert is accounted for.
#include <cstdint>
#include <cstdio>
#include <optional>
#include <random>
#include <sluice/sluice.hpp>
#include <thread>
#include <vector>

namespace {

struct reading {
  std::uint32_t sensor;
  double celsius;
};

struct alert {
  std::uint32_t sensor;
  double celsius;
  bool urgent;
};

constexpr double warm = 28.0;     // above this: an alert for the dashboard
constexpr double too_hot = 35.0;  // above this: page someone

}  // namespace

int main() {
  sluice::bus bus{sluice::bus_options{}.with_lanes(4).with_lane_capacity(1024)};
  const sluice::channel pager{"pager"};
  const sluice::channel dashboard{"dashboard"};

  // Configure before the bus starts.
  bus.key<reading>([](const reading& r) { return sluice::key_type{r.sensor}; });
  bus.stages<reading>()
      .filter([](const reading& r) { return r.celsius > -40.0 && r.celsius < 85.0; })
      .transform([](const reading& r) -> std::optional<alert> {
        if (r.celsius <= warm) return std::nullopt;
        return alert{r.sensor, r.celsius, r.celsius > too_hot};
      });
  bus.stages<alert>().route([&](const alert& a) { return a.urgent ? pager : dashboard; });

  std::atomic<int> pages{0}, dashboard_lines{0};
  auto on_pager = bus.subscribe<alert>(pager, [&](const alert& a) {
    if (pages.fetch_add(1) < 3) std::printf("  PAGE: sensor %u at %.1f C\n", a.sensor, a.celsius);
  });
  auto on_dashboard = bus.subscribe<alert>(dashboard, [&](const alert&) { ++dashboard_lines; });

  bus.run(2);
  std::vector<std::thread> sensors;
  for (std::uint32_t s = 0; s < 4; ++s) {
    sensors.emplace_back([&bus, s] {
      auto p = bus.make_producer();
      std::mt19937 rng(s + 1);
      std::normal_distribution<double> temp(24.0, 6.0);
      for (int i = 0; i < 5000; ++i) {
        double c = temp(rng);
        if (i % 997 == 0) c = 300.0;  // a broken probe now and then
        p.publish(reading{s * 10 + static_cast<std::uint32_t>(i % 10), c});
      }
    });
  }
  for (auto& t : sensors) t.join();
  bus.stop();

  const sluice::type_stats r = bus.stats<reading>();
  const sluice::type_stats a = bus.stats<alert>();
  std::printf("readings: %llu published, %llu invalid or normal (filtered), %llu became alerts\n",
              static_cast<unsigned long long>(r.published),
              static_cast<unsigned long long>(r.filtered),
              static_cast<unsigned long long>(r.transformed));
  std::printf("alerts:   %llu made, %d paged, %d on the dashboard\n",
              static_cast<unsigned long long>(a.published), pages.load(), dashboard_lines.load());
  const bool ok = r.balanced() && a.balanced() && r.published == 20000 &&
                  a.published == r.transformed &&
                  a.delivered == static_cast<std::uint64_t>(pages.load() + dashboard_lines.load());
  std::printf("result: %s\n", ok ? "OK (every reading and alert accounted for)" : "MISMATCH");
  return ok ? 0 : 1;
}
