// The dead-letter log: dead letters recorded durably with why they failed,
// read back after the log is opened again, and redriven into a bus (all, by
// type, by key, by offset range), marked so that a later redrive does not
// send them again; a stopped bus refuses and nothing is marked; a damaged
// log is an error and nothing is sent.
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sluice/sluice.hpp>
#include <sluice/storage.hpp>
#include <sluice/storage/dead_letters.hpp>
#include <string>
#include <thread>
#include <vector>

#include "storage_io.hpp"
#include "storage_support.hpp"
#include "support.hpp"

namespace {
using namespace std::chrono_literals;

struct charge {
  std::uint64_t account;
  std::int64_t cents;
};
struct refund {
  std::uint64_t account;
  std::int64_t cents;
};

std::shared_ptr<sluice::codecs> make_types() {
  auto t = std::make_shared<sluice::codecs>();
  t->add<charge>("charge");
  t->add<refund>("refund");
  return t;
}

sluice::subscribe_options give_up_at_once(std::string name) {
  return sluice::subscribe_options::named(std::move(name))
      .with_failure_policy(sluice::failure_policy::dead_letter());
}

std::unique_ptr<sluice::dead_letter_log> open_log(const std::string& dir,
                                                  std::shared_ptr<sluice::codecs> types) {
  sluice::storage_error err;
  auto log = sluice::dead_letter_log::open(dir, std::move(types), err);
  INFO(err.describe());
  REQUIRE(log != nullptr);
  return log;
}
}  // namespace

TEST_CASE("dead letters are recorded durably and read back after reopening", "[dead_letters]") {
  test::temp_dir dir;
  auto types = make_types();
  {
    auto log = open_log(dir.path(), types);
    sluice::bus bus;
    REQUIRE(log->record<charge>(bus) == nullptr);
    auto gateway = bus.subscribe(
        [](const charge& c) {
          return sluice::outcome::failure(503, c.cents > 100 ? "big" : "down");
        },
        give_up_at_once("gateway"));
    auto p = bus.make_producer();
    REQUIRE(p.publish(charge{7, 50}, 7) == sluice::publish_result::ok);
    REQUIRE(p.publish(charge{8, 500}, 8) == sluice::publish_result::ok);
    REQUIRE(bus.stop());
    CHECK(bus.stats<charge>().dead_lettered == 2);
    CHECK(log->stats().recorded == 2);
    CHECK(log->stats().not_recorded == 0);
  }
  auto log = open_log(dir.path(), types);
  sluice::storage_error err;
  const std::vector<sluice::dead_letter_entry> all = log->entries(err);
  REQUIRE(err.ok());
  REQUIRE(all.size() == 2);
  CHECK(all[0].type == "charge");
  CHECK(all[0].key == 7);
  CHECK(all[0].has_key);
  CHECK(all[0].kind == sluice::failure_kind::outcome);
  CHECK(all[0].code == 503);
  CHECK(all[0].message == "down");
  CHECK(all[0].attempts == 1);
  CHECK(all[0].subscription == "gateway");
  CHECK_FALSE(all[0].redriven);
  CHECK(all[1].key == 8);
  CHECK(all[1].message == "big");
  CHECK(all[1].offset > all[0].offset);
  CHECK(all[0].time_ns > 0);
}

