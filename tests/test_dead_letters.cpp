// The dead-letter log: dead letters recorded durably with why they failed,
// read back after the log is opened again, and redriven into a bus (all, by
// type, by key, by offset range), marked so that a later redrive does not
// send them again; a stopped bus refuses and nothing is marked; a damaged
// log is an error and nothing is sent; a writer killed part-way through a
// dead letter loses none it acknowledged.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
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

namespace {

// A file_io that kills its own process (SIGKILL) at the moment a test
// chooses: part-way through the next write (after `cut_from_start` bytes of
// it, or with only its last `cut_from_end` bytes missing), or inside the
// next fdatasync (the write whole, its sync never answered).
class killing_io final : public sluice::file_io {
 public:
  enum class mode { none, cut_from_start, cut_from_end, in_sync };
  mode arm = mode::none;
  std::size_t cut = 0;

  int open(const char* path, int flags, mode_t m) override { return ::open(path, flags, m); }
  int close(int fd) override { return ::close(fd); }
  ssize_t write(int fd, const void* p, std::size_t n) override {
    if (n > 1 && (arm == mode::cut_from_start || arm == mode::cut_from_end)) {
      const std::size_t k =
          arm == mode::cut_from_start ? std::min(cut, n - 1) : n - std::min(cut, n - 1);
      if (::write(fd, p, k) != static_cast<ssize_t>(k)) _exit(40);
      ::raise(SIGKILL);
    }
    return ::write(fd, p, n);
  }
  ssize_t pread(int fd, void* p, std::size_t n, off_t at) override { return ::pread(fd, p, n, at); }
  int fdatasync(int fd) override {
    if (arm == mode::in_sync) ::raise(SIGKILL);
    return ::fdatasync(fd);
  }
  int fsync(int fd) override { return ::fsync(fd); }
  int ftruncate(int fd, off_t size) override { return ::ftruncate(fd, size); }
  off_t lseek(int fd, off_t at, int whence) override { return ::lseek(fd, at, whence); }
  int fstat(int fd, struct stat* st) override { return ::fstat(fd, st); }
  int unlink(const char* path) override { return ::unlink(path); }
  int rename(const char* from, const char* to) override { return ::rename(from, to); }
  int mkdir(const char* path, mode_t m) override { return ::mkdir(path, m); }
  int flock(int fd, int op) override { return ::flock(fd, op); }
};

std::string message_of(std::uint64_t key) {
  return "gateway down for " + std::to_string(key);
}

// The child: opens the log, appends dead letters keyed first_key,
// first_key + 1, ..., telling the parent each key it acknowledged (8 bytes
// on `fd`), and is killed by its file_io inside the append of the
// `kill_at`-th one (0-based). Never returns.
[[noreturn]] void dead_letter_child(const std::string& dir, int fd, std::uint64_t first_key,
                                    unsigned kill_at, killing_io::mode how, std::size_t cut) {
  killing_io io;
  sluice::file_log_options o;
  o.io = &io;
  sluice::storage_error err;
  auto log = sluice::dead_letter_log::open(dir, make_types(), err, o);
  if (log == nullptr) _exit(41);
  for (unsigned i = 0;; ++i) {
    const std::uint64_t key = first_key + i;
    sluice::dead_letter<charge> d;
    d.event = charge{key, static_cast<std::int64_t>(key) * 3};
    d.meta.key = key;
    d.meta.has_key = true;
    d.kind = sluice::failure_kind::outcome;
    d.code = 503;
    d.message = message_of(key);
    d.attempts = 4;
    d.subscription = "gateway";
    if (i == kill_at) {
      io.arm = how;
      io.cut = cut;
    }
    if (!log->append(d).ok()) _exit(42);
    if (::write(fd, &key, sizeof key) != static_cast<ssize_t>(sizeof key)) _exit(43);
    if (i > kill_at) _exit(44);  // the kill did not come
  }
}
}  // namespace

