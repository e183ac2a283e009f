// A user's strict build: every public member of the core and of storage,
// called from one file compiled with -O2 and the warnings users turn on,
// as errors (tests/CMakeLists.txt). sluice's headers must add no warning of
// their own, nor pass on one from the queue they wrap. The program also runs,
// and fails if a call does not do what it says.
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <list>
#include <memory>
#include <optional>
#include <sluice/metrics/prometheus.hpp>
#include <sluice/sluice.hpp>
#include <sluice/storage.hpp>
#include <sluice/storage/json_sink.hpp>
#include <string>
#include <vector>

namespace {
struct order {
  std::uint64_t id;
  std::int64_t cents;
};
struct paid {
  std::uint64_t id;
};
struct shot {
  std::uint8_t kind;  // padding follows: stored with fields()
  std::uint32_t x;
};
struct alert {
  std::uint64_t id;
  bool urgent;
};
struct big {
  std::uint64_t words[12];
};

int failures = 0;
void expect(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "every_call: %s\n", what);
    ++failures;
  }
}

void core_calls() {
  sluice::bus_options o =
      sluice::bus_options{}
          .with_lanes(2)
          .with_lane_capacity(256)
          .with_policy(sluice::full_policy::block)
          .with_expected_producers(2)
          .with_stamp_time(true)
          .with_on_failure([](const sluice::failure_info& f) { (void)sluice::to_string(f.kind); });
  expect(o.validate() == nullptr, "options");
  sluice::bus bus{o};
  expect(bus.valid() && bus.error() == nullptr, "valid");
  expect(bus.options().lanes == 2, "options()");
  expect(bus.lane_count() == 2 && bus.capacity() == 512, "lanes");

  static const sluice::channel urgent{"every_call.urgent"};
  expect(!urgent.is_default() && urgent == sluice::channel{"every_call.urgent"} &&
             urgent != sluice::channel{},
         "channel");
  sluice::stage_builder<order> chain = bus.stages<order>();
  chain.filter([](const order& x) { return x.cents >= 0; })
      .tap([](const order&) {})
      .transform([](const order& x) { return x; })
      .transform([](const order& x) -> std::optional<order> { return x; });
  expect(chain.error() == nullptr, "stages");
  bus.stages<order>().transform([](const order& x) { return alert{x.id, x.cents > 1000}; });
  bus.stages<alert>().route([](const alert& a) { return a.urgent ? urgent : sluice::channel{}; });
  expect(bus.key<paid>([](const paid& p) { return p.id; }) == nullptr, "key");

  int orders = 0, alerts = 0, urgent_alerts = 0, paid_seen = 0, bigs = 0;
  auto s1 = bus.subscribe<alert>([&](const alert&) { ++alerts; });
  auto s2 = bus.subscribe<alert>(urgent, [&](sluice::event_view<alert> v) -> sluice::outcome {
    ++urgent_alerts;
    return v->urgent ? sluice::outcome::success() : sluice::outcome::failure(3, "not urgent");
  });
  auto s3 = bus.subscribe([&](const paid& p) { paid_seen += p.id != 0 ? 1 : 0; });
  auto s4 = bus.subscribe(urgent, [&](const order&) { ++orders; });
  auto s5 = bus.subscribe([&](const big&) { ++bigs; });
  expect(s1.active() && static_cast<bool>(s2), "active");

  sluice::producer p =
      bus.make_producer(sluice::producer_options::with_policy(sluice::full_policy::reject));
  expect(static_cast<bool>(p) && p.id() != 0, "producer");
  expect(p.publish(order{1, 2000}) == sluice::publish_result::ok, "publish");
  expect(p.publish(order{2, 10}, 2) == sluice::publish_result::ok, "publish key");
  expect(p.try_publish(paid{1}) == sluice::publish_result::ok, "try_publish");
  expect(p.try_publish(paid{2}, 2) == sluice::publish_result::ok, "try_publish key");
  std::vector<paid> v(8, paid{3});
  std::deque<paid> d(4, paid{4});
  std::list<paid> l(2, paid{5});
  std::array<big, 2> bb{};
  expect(p.publish_bulk(v.begin(), v.end()) == 8, "publish_bulk");
  expect(p.publish_bulk(d.begin(), d.end(), 7) == 4, "publish_bulk key");
  expect(p.try_publish_bulk(l.begin(), l.end()) == 2, "try_publish_bulk");
  expect(p.try_publish_bulk(bb.begin(), bb.end(), 9) == 2, "try_publish_bulk key");
  expect(bus.publish(paid{6}) == sluice::publish_result::ok, "bus.publish");
  expect(bus.publish(paid{7}, 7) == sluice::publish_result::ok, "bus.publish key");
  expect(bus.try_publish(paid{8}) == sluice::publish_result::ok, "bus.try_publish");
  expect(bus.try_publish(paid{9}, 9) == sluice::publish_result::ok, "bus.try_publish key");
  expect(bus.queued() == 24, "queued");
  expect(bus.poll(3) == 3, "poll(max)");
  (void)bus.poll_for(std::chrono::milliseconds(1));
  expect(bus.wait_idle(std::chrono::seconds(10)), "wait_idle");
  expect(bus.dispatch(paid{10}) == 1, "dispatch");
  expect(bus.run(1), "run");
  expect(bus.workers() == 1, "workers");
  p.publish(order{3, 5000});
  expect(bus.wait_idle(), "wait_idle()");
  expect(bus.lane(0).capacity == 256, "lane()");
  const sluice::type_stats st = bus.stats<paid>();
  expect(st.settled() <= st.published, "settled");
  s2.reset();
  sluice::subscription moved = std::move(s1);
  expect(moved.active() && !s1.active(), "move");
  p = sluice::producer{};
  expect(bus.stop(sluice::stop_mode::drain) && bus.stopped(), "stop");
  expect(bus.stats<paid>().balanced() && bus.stats<order>().balanced() &&
             bus.stats<alert>().balanced(),
         "balanced");
  expect(paid_seen == 21 && bigs == 2 && alerts == 3 && urgent_alerts == 2 && orders == 0,
         "deliveries");
  (void)sluice::to_string(sluice::publish_result::ok);
  (void)sluice::to_string(sluice::full_policy::drop_newest);
  sluice::bus discard;
  discard.publish(paid{1});
  expect(discard.stop(sluice::stop_mode::discard), "discard");
  expect(sluice::version_major == SLUICE_VERSION_MAJOR, "version");
}