TEST_CASE("redrive sends dead letters back, marked redriven, once", "[dead_letters]") {
  test::temp_dir dir;
  auto types = make_types();
  auto log = open_log(dir.path(), types);
  bool fixed = false;
  std::vector<std::uint64_t> charged;
  std::vector<bool> marks;
  {
    sluice::bus bus{sluice::bus_options{}.with_lanes(
        1)};  // one lane: the redrive's order is the delivery order
    REQUIRE(log->record<charge>(bus) == nullptr);
    auto gateway = bus.subscribe(
        [&](const sluice::event_view<charge>& c) {
          if (!fixed) return sluice::outcome::failure(1, "down");
          charged.push_back(c->account);
          marks.push_back(c.meta().redriven);
          return sluice::outcome::success();
        },
        give_up_at_once("gateway"));
    auto p = bus.make_producer();
    for (std::uint64_t a = 1; a <= 5; ++a)
      REQUIRE(p.publish(charge{a, 10}, a) == sluice::publish_result::ok);
    REQUIRE(test::poll_until(bus, [&] { return bus.queued() == 0; }));
    REQUIRE(log->stats().recorded == 5);
    fixed = true;
    const sluice::redrive_result r = log->redrive(bus);
    REQUIRE(r.ok());
    CHECK(r.redriven == 5);
    CHECK(r.already == 0);
    REQUIRE(test::poll_until(bus, [&] { return charged.size() == 5; }));
    CHECK(charged == std::vector<std::uint64_t>{1, 2, 3, 4, 5});
    CHECK(std::all_of(marks.begin(), marks.end(), [](bool m) { return m; }));
    // Sent once: a second redrive finds them marked.
    const sluice::redrive_result again = log->redrive(bus);
    CHECK(again.redriven == 0);
    CHECK(again.already == 5);
    REQUIRE(bus.stop());
    const sluice::type_stats ts = bus.stats<charge>();
    CHECK(ts.published == 10);
    CHECK(ts.dead_lettered == 5);
    CHECK(ts.delivered == 5);
    CHECK(ts.balanced());
  }
  CHECK(log->stats().redriven == 5);
  sluice::storage_error err;
  for (const auto& e : log->entries(err)) CHECK(e.redriven);
  // The marks are in the log: a log opened again knows them.
  log.reset();
  auto reopened = open_log(dir.path(), types);
  sluice::bus bus2;
  const sluice::redrive_result r2 = reopened->redrive(bus2);
  CHECK(r2.already == 5);
  CHECK(r2.redriven == 0);
}

TEST_CASE("redrive chooses by type, by key and by offset range", "[dead_letters]") {
  test::temp_dir dir;
  auto types = make_types();
  auto log = open_log(dir.path(), types);
  bool fixed = false;
  std::vector<std::string> got;
  sluice::bus bus{
      sluice::bus_options{}.with_lanes(1)};  // one lane: the redrive's order is the delivery order
  REQUIRE(log->record<charge>(bus) == nullptr);
  REQUIRE(log->record<refund>(bus) == nullptr);
  auto c = bus.subscribe(
      [&](const charge& e) {
        if (!fixed) return sluice::outcome::failure(1);
        got.push_back("c" + std::to_string(e.account));
        return sluice::outcome::success();
      },
      give_up_at_once("charges"));
  auto r = bus.subscribe(
      [&](const refund& e) {
        if (!fixed) return sluice::outcome::failure(1);
        got.push_back("r" + std::to_string(e.account));
        return sluice::outcome::success();
      },
      give_up_at_once("refunds"));
  auto p = bus.make_producer();
  for (std::uint64_t a = 1; a <= 3; ++a) {
    REQUIRE(p.publish(charge{a, 1}, a) == sluice::publish_result::ok);
    REQUIRE(test::poll_until(bus, [&] { return bus.queued() == 0; }));
    REQUIRE(p.publish(refund{a, 1}, a) == sluice::publish_result::ok);
    REQUIRE(test::poll_until(bus, [&] { return bus.queued() == 0; }));
  }
  sluice::storage_error err;
  const auto all = log->entries(err);
  REQUIRE(all.size() == 6);
  fixed = true;
  auto drain = [&] { REQUIRE(test::poll_until(bus, [&] { return bus.queued() == 0; })); };

  sluice::redrive_result res =
      log->redrive(bus, sluice::redrive_options{}.of_type("refund").with_key(2));
  drain();
  CHECK(res.redriven == 1);
  CHECK(res.skipped == 5);
  CHECK(got == std::vector<std::string>{"r2"});

  // The first two dead letters, by offset (charge 1, refund 1).
  res = log->redrive(bus, sluice::redrive_options{}.offsets(all[0].offset, all[1].offset + 1));
  drain();
  CHECK(res.redriven == 2);
  CHECK(got == std::vector<std::string>{"r2", "c1", "r1"});

  res = log->redrive(bus, sluice::redrive_options{}.of_type("charge"));
  drain();
  CHECK(res.redriven == 2);  // charges 2 and 3
  CHECK(res.already == 1);   // charge 1
  res = log->redrive(bus);
  drain();
  CHECK(res.redriven == 1);  // refund 3
  CHECK(res.already == 5);
  CHECK(got == std::vector<std::string>{"r2", "c1", "r1", "c2", "c3", "r3"});
  REQUIRE(bus.stop());
  CHECK(bus.stats<charge>().balanced());
  CHECK(bus.stats<refund>().balanced());
}

