// Metrics: the Prometheus text a prometheus_exporter renders for buses and
// recorders (values, format rules, escaping, bad input, removal, reading
// while the bus runs) and, where promtool is installed, its verdict.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sluice/metrics/prometheus.hpp>
#include <sluice/sluice.hpp>
#include <sluice/storage.hpp>
#include <sluice/storage/memory_sink.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

namespace {

struct order {
  int id;
};
struct payment {
  int id;
};
struct quiet {
  int n;
};

// "name{labels}" -> value, from every sample line; and the family names in
// the order their # TYPE lines came.
struct parsed {
  std::map<std::string, double> samples;
  std::vector<std::string> families;
  std::map<std::string, std::string> kinds;
};

parsed parse(const std::string& text) {
  parsed p;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream t(line.substr(7));
      std::string name, kind;
      t >> name >> kind;
      p.families.push_back(name);
      p.kinds[name] = kind;
      continue;
    }
    if (line.empty() || line[0] == '#') continue;
    const auto space = line.rfind(' ');
    REQUIRE(space != std::string::npos);
    p.samples[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return p;
}

double value(const parsed& p, const std::string& key) {
  const auto it = p.samples.find(key);
  INFO("sample " << key);
  REQUIRE(it != p.samples.end());
  return it->second;
}

// Every sample line belongs to the family whose # TYPE came last, and no
// family is announced twice: the format's rule that a family's lines are
// one group.
void check_grouped(const std::string& text) {
  std::istringstream in(text);
  std::string line, current, kind;
  std::set<std::string> seen_help, seen_type;
  while (std::getline(in, line)) {
    if (line.rfind("# HELP ", 0) == 0) {
      const std::string name = line.substr(7, line.find(' ', 7) - 7);
      REQUIRE(seen_help.insert(name).second);
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      current = line.substr(7, line.find(' ', 7) - 7);
      kind = line.substr(line.rfind(' ') + 1);
      REQUIRE(seen_type.insert(current).second);
      REQUIRE(seen_help.count(current) == 1);
      continue;
    }
    INFO(line);
    REQUIRE(!current.empty());
    if (kind == "histogram") {
      const std::string rest = line.substr(0, line.find('{'));
      REQUIRE(
          (rest == current + "_bucket" || rest == current + "_sum" || rest == current + "_count"));
    } else {
      REQUIRE(line.compare(0, current.size() + 1, current + "{") == 0);
    }
  }
  REQUIRE(seen_help == seen_type);
}

std::shared_ptr<sluice::codecs> order_codecs() {
  auto t = std::make_shared<sluice::codecs>();
  REQUIRE(t->add<order>("order") == nullptr);
  return t;
}

}  // namespace

