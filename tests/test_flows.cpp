// Flows: what a handler, a stage, a retried call or a caused_by scope
// publishes carries its cause (metadata::cause) and its flow
// (metadata::correlation); a transform's output names its input. The
// tracer records sampled flows whole and writes them as Chrome Trace Event
// JSON, checked here by a JSON reader of the test's own and against what
// the handlers saw.
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sluice/sluice.hpp>
#include <string>
#include <thread>
#include <vector>

#include "storage_support.hpp"
#include "support.hpp"

namespace {
using namespace std::chrono_literals;
using sluice::event_id;
using sluice::metadata;
using sluice::publish_result;

struct order {
  int n = 0;
};
struct charge {
  int n = 0;
};
struct receipt {
  int n = 0;
};

// Publishes refused on threads other than the test's (Catch2's assertions
// are for the test's thread only): checked to be 0 at the end.
std::atomic<int> off_thread_refused{0};

// What the handlers saw, by event number.
struct seen {
  std::mutex m;
  std::map<int, metadata> orders, charges, receipts;
  void keep(std::map<int, metadata>& to, int n, const metadata& meta) {
    std::lock_guard<std::mutex> lock(m);
    to[n] = meta;
  }
};

// ---- a JSON reader (enough for the tracer's output) --------------------------

struct json {
  enum kind_t { null, boolean, number, string, array, object } kind = null;
  bool b = false;
  double num = 0;
  std::string str;
  std::vector<json> items;
  std::vector<std::pair<std::string, json>> fields;

  [[nodiscard]] const json* get(const std::string& k) const {
    for (const auto& f : fields)
      if (f.first == k) return &f.second;
    return nullptr;
  }
  [[nodiscard]] std::string text(const std::string& k) const {
    const json* j = get(k);
    return j != nullptr && j->kind == string ? j->str : std::string();
  }
};

class json_reader {
 public:
  explicit json_reader(const std::string& s) : s_(s) {}
  // Reads one whole document; nullopt when it is not valid JSON.
  std::optional<json> document() {
    json j;
    if (!value(j)) return std::nullopt;
    space();
    if (at_ != s_.size()) return std::nullopt;
    return j;
  }

 private:
  void space() {
    while (at_ < s_.size() &&
           (s_[at_] == ' ' || s_[at_] == '\n' || s_[at_] == '\t' || s_[at_] == '\r'))
      ++at_;
  }
  bool literal(const char* w) {
    const std::string word(w);
    if (s_.compare(at_, word.size(), word) != 0) return false;
    at_ += word.size();
    return true;
  }
  bool text(std::string& out) {
    if (at_ >= s_.size() || s_[at_] != '"') return false;
    ++at_;
    while (at_ < s_.size() && s_[at_] != '"') {
      const char c = s_[at_++];
      if (static_cast<unsigned char>(c) < 0x20) return false;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (at_ >= s_.size()) return false;
      const char e = s_[at_++];
      if (e == 'u') {
        if (at_ + 4 > s_.size()) return false;
        for (int k = 0; k < 4; ++k)
          if (std::isxdigit(static_cast<unsigned char>(s_[at_ + static_cast<std::size_t>(k)])) == 0)
            return false;
        out += '?';
        at_ += 4;
      } else if (std::string("\"\\/bfnrt").find(e) != std::string::npos) {
        out += e;
      } else {
        return false;
      }
    }
    if (at_ >= s_.size()) return false;
    ++at_;
    return true;
  }
  bool value(json& j) {
    space();
    if (at_ >= s_.size()) return false;
    const char c = s_[at_];
    if (c == '{') {
      j.kind = json::object;
      ++at_;
      space();
      if (at_ < s_.size() && s_[at_] == '}') return ++at_, true;
      for (;;) {
        space();
        std::string k;
        if (!text(k)) return false;
        space();
        if (at_ >= s_.size() || s_[at_++] != ':') return false;
        json v;
        if (!value(v)) return false;
        j.fields.emplace_back(std::move(k), std::move(v));
        space();
        if (at_ >= s_.size()) return false;
        if (s_[at_] == ',') {
          ++at_;
          continue;
        }
        return s_[at_++] == '}';
      }
    }
    if (c == '[') {
      j.kind = json::array;
      ++at_;
      space();
      if (at_ < s_.size() && s_[at_] == ']') return ++at_, true;
      for (;;) {
        json v;
        if (!value(v)) return false;
        j.items.push_back(std::move(v));
        space();
        if (at_ >= s_.size()) return false;
        if (s_[at_] == ',') {
          ++at_;
          continue;
        }
        return s_[at_++] == ']';
      }
    }
    if (c == '"') {
      j.kind = json::string;
      return text(j.str);
    }
    if (literal("true")) {
      j.kind = json::boolean;
      j.b = true;
      return true;
    }
    if (literal("false")) {
      j.kind = json::boolean;
      return true;
    }
    if (literal("null")) return true;
    // A number: -?digits(.digits)?
    const std::size_t from = at_;
    if (s_[at_] == '-') ++at_;
    const std::size_t digits = at_;
    while (at_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[at_])) != 0) ++at_;
    if (at_ == digits) return false;
    if (at_ < s_.size() && s_[at_] == '.') {
      ++at_;
      const std::size_t frac = at_;
      while (at_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[at_])) != 0) ++at_;
      if (at_ == frac) return false;
    }
    j.kind = json::number;
    j.num = std::stod(s_.substr(from, at_ - from));
    return true;
  }

  const std::string& s_;
  std::size_t at_ = 0;
};