struct note_codec {
  void encode(const std::string& s, sluice::byte_writer& out) const {
    out.put(static_cast<std::uint32_t>(s.size()));
    out.append(s);
  }
  sluice::decoded<std::string> decode(sluice::byte_view in, std::uint32_t) const {
    sluice::byte_reader r(in);
    std::uint32_t n = 0;
    std::string s;
    if (!r.get(n) || !r.string(n, s) || !r.done()) return sluice::decode_failure("bad note");
    return s;
  }
};

void storage_calls(const std::string& dir) {
  auto types = std::make_shared<sluice::codecs>();
  expect(types->add<paid>("every_call.paid") == nullptr, "codecs add");
  expect(types->add<std::string>("every_call.note", 1, note_codec{}) == nullptr, "codecs codec");
  expect(types->size() == 2 && types->find<paid>() != nullptr &&
             types->find("every_call.note") != nullptr,
         "codecs find");
  expect(sluice::codecs::check_name("a b") != nullptr, "check_name");
  expect(types->add<shot>("every_call.shot", 1, sluice::fields(&shot::kind, &shot::x)) == nullptr,
         "codecs fields");

  {
    sluice::bus bus;
    sluice::folder_recording rec = sluice::record_to_folder(bus, dir + "/log", types);
    expect(static_cast<bool>(rec) && rec.error.ok(), "record_to_folder");
    for (std::uint64_t i = 1; i <= 10; ++i) bus.publish(paid{i}, i);
    bus.publish(std::string("hello"));
    bus.poll();
    expect(rec.rec->flush().ok() && rec.rec->sync().ok(), "flush/sync");
    expect(rec.rec->stats().recorded == 11 && rec.rec->last_error().ok(), "stats");
    expect(rec.rec->valid() && rec.rec->error() == nullptr, "recorder valid");
    expect(rec.rec->options().sync == sluice::sync_policy::every_batch, "recorder options");
    expect(rec.rec->write(paid{99}), "write");
    expect(rec.rec->acknowledge_losses() == 0 && rec.rec->stats().unacknowledged == 0,
           "acknowledge_losses");
    bus.stop();
    expect(rec.rec->close().ok(), "close");
  }
  sluice::storage_error err;
  sluice::reader_options ro;
  ro.from = 1;
  auto reader = sluice::log_reader::open(dir + "/log", ro, err);
  expect(reader != nullptr && err.ok(), "log_reader");
  sluice::stored_event e;
  std::size_t n = 0;
  while (reader->next(e) == sluice::read_status::event) {
    ++n;
    if (e.type == "every_call.paid") expect(types->decode<paid>(e).ok(), "decode");
  }
  expect(n == 11 && reader->position() == 12 && reader->first_offset() == 0 &&
             reader->pending_bytes() == 0 && reader->bytes_read() > 0 &&
             reader->total_bytes() > 0 && !reader->current_file().empty() &&
             reader->skipped() == 0 && reader->error().ok(),
         "reader");

  sluice::bus replayed;
  int got = 0;
  auto sub = replayed.subscribe([&](sluice::event_view<paid> v) { got += v.meta().replayed; });
  sluice::replay_result rr = sluice::replay(dir + "/log", replayed, *types, 0);
  replayed.poll();
  if (!(rr.ok() && rr.published == 12 && got == 11 && rr.next_offset == 12))
    std::fprintf(stderr, "replay: %s published %llu got %d next %llu\n",
                 rr.error.describe().c_str(), static_cast<unsigned long long>(rr.published), got,
                 static_cast<unsigned long long>(rr.next_offset));
  expect(rr.ok() && rr.published == 12 && got == 11 && rr.next_offset == 12, "replay");
  expect(rr.complete() && rr.lost == 0 && rr.unread_bytes == 0, "replay complete");
  replayed.stop();

  sluice::reader_options skip;
  skip.skip_damaged = true;
  auto salvage = sluice::log_reader::open(dir + "/log", skip, err);
  expect(salvage != nullptr && salvage->next(e) == sluice::read_status::event &&
             salvage->lost().to == salvage->lost().from,
         "skip_damaged, lost");

  sluice::repair_options rpo;
  rpo.dir = dir + "/log";
  rpo.dry_run = true;
  sluice::repair_report rep = sluice::repair_log(rpo);
  expect(rep.ok() && !rep.changed() && rep.records == 12, "repair dry run");
  rpo.dry_run = false;
  rep = sluice::repair_log(rpo);
  expect(rep.ok() && !rep.changed() && rep.changes.empty() && rep.segments_made.empty() &&
             rep.headers_rewritten.empty(),
         "repair");

  sluice::checkpoint cp(dir + "/cp");
  expect(cp.store(rr.next_offset).ok(), "checkpoint store");
  auto at = cp.load(err);
  expect(at && *at == 12 && err.ok() && !cp.path().empty(), "checkpoint load");

  auto mem = std::make_unique<sluice::memory_sink>(4);
  sluice::memory_sink* ring = mem.get();
  auto json = sluice::json_sink::open(dir + "/audit.jsonl", types, err);
  expect(json != nullptr, "json_sink");
  {
    sluice::recorder r1(std::move(mem), types);
    sluice::recorder r2(std::move(json), types);
    for (std::uint64_t i = 0; i < 6; ++i) {
      r1.write(paid{i});
      r2.write(paid{i});
    }
    expect(r1.close().ok() && r2.close().ok(), "recorders");
    expect(ring->size() == 4 && ring->capacity() == 4 && ring->appended() == 6 &&
               ring->events().size() == 4,
           "memory_sink");
  }  // the recorders own the sinks

  sluice::file_log_options fo;
  fo.dir = dir + "/direct";
  auto log = sluice::file_log::open(fo, err);
  expect(log != nullptr && log->recovered().empty() && log->next_offset() == 0 &&
             log->first_offset() == 0 && log->segment_count() == 1 && !log->dir().empty() &&
             log->last_roll_error().ok() && log->max_record() > 0 && log->synced_offset() == 0 &&
             log->last_sync_error().ok() && log->sync_failures() == 0,
         "file_log");
  expect(log->flush().ok() && log->sync().ok() && log->close().ok(), "file_log close");
  expect(err.describe().empty() && std::string(sluice::to_string(err.code)) == "ok", "describe");
}
void metrics_calls() {
  sluice::bus bus;
  auto types = std::make_shared<sluice::codecs>();
  expect(types->add<order>("order") == nullptr, "metrics codecs");
  auto rec = std::make_shared<sluice::recorder>(std::make_unique<sluice::memory_sink>(4), types);
  sluice::prometheus_exporter prom("app");
  prom.add(bus, "main").type<order>("order").type<paid>("paid");
  prom.add(*rec, "log");
  expect(bus.publish(order{1, 2}) == sluice::publish_result::ok && bus.stop(), "metrics bus");
  std::string text;
  prom.render_to(text);
  expect(text.find("app_events_published_total{bus=\"main\",type=\"order\"} 1\n") !=
                 std::string::npos &&
             prom.render() == text && prom.error() == nullptr,
         "metrics render");
  const sluice::metrics_snapshot snap = prom.snapshot();
  expect(snap.types.size() == 2 && snap.types[0].stats.published == 1 &&
             snap.to_json().find("\"published\": 1,") != std::string::npos,
         "metrics snapshot");
  expect(prom.remove(bus) && prom.remove(*rec) && prom.render().empty(), "metrics remove");
}
}  // namespace

int main() {
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("sluice_every_call_" + std::to_string(::getpid())))
          .string();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  core_calls();
  storage_calls(dir);
  metrics_calls();
  std::filesystem::remove_all(dir, ec);
  if (failures != 0) return 1;
  std::puts("every_call: ok");
  return 0;
}
