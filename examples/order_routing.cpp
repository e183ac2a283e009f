// order_routing — content-based routing of orders.
//
// Orders over a limit go to the "review" channel, the rest to "fulfilment".
// A tap counts every order on its way; an enrichment stage (order -> order)
// adds the tax before routing. Runs pumped from the caller with poll() and
// exits 0 when each channel got exactly the orders it should.
#include <cstdint>
#include <cstdio>
#include <sluice/sluice.hpp>

namespace {

struct order {
  std::uint64_t id;
  std::int64_t cents;
  std::int64_t tax_cents;
};

constexpr std::int64_t review_limit = 100000;  // 1000.00 and more: a person looks

}  // namespace

int main() {
  sluice::bus bus;
  const sluice::channel review{"review"};
  const sluice::channel fulfilment{"fulfilment"};

  std::int64_t seen = 0;
  bus.key<order>([](const order& o) { return o.id; });
  bus.stages<order>()
      .tap([&](const order&) { ++seen; })
      .transform([](const order& o) {
        return order{o.id, o.cents, o.cents / 5};
      })  // 20% tax
      .route([&](const order& o) { return o.cents >= review_limit ? review : fulfilment; });

  int reviewed = 0, fulfilled = 0;
  std::int64_t tax = 0;
  auto r = bus.subscribe<order>(review, [&](const order& o) {
    ++reviewed;
    std::printf("  review: order %llu for %lld.%02lld\n", static_cast<unsigned long long>(o.id),
                static_cast<long long>(o.cents / 100), static_cast<long long>(o.cents % 100));
  });
  auto f = bus.subscribe<order>(fulfilment, [&](const order& o) {
    ++fulfilled;
    tax += o.tax_cents;
  });

  int expected_review = 0;
  for (std::uint64_t id = 1; id <= 1000; ++id) {
    const auto cents = static_cast<std::int64_t>((id * 7919) % 150000);
    expected_review += cents >= review_limit ? 1 : 0;
    bus.publish(order{id, cents, 0});
  }
  bus.poll();
  bus.stop();

  const sluice::type_stats st = bus.stats<order>();
  std::printf("orders: %lld seen, %d to review, %d to fulfilment, tax %lld.%02lld\n",
              static_cast<long long>(seen), reviewed, fulfilled, static_cast<long long>(tax / 100),
              static_cast<long long>(tax % 100));
  const bool ok = seen == 1000 && reviewed == expected_review && reviewed + fulfilled == 1000 &&
                  st.balanced() && st.delivered == 1000;
  std::printf("result: %s\n", ok ? "OK" : "MISMATCH");
  return ok ? 0 : 1;
}