std::string hex_id(std::uint64_t id) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(id));
  return buf;
}

// The trace's events, read back; fails the test when it is not JSON.
std::vector<json> trace_events(const sluice::tracer& tr) {
  const std::string text = tr.to_json();
  json_reader reader(text);
  const std::optional<json> doc = reader.document();
  REQUIRE(doc.has_value());
  REQUIRE(doc->kind == json::object);
  const json* events = doc->get("traceEvents");
  REQUIRE(events != nullptr);
  REQUIRE(events->kind == json::array);
  return events->items;
}

std::size_t count_named(const std::vector<json>& evs, const std::string& ph,
                        const std::string& name) {
  return static_cast<std::size_t>(std::count_if(evs.begin(), evs.end(), [&](const json& e) {
    return e.text("ph") == ph && e.text("name") == name;
  }));
}

}  // namespace

TEST_CASE("flows: what a handler publishes carries its cause and its flow", "[flows]") {
  sluice::bus bus{sluice::bus_options{}.with_lanes(2)};
  seen s;
  auto p = bus.make_producer();
  std::mutex pm;  // (a producer is used by one thread at a time; two workers call)
  std::atomic<int> refused{0};
  auto on_order = bus.subscribe<order>([&](sluice::event_view<order> v) {
    s.keep(s.orders, v->n, v.meta());
    if (bus.publish(charge{v->n}) != publish_result::ok) ++refused;  // the shared producer
  });
  auto on_charge = bus.subscribe<charge>([&](sluice::event_view<charge> v) {
    s.keep(s.charges, v->n, v.meta());
    const receipt rs[2] = {receipt{v->n}, receipt{v->n + 1000}};
    std::lock_guard<std::mutex> lock(pm);
    if (p.publish_bulk(std::begin(rs), std::end(rs)) != 2) ++refused;  // a producer of its own
  });
  auto on_receipt = bus.subscribe<receipt>(
      [&](sluice::event_view<receipt> v) { s.keep(s.receipts, v->n, v.meta()); });
  constexpr int n = 20;
  auto outside = bus.make_producer();
  for (int i = 0; i < n; ++i)
    REQUIRE(outside.publish(order{i}, std::uint64_t(i)) == publish_result::ok);
  const receipt loose[3] = {receipt{-1}, receipt{-2}, receipt{-3}};
  REQUIRE(outside.publish_bulk(std::begin(loose), std::end(loose)) == 3);
  REQUIRE(bus.run(2));
  REQUIRE(bus.wait_idle(10s));
  REQUIRE(bus.stop());
  REQUIRE(refused.load() == 0);
  REQUIRE(s.orders.size() == n);
  REQUIRE(s.charges.size() == n);
  REQUIRE(s.receipts.size() == 2 * n + 3);
  std::set<std::uint64_t> ids;
  for (int i = 0; i < n; ++i) {
    const metadata& o = s.orders[i];
    const metadata& c = s.charges[i];
    const std::uint64_t oid = event_id(o);
    CHECK(oid != 0);
    CHECK(o.cause == 0);  // published outside any handler: a flow of its own
    CHECK(o.correlation == oid);
    CHECK(c.cause == oid);
    CHECK(c.correlation == oid);
    for (const int r : {i, i + 1000}) {
      const metadata& m = s.receipts[r];
      CHECK(m.cause == event_id(c));
      CHECK(m.correlation == oid);  // the flow's first event, two hops up
    }
    CHECK(ids.insert(oid).second);
  }
  // A bulk publish outside any handler: each event begins its own flow.
  for (const int r : {-1, -2, -3}) {
    const metadata& m = s.receipts[r];
    CHECK(m.cause == 0);
    CHECK(m.correlation == event_id(m));
    CHECK(ids.insert(m.correlation).second);
  }
  CHECK(event_id(s.receipts[-2]) == event_id(s.receipts[-1]) + 1);
}

