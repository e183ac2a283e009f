// payment_service — failure policies in one program: payments charged
// through a flaky gateway (one call in five fails, and now and then it
// times out for 30 ms). The charging subscription retries with
// exponential backoff and jitter, holds each account's later payments while
// one of its payments waits for a retry (so an account's payments are
// charged in order), and has a circuit breaker that stops calling the
// gateway while it times out. What still fails is dead-lettered into a
// durable dead-letter log. Then the gateway is fixed, the dead letters are
// redriven, and the balances come out right; the summary accounts for every
// payment.
//
//   payment_service [--payments N] [--accounts N] [--seed S] [--data DIR]
//
// Exit status: 0 when every balance is right, no account was charged out of
// order and every payment is accounted for; 1 otherwise; 2 for bad
// arguments; 3 when the dead-letter log cannot be opened.
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <random>
#include <sluice/sluice.hpp>
#include <sluice/storage.hpp>
#include <sluice/storage/dead_letters.hpp>
#include <string>
#include <thread>
#include <vector>

namespace {

struct payment {
  std::uint64_t id;
  std::uint64_t account;
  std::uint64_t seq;  // the payment's place among its account's payments, from 1
  std::int64_t cents;
};

// The remote gateway: fails one call in five, and about once every 2000
// calls times out for 30 ms, until it is fixed.
class gateway {
 public:
  explicit gateway(std::uint64_t seed) : rng_(seed) {}
  sluice::outcome charge(const payment&) {
    std::lock_guard<std::mutex> lock(m_);
    ++calls_;
    if (fixed_) return sluice::outcome::success();
    const auto now = std::chrono::steady_clock::now();
    if (now < burst_until_) return sluice::outcome::failure(504, "gateway timeout");
    if (rng_() % 2000 == 0) {
      burst_until_ = now + std::chrono::milliseconds(30);
      return sluice::outcome::failure(504, "gateway timeout");
    }
    if (rng_() % 5 == 0) return sluice::outcome::failure(502, "gateway error");
    return sluice::outcome::success();
  }
  void fix() {
    std::lock_guard<std::mutex> lock(m_);
    fixed_ = true;
  }
  std::uint64_t calls() {
    std::lock_guard<std::mutex> lock(m_);
    return calls_;
  }

 private:
  std::mutex m_;
  std::mt19937_64 rng_;
  std::chrono::steady_clock::time_point burst_until_{};
  bool fixed_ = false;
  std::uint64_t calls_ = 0;
};

// The accounts' balances, and a check that each account's payments were
// charged in order (a redriven payment comes after its successors: it is
// not checked).
class ledger {
 public:
  explicit ledger(std::size_t accounts) : balance_(accounts, 0), last_seq_(accounts, 0) {}
  void apply(const payment& p, bool redriven) {
    std::lock_guard<std::mutex> lock(m_);
    balance_[p.account] += p.cents;
    if (!redriven) {
      if (p.seq <= last_seq_[p.account]) ++out_of_order_;
      last_seq_[p.account] = p.seq;
    }
  }
  std::int64_t balance(std::size_t account) {
    std::lock_guard<std::mutex> lock(m_);
    return balance_[account];
  }
  std::uint64_t out_of_order() {
    std::lock_guard<std::mutex> lock(m_);
    return out_of_order_;
  }

