// order_service — sluice's flagship demo: the event core of an order service.
//
// Several front-end threads (each with its own sluice::producer) take orders
// and publish order_placed, order_paid and order_shipped events keyed by the
// order id. A pool of two workers (bus.run(2)) handles them: it keeps the state
// of every order and checks that each order moves placed -> paid -> shipped,
// which is sluice's per-key ordering contract at work. Orders are interleaved:
// a front end has many orders in flight at once, so the lanes carry a mix of
// orders and event types.
//
// Every event is stored in a durable log (sluice's file log, in the folder
// given by --data, by default ./order_service.data) through a recorder
// attached to the bus. When the service starts again it first rebuilds its
// state by replaying the log into the same handlers (event sourcing), checks
// that the rebuilt state equals the state the last run saved, and only then
// takes new orders, whose ids continue where the last run stopped. The log is
// bounded: when a run would take it past --keep orders (500,000 by default,
// about 100 MB), the demo says so and starts over.
//
// At the end it stops the bus (stop_mode::drain: every event delivered and
// its record synced), prints the counters of each event type and lane, and
// exits with 0 only when the accounting equation holds for every type, no
// order was seen out of order and the replayed state matched.
//
//   order_service [--orders N] [--producers N] [--workers N] [--data DIR] [--keep N]
//                 [--fresh] [--no-store]
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sluice/sluice.hpp>
#include <sluice/storage.hpp>
#include <string>
#include <thread>
#include <vector>