TEST_CASE("flows: a transform's output names its input and a stage's publish is caused by it",
          "[flows]") {
  sluice::bus bus;
  seen s;
  bus.stages<order>()
      .tap([&](const order& o) {
        if (o.n == 1) (void)bus.publish(receipt{o.n});  // published by a stage
      })
      .transform([](const order& o) { return charge{o.n}; });
  auto on_charge = bus.subscribe<charge>([&](sluice::event_view<charge> v) {
    s.keep(s.charges, v->n, v.meta());
    (void)bus.publish(receipt{v->n + 100});
  });
  auto on_receipt = bus.subscribe<receipt>(
      [&](sluice::event_view<receipt> v) { s.keep(s.receipts, v->n, v.meta()); });
  auto p = bus.make_producer();
  REQUIRE(p.publish(order{1}) == publish_result::ok);
  REQUIRE(p.publish(order{2}) == publish_result::ok);
  while (bus.poll() != 0) {
  }
  REQUIRE(s.charges.size() == 2);
  REQUIRE(s.receipts.size() == 3);
  for (const int i : {1, 2}) {
    const metadata& c = s.charges[i];
    const std::uint64_t order_id = event_id(c);  // the output keeps its input's id...
    CHECK(c.producer == p.id());
    CHECK(c.cause == order_id);  // ...and names the input as its cause
    CHECK(c.correlation == order_id);
    CHECK(s.receipts[i + 100].cause == order_id);
    CHECK(s.receipts[i + 100].correlation == order_id);
  }
  CHECK(s.receipts[1].cause == event_id(s.charges[1]));
  CHECK(s.receipts[1].correlation == event_id(s.charges[1]));
  REQUIRE(bus.stop());
}