TEST_CASE("metrics: a bus's counters and lanes, by bus, type and lane", "[metrics]") {
  sluice::bus_options o;
  o.lanes = 2;
  o.lane_capacity = 4;
  sluice::bus b(o);
  sluice::prometheus_exporter prom;
  prom.add(b, "shop").type<order>("order").type<payment>("payment");

  int seen = 0;
  auto sub = b.subscribe<order>([&](const order& x) {
    ++seen;
    return x.id == 3 ? sluice::outcome::failure(7, "no stock") : sluice::outcome::success();
  });
  sluice::producer p = b.make_producer();
  for (int i = 0; i < 3; ++i) REQUIRE(p.publish(order{i + 1}) == sluice::publish_result::ok);
  REQUIRE(p.publish(payment{1}) == sluice::publish_result::ok);
  // Due at once, but nobody drains before stop(): it waits in its lane's wheel.
  REQUIRE(p.publish_after(std::chrono::nanoseconds(0), payment{2}) == sluice::publish_result::ok);

  // Before delivery: accepted and in flight, queued in the lanes.
  parsed before = parse(prom.render());
  REQUIRE(value(before, "sluice_lane_delayed{bus=\"shop\",lane=\"0\"}") +
              value(before, "sluice_lane_delayed{bus=\"shop\",lane=\"1\"}") ==
          1);
  REQUIRE(value(before, "sluice_events_published_total{bus=\"shop\",type=\"order\"}") == 3);
  REQUIRE(value(before, "sluice_events_in_flight{bus=\"shop\",type=\"order\"}") == 3);
  REQUIRE(value(before, "sluice_lane_capacity{bus=\"shop\",lane=\"0\"}") == 4);
  REQUIRE(value(before, "sluice_lane_capacity{bus=\"shop\",lane=\"1\"}") == 4);
  const double queued = value(before, "sluice_lane_depth{bus=\"shop\",lane=\"0\"}") +
                        value(before, "sluice_lane_depth{bus=\"shop\",lane=\"1\"}");
  REQUIRE(queued == 4);
  REQUIRE(value(before, "sluice_workers{bus=\"shop\"}") == 0);
  REQUIRE(value(before, "sluice_workers_parked{bus=\"shop\"}") == 0);

  REQUIRE(b.stop());
  const std::string text = prom.render();
  check_grouped(text);
  parsed after = parse(text);
  REQUIRE(seen == 3);
  const sluice::type_stats s = b.stats<order>();
  REQUIRE(value(after, "sluice_events_published_total{bus=\"shop\",type=\"order\"}") ==
          static_cast<double>(s.published));
  REQUIRE(
      value(after, "sluice_events_settled_total{bus=\"shop\",type=\"order\",fate=\"delivered\"}") ==
      3);
  REQUIRE(value(after,
                "sluice_events_settled_total{bus=\"shop\",type=\"payment\",fate=\"unrouted\"}") ==
          2);
  REQUIRE(value(after, "sluice_lane_delayed{bus=\"shop\",lane=\"0\"}") == 0);
  REQUIRE(value(after, "sluice_handler_failures_total{bus=\"shop\",type=\"order\"}") == 1);
  REQUIRE(value(after, "sluice_handler_calls_total{bus=\"shop\",type=\"order\"}") == 3);
  REQUIRE(value(after, "sluice_events_in_flight{bus=\"shop\",type=\"order\"}") == 0);
  REQUIRE(value(after, "sluice_events_rejected_total{bus=\"shop\",type=\"order\"}") == 0);
  // Summed over fates, settled equals published (the accounting equation).
  for (const char* type : {"order", "payment"}) {
    double settled = 0;
    for (const auto& kv : after.samples)
      if (kv.first.rfind(
              "sluice_events_settled_total{bus=\"shop\",type=\"" + std::string(type) + "\"", 0) ==
          0)
        settled += kv.second;
    REQUIRE(settled == value(after, "sluice_events_published_total{bus=\"shop\",type=\"" +
                                        std::string(type) + "\"}"));
  }
  REQUIRE(after.kinds["sluice_events_published_total"] == "counter");
  REQUIRE(after.kinds["sluice_lane_depth"] == "gauge");
  // A type not named is not reported.
  REQUIRE(text.find("quiet") == std::string::npos);
  // After stop(), a publish is refused and counted.
  REQUIRE(p.publish(order{9}) != sluice::publish_result::ok);
  REQUIRE(value(parse(prom.render()),
                "sluice_events_rejected_total{bus=\"shop\",type=\"order\"}") == 1);
}

TEST_CASE("metrics: workers, and the workers parked while there is nothing to do", "[metrics]") {
  sluice::bus b;
  sluice::prometheus_exporter prom;
  prom.add(b, "idle");
  REQUIRE(b.run(2));
  // Both workers park once their idle spin ends; waited for on the rendered
  // value itself (a worker may wake and park again at any time).
  const std::string parked = "sluice_workers_parked{bus=\"idle\"} 2\n";
  REQUIRE(test::wait_until([&] { return prom.render().find(parked) != std::string::npos; }));
  REQUIRE(value(parse(prom.render()), "sluice_workers{bus=\"idle\"}") == 2);
  REQUIRE(b.stop());
  REQUIRE(value(parse(prom.render()), "sluice_workers{bus=\"idle\"}") == 0);
}