namespace {

// ---- the events ---------------------------------------------------------------

struct order_placed {
  std::uint64_t order;
  std::uint32_t customer;
  std::uint32_t items;
  std::int64_t amount_cents;
};

struct order_paid {
  std::uint64_t order;
  std::int64_t amount_cents;
};

struct order_shipped {
  std::uint64_t order;
  std::uint32_t carrier;
};

// ---- command line ---------------------------------------------------------------

constexpr std::uint64_t default_orders = 200'000;
constexpr std::uint64_t default_keep = 500'000;
constexpr std::uint64_t max_orders = 100'000'000;

struct settings {
  std::uint64_t orders = default_orders;
  std::uint64_t keep = default_keep;
  std::uint64_t producers = 3;
  std::uint64_t workers = 2;
  std::string data = "order_service.data";
  bool store = true;
  bool fresh = false;
};

void print_usage(std::FILE* out) {
  std::fprintf(out,
               "usage: order_service [--orders N] [--producers N] [--workers N]\n"
               "                     [--data DIR] [--keep N] [--fresh] [--no-store]\n"
               "\n"
               "Runs an order service on a sluice bus: producer threads publish\n"
               "order_placed, order_paid and order_shipped events keyed by order id;\n"
               "a worker pool handles them and checks that every order arrives in\n"
               "order. Every event is stored in a durable log; started again, the\n"
               "service rebuilds its state by replaying the log before going on.\n"
               "Prints live progress, then counters and throughput.\n"
               "\n"
               "  --orders N     new orders to process (1..%" PRIu64 ", default %" PRIu64
               ")\n"
               "  --producers N  producer threads (1..64, default 3)\n"
               "  --workers N    worker threads (1..64, default 2)\n"
               "  --data DIR     folder of the event log and saved state\n"
               "                 (default ./order_service.data)\n"
               "  --keep N       orders the log may hold (1..%" PRIu64 ", default %" PRIu64
               ",\n"
               "                 about 200 bytes each); a run that would go past it\n"
               "                 starts over\n"
               "  --fresh        delete the folder's log and state first\n"
               "  --no-store     keep nothing (no log, no replay)\n"
               "  --help         show this text\n"
               "\n"
               "Exit status: 0 when every event is accounted for, no order was seen\n"
               "out of order and the replayed state matched the saved one; 1\n"
               "otherwise; 2 for bad arguments; 3 when the log cannot be opened.\n",
               max_orders, default_orders, max_orders, default_keep);
}

// Parses a whole decimal number in [lo, hi]; false if `text` is anything else.
bool parse_count(const char* text, std::uint64_t lo, std::uint64_t hi, std::uint64_t& out) {
  if (text == nullptr || *text == '\0' || std::strlen(text) > 12) return false;
  std::uint64_t v = 0;
  for (const char* p = text; *p != '\0'; ++p) {
    if (*p < '0' || *p > '9') return false;
    v = v * 10 + static_cast<std::uint64_t>(*p - '0');
  }
  if (v < lo || v > hi) return false;
  out = v;
  return true;
}

// Returns 0 to run, 1 after --help, 2 for bad arguments (message printed).
int parse_args(int argc, char** argv, settings& s) {
  struct option_spec {
    const char* name;
    std::uint64_t lo, hi;
    std::uint64_t* target;
  };
  const option_spec specs[] = {
      {"--orders", 1, max_orders, &s.orders},
      {"--producers", 1, 64, &s.producers},
      {"--workers", 1, 64, &s.workers},
      {"--keep", 1, max_orders, &s.keep},
  };
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      print_usage(stdout);
      return 1;
    }
    if (arg == "--fresh" || arg == "--no-store") {
      (arg == "--fresh" ? s.fresh : s.store) = arg == "--fresh";
      continue;
    }
    if (arg == "--data" || arg.rfind("--data=", 0) == 0) {
      if (arg == "--data" && i + 1 >= argc) {
        std::fprintf(stderr, "order_service: --data needs a folder\n");
        std::fprintf(stderr, "Try 'order_service --help'.\n");
        return 2;
      }
      s.data = arg == "--data" ? argv[++i] : arg.substr(7);
      if (s.data.empty()) {
        std::fprintf(stderr, "order_service: --data needs a folder\n");
        return 2;
      }
      continue;
    }
    const option_spec* spec = nullptr;
    std::string value;
    bool has_value = false;
    for (const option_spec& o : specs) {
      const std::string name = o.name;
      if (arg == name) {
        spec = &o;
        if (i + 1 < argc) {
          value = argv[++i];
          has_value = true;
        }
      } else if (arg.compare(0, name.size() + 1, name + "=") == 0) {
        spec = &o;
        value = arg.substr(name.size() + 1);
        has_value = true;
      }
    }
    if (spec == nullptr) {
      std::fprintf(stderr, "order_service: unknown argument '%s'\n", arg.c_str());
      std::fprintf(stderr, "Try 'order_service --help'.\n");
      return 2;
    }
    if (!has_value) {
      std::fprintf(stderr, "order_service: %s needs a value\n", spec->name);
      std::fprintf(stderr, "Try 'order_service --help'.\n");
      return 2;
    }
    if (!parse_count(value.c_str(), spec->lo, spec->hi, *spec->target)) {
      std::fprintf(stderr,
                   "order_service: %s needs a whole number from %" PRIu64 " to %" PRIu64
                   ", got '%s'\n",
                   spec->name, spec->lo, spec->hi, value.c_str());
      std::fprintf(stderr, "Try 'order_service --help'.\n");
      return 2;
    }
  }
  return 0;
}

// ---- the service's state ----------------------------------------------------------

[[nodiscard]] std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

[[nodiscard]] std::uint64_t scramble(std::uint64_t x) {
  x ^= x >> 31;
  x *= 0x9e3779b97f4a7c15ULL;
  x ^= x >> 29;
  return x;
}