TEST_CASE("flows: a retried call and a caused_by scope on another thread carry the cause",
          "[flows]") {
  off_thread_refused = 0;
  sluice::bus bus{sluice::bus_options{}.with_lanes(1)};
  seen s;
  std::atomic<int> calls{0};
  auto flaky = bus.subscribe<order>(
      [&](sluice::event_view<order> v) -> sluice::outcome {
        if (calls.fetch_add(1) == 0) return sluice::outcome::failure(1);  // the first call fails
        s.keep(s.orders, v->n, v.meta());
        (void)bus.publish(charge{v->n});  // from the retried call
        return sluice::outcome::success();
      },
      sluice::subscribe_options{}.with_failure_policy(
          sluice::failure_policy::retry(3, sluice::retry_backoff::fixed(0ms))));
  std::vector<std::thread> helpers;
  std::mutex hm;
  auto on_charge = bus.subscribe<charge>([&](sluice::event_view<charge> v) {
    s.keep(s.charges, v->n, v.meta());
    // Handed to another thread, with a copy of the metadata.
    std::lock_guard<std::mutex> lock(hm);
    helpers.emplace_back([&bus, m = v.meta(), n = v->n] {
      const sluice::caused_by scope(m);
      if (bus.publish(receipt{n}) != publish_result::ok) ++off_thread_refused;
    });
  });
  auto on_receipt = bus.subscribe<receipt>(
      [&](sluice::event_view<receipt> v) { s.keep(s.receipts, v->n, v.meta()); });
  REQUIRE(bus.publish(order{5}) == publish_result::ok);
  REQUIRE(test::poll_until(bus, [&] { return s.charges.size() == 1; }));
  {
    std::lock_guard<std::mutex> lock(hm);
    for (auto& t : helpers) t.join();
    helpers.clear();
  }
  REQUIRE(test::poll_until(bus, [&] { return s.receipts.size() == 1; }));
  const std::uint64_t oid = event_id(s.orders[5]);
  CHECK(calls.load() == 2);
  CHECK(s.charges[5].cause == oid);
  CHECK(s.charges[5].correlation == oid);
  CHECK(s.receipts[5].cause == event_id(s.charges[5]));
  CHECK(s.receipts[5].correlation == oid);
  // Outside the scope the helper thread's publishes begin flows of their own.
  metadata after;
  std::thread([&] {
    const metadata m = s.charges[5];
    { const sluice::caused_by scope(m); }
    if (bus.publish(receipt{9}) != publish_result::ok) ++off_thread_refused;
  }).join();
  REQUIRE(test::poll_until(bus, [&] { return s.receipts.size() == 2; }));
  REQUIRE(off_thread_refused.load() == 0);
  after = s.receipts[9];
  CHECK(after.cause == 0);
  CHECK(after.correlation == event_id(after));
  REQUIRE(bus.stop());
}

TEST_CASE(
    "flows: a drain inside a caused_by scope has causes of its own and another bus's event is no "
    "cause",
    "[flows]") {
  sluice::bus bus;
  sluice::bus other;
  seen s;
  metadata other_seen;
  auto on_order = bus.subscribe<order>([&](sluice::event_view<order> v) {
    s.keep(s.orders, v->n, v.meta());
    (void)bus.publish(charge{v->n});
    (void)other.publish(receipt{v->n});  // into another bus: begins a flow there
    bus.dispatch(receipt{v->n + 500});   // a dispatch: its handler publishes as caused by v
  });
  auto on_charge = bus.subscribe<charge>(
      [&](sluice::event_view<charge> v) { s.keep(s.charges, v->n, v.meta()); });
  auto on_receipt = bus.subscribe<receipt>([&](sluice::event_view<receipt> v) {
    s.keep(s.receipts, v->n, v.meta());
    if (v->n >= 500 && v->n < 1000) (void)bus.publish(receipt{v->n + 1000});
  });
  auto on_other =
      other.subscribe<receipt>([&](sluice::event_view<receipt> v) { other_seen = v.meta(); });
  REQUIRE(bus.publish(order{0}) == publish_result::ok);  // the cause the scope names
  while (bus.poll() != 0) {
  }
  REQUIRE(s.orders.size() == 1);
  const metadata outer = s.orders[0];
  s.orders.clear();
  s.charges.clear();
  REQUIRE(bus.publish(order{1}) == publish_result::ok);
  {
    const sluice::caused_by scope(outer);
    while (bus.poll() != 0) {  // the drain's events are the causes inside it
    }
    REQUIRE(bus.publish(charge{7}) == publish_result::ok);  // after it: the scope's again
  }
  while (bus.poll() != 0) {
  }
  while (other.poll() != 0) {
  }
  REQUIRE(s.orders.size() == 1);
  const metadata& o1 = s.orders[1];
  CHECK(o1.cause == 0);  // published before the scope
  CHECK(s.charges[1].cause == event_id(o1));
  CHECK(s.charges[7].cause == event_id(outer));
  CHECK(s.charges[7].correlation == event_id(outer));
  CHECK(s.receipts[1501].cause == event_id(o1));  // from the dispatched event's handler
  CHECK(s.receipts[1501].correlation == event_id(o1));
  CHECK(other_seen.cause == 0);
  CHECK(other_seen.correlation == event_id(other_seen));
  REQUIRE(bus.stop());
  REQUIRE(other.stop());
}