TEST_CASE("metrics: a snapshot holds the same values as plain fields, and as JSON", "[metrics]") {
  sluice::bus_options o;
  o.lanes = 2;
  o.lane_capacity = 8;
  sluice::bus b(o);
  auto rec =
      std::make_shared<sluice::recorder>(std::make_unique<sluice::memory_sink>(8), order_codecs());
  REQUIRE(b.record(rec) == nullptr);
  sluice::prometheus_exporter prom;
  prom.add(b, "sh\"op\n").type<order>("order").type<payment>("payment");
  REQUIRE(prom.add(*rec, "log"));
  int seen = 0;
  auto sub = b.subscribe<order>([&](const order&) { ++seen; });
  for (int i = 0; i < 5; ++i) REQUIRE(b.publish(order{i}) == sluice::publish_result::ok);
  REQUIRE(b.publish(payment{1}) == sluice::publish_result::ok);
  REQUIRE(b.stop());
  REQUIRE(rec->sync().ok());
  REQUIRE(rec->close().ok());
  const sluice::metrics_snapshot s = prom.snapshot();
  REQUIRE(s.buses.size() == 1);
  REQUIRE(s.buses[0].bus == "sh\"op\n");
  REQUIRE(s.buses[0].lanes.size() == 2);
  REQUIRE(s.buses[0].lanes[0].capacity == 8);
  REQUIRE(s.types.size() == 2);
  REQUIRE(s.types[0].type == "order");
  REQUIRE(s.types[0].stats.delivered == 5);
  REQUIRE(s.types[1].stats.unrouted == 1);
  REQUIRE(s.recorders.size() == 1);
  REQUIRE(s.recorders[0].stats.recorded == rec->stats().recorded);
  REQUIRE(s.recorders[0].has_sync_durations);
  REQUIRE(s.recorders[0].sync_durations.count() == rec->sync_durations().count());
  const std::string j = s.to_json();
  INFO(j);
  REQUIRE(j.rfind("{\"buses\": [{\"bus\": \"sh\\\"op\\n\", \"workers\": 0", 0) == 0);
  REQUIRE(j.find("{\"type\": \"order\", \"published\": 5, \"delivered\": 5,") != std::string::npos);
  REQUIRE(j.find("\"unrouted\": 1,") != std::string::npos);
  REQUIRE(j.find("\"in_flight\": 0, \"subscriptions\": [{\"name\": \"\", \"active\": true,") !=
          std::string::npos);
  REQUIRE(j.find("\"recorders\": [{\"recorder\": \"log\", \"recorded\": 5,") != std::string::npos);
  REQUIRE(j.find("\"sync_duration_ns\": {\"count\": ") != std::string::npos);
  // Balanced brackets outside strings, and one object.
  int depth = 0;
  bool in_string = false, escaped = false;
  for (const char c : j) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      REQUIRE(static_cast<unsigned char>(c) >= 0x20);
      continue;
    }
    if (c == '"') in_string = true;
    if (c == '{' || c == '[') ++depth;
    if (c == '}' || c == ']') REQUIRE(--depth >= 0);
  }
  REQUIRE(depth == 0);
  REQUIRE_FALSE(in_string);
  // An empty exporter: an empty object of its kind.
  REQUIRE(sluice::prometheus_exporter().snapshot().to_json() ==
          "{\"buses\": [], \"recorders\": []}");
}