TEST_CASE("a redrive into a stopped bus is refused and marks nothing", "[dead_letters]") {
  test::temp_dir dir;
  auto types = make_types();
  auto log = open_log(dir.path(), types);
  {
    sluice::bus bus;
    REQUIRE(log->record<charge>(bus) == nullptr);
    auto gateway = bus.subscribe([](const charge&) { return sluice::outcome::failure(1); },
                                 give_up_at_once("gateway"));
    REQUIRE(bus.publish(charge{1, 1}, 1) == sluice::publish_result::ok);
    REQUIRE(bus.stop());
    const sluice::redrive_result r = log->redrive(bus);
    CHECK(r.refused == 1);
    CHECK(r.redriven == 0);
  }
  sluice::bus bus;
  int calls = 0;
  auto ok = bus.subscribe([&](const charge&) { ++calls; });
  CHECK(log->redrive(bus).redriven == 1);
  REQUIRE(test::poll_until(bus, [&] { return calls == 1; }));
  REQUIRE(bus.stop());
}

TEST_CASE("the dead-letter log refuses what it cannot do, with a clear error", "[dead_letters]") {
  test::temp_dir dir;
  sluice::storage_error err;
  CHECK(sluice::dead_letter_log::open(dir.path() + "/log", nullptr, err) == nullptr);
  CHECK(err.code == sluice::storage_errc::bad_option);
  // A file where the folder should be.
  { std::ofstream(dir.path() + "/file") << "x"; }
  CHECK(sluice::dead_letter_log::open(dir.path() + "/file", make_types(), err) == nullptr);
  CHECK_FALSE(err.ok());
  // A type without a codec.
  auto log = open_log(dir.path() + "/log", std::make_shared<sluice::codecs>());
  sluice::bus bus;
  const char* why = log->record<charge>(bus);
  REQUIRE(why != nullptr);
  CHECK(std::string(why).find("codec") != std::string::npos);
  // The same folder twice: the second is refused (one writer per log).
  CHECK(sluice::dead_letter_log::open(dir.path() + "/log", make_types(), err) == nullptr);
  CHECK(err.code == sluice::storage_errc::locked);
}

namespace {
// Flips a byte of the first dead letter's event record (after the segment
// header and the first info record): damage with whole records after it.
void damage_first_event(const std::string& dir) {
  std::string seg;
  for (const auto& f : std::filesystem::directory_iterator(dir))
    if (f.path().extension() == ".slog") seg = f.path().string();
  REQUIRE_FALSE(seg.empty());
  std::fstream io(seg, std::ios::in | std::ios::out | std::ios::binary);
  // 64 (segment header) + 83 (info record) + 60 (into the event's payload).
  const std::streamoff at = 64 + 83 + 60;
  char b = 0;
  io.seekg(at);
  io.read(&b, 1);
  b = static_cast<char>(b ^ 0x5a);
  io.seekp(at);
  io.write(&b, 1);
  REQUIRE(io.good());
}
}  // namespace

TEST_CASE("a damaged dead-letter log is a clear error and nothing is redriven", "[dead_letters]") {
  test::temp_dir dir;
  auto types = make_types();
  auto log = open_log(dir.path(), types);
  {
    sluice::bus bus;
    REQUIRE(log->record<charge>(bus) == nullptr);
    auto gateway = bus.subscribe([](const charge&) { return sluice::outcome::failure(1); },
                                 give_up_at_once("gateway"));
    auto p = bus.make_producer();
    for (std::uint64_t a = 1; a <= 3; ++a)
      REQUIRE(p.publish(charge{a, 1}, a) == sluice::publish_result::ok);
    REQUIRE(bus.stop());
  }
  sluice::storage_error err;
  REQUIRE(log->entries(err).size() == 3);
  damage_first_event(dir.path());
  // While it is open: reading stops at the damage, nothing is sent.
  sluice::bus bus;
  int calls = 0;
  auto ok = bus.subscribe([&](const charge&) { ++calls; });
  const sluice::redrive_result r = log->redrive(bus);
  CHECK_FALSE(r.ok());
  CHECK(r.error.code == sluice::storage_errc::damaged);
  CHECK(r.redriven == 0);
  (void)log->entries(err);
  CHECK(err.code == sluice::storage_errc::damaged);
  // Opened again: refused, and the error says how to keep the rest.
  log.reset();
  CHECK(sluice::dead_letter_log::open(dir.path(), types, err) == nullptr);
  CHECK(err.code == sluice::storage_errc::damaged);
  CHECK(err.message.find("repair") != std::string::npos);
  REQUIRE(bus.stop());
  CHECK(calls == 0);
  CHECK(bus.stats<charge>().published == 0);
}