TEST_CASE("tracer: every flow traced: publishes deliveries and handler calls with arrows",
          "[flows][tracer]") {
  auto tr = std::make_shared<sluice::tracer>(1);
  tr->name<order>("order").name<charge>("charge \"quoted\"");
  off_thread_refused = 0;
  sluice::bus bus{sluice::bus_options{}.with_lanes(2).with_tracer(tr)};
  seen s;
  auto on_order = bus.subscribe<order>(
      [&](sluice::event_view<order> v) {
        s.keep(s.orders, v->n, v.meta());
        if (bus.publish(charge{v->n}) != publish_result::ok) ++off_thread_refused;
      },
      sluice::subscribe_options::named("take order"));
  auto audit = bus.subscribe<order>([](const order&) {});  // unnamed
  auto on_charge = bus.subscribe<charge>(
      [&](sluice::event_view<charge> v) { s.keep(s.charges, v->n, v.meta()); },
      sluice::subscribe_options::named("charge card"));
  constexpr int n = 50;
  std::vector<std::thread> producers;
  for (int t = 0; t < 2; ++t)
    producers.emplace_back([&, t] {
      auto p = bus.make_producer();
      for (int i = 0; i < n; ++i)
        if (p.publish(order{t * n + i}, std::uint64_t(i)) != publish_result::ok)
          ++off_thread_refused;
    });
  REQUIRE(bus.run(2));
  for (auto& t : producers) t.join();
  REQUIRE(bus.wait_idle(10s));
  REQUIRE(bus.stop());
  REQUIRE(off_thread_refused.load() == 0);
  REQUIRE(s.orders.size() == 2 * n);
  REQUIRE(s.charges.size() == 2 * n);
  CHECK(tr->lost() == 0);
  CHECK(tr->size() == 2 * n * 2 + 2 * n * 2 + 2 * n * 3);  // publishes, deliveries, calls

  const std::vector<json> evs = trace_events(*tr);
  CHECK(count_named(evs, "X", "publish order") == 2 * n);
  CHECK(count_named(evs, "X", "publish charge \"quoted\"") == 2 * n);
  CHECK(count_named(evs, "X", "deliver order") == 2 * n);
  CHECK(count_named(evs, "X", "take order") == 2 * n);
  CHECK(count_named(evs, "X", "handler order") == 2 * n);  // the unnamed one
  CHECK(count_named(evs, "X", "charge card") == 2 * n);
  CHECK(count_named(evs, "b", "queue wait order") == 2 * n);
  CHECK(count_named(evs, "e", "queue wait order") == 2 * n);
  // Each flow arrow starts at a publish and ends at a delivery, on the
  // event's id; each charge's delivery names its order as cause.
  std::map<std::string, int> starts, ends;
  std::map<std::string, std::string> cause_of;  // delivered event -> cause
  std::set<double> tids;
  for (const json& e : evs) {
    const std::string ph = e.text("ph");
    REQUIRE(e.get("pid") != nullptr);
    if (ph == "s") ++starts[e.text("id")];
    if (ph == "f") {
      ++ends[e.text("id")];
      CHECK(e.text("bp") == "e");
    }
    if (ph == "X") {
      const json* dur = e.get("dur");
      REQUIRE(dur != nullptr);
      CHECK(dur->num >= 0);
      tids.insert(e.get("tid")->num);
    }
    if (ph == "X" && e.text("name").rfind("deliver ", 0) == 0) {
      const json* args = e.get("args");
      REQUIRE(args != nullptr);
      cause_of[args->text("event")] = args->text("cause");
    }
  }
  CHECK(starts.size() == 4 * n);
  CHECK(starts == ends);
  for (int i = 0; i < 2 * n; ++i) {
    const std::string oid = hex_id(event_id(s.orders[i]));
    const std::string cid = hex_id(event_id(s.charges[i]));
    CHECK(starts.count(oid) == 1);
    CHECK(cause_of[oid] == "0x0");
    CHECK(cause_of[cid] == oid);
  }
  CHECK(tids.size() >= 2);  // published on the producers' threads, delivered on the workers'
  CHECK(count_named(evs, "M", "thread_name") == tids.size());
}