TEST_CASE("metrics: latency histograms per type, rendered and in the snapshot", "[metrics]") {
  sluice::bus_options o;
  o.lanes = 2;
  o.latency_sample_every = 1;
  sluice::bus b(o), untimed;
  auto sub = b.subscribe<order>([](const order&) {});
  auto other = untimed.subscribe<order>([](const order&) {});
  sluice::prometheus_exporter prom;
  prom.add(b, "shop").type<order>("order").type<payment>("payment");
  prom.add(untimed, "plain").type<order>("order");
  for (int i = 0; i < 10; ++i) {
    REQUIRE(b.publish(order{i}) == sluice::publish_result::ok);
    REQUIRE(untimed.publish(order{i}) == sluice::publish_result::ok);
  }
  REQUIRE(b.stop());
  REQUIRE(untimed.stop());
  const std::string text = prom.render();
  INFO(text);
  const std::string shop = "{bus=\"shop\",type=\"order\"";
  CHECK(text.find("sluice_event_queue_wait_seconds_count" + shop + "} 10\n") != std::string::npos);
  CHECK(text.find("sluice_handler_duration_seconds_count" + shop + "} 10\n") != std::string::npos);
  CHECK(text.find("sluice_handler_duration_seconds_bucket" + shop + ",le=\"+Inf\"} 10\n") !=
        std::string::npos);
  CHECK(text.find("sluice_event_queue_wait_seconds_bucket" + shop + ",le=\"1e-07\"} ") !=
        std::string::npos);
  CHECK(text.find("sluice_handler_duration_seconds_count{bus=\"shop\",type=\"payment\"} 0\n") !=
        std::string::npos);
  CHECK(text.find("# TYPE sluice_event_queue_wait_seconds histogram\n") != std::string::npos);
  // A bus without latency metrics has no histogram series.
  CHECK(text.find("_seconds_count{bus=\"plain\"") == std::string::npos);
  const sluice::metrics_snapshot s = prom.snapshot();
  REQUIRE(s.types.size() == 3);
  CHECK(s.types[0].has_latency);
  CHECK(s.types[0].latency.queue_wait.count() == 10);
  CHECK(s.types[0].latency.handler.count() == sub.handler_time().count());
  CHECK_FALSE(s.types[2].has_latency);
  CHECK(s.types[2].latency.queue_wait.count() == 0);
  const std::string j = s.to_json();
  CHECK(j.find("\"queue_wait_ns\": {\"count\": 10, \"mean\": ") != std::string::npos);
  CHECK(j.find("\"handler_ns\": {\"count\": 10, ") != std::string::npos);
}

