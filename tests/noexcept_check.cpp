// Built with -fno-exceptions -fno-rtti (as C++17 and C++20): the core works,
// and handlers report failure by returning an outcome. A plain checker,
// since the test framework needs exceptions.
#include <atomic>
#include <cstdio>
#include <sluice/detail/timer_wheel.hpp>
#include <sluice/metrics/prometheus.hpp>
#include <sluice/sluice.hpp>
#include <sluice/storage.hpp>
#include <vector>

#if defined(__cpp_exceptions) || defined(__GXX_RTTI)
#error "this file must be built with -fno-exceptions -fno-rtti"
#endif

namespace {
int failures = 0;
#define EXPECT(cond)                                                                 \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      std::fprintf(stderr, "%s:%d: EXPECT(%s) failed\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                                    \
    }                                                                                \
  } while (0)

struct reading {
  int sensor;
  int value;
};
}  // namespace

int main() {
  std::atomic<int> reported{0};
  sluice::bus_options opts;
  opts.lanes = 2;
  opts.lane_capacity = 256;
  opts.on_failure = [&](const sluice::failure_info& f) {
    reported += f.kind == sluice::failure_kind::outcome ? 1 : 0;
  };
  sluice::bus bus{opts};
  EXPECT(bus.valid());
  std::atomic<int> ok_calls{0};
  auto bad = bus.subscribe<reading>([](const reading& r) {
    return r.value < 0 ? sluice::outcome::failure(1, "negative reading")
                       : sluice::outcome::success();
  });
  auto good = bus.subscribe<reading>([&](const reading&) { ++ok_calls; });
  EXPECT(bus.run(2));
  auto p = bus.make_producer();
  for (int i = 0; i < 1000; ++i)
    p.publish(reading{i % 10, i % 4 == 0 ? -1 : i}, static_cast<sluice::key_type>(i % 10));
  EXPECT(bus.stop());
  const auto st = bus.stats<reading>();
  EXPECT(ok_calls.load() == 1000);
  EXPECT(st.failed == 250);
  EXPECT(reported.load() == 250);
  EXPECT(st.balanced());

  // the processing layer without exceptions: refusals are values
  {
    sluice::bus staged;
    const sluice::channel hot{"hot"};
    EXPECT(staged.key<reading>([](const reading& r) {
      return static_cast<sluice::key_type>(r.sensor);
    }) == nullptr);
    EXPECT(staged.key<reading>(
               [](const reading& r) { return static_cast<sluice::key_type>(r.value); }) != nullptr);
    auto chain = staged.stages<reading>();
    chain.filter([](const reading& r) { return r.value >= 0; });
    chain.route([&](const reading& r) { return r.value > 5 ? hot : sluice::channel{}; });
    chain.tap([](const reading&) {});  // after a route: refused
    EXPECT(chain.error() != nullptr);
    // a chain's 65th stage is refused, and the 64 before it run
    {
      sluice::bus long_bus;
      auto long_chain = long_bus.stages<reading>();
      int taps = 0;
      for (int i = 0; i < 64; ++i) long_chain.tap([&](const reading&) { ++taps; });
      EXPECT(long_chain.error() == nullptr);
      long_chain.tap([&](const reading&) { taps += 1000; });
      EXPECT(long_chain.error() != nullptr);
      auto heard = long_bus.subscribe<reading>([](const reading&) {});
      EXPECT(long_bus.dispatch(reading{1, 1}) == 1);
      EXPECT(taps == 64);
    }
    int hot_calls = 0;
    auto on_hot = staged.subscribe<reading>(hot, [&](const reading&) { ++hot_calls; });
    for (int v : {-1, 3, 9, 7}) staged.publish(reading{1, v});
    staged.poll();
    EXPECT(hot_calls == 2);
    const auto rs = staged.stats<reading>();
    EXPECT(rs.filtered == 1);
    EXPECT(rs.unrouted == 1);
    EXPECT(rs.balanced());
  }

  // invalid options: no exception, an invalid bus that refuses events
  sluice::bus broken{sluice::bus_options{}.with_lanes(0)};
  EXPECT(!broken.valid());
  EXPECT(broken.error() != nullptr);
  EXPECT(broken.publish(reading{1, 1}) == sluice::publish_result::stopped);

  // storage without exceptions: refusals and errors are values
  {
    auto types = std::make_shared<sluice::codecs>();
    EXPECT(types->add<reading>("reading") == nullptr);
    EXPECT(types->add<reading>("again") != nullptr);  // a type is registered once
    auto ring = std::make_unique<sluice::memory_sink>(100);
    auto* r = ring.get();
    auto rec = std::make_shared<sluice::recorder>(std::move(ring), types);
    EXPECT(rec->valid());
    sluice::bus recorded;
    EXPECT(recorded.record(rec) == nullptr);
    EXPECT(recorded.record(rec) != nullptr);  // one recorder per bus
    for (int i = 0; i < 10; ++i) recorded.publish(reading{i, i * 2});
    EXPECT(recorded.stop());
    EXPECT(r->size() == 10);
    const auto events = r->events();
    EXPECT(types->decode<reading>(events[3].view())->value == 6);
    sluice::record_options bad_options;
    bad_options.buffer_bytes = 1;
    sluice::recorder invalid(std::make_unique<sluice::memory_sink>(1), types, bad_options);
    EXPECT(!invalid.valid());
    EXPECT(!invalid.write(reading{1, 1}));
    EXPECT(invalid.flush().ok());  // nothing accepted: returns at once (it once waited for ever)
    EXPECT(invalid.sync().ok());
    sluice::storage_error err;
    EXPECT(sluice::file_log::open(sluice::file_log_options{}, err) == nullptr);
    EXPECT(err.code == sluice::storage_errc::bad_option);
  }

  // the dispatch-only dispatcher: a failed outcome is counted and observed
  {
    int observed = 0;
    sluice::dispatcher d([&](const sluice::failure_info& f) {
      observed += f.kind == sluice::failure_kind::outcome ? 1 : 0;
    });
    int good_calls = 0;
    auto refuse = d.subscribe([](const reading& r) {
      return r.value < 0 ? sluice::outcome::failure(2, "negative") : sluice::outcome::success();
    });
    auto count = d.subscribe([&](const reading&) { ++good_calls; });
    EXPECT(d.dispatch(reading{1, -5}) == 2);
    EXPECT(d.dispatch(reading{1, 5}) == 2);
    EXPECT(good_calls == 2);
    EXPECT(observed == 1);
    EXPECT(d.failures<reading>() == 1);
  }

  {
    // The exporter without exceptions: a refused call changes nothing, says
    // so, and error() says why.
    sluice::bus b;
    sluice::prometheus_exporter bad_prefix("1x");
    EXPECT(bad_prefix.error() != nullptr);
    sluice::prometheus_exporter prom;
    EXPECT(prom.error() == nullptr);
    sluice::prometheus_bus shop = prom.add(b, "shop");
    EXPECT(static_cast<bool>(shop));
    shop.type<reading>("reading");
    const std::string before = prom.render();
    EXPECT(!prom.add(b, "again"));
    EXPECT(prom.error() != nullptr);
    shop.type<reading>("reading");  // a second type of that name: refused
    shop.type<reading>("");
    EXPECT(prom.render() == before);
    EXPECT(before.find("sluice_events_published_total{bus=\"shop\",type=\"reading\"} 0") !=
           std::string::npos);
    auto types = std::make_shared<sluice::codecs>();
    EXPECT(types->add<reading>("reading") == nullptr);
    sluice::recorder rec(std::make_unique<sluice::memory_sink>(4), types);
    EXPECT(prom.add(rec, "log"));
    EXPECT(!prom.add(rec, "log2"));
    EXPECT(prom.remove(b) && prom.remove(rec) && prom.render().empty());
  }

  {
    // The timing wheel without exceptions: values come out at their tick.
    sluice::detail::timer_wheel<int> w(4, 100);
    EXPECT(w.valid());
    EXPECT(w.schedule(300, 3) && w.schedule(200, 2) && w.schedule(50, 1));
    int order = 0;
    EXPECT(w.advance(250, [&](int&& v, std::uint64_t) { order = order * 10 + v; }) == 2);
    EXPECT(order == 12);
    EXPECT(w.size() == 1 && w.next_due() <= 300);
  }

  {
    // publish_after without exceptions: delivered at its time, full refused.
    sluice::bus b{sluice::bus_options{}.with_lanes(1).with_delayed_capacity(2)};
    int got = 0;
    auto s = b.subscribe([&](const reading&) { ++got; });
    EXPECT(b.publish_after(std::chrono::nanoseconds(0), reading{}) == sluice::publish_result::ok);
    EXPECT(b.publish_after(std::chrono::hours(1), reading{}) == sluice::publish_result::ok);
    EXPECT(b.publish_after(std::chrono::hours(1), reading{}) == sluice::publish_result::full);
    EXPECT(b.poll() == 1 && got == 1 && b.delayed() == 1);
    EXPECT(b.stop(sluice::stop_mode::discard) && b.stats<reading>().discarded == 1);
  }

  {
    // A retry policy without exceptions: a failed outcome is retried, then
    // dead-lettered.
    sluice::bus b;
    int calls = 0;
    auto s = b.subscribe(
        [&](const reading&) {
          ++calls;
          return calls < 2 ? sluice::outcome::failure(1) : sluice::outcome::success();
        },
        sluice::subscribe_options{}.with_failure_policy(sluice::failure_policy::retry(
            3, sluice::retry_backoff::fixed(std::chrono::nanoseconds(0)))));
    int letters = 0;
    auto d = b.subscribe([&](const sluice::dead_letter<reading>&) { ++letters; });
    EXPECT(b.publish(reading{}) == sluice::publish_result::ok);
    for (int i = 0; i < 100000 && b.queued() != 0; ++i) b.poll();
    EXPECT(calls == 2 && s.stats().recovered == 1 && letters == 0);
    EXPECT(b.stop() && b.stats<reading>().balanced());
  }

  {
    // hold_key and a breaker without exceptions: the second event of the key
    // waits for the first one's retry; the breaker opens after two failures.
    sluice::bus b;
    std::vector<int> order;
    int failures_left = 1;
    auto s = b.subscribe(
        [&](const reading& r) {
          if (failures_left > 0) {
            --failures_left;
            return sluice::outcome::failure(1);
          }
          order.push_back(r.value);
          return sluice::outcome::success();
        },
        sluice::subscribe_options{}.with_failure_policy(
            sluice::failure_policy::retry(3,
                                          sluice::retry_backoff::fixed(std::chrono::nanoseconds(0)))
                .with_breaker(2, std::chrono::hours(1))));
    auto prod = b.make_producer();
    EXPECT(prod.publish(reading{0, 1}, 5) == sluice::publish_result::ok);
    EXPECT(prod.publish(reading{0, 2}, 5) == sluice::publish_result::ok);
    for (int i = 0; i < 100000 && b.queued() != 0; ++i) b.poll();
    EXPECT(order.size() == 2 && order[0] == 1 && order[1] == 2);
    EXPECT(s.stats().breaker == sluice::breaker_state::closed);
    failures_left = 2;
    EXPECT(prod.publish(reading{0, 3}, 6) == sluice::publish_result::ok);
    EXPECT(prod.publish(reading{0, 4}, 7) == sluice::publish_result::ok);
    b.poll();
    EXPECT(s.stats().breaker == sluice::breaker_state::open && s.stats().breaker_opens == 1);
    EXPECT(b.stop(sluice::stop_mode::discard) && b.stats<reading>().balanced());
  }

  std::printf("noexcept check: %s\n", failures == 0 ? "ok" : "FAILED");
  return failures == 0 ? 0 : 1;
}