// The price of an order, known to the front end that takes it.
[[nodiscard]] std::int64_t price_of(std::uint64_t order) {
  return 499 + static_cast<std::int64_t>(scramble(order) % 100'000);
}

// Where each order stands. Order ids are dense, so a table indexed by id
// stands in for the service's store. One order's events share a key, hence a
// lane, and a lane is handled by one thread at a time; the stages are atomics
// anyway so that the check below does not rely on what it checks.
enum stage : std::uint8_t { none = 0, placed = 1, paid = 2, shipped = 3 };

struct order_book {
  explicit order_book(std::size_t n) : size(n), stages(new std::atomic<std::uint8_t>[n]) {
    for (std::size_t i = 0; i < n; ++i) stages[i].store(none, std::memory_order_relaxed);
  }

  // Moves `order` from `from` to `to`; counts a violation if it was elsewhere
  // (or is an id this book does not hold: a log changed behind its back).
  void advance(std::uint64_t order, stage from, stage to) {
    if (order >= size) {
      violations.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    std::atomic<std::uint8_t>& s = stages[order];
    if (s.load(std::memory_order_relaxed) != from)
      violations.fetch_add(1, std::memory_order_relaxed);
    s.store(to, std::memory_order_relaxed);
  }

  // A digest of the state of orders [0, n): each order's stage and the revenue.
  [[nodiscard]] std::uint64_t digest(std::uint64_t n) const {
    std::uint64_t h = scramble(n + 1) ^ scramble(static_cast<std::uint64_t>(revenue.load()));
    for (std::uint64_t i = 0; i < n; ++i)
      h = scramble(h ^ (i << 2) ^ stages[i].load(std::memory_order_relaxed));
    return h;
  }

  std::size_t size;
  std::unique_ptr<std::atomic<std::uint8_t>[]> stages;
  std::atomic<std::int64_t> revenue{0};
  std::atomic<std::uint64_t> violations{0};
  std::atomic<std::uint64_t> mismatches{0};  // paid amount differs from the price
  std::atomic<std::uint64_t> completed{0};
};

// Time from publish (the producer's stamp) to the shipped handler, in
// power-of-two buckets of nanoseconds.
struct latency_histogram {
  static constexpr std::size_t buckets = 40;
  std::array<std::atomic<std::uint64_t>, buckets> counts{};

  void add(std::int64_t ns) {
    std::size_t b = 0;
    for (std::uint64_t v = ns > 0 ? static_cast<std::uint64_t>(ns) : 0; v > 1 && b + 1 < buckets;
         v >>= 1)
      ++b;
    counts[b].fetch_add(1, std::memory_order_relaxed);
  }

  // Upper bound (ns) of the bucket holding quantile q.
  [[nodiscard]] std::uint64_t quantile(double q) const {
    std::uint64_t total = 0;
    for (const auto& c : counts) total += c.load(std::memory_order_relaxed);
    if (total == 0) return 0;
    const auto target = static_cast<std::uint64_t>(q * static_cast<double>(total));
    std::uint64_t seen = 0;
    for (std::size_t b = 0; b < buckets; ++b) {
      seen += counts[b].load(std::memory_order_relaxed);
      if (seen > target) return std::uint64_t{2} << b;
    }
    return std::uint64_t{2} << (buckets - 1);
  }
};

std::string human_ns(std::uint64_t ns) {
  char buf[32];
  if (ns < 1'000) {
    std::snprintf(buf, sizeof buf, "%" PRIu64 " ns", ns);
  } else if (ns < 1'000'000) {
    std::snprintf(buf, sizeof buf, "%.1f us", static_cast<double>(ns) / 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f ms", static_cast<double>(ns) / 1e6);
  }
  return buf;
}

// ---- storage: the log and the saved state -------------------------------------------

// order_shipped has 4 bytes of padding after `carrier`, which memcpy would
// store as they are (stack garbage): version 2 stores its two fields; logs of
// version 1 (the object's 16 bytes) still read.
struct shipped_codec {
  void encode(const order_shipped& e, sluice::byte_writer& out) const {
    out.put(e.order);
    out.put(e.carrier);
  }
  sluice::decoded<order_shipped> decode(sluice::byte_view in, std::uint32_t version) const {
    order_shipped e{};
    sluice::byte_reader r(in);
    if (version == 1) {
      if (in.size != sizeof(order_shipped)) return sluice::decode_failure("bad v1 order_shipped");
      std::memcpy(&e, in.data, sizeof e);
      return e;
    }
    if (version != 2)
      return sluice::decode_failure("unknown order_shipped version",
                                    sluice::decode_errc::unsupported_version);
    if (!r.get(e.order) || !r.get(e.carrier) || !r.done())
      return sluice::decode_failure("bad order_shipped");
    return e;
  }
};

std::shared_ptr<sluice::codecs> event_types() {
  auto t = std::make_shared<sluice::codecs>();
  t->add<order_placed>("order_placed");
  t->add<order_paid>("order_paid");
  t->add<order_shipped>("order_shipped", 2, shipped_codec{});
  return t;
}

// Orders the log knows of: one past the largest placed order id.
bool orders_in_log(const std::string& dir, const sluice::codecs& types, std::uint64_t& out) {
  out = 0;
  if (!std::filesystem::exists(dir)) return true;
  sluice::reader_options ro;
  ro.type = "order_placed";
  sluice::storage_error err;
  auto reader = sluice::log_reader::open(dir, ro, err);
  if (reader == nullptr) {
    std::fprintf(stderr, "order_service: %s\n", err.describe().c_str());
    return false;
  }
  sluice::stored_event e;
  for (;;) {
    const sluice::read_status s = reader->next(e);
    if (s == sluice::read_status::lost) continue;  // the replay reports it
    if (s != sluice::read_status::event) break;    // the end, or damage (opening the log says)
    const auto placed = types.decode<order_placed>(e);
    if (placed && placed->order + 1 > out) out = placed->order + 1;
  }
  return true;
}

// The state a run ends with: how many orders, and the digest of their state.
struct saved_state {
  std::uint64_t orders = 0;
  std::uint64_t digest = 0;
};

bool load_state(const std::string& path, saved_state& out) {
  std::ifstream f(path);
  std::string k1, k2;
  return static_cast<bool>(f >> k1 >> out.orders >> k2 >> std::hex >> out.digest) &&
         k1 == "orders" && k2 == "digest";
}

bool save_state(const std::string& path, const saved_state& st) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << "orders " << st.orders << "\ndigest " << std::hex << st.digest << "\n";
    if (!f.flush()) return false;
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  return !ec;
}

// ---- the front ends -------------------------------------------------------------

// One front end: takes the orders o with o % count == index and keeps up to
// `window` of them in flight, so that a lane carries many orders at once.
// Every event of an order goes through this thread's producer with the order
// id as key: that is what keeps placed, paid and shipped in order.
void front_end(sluice::bus& bus, std::uint64_t index, std::uint64_t count, std::uint64_t base,
               std::uint64_t orders, std::atomic<std::uint64_t>& refused) {
  sluice::producer producer = bus.make_producer();
  constexpr std::uint64_t window = 64;
  const std::uint64_t mine = orders / count + (index < orders % count ? 1 : 0);
  std::uint64_t not_ok = 0;
  auto order_at = [&](std::uint64_t k) { return base + k * count + index; };
  for (std::uint64_t step = 0; step < mine + 2 * window; ++step) {
    if (step < mine) {
      const std::uint64_t o = order_at(step);
      const order_placed e{o, static_cast<std::uint32_t>(scramble(o) % 50'000),
                           static_cast<std::uint32_t>(1 + o % 7), price_of(o)};
      if (producer.publish(e, o) != sluice::publish_result::ok) ++not_ok;
    }
    if (step >= window && step - window < mine) {
      const std::uint64_t o = order_at(step - window);
      if (producer.publish(order_paid{o, price_of(o)}, o) != sluice::publish_result::ok) ++not_ok;
    }
    if (step >= 2 * window && step - 2 * window < mine) {
      const std::uint64_t o = order_at(step - 2 * window);
      const order_shipped e{o, static_cast<std::uint32_t>(o % 3)};
      if (producer.publish(e, o) != sluice::publish_result::ok) ++not_ok;
    }
  }
  refused.fetch_add(not_ok, std::memory_order_relaxed);
}

// ---- reporting --------------------------------------------------------------------

struct totals {
  std::uint64_t placed = 0, paid = 0, shipped = 0;
  [[nodiscard]] std::uint64_t sum() const { return placed + paid + shipped; }
};

totals delivered_so_far(const sluice::bus& bus) {
  totals t;
  t.placed = bus.stats<order_placed>().delivered;
  t.paid = bus.stats<order_paid>().delivered;
  t.shipped = bus.stats<order_shipped>().delivered;
  return t;
}

void print_progress(const sluice::bus& bus, std::uint64_t orders, double seconds, double rate,
                    bool tty) {
  const totals t = delivered_so_far(bus);
  const double pct = 100.0 * static_cast<double>(t.shipped) / static_cast<double>(orders);
  std::printf("%s[%5.1f s] placed %10" PRIu64 "  paid %10" PRIu64 "  shipped %10" PRIu64
              "  (%5.1f%%)  queued %6zu  %6.2f M events/s%s",
              tty ? "\r" : "", seconds, t.placed, t.paid, t.shipped, pct, bus.queued(), rate / 1e6,
              tty ? "" : "\n");
  std::fflush(stdout);
}

bool print_type_row(const char* name, const sluice::type_stats& s) {
  std::printf("  %-14s %10" PRIu64 " %10" PRIu64 " %9" PRIu64 " %8" PRIu64 " %9" PRIu64 " %7" PRIu64
              "  %s\n",
              name, s.published, s.delivered, s.unrouted, s.dropped, s.rejected, s.failed,
              s.balanced() ? "yes" : "NO");
  return s.balanced();
}

}  // namespace

int main(int argc, char** argv) {
  settings cfg;
  if (const int rc = parse_args(argc, argv, cfg); rc != 0) return rc == 1 ? 0 : rc;

  const bool tty = isatty(STDOUT_FILENO) != 0;
  const auto options = sluice::bus_options{}
                           .with_lanes(8)
                           .with_lane_capacity(4096)
                           .with_policy(sluice::full_policy::block)
                           .with_expected_producers(static_cast<std::size_t>(cfg.producers));

  // ---- the log: what earlier runs stored ----
  const std::string log_dir = cfg.data + "/log";
  const std::string state_path = cfg.data + "/state";
  auto types = event_types();
  std::uint64_t base = 0;  // orders earlier runs took; new ids start here
  if (cfg.store) {
    if (cfg.fresh) {
      std::error_code ec;
      std::filesystem::remove_all(log_dir, ec);
      std::filesystem::remove(state_path, ec);
    }
    if (!orders_in_log(log_dir, *types, base)) return 3;
    if (base != 0 && base + cfg.orders > cfg.keep) {
      // The log stays bounded: rather than grow past --keep, start over.
      std::printf("the log holds %" PRIu64 " orders; %" PRIu64 " more would pass --keep %" PRIu64
                  ": starting over\n",
                  base, cfg.orders, cfg.keep);
      std::error_code ec;
      std::filesystem::remove_all(log_dir, ec);
      std::filesystem::remove(state_path, ec);
      if (!orders_in_log(log_dir, *types, base)) return 3;
    }
  }

  std::printf("order service: %" PRIu64 " new orders, %" PRIu64 " producers, %" PRIu64
              " workers, %zu lanes x %zu events (policy %s)\n",
              cfg.orders, cfg.producers, cfg.workers, options.lanes, options.lane_capacity,
              sluice::to_string(options.policy));

  order_book book(static_cast<std::size_t>(base + cfg.orders));
  latency_histogram latency;
  std::atomic<std::uint64_t> refused{0};

  sluice::bus bus{options};

  // Handlers: one per event type. They run on the workers; each order's
  // events arrive one after another, in publication order. Replayed events go
  // through the same handlers: that is how the state is rebuilt.
  sluice::subscription on_placed = bus.subscribe<order_placed>(
      [&](const order_placed& e) { book.advance(e.order, none, placed); });
  sluice::subscription on_paid = bus.subscribe<order_paid>([&](const order_paid& e) {
    book.advance(e.order, placed, paid);
    book.revenue.fetch_add(e.amount_cents, std::memory_order_relaxed);
    if (e.amount_cents != price_of(e.order))
      book.mismatches.fetch_add(1, std::memory_order_relaxed);
  });
  // This one takes an event_view to read the metadata stamped at publish.
  sluice::subscription on_shipped =
      bus.subscribe<order_shipped>([&](sluice::event_view<order_shipped> v) {
        book.advance(v->order, paid, shipped);
        book.completed.fetch_add(1, std::memory_order_relaxed);
        if (!v.meta().replayed) latency.add(now_ns() - v.meta().timestamp);
      });

  // One call gives the bus a durable log: every event the workers take is
  // recorded before its handlers run, and synced in group commits.
  std::shared_ptr<sluice::recorder> recorder;
  if (cfg.store) {
    sluice::folder_recording r = sluice::record_to_folder(bus, log_dir, types);
    if (!r) {
      std::fprintf(stderr, "order_service: cannot open the log: %s\n", r.error.describe().c_str());
      return 3;
    }
    for (const sluice::damage_report& d : r.recovered)
      std::printf("log recovery: %s:%" PRIu64 ": %s (%" PRIu64 " bytes kept in %s)\n",
                  d.file.c_str(), d.offset, d.reason.c_str(), d.bytes, d.saved_to.c_str());
    recorder = r.rec;
  }

  if (!bus.run(static_cast<std::size_t>(cfg.workers))) {
    std::fprintf(stderr, "order_service: could not start the workers\n");
    return 1;
  }

  // ---- rebuild the state by replay ----
  bool state_ok = true;
  std::uint64_t replayed = 0;
  if (cfg.store && base != 0) {
    const auto t0 = std::chrono::steady_clock::now();
    const sluice::replay_result res = sluice::replay(log_dir, bus, *types);
    replayed = res.published;
    // Wait until the workers have handled every replayed event.
    while (delivered_so_far(bus).sum() < replayed)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("replayed %" PRIu64 " events (%" PRIu64 " orders) in %.2f s = %.2f M events/s\n",
                replayed, base, took, static_cast<double>(replayed) / took / 1e6);
    if (!res.ok()) {
      std::printf("replay stopped early: %s\n", res.error.describe().c_str());
      state_ok = false;
    }
    if (res.lost != 0) {
      // A repaired log, or records whose sync failed: the log says so, and
      // the state rebuilt without them cannot be the saved one.
      std::printf("the log is missing %" PRIu64 " event%s (sluice-log verify lists them)\n",
                  res.lost, res.lost == 1 ? "" : "s");
      state_ok = false;
    }
    saved_state saved;
    const std::uint64_t rebuilt = book.digest(base);
    if (!load_state(state_path, saved)) {
      std::printf("no saved state to compare with (the last run did not finish)\n");
    } else if (saved.orders != base || saved.digest != rebuilt) {
      std::printf("rebuilt state DIFFERS from the saved state (%" PRIu64
                  " orders, digest %016" PRIx64 "; rebuilt %" PRIu64 " orders, digest %016" PRIx64
                  ")\n",
                  saved.orders, saved.digest, base, rebuilt);
      state_ok = false;
    } else {
      std::printf("rebuilt state matches the saved state (%" PRIu64 " orders, digest %016" PRIx64
                  ")\n",
                  base, rebuilt);
    }
  }
  const std::uint64_t completed_before = book.completed.load();
  const totals before = delivered_so_far(bus);

  const auto start = std::chrono::steady_clock::now();
  std::atomic<std::uint64_t> producers_done{0};
  std::vector<std::thread> front_ends;
  front_ends.reserve(static_cast<std::size_t>(cfg.producers));
  for (std::uint64_t i = 0; i < cfg.producers; ++i)
    front_ends.emplace_back([&, i] {
      front_end(bus, i, cfg.producers, base, cfg.orders, refused);
      producers_done.fetch_add(1, std::memory_order_release);
    });

  // Live progress, about four times a second, until the front ends are done.
  auto seconds_since = [](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  };
  const auto interval = tty ? std::chrono::milliseconds(250) : std::chrono::milliseconds(1000);
  auto last_time = start;
  std::uint64_t last_count = before.sum();
  auto next_report = start + interval;
  while (producers_done.load(std::memory_order_acquire) < cfg.producers) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    const auto now = std::chrono::steady_clock::now();
    if (now < next_report) continue;
    next_report += interval;
    const std::uint64_t count = delivered_so_far(bus).sum();
    const double dt = std::chrono::duration<double>(now - last_time).count();
    print_progress(bus, base + cfg.orders, seconds_since(start),
                   dt > 0 ? static_cast<double>(count - last_count) / dt : 0.0, tty);
    last_time = now;
    last_count = count;
  }
  for (std::thread& t : front_ends) t.join();

  // Deliver whatever is still queued, join the workers; the recorder writes
  // and syncs everything recorded.
  const bool stopped = bus.stop(sluice::stop_mode::drain);
  const double elapsed = seconds_since(start);
  print_progress(bus, base + cfg.orders, elapsed,
                 static_cast<double>(delivered_so_far(bus).sum() - before.sum()) / elapsed, tty);
  if (tty) std::printf("\n");

  // ---- summary ----
  std::printf("\nper event type (after stop, replayed events included):\n");
  std::printf("  %-14s %10s %10s %9s %8s %9s %7s  %s\n", "type", "published", "delivered",
              "unrouted", "dropped", "rejected", "failed", "balanced");
  bool balanced = true;
  balanced &= print_type_row("order_placed", bus.stats<order_placed>());
  balanced &= print_type_row("order_paid", bus.stats<order_paid>());
  balanced &= print_type_row("order_shipped", bus.stats<order_shipped>());

  std::printf("\nlanes (high-water / capacity):");
  for (std::size_t i = 0; i < bus.lane_count(); ++i) {
    const sluice::lane_stats l = bus.lane(i);
    std::printf("%s %zu/%zu", i % 4 == 0 ? "\n " : "", l.high_water, l.capacity);
  }
  std::printf("\n");

  const std::uint64_t events = bus.stats<order_placed>().published +
                               bus.stats<order_paid>().published +
                               bus.stats<order_shipped>().published - replayed;
  const std::uint64_t violations = book.violations.load();
  const std::uint64_t mismatches = book.mismatches.load();
  const std::uint64_t completed = book.completed.load() - completed_before;
  const std::uint64_t not_ok = refused.load();

  bool stored_ok = true;
  if (recorder != nullptr) {
    const sluice::recorder_stats rs = recorder->stats();
    stored_ok = rs.recorded == events && rs.written == rs.recorded && rs.synced == rs.written &&
                rs.failed == 0 && rs.dropped == 0;
    std::printf(
        "\nevent log %s: %" PRIu64 " records written, %" PRIu64 " bytes, %" PRIu64
        " syncs (%.0f records per sync)%s\n",
        log_dir.c_str(), rs.written, rs.bytes, rs.syncs,
        rs.syncs != 0 ? static_cast<double>(rs.written) / static_cast<double>(rs.syncs) : 0.0,
        stored_ok ? "" : "  <- NOT all recorded and synced");
    if (!save_state(state_path, saved_state{base + cfg.orders, book.digest(base + cfg.orders)})) {
      std::printf("could not save the state to %s\n", state_path.c_str());
      stored_ok = false;
    }
  }

  std::printf("\norders completed:     %" PRIu64 " of %" PRIu64 "\n", completed, cfg.orders);
  std::printf("ordering violations:  %" PRIu64 "\n", violations);
  std::printf("payment mismatches:   %" PRIu64 "\n", mismatches);
  std::printf("publish not ok:       %" PRIu64 "\n", not_ok);
  std::printf("publish -> shipped handler latency: p50 <= %s, p99 <= %s\n",
              human_ns(latency.quantile(0.50)).c_str(), human_ns(latency.quantile(0.99)).c_str());
  std::printf("throughput:           %" PRIu64 " events in %.2f s = %.2f M events/s\n", events,
              elapsed, static_cast<double>(events) / elapsed / 1e6);

  const bool ok = stopped && balanced && violations == 0 && mismatches == 0 &&
                  completed == cfg.orders && not_ok == 0 && state_ok && stored_ok;
  std::printf("\nresult: %s\n",
              ok ? "OK (every event accounted for, every order in order)" : "FAILED");
  return ok ? 0 : 1;
}