TEST_CASE("metrics: named subscriptions' failure-policy counts and breaker state", "[metrics]") {
  sluice::bus b{sluice::bus_options{}.with_lanes(1)};
  const auto policy =
      sluice::failure_policy::retry(2, sluice::retry_backoff::fixed(std::chrono::nanoseconds(0)))
          .with_breaker(3, std::chrono::hours(1));
  // Two of one name (summed), one unnamed (left out), one that never fails.
  auto a =
      b.subscribe<order>([](const order&) { return sluice::outcome::failure(1); },
                         sluice::subscribe_options::named("billing").with_failure_policy(policy));
  auto a2 =
      b.subscribe<order>([](const order&) { return sluice::outcome::failure(1); },
                         sluice::subscribe_options::named("billing").with_failure_policy(policy));
  auto unnamed = b.subscribe<order>([](const order&) { return sluice::outcome::failure(1); });
  auto fine = b.subscribe<order>([](const order&) {}, sluice::subscribe_options::named("audit"));
  sluice::prometheus_exporter prom;
  prom.add(b, "shop").type<order>("order");
  for (int i = 0; i < 4; ++i) REQUIRE(b.publish(order{i}) == sluice::publish_result::ok);
  while (b.poll() != 0) {
  }
  REQUIRE(b.stop());
  const sluice::subscription_stats sa = a.stats(), sb = a2.stats();
  REQUIRE(sa.failed > 0);
  REQUIRE(sa.breaker == sluice::breaker_state::open);
  const std::string text = prom.render();
  INFO(text);
  const std::string billing = "{bus=\"shop\",type=\"order\",subscription=\"billing\"}";
  CHECK(text.find("sluice_subscription_failed_calls_total" + billing + " " +
                  std::to_string(sa.failed + sb.failed) + "\n") != std::string::npos);
  CHECK(text.find("sluice_subscription_retries_total" + billing + " " +
                  std::to_string(sa.retried + sb.retried) + "\n") != std::string::npos);
  CHECK(text.find("sluice_subscription_dead_lettered_total" + billing + " " +
                  std::to_string(sa.dead_lettered + sb.dead_lettered) + "\n") != std::string::npos);
  CHECK(text.find("sluice_subscription_breaker_opens_total" + billing + " 2\n") !=
        std::string::npos);
  CHECK(text.find("sluice_subscription_breaker_state{bus=\"shop\",type=\"order\",subscription="
                  "\"billing\",state=\"open\"} 1\n") != std::string::npos);
  CHECK(text.find("sluice_subscription_breaker_state{bus=\"shop\",type=\"order\",subscription="
                  "\"audit\",state=\"closed\"} 1\n") != std::string::npos);
  CHECK(text.find("subscription=\"\"") == std::string::npos);
  // The snapshot lists all four, newest first, with their names.
  const sluice::metrics_snapshot s = prom.snapshot();
  REQUIRE(s.types.size() == 1);
  REQUIRE(s.types[0].subscriptions.size() == 4);
  CHECK(s.types[0].subscriptions[0].name == "audit");
  CHECK(s.types[0].subscriptions[1].name.empty());
  CHECK(s.types[0].subscriptions[3].stats.failed == sa.failed);
  CHECK(s.to_json().find("{\"name\": \"billing\", \"active\": true, \"failed\": ") !=
        std::string::npos);
  // Unsubscribed: gone from the list, or listed inactive until it is freed.
  unnamed.reset();
  const std::vector<sluice::subscription_info> after = b.subscriptions<order>();
  const auto active = std::count_if(after.begin(), after.end(),
                                    [](const sluice::subscription_info& i) { return i.active; });
  CHECK(active == 3);
  for (const auto& i : after)
    if (!i.active) CHECK(i.name.empty());
}

TEST_CASE("metrics: label values are escaped, the prefix is the caller's", "[metrics]") {
  sluice::bus b;
  sluice::prometheus_exporter prom("game_7");
  prom.add(b, "a\"b\\c\nd").type<order>("order");
  REQUIRE(b.publish(order{1}) == sluice::publish_result::ok);
  REQUIRE(b.stop());
  const std::string text = prom.render();
  check_grouped(text);
  REQUIRE(text.find("game_7_events_published_total{bus=\"a\\\"b\\\\c\\nd\",type=\"order\"} 1\n") !=
          std::string::npos);
  REQUIRE(text.find("sluice_") == std::string::npos);
  REQUIRE(text.back() == '\n');
}