TEST_CASE("a dead letter the disk refuses is reported, and nothing recorded before is lost",
          "[dead_letters][faults]") {
  test::temp_dir dir;
  auto types = make_types();
  test::fault_io io;
  sluice::file_log_options o;
  o.io = &io;
  sluice::storage_error err;
  auto log = sluice::dead_letter_log::open(dir.path(), types, err, o);
  REQUIRE(log != nullptr);
  std::vector<sluice::failure_info> seen;
  sluice::bus bus{sluice::bus_options{}.with_lanes(1).with_on_failure(
      [&](const sluice::failure_info& f) { seen.push_back(f); })};
  REQUIRE(log->record<charge>(bus) == nullptr);
  auto gateway = bus.subscribe([](const charge&) { return sluice::outcome::failure(1); },
                               give_up_at_once("gateway"));
  auto p = bus.make_producer();
  auto dead_letter_one = [&](std::uint64_t account) {
    REQUIRE(p.publish(charge{account, 1}, account) == sluice::publish_result::ok);
    REQUIRE(test::poll_until(bus, [&] { return bus.queued() == 0; }));
  };
  dead_letter_one(1);
  // The disk fills part-way through the next one (its two records).
  io.fail_write_after = 30;
  dead_letter_one(2);
  // Then a sync fails (EIO): not durable, so not counted recorded.
  io.fail_fdatasync = 1;
  dead_letter_one(3);
  dead_letter_one(4);
  CHECK(log->stats().recorded >= 2);
  CHECK(log->stats().not_recorded >= 1);
  CHECK(log->stats().recorded + log->stats().not_recorded == 4);
  // The recording subscription failed for each one lost: reported and counted.
  const auto lost = static_cast<std::size_t>(
      std::count_if(seen.begin(), seen.end(), [](const sluice::failure_info& f) {
        return std::string(f.message).find("dead-letter log") != std::string::npos;
      }));
  CHECK(lost == log->stats().not_recorded);
  CHECK(bus.stats<sluice::dead_letter<charge>>().failed == lost);
  REQUIRE(bus.stop());
  // What was acknowledged is there, whole: 1 and 4 at least, never a torn one.
  const auto all = log->entries(err);
  REQUIRE(err.ok());
  std::vector<std::uint64_t> keys;
  for (const auto& e : all) keys.push_back(e.key);
  CHECK(std::find(keys.begin(), keys.end(), 1) != keys.end());
  CHECK(std::find(keys.begin(), keys.end(), 4) != keys.end());
  CHECK(std::find(keys.begin(), keys.end(), 2) == keys.end());
  CHECK(all.size() >= log->stats().recorded);
}

TEST_CASE("two redrives at once send each dead letter once", "[dead_letters]") {
  test::temp_dir dir;
  auto log = open_log(dir.path(), make_types());
  std::atomic<bool> fixed{false};
  std::atomic<int> charged{0};
  sluice::bus bus;
  REQUIRE(log->record<charge>(bus) == nullptr);
  auto gateway = bus.subscribe(
      [&](const charge&) {
        if (!fixed.load()) return sluice::outcome::failure(1);
        charged.fetch_add(1);
        return sluice::outcome::success();
      },
      give_up_at_once("gateway"));
  auto p = bus.make_producer();
  constexpr int n = 3000;  // enough that the two redrives overlap
  for (int a = 0; a < n; ++a)
    REQUIRE(p.publish(charge{static_cast<std::uint64_t>(a), 1}, static_cast<sluice::key_type>(a)) ==
            sluice::publish_result::ok);
  REQUIRE(test::poll_until(bus, [&] { return bus.queued() == 0; }));
  REQUIRE(log->stats().recorded == n);
  fixed = true;
  REQUIRE(bus.run(2));
  sluice::redrive_result r1;
  sluice::redrive_result r2;
  std::thread t1([&] { r1 = log->redrive(bus); });
  std::thread t2([&] { r2 = log->redrive(bus); });
  t1.join();
  t2.join();
  REQUIRE(bus.wait_idle(60s));
  CHECK(r1.redriven + r2.redriven == n);
  CHECK(r1.already + r2.already == n);
  CHECK(charged.load() == n);
  REQUIRE(bus.stop());
  CHECK(bus.stats<charge>().balanced());
}