TEST_CASE("a process killed part-way through a dead letter loses no acknowledged one",
          "[dead_letters][crash]") {
  // Each round forks a writer (the parent has no other thread then) that is
  // killed inside the append of a chosen dead letter: after the first bytes
  // of its two records, with only the last bytes of its event record missing
  // (the info record whole: a dangling one that reading must skip), or in
  // its sync. The next round's writer recovers the log and goes on. Every
  // acknowledged dead letter must read back whole, once; the one being
  // written when the kill came only if it was written whole; a redrive
  // sends exactly what reads back.
  const std::uint64_t seed = std::random_device{}();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  test::temp_dir tmp;
  const std::string dir = tmp.path() + "/dead";
  std::set<std::uint64_t> acked;
  std::uint64_t next_key = 1;
  int dangling_rounds = 0;
  constexpr int rounds = 9;
  for (int round = 0; round < rounds; ++round) {
    INFO("round " << round);
    const auto how = static_cast<killing_io::mode>(1 + round % 3);
    const unsigned kill_at = static_cast<unsigned>(rng() % 6);
    const std::size_t cut = 1 + rng() % 8;
    if (how == killing_io::mode::cut_from_end) ++dangling_rounds;
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(fds[0]);
      dead_letter_child(dir, fds[1], next_key, kill_at, how, cut);
    }
    ::close(fds[1]);
    test::watchdog dog(std::chrono::seconds(60), "dead-letter crash round");
    std::vector<std::uint64_t> keys;
    for (;;) {
      std::uint64_t k = 0;
      const ssize_t n = ::read(fds[0], &k, sizeof k);
      if (n == 0) break;  // the child is gone
      if (n < 0 && errno == EINTR) continue;
      REQUIRE(n == static_cast<ssize_t>(sizeof k));
      keys.push_back(k);
    }
    ::close(fds[0]);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) REQUIRE(errno == EINTR);
    INFO("exit code " << (WIFEXITED(status) ? WEXITSTATUS(status) : -1));
    REQUIRE(WIFSIGNALED(status));
    REQUIRE(WTERMSIG(status) == SIGKILL);
    // It acknowledged the ones before the chosen one, in order, then died.
    REQUIRE(keys.size() == kill_at);
    for (unsigned i = 0; i < kill_at; ++i) CHECK(keys[i] == next_key + i);
    acked.insert(keys.begin(), keys.end());
    next_key += kill_at + 1;  // the killed one's key is not used again
  }

  // The parent opens (and recovers) the log last.
  sluice::storage_error err;
  auto log = sluice::dead_letter_log::open(dir, make_types(), err);
  INFO(err.describe());
  REQUIRE(log != nullptr);
  const auto all = log->entries(err);
  REQUIRE(err.ok());
  std::map<std::uint64_t, int> seen;
  for (const auto& e : all) {
    ++seen[e.key];
    CHECK(e.type == "charge");
    CHECK(e.has_key);
    CHECK(e.code == 503);
    CHECK(e.attempts == 4);
    CHECK(e.subscription == "gateway");
    CHECK(e.message == message_of(e.key));
  }
  for (std::uint64_t k : acked) {
    INFO("acknowledged key " << k);
    CHECK(seen[k] == 1);
  }
  // Beyond the acknowledged ones, only killed ones written whole (in their
  // sync) may be there: never one whose records were cut.
  std::size_t extra = 0;
  for (const auto& [k, n] : seen) {
    CHECK(n == 1);
    if (acked.count(k) == 0) ++extra;
  }
  CHECK(extra <= static_cast<std::size_t>(rounds / 3));
  // The dangling info records are in the log, skipped by entries().
  std::size_t infos = 0;
  {
    auto reader = sluice::log_reader::open(dir, sluice::reader_options{}, err);
    REQUIRE(reader != nullptr);
    sluice::stored_event e;
    for (;;) {
      const sluice::read_status s = reader->next(e);
      REQUIRE(s != sluice::read_status::damaged);
      if (s == sluice::read_status::end) break;
      if (e.type == sluice::dead_letter_log::info_name) ++infos;
    }
  }
  CHECK(infos >= all.size() + static_cast<std::size_t>(dangling_rounds));

  // A redrive sends each one that reads back, once.
  std::map<std::uint64_t, int> sent;
  sluice::bus bus;
  auto gateway = bus.subscribe([&](const charge& c) { ++sent[c.account]; });
  const sluice::redrive_result r = log->redrive(bus);
  REQUIRE(r.error.ok());
  REQUIRE(bus.stop());
  CHECK(r.redriven == all.size());
  CHECK(sent.size() == all.size());
  for (const auto& e : all) CHECK(sent[e.key] == 1);
}