TEST_CASE("tracer: one flow in N is traced and each traced flow is whole", "[flows][tracer]") {
  constexpr std::uint64_t every = 8;
  auto tr = std::make_shared<sluice::tracer>(every);
  sluice::bus bus{sluice::bus_options{}.with_lanes(2).with_tracer(tr).with_latency_metrics(64)};
  seen s;
  auto on_order = bus.subscribe<order>([&](sluice::event_view<order> v) {
    s.keep(s.orders, v->n, v.meta());
    (void)bus.publish(charge{v->n});
  });
  auto on_charge = bus.subscribe<charge>(
      [&](sluice::event_view<charge> v) { s.keep(s.charges, v->n, v.meta()); });
  constexpr int n = 2000;
  auto p = bus.make_producer();
  for (int i = 0; i < n; ++i) REQUIRE(p.publish(order{i}) == publish_result::ok);
  while (bus.poll() != 0) {
  }
  REQUIRE(s.charges.size() == n);
  std::set<std::string> expected;
  for (int i = 0; i < n; ++i)
    if (tr->sampled(s.orders[i].correlation)) expected.insert(hex_id(s.orders[i].correlation));
  // About one in eight (the choice is a hash of the flow's id).
  CHECK(expected.size() > n / every / 2);
  CHECK(expected.size() < n / every * 2);
  const std::vector<json> evs = trace_events(*tr);
  std::map<std::string, int> per_flow;  // records of each traced flow
  for (const json& e : evs) {
    if (e.text("ph") != "X") continue;
    const json* args = e.get("args");
    REQUIRE(args != nullptr);
    ++per_flow[args->text("correlation")];
  }
  CHECK(per_flow.size() == expected.size());
  for (const auto& [flow, records] : per_flow) {
    CHECK(expected.count(flow) == 1);
    CHECK(records == 6);  // two publishes, two deliveries, two handler calls
  }
  // Latency sampling keeps its own count alongside: the lane's first order
  // and every 64th after it (one producer: one lane), traced flows not
  // counted unless they are among those.
  CHECK(bus.latency<order>().queue_wait.count() == static_cast<std::uint64_t>((n + 63) / 64));
  REQUIRE(bus.stop());
}

TEST_CASE("tracer: a full tracer counts what it lost and writes what it kept", "[flows][tracer]") {
  auto tr = std::make_shared<sluice::tracer>(1, 10);
  sluice::bus bus{sluice::bus_options{}.with_lanes(1).with_tracer(tr)};
  auto sub = bus.subscribe<order>([](const order&) {});
  auto p = bus.make_producer();
  for (int i = 0; i < 20; ++i) REQUIRE(p.publish(order{i}) == publish_result::ok);
  while (bus.poll() != 0) {
  }
  CHECK(bus.stats<order>().delivered == 20);
  CHECK(tr->size() == 10);
  CHECK(tr->lost() == 20 * 3 - 10);
  CHECK(!trace_events(*tr).empty());
  const test::temp_dir dir("sluice-trace");
  const std::string path = dir / "trace.json";
  std::string error;
  REQUIRE(tr->write(path, &error));
  CHECK(error.empty());
  const std::vector<unsigned char> written = test::read_file(path);
  CHECK(std::string(written.begin(), written.end()) == tr->to_json());
  CHECK(!tr->write("/nonexistent-sluice-dir/x/trace.json", &error));
  CHECK(error.find("/nonexistent-sluice-dir/x/trace.json") != std::string::npos);
  tr->clear();
  CHECK(tr->size() == 0);
  CHECK(tr->lost() == 0);
  REQUIRE(bus.stop());
}