TEST_CASE("metrics: bad names are refused with a clear error and change nothing", "[metrics]") {
  for (const char* bad : {"", "1abc", "a-b", "a b", "a:b"}) {
    INFO(bad);
    REQUIRE_THROWS_AS(sluice::prometheus_exporter(bad), std::invalid_argument);
  }
  sluice::bus b, c;
  sluice::prometheus_exporter prom;
  sluice::prometheus_bus shop = prom.add(b, "shop").type<order>("order");
  REQUIRE(shop);
  const std::string before = prom.render();
  REQUIRE_THROWS_AS(prom.add(c, ""), std::invalid_argument);
  REQUIRE_THROWS_AS(prom.add(c, "shop"), std::invalid_argument);
  REQUIRE_THROWS_AS(prom.add(b, "other"), std::invalid_argument);
  REQUIRE_THROWS_AS(shop.type<payment>("order"), std::invalid_argument);
  REQUIRE_THROWS_AS(shop.type<payment>(""), std::invalid_argument);
  // Names must be UTF-8 (a scrape fails on anything else): a stray
  // continuation byte, an overlong form, a surrogate, a cut sequence.
  for (const char* bytes : {"a\x80", "\xC0\xAF", "\xED\xA0\x80", "\xE2\x82", "\xF5\x80\x80\x80"}) {
    INFO(bytes);
    REQUIRE_THROWS_AS(prom.add(c, bytes), std::invalid_argument);
    REQUIRE_THROWS_AS(shop.type<payment>(bytes), std::invalid_argument);
  }
  REQUIRE(prom.error() != nullptr);
  REQUIRE(std::string(prom.error()).find("sluice:") == 0);
  REQUIRE(prom.render() == before);
  // The same type may be named on two buses.
  // Well-formed UTF-8 is taken as it is.
  prom.add(c, "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x9A\x80").type<order>("order");
  REQUIRE(prom.render().find("bus=\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x9A\x80\",type=\"order\"") !=
          std::string::npos);
  auto rec =
      std::make_shared<sluice::recorder>(std::make_unique<sluice::memory_sink>(8), order_codecs());
  REQUIRE(prom.add(*rec, "log"));
  REQUIRE_THROWS_AS(prom.add(*rec, "log2"), std::invalid_argument);
  REQUIRE_THROWS_AS(prom.add(*rec, ""), std::invalid_argument);
}

TEST_CASE("metrics: a removed bus or recorder is no longer reported", "[metrics]") {
  sluice::bus b, c;
  auto rec =
      std::make_shared<sluice::recorder>(std::make_unique<sluice::memory_sink>(8), order_codecs());
  sluice::prometheus_exporter prom;
  prom.add(b, "shop").type<order>("order");
  prom.add(*rec, "log");
  REQUIRE(prom.render().find("bus=\"shop\"") != std::string::npos);
  sluice::prometheus_bus handle = prom.add(c, "other");
  REQUIRE(prom.remove(b));
  REQUIRE_FALSE(prom.remove(b));
  // A handle to a removed bus refuses, rather than touch what is gone.
  REQUIRE(prom.remove(c));
  REQUIRE_THROWS_AS(handle.type<order>("order"), std::invalid_argument);
  // Also when the same bus was added again: the handle names the old
  // registration, not the bus.
  sluice::prometheus_bus again = prom.add(c, "other");
  REQUIRE_THROWS_AS(handle.type<order>("order"), std::invalid_argument);
  again.type<order>("order");
  REQUIRE(prom.render().find("bus=\"other\",type=\"order\"") != std::string::npos);
  REQUIRE(prom.remove(c));
  REQUIRE(prom.render().find("bus=\"shop\"") == std::string::npos);
  REQUIRE(prom.render().find("recorder=\"log\"") != std::string::npos);
  REQUIRE(prom.remove(*rec));
  REQUIRE(prom.render().empty());
  // The name is free again.
  prom.add(b, "shop");
  REQUIRE(prom.render().find("sluice_workers{bus=\"shop\"} 0") != std::string::npos);
}