 private:
  std::mutex m_;
  std::vector<std::int64_t> balance_;
  std::vector<std::uint64_t> last_seq_;
  std::uint64_t out_of_order_ = 0;
};

bool parse_count(const char* s, std::uint64_t& out) {
  if (s == nullptr || *s == '\0') return false;
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0' || s[0] == '-') return false;
  out = v;
  return true;
}

int usage(const char* why) {
  std::fprintf(stderr,
               "payment_service: %s\n"
               "usage: payment_service [--payments N (1..10000000)] [--accounts N (1..100000)] "
               "[--seed S] [--data DIR]\n",
               why);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t payments = 20000;
  std::uint64_t accounts = 200;
  std::uint64_t seed = 42;
  std::string data;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--help" || a == "-h") {
      std::printf(
          "payment_service: a payment service with a flaky gateway, retries, per-account "
          "holds, a circuit breaker, a durable dead-letter log and a redrive\n"
          "  --payments N   payments to charge (default 20000)\n"
          "  --accounts N   accounts they are spread over (default 200)\n"
          "  --seed S       the gateway's and the payments' random seed (default 42)\n"
          "  --data DIR     the dead-letter log's folder (default: a fresh one under /tmp)\n");
      return 0;
    }
    if (a == "--payments" || a == "--accounts" || a == "--seed") {
      std::uint64_t n = 0;
      if (!parse_count(v, n)) return usage(("a number must follow " + a).c_str());
      if (a == "--payments" && (n == 0 || n > 10000000))
        return usage("--payments must be in 1..10000000");
      if (a == "--accounts" && (n == 0 || n > 100000))
        return usage("--accounts must be in 1..100000");
      (a == "--payments" ? payments : a == "--accounts" ? accounts : seed) = n;
      ++i;
    } else if (a == "--data") {
      if (v == nullptr || *v == '\0') return usage("a folder must follow --data");
      data = v;
      ++i;
    } else {
      return usage(("unknown argument " + a).c_str());
    }
  }
  bool own_folder = false;
  if (data.empty()) {
    char tmpl[] = "/tmp/payment_service-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) {
      std::perror("payment_service: mkdtemp");
      return 3;
    }
    data = tmpl;
    own_folder = true;
  }

  auto types = std::make_shared<sluice::codecs>();
  types->add<payment>("payment");
  sluice::storage_error err;
  auto dead_letters = sluice::dead_letter_log::open(data + "/dead-letters", types, err);
  if (dead_letters == nullptr) {
    std::fprintf(stderr, "payment_service: cannot open the dead-letter log: %s\n",
                 err.describe().c_str());
    return 3;
  }

  std::atomic<std::uint64_t> breaker_opened{0};
  std::atomic<std::uint64_t> breaker_closed{0};
  sluice::bus bus{
      sluice::bus_options{}.with_lanes(4).with_on_failure([&](const sluice::failure_info& f) {
        if (f.kind == sluice::failure_kind::breaker_opened) breaker_opened.fetch_add(1);
        if (f.kind == sluice::failure_kind::breaker_closed) breaker_closed.fetch_add(1);
      })};
  if (const char* why = dead_letters->record<payment>(bus)) {
    std::fprintf(stderr, "payment_service: %s\n", why);
    return 3;
  }

  gateway gw(seed);
  ledger book(accounts);
  auto charging = bus.subscribe(
      [&](const sluice::event_view<payment>& p) {
        const sluice::outcome o = gw.charge(*p);
        if (o.ok()) book.apply(*p, p.meta().redriven);
        return o;
      },
      sluice::subscribe_options::named("charge").with_failure_policy(
          sluice::failure_policy::retry(
              4, sluice::retry_backoff::exponential(std::chrono::milliseconds(1),
                                                    std::chrono::milliseconds(8))
                     .with_jitter())
              .holding_keys(static_cast<std::uint32_t>(payments))  // per account: its key
              .with_breaker(10, std::chrono::milliseconds(20))));

  // The payments, made up front so that the expected balances are known.
  std::vector<payment> all;
  all.reserve(payments);
  std::vector<std::int64_t> expected(accounts, 0);
  std::vector<std::uint64_t> seq(accounts, 0);
  std::mt19937_64 rng(seed ^ 0x9E3779B97F4A7C15ULL);
  for (std::uint64_t i = 0; i < payments; ++i) {
    const std::uint64_t acct = rng() % accounts;
    const auto cents = static_cast<std::int64_t>(100 + rng() % 100000);
    all.push_back(payment{i, acct, ++seq[acct], cents});
    expected[acct] += cents;
  }

  // Phase 1: two threads publish (each account's payments from one thread,
  // in order), two workers charge.
  const auto start = std::chrono::steady_clock::now();
  if (!bus.run(2)) {
    std::fprintf(stderr, "payment_service: the bus could not start its workers\n");
    return 1;
  }
  std::vector<std::thread> producers;
  for (std::uint64_t t = 0; t < 2; ++t) {
    producers.emplace_back([&, t] {
      auto p = bus.make_producer();
      for (const payment& x : all)
        if (x.account % 2 == t && p.publish(x, x.account) != sluice::publish_result::ok)
          std::fprintf(stderr, "payment_service: a payment was refused\n");
    });
  }
  for (auto& t : producers) t.join();
  bus.wait_idle();
  const double phase1 =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const sluice::subscription_stats s1 = charging.stats();
  const sluice::type_stats t1 = bus.stats<payment>();
  std::uint64_t wrong_before = 0;
  for (std::size_t a = 0; a < accounts; ++a) wrong_before += book.balance(a) != expected[a];
  std::printf("phase 1: %llu payments in %.2f s through a flaky gateway (%llu calls)\n",
              static_cast<unsigned long long>(payments), phase1,
              static_cast<unsigned long long>(gw.calls()));
  std::printf(
      "  charged %llu, dead-lettered %llu; %llu failed calls, %llu retries, %llu recovered\n",
      static_cast<unsigned long long>(t1.delivered),
      static_cast<unsigned long long>(t1.dead_lettered), static_cast<unsigned long long>(s1.failed),
      static_cast<unsigned long long>(s1.retried), static_cast<unsigned long long>(s1.recovered));
  std::printf("  breaker opened %llu times (closed %llu), %llu attempts not made while open\n",
              static_cast<unsigned long long>(breaker_opened.load()),
              static_cast<unsigned long long>(breaker_closed.load()),
              static_cast<unsigned long long>(s1.short_circuited));
  std::printf("  dead letters recorded durably: %llu; accounts with a wrong balance: %llu\n",
              static_cast<unsigned long long>(dead_letters->stats().recorded),
              static_cast<unsigned long long>(wrong_before));

  // Phase 2: the gateway is fixed; the dead letters go back. The breaker
  // may still be open from the last burst: its cool-down passes first (a
  // payment that found it open all the same is dead-lettered again, and
  // the next pass sends it).
  gw.fix();
  std::this_thread::sleep_for(std::chrono::milliseconds(25));
  sluice::redrive_result rr;
  int passes = 0;
  for (; passes < 3; ++passes) {
    const sluice::redrive_result r = dead_letters->redrive(bus);
    bus.wait_idle();
    rr.redriven += r.redriven;
    rr.refused += r.refused;
    rr.unknown += r.unknown;
    rr.undecodable += r.undecodable;
    if (!r.ok()) {
      rr.error = r.error;
      std::fprintf(stderr, "payment_service: the redrive stopped: %s\n",
                   r.error.describe().c_str());
      break;
    }
    if (r.redriven == 0) break;  // nothing was left
  }
  std::uint64_t wrong_after = 0;
  for (std::size_t a = 0; a < accounts; ++a) wrong_after += book.balance(a) != expected[a];
  std::printf(
      "phase 2: gateway fixed; redriven %llu dead letters (redrives that sent any: %d; %llu "
      "refused, %llu unknown)\n",
      static_cast<unsigned long long>(rr.redriven), passes,
      static_cast<unsigned long long>(rr.refused),
      static_cast<unsigned long long>(rr.unknown + rr.undecodable));
  std::printf("  accounts with a wrong balance: %llu; charged out of order: %llu\n",
              static_cast<unsigned long long>(wrong_after),
              static_cast<unsigned long long>(book.out_of_order()));

  const bool stopped = bus.stop();
  const sluice::type_stats ts = bus.stats<payment>();
  std::printf(
      "summary: published %llu (%llu payments + %llu redriven) = delivered %llu + dead-lettered "
      "%llu + filtered %llu + dropped %llu + unrouted %llu + discarded %llu: %s\n",
      static_cast<unsigned long long>(ts.published), static_cast<unsigned long long>(payments),
      static_cast<unsigned long long>(rr.redriven), static_cast<unsigned long long>(ts.delivered),
      static_cast<unsigned long long>(ts.dead_lettered),
      static_cast<unsigned long long>(ts.filtered), static_cast<unsigned long long>(ts.dropped),
      static_cast<unsigned long long>(ts.unrouted), static_cast<unsigned long long>(ts.discarded),
      ts.balanced() ? "every payment accounted for" : "NOT BALANCED");
  // Every payment charged once: those dead-lettered were all redriven (a
  // payment dead-lettered again during a pass counts once more each time).
  const bool ok = stopped && rr.ok() && ts.balanced() && wrong_after == 0 &&
                  book.out_of_order() == 0 && ts.published == payments + rr.redriven &&
                  ts.delivered == payments && ts.dead_lettered == rr.redriven;
  std::printf("%s\n", ok ? "ok: every balance is right" : "FAILED");
  dead_letters.reset();
  if (own_folder) {
    std::error_code ec;
    std::filesystem::remove_all(data, ec);
  }
  return ok ? 0 : 1;
}