TEST_CASE("metrics: a recorder's counters", "[metrics]") {
  auto rec =
      std::make_shared<sluice::recorder>(std::make_unique<sluice::memory_sink>(64), order_codecs());
  sluice::bus b;
  REQUIRE(b.record(rec) == nullptr);
  sluice::prometheus_exporter prom;
  prom.add(*rec, "orders");
  for (int i = 0; i < 10; ++i) REQUIRE(b.publish(order{i}) == sluice::publish_result::ok);
  REQUIRE(b.publish(quiet{1}) == sluice::publish_result::ok);  // no codec
  REQUIRE(b.stop());
  REQUIRE(rec->sync().ok());
  REQUIRE(rec->close().ok());  // nothing changes the counters from here on
  const std::string text = prom.render();
  check_grouped(text);
  const parsed p = parse(text);
  const sluice::recorder_stats s = rec->stats();
  REQUIRE(s.recorded == 10);
  REQUIRE(value(p, "sluice_recorder_recorded_records_total{recorder=\"orders\"}") == 10);
  REQUIRE(value(p, "sluice_recorder_written_records_total{recorder=\"orders\"}") == 10);
  REQUIRE(value(p, "sluice_recorder_synced_records_total{recorder=\"orders\"}") == 10);
  REQUIRE(value(p, "sluice_recorder_unrecorded_events_total{recorder=\"orders\"}") == 1);
  REQUIRE(value(p, "sluice_recorder_written_bytes_total{recorder=\"orders\"}") ==
          static_cast<double>(s.bytes));
  REQUIRE(s.bytes > 0);
  REQUIRE(value(p, "sluice_recorder_syncs_total{recorder=\"orders\"}") ==
          static_cast<double>(s.syncs));
  REQUIRE(value(p, "sluice_recorder_lost_records_total{recorder=\"orders\",reason=\"dropped\"}") ==
          0);
  REQUIRE(p.kinds.at("sluice_recorder_unacknowledged_losses") == "gauge");
  // The sync durations: one sample per sync the writer made, cumulative
  // buckets that never go down, +Inf equal to the count.
  const sluice::duration_histogram h = rec->sync_durations();
  REQUIRE(h.count() >= 1);
  // (close() found everything synced, so every sync counted was the writer's.)
  REQUIRE(h.count() == s.syncs + s.sync_failures);
  REQUIRE(p.kinds.at("sluice_recorder_sync_duration_seconds") == "histogram");
  const std::string bucket =
      "sluice_recorder_sync_duration_seconds_bucket{recorder=\"orders\",le=\"";
  // Every finite `le` is a bucket's upper edge (in seconds), and its count is
  // exactly the values <= it; counts never go down as `le` grows.
  std::vector<std::pair<double, double>> les;
  for (const auto& kv : p.samples) {
    if (kv.first.rfind(bucket, 0) != 0) continue;
    const std::string le = kv.first.substr(bucket.size(), kv.first.size() - bucket.size() - 2);
    if (le != "+Inf") les.emplace_back(std::stod(le), kv.second);
  }
  REQUIRE(les.size() == 25);
  std::sort(les.begin(), les.end());
  double last = 0;
  for (const auto& [le, count] : les) {
    const auto edge = static_cast<std::uint64_t>(std::llround(le * 1e9));
    INFO("le " << le);
    REQUIRE(sluice::duration_histogram::index_of(edge) !=
            sluice::duration_histogram::index_of(edge + 1));
    REQUIRE(count == static_cast<double>(h.count_at_most(edge)));
    REQUIRE(count >= last);
    last = count;
  }
  REQUIRE(les.front().first == Approx(1.007e-6));
  REQUIRE(value(p, bucket + "+Inf\"}") == static_cast<double>(h.count()));
  REQUIRE(value(p, "sluice_recorder_sync_duration_seconds_count{recorder=\"orders\"}") ==
          static_cast<double>(h.count()));
  REQUIRE(value(p, "sluice_recorder_sync_duration_seconds_sum{recorder=\"orders\"}") ==
          Approx(static_cast<double>(h.sum()) / 1e9).margin(1e-9));
}

TEST_CASE("metrics: rendered while producers publish, counters never go back", "[metrics]") {
  sluice::bus_options o;
  o.lanes = 4;
  o.lane_capacity = 256;
  sluice::bus b(o);
  std::atomic<std::uint64_t> seen{0};
  auto sub = b.subscribe<order>([&](const order&) { seen.fetch_add(1); });
  sluice::prometheus_exporter prom;
  prom.add(b, "shop").type<order>("order");
  REQUIRE(b.run(2));
  constexpr int producers = 3, per = 20000;
  std::vector<std::thread> ts;
  std::atomic<int> done{0};
  std::atomic<std::uint64_t> accepted{0};
  for (int t = 0; t < producers; ++t)
    ts.emplace_back([&, t] {
      sluice::producer p = b.make_producer();
      for (int i = 0; i < per; ++i)
        if (p.publish(order{t * per + i}) == sluice::publish_result::ok) accepted.fetch_add(1);
      done.fetch_add(1);
    });
  const std::string published = "sluice_events_published_total{bus=\"shop\",type=\"order\"}";
  const std::string delivered =
      "sluice_events_settled_total{bus=\"shop\",type=\"order\",fate=\"delivered\"}";
  // Renders kept while the producers run, checked once they are joined (a
  // failed check must not leave joinable threads behind).
  // (At most 1000 kept, one a millisecond: a slow build must not fill memory.)
  std::vector<std::string> texts;
  while (done.load() < producers || texts.size() < 10) {
    if (texts.size() < 1000) texts.push_back(prom.render());
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  for (auto& t : ts) t.join();
  double last_published = 0, last_delivered = 0;
  for (const std::string& text : texts) {
    check_grouped(text);
    const parsed p = parse(text);
    REQUIRE(value(p, published) >= last_published);
    REQUIRE(value(p, delivered) >= last_delivered);
    last_published = value(p, published);
    last_delivered = value(p, delivered);
  }
  REQUIRE(b.stop());
  const parsed end = parse(prom.render());
  REQUIRE(value(end, published) == static_cast<double>(accepted.load()));
  REQUIRE(value(end, delivered) == static_cast<double>(seen.load()));
  REQUIRE(value(end, "sluice_events_in_flight{bus=\"shop\",type=\"order\"}") == 0);
}

#ifdef SLUICE_PROMTOOL
namespace {
// promtool's verdict on `text` (its exit status; its output in `said`).
int promtool_check(const std::string& text, std::string& said) {
  char path[] = "/tmp/sluice-metrics-XXXXXX";
  const int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  struct remove_file {
    const char* p;
    int fd;
    ~remove_file() {
      ::close(fd);
      std::remove(p);
    }
  } cleanup{path, fd};
  {
    std::ofstream f(path, std::ios::binary);
    f << text;
  }
  const std::string cmd = std::string(SLUICE_PROMTOOL) + " check metrics < " + path + " 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buf[512];
  while (std::fgets(buf, sizeof buf, pipe) != nullptr) said += buf;
  const int status = ::pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
}  // namespace

TEST_CASE("metrics: promtool accepts what the exporter renders", "[metrics]") {
  sluice::bus_options o;
  o.lanes = 3;
  o.latency_sample_every = 1;  // its histograms too
  sluice::bus b(o), c;
  auto rec =
      std::make_shared<sluice::recorder>(std::make_unique<sluice::memory_sink>(8), order_codecs());
  REQUIRE(b.record(rec) == nullptr);
  sluice::prometheus_exporter prom;
  prom.add(b, "shop").type<order>("order").type<payment>("payment");
  prom.add(c, "quote\"d").type<order>("order");
  prom.add(*rec, "orders");
  // A named subscription with a policy: its families too.
  auto billing = b.subscribe<order>(
      [](const order&) { return sluice::outcome::failure(1); },
      sluice::subscribe_options::named("billing").with_failure_policy(
          sluice::failure_policy::dead_letter().with_breaker(5, std::chrono::seconds(1))));
  REQUIRE(b.publish(order{1}) == sluice::publish_result::ok);
  REQUIRE(b.stop());
  std::string said;
  const int verdict = promtool_check(prom.render(), said);
  INFO("promtool said: " << said);
  REQUIRE(verdict == 0);
  // The control: promtool refuses a counter without _total and a family
  // announced twice, so the check above can fail.
  std::string bad;
  REQUIRE(promtool_check("# HELP x_count a\n# TYPE x_count counter\nx_count 1\n", bad) != 0);
  REQUIRE(promtool_check(prom.render() + prom.render(), bad) != 0);
}
#endif
