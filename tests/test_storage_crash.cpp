// Crash: a writer process killed with SIGKILL at a random moment, with torn
// writes simulated on top, never loses a record whose sync was acknowledged.
//
// Each round forks a child (the parent has no other thread at that moment)
// that opens the log, attaches a recorder syncing every batch and writes
// records numbered by their offset; after each successful recorder.sync() it
// tells the parent, through a pipe, how many records are durable. The parent
// kills it at a random moment (some rounds early, while the child opens and
// recovers the log), sometimes tears the tail of the last segment (a cut
// after the last acknowledged record, random garbage, or both), then checks
// the log with a reader and, two rounds in three, with recovery; otherwise the
// next child recovers it. Each child goes on writing where the log ends.
//
// SLUICE_CRASH_SEED=<n> repeats a run; SLUICE_CRASH_ROUNDS=<n> changes the
// number of rounds (20).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <sluice/storage.hpp>
#include <string>
#include <vector>

#include "storage_support.hpp"
#include "support.hpp"

namespace {

namespace fs = std::filesystem;
using bytes_t = std::vector<unsigned char>;
using clock_type = std::chrono::steady_clock;

struct seq_ev {
  std::uint64_t seq = 0;
  std::uint64_t check = 0;
};

std::uint64_t check_of(std::uint64_t seq) {
  return (seq * 0x9E3779B97F4A7C15ULL) ^ 0x5A5A5A5A5A5A5A5AULL;
}

std::shared_ptr<const sluice::codecs> seq_codecs() {
  auto t = std::make_shared<sluice::codecs>();
  t->add<seq_ev>("seq");
  return t;
}

// Small segments: rounds also kill the writer while it rolls.
constexpr std::size_t crash_segment_bytes = std::size_t{16} << 10;
constexpr std::size_t header_size = sluice::storage::segment_header_size;

sluice::file_log_options crash_log_options(const std::string& dir) {
  sluice::file_log_options o;
  o.dir = dir;
  o.segment_bytes = crash_segment_bytes;
  return o;
}

// Child exit codes, should it stop on its own.
enum child_exit : int {
  child_open_failed = 10,
  child_write_refused = 11,
  child_sync_failed = 12,
  child_pipe_failed = 13,
  child_threw = 14,
  child_ran_too_long = 15,
};

// The child: never returns, never runs Catch2.
[[noreturn]] void run_child(const std::string& dir, int ack_fd, std::uint64_t seed) noexcept {
  (void)::prctl(PR_SET_PDEATHSIG, SIGKILL);
  int code = child_ran_too_long;
  try {
    sluice::storage_error err;
    auto log = sluice::file_log::open(crash_log_options(dir), err);
    if (log == nullptr) ::_exit(child_open_failed);
    std::uint64_t next = log->next_offset();
    sluice::record_options ro;
    ro.sync = sluice::sync_policy::every_batch;
    ro.buffer_bytes = std::size_t{64} << 10;
    sluice::recorder rec(std::move(log), seq_codecs(), ro);
    std::mt19937_64 rng(seed);
    const auto deadline = clock_type::now() + std::chrono::seconds(10);
    while (clock_type::now() < deadline) {
      const std::uint64_t n = 1 + rng() % 64;
      for (std::uint64_t i = 0; i < n; ++i, ++next) {
        seq_ev e;
        e.seq = next;
        e.check = check_of(next);
        if (!rec.write(e)) ::_exit(child_write_refused);
      }
      if (rng() % 4 == 0) continue;  // let some batches go by unacknowledged
      if (!rec.sync().ok()) ::_exit(child_sync_failed);
      // Everything below `next` is durable.
      const unsigned char* p = reinterpret_cast<const unsigned char*>(&next);
      std::size_t left = sizeof next;
      while (left != 0) {
        const ssize_t w = ::write(ack_fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) ::_exit(child_pipe_failed);
        p += w;
        left -= static_cast<std::size_t>(w);
      }
    }
  } catch (...) {
    code = child_threw;
  }
  ::_exit(code);
}

// The acknowledgements read from the pipe.
struct acks {
  int fd = -1;
  std::uint64_t last = 0;  // records acknowledged as durable
  std::size_t count = 0;
  std::size_t not_increasing = 0;
  bytes_t partial;

  void take(const unsigned char* p, std::size_t n) {
    partial.insert(partial.end(), p, p + n);
    std::size_t at = 0;
    while (partial.size() - at >= 8) {
      std::uint64_t v = 0;
      std::memcpy(&v, partial.data() + at, 8);
      if (count != 0 && v <= last) ++not_increasing;
      last = v;
      ++count;
      at += 8;
    }
    partial.erase(partial.begin(), partial.begin() + static_cast<std::ptrdiff_t>(at));
  }
  // Reads until `until`; false at end of file.
  bool read_until(clock_type::time_point until) {
    unsigned char buf[4096];
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(until - clock_type::now());
      pollfd pfd{fd, POLLIN, 0};
      const int ms = static_cast<int>(std::max<long long>(0, left.count()));
      const int r = ::poll(&pfd, 1, ms);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return true;  // time is up
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      take(buf, static_cast<std::size_t>(n));
      if (clock_type::now() >= until) return true;
    }
  }
  void read_to_end() {
    unsigned char buf[4096];
    for (;;) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      take(buf, static_cast<std::size_t>(n));
    }
  }
};

using test::walked;

walked walk(const std::string& path) {
  walked w = test::walk_segment(path);
  INFO(path << ": " << w.header_error);
  REQUIRE((w.has_header || w.size < header_size));
  return w;
}

// What a reader gives: records numbered 0, 1, ... with matching payloads.
struct read_result {
  std::uint64_t count = 0;
  std::uint64_t wrong = 0;  // out of sequence, or a payload not its own
  sluice::read_status last = sluice::read_status::event;
  sluice::storage_error error;
  std::uint64_t pending = 0;
};

read_result read_log(const std::string& dir, const sluice::codecs& types) {
  read_result out;
  sluice::storage_error err;
  auto r = sluice::log_reader::open(dir, {}, err);
  INFO(err.describe());
  REQUIRE(r != nullptr);
  sluice::stored_event e;
  for (;;) {
    out.last = r->next(e);
    if (out.last != sluice::read_status::event) break;
    const auto d = types.decode<seq_ev>(e);
    if (e.offset != out.count || !d || d->seq != e.offset || d->check != check_of(e.offset))
      ++out.wrong;
    ++out.count;
  }
  out.error = r->error();
  out.pending = r->pending_bytes();
  return out;
}

std::uint64_t env_number(const char* name, std::uint64_t otherwise) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return otherwise;
  return std::strtoull(v, nullptr, 10);
}

}  // namespace

TEST_CASE("crash: SIGKILL at a random moment loses no acknowledged record", "[storage][crash]") {
  const std::uint64_t seed = env_number("SLUICE_CRASH_SEED", std::random_device{}());
  const std::uint64_t rounds = env_number("SLUICE_CRASH_ROUNDS", 20);
  INFO("SLUICE_CRASH_SEED=" << seed);
  std::mt19937_64 rng(seed);
  const auto types = seq_codecs();
  test::temp_dir tmp("sluice-crash");
  const std::string dir = tmp / "log";

  const auto started = clock_type::now();
  std::uint64_t acked_ever = 0;  // every record below this was acknowledged durable
  std::uint64_t kept = 0;        // records in the log after the last recovery
  std::uint64_t unacked_kept = 0, acks_total = 0;
  int torn_by_kill = 0, torn_by_us = 0, rolled_rounds = 0, child_recovers = 0;
  std::size_t segments_before = 0;

  std::uint64_t rounds_run = 0, waited_rounds = 0;
  for (std::uint64_t round = 0; round < rounds; ++round) {
    INFO("round " << round);
    // Stay well within the time budget on slow machines.
    if (round > 3 && clock_type::now() - started > std::chrono::seconds(20)) break;
    const std::uint64_t child_seed = rng();
    // Every fifth round kills early: while the child opens (and recovers) the log.
    const auto delay =
        std::chrono::microseconds(round % 5 == 4 ? 200 + rng() % 2800 : 2000 + rng() % 98000);
    const unsigned damage = static_cast<unsigned>(round % 4);  // 0 none, 1 cut, 2 garbage, 3 both
    // Every third round the next child recovers the log itself (and may be
    // killed while it does).
    const bool parent_recovers = round % 3 != 2;

    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(fds[0]);
      run_child(dir, fds[1], child_seed);
    }
    ::close(fds[1]);
    ++rounds_run;
    // The parent has threads only after the fork.
    test::watchdog dog(std::chrono::seconds(30), "crash test round");

    acks a;
    a.fd = fds[0];
    bool open = a.read_until(clock_type::now() + delay);
    if (round % 5 != 4) {
      // Wait for the child's first acknowledgement (an event, not a time): a
      // loaded machine must not leave the round with nothing to check.
      ++waited_rounds;
      const auto give_up = clock_type::now() + std::chrono::seconds(20);
      while (open && a.count == 0 && clock_type::now() < give_up)
        open = a.read_until(std::min(give_up, clock_type::now() + std::chrono::milliseconds(50)));
    }
    REQUIRE(::kill(pid, SIGKILL) == 0);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) REQUIRE(errno == EINTR);
    a.read_to_end();
    ::close(fds[0]);

    INFO("child status " << status << " (exit code "
                         << (WIFEXITED(status) ? WEXITSTATUS(status) : -1) << "), " << a.count
                         << " acks, last " << a.last);
    REQUIRE(WIFSIGNALED(status));
    REQUIRE(WTERMSIG(status) == SIGKILL);
    REQUIRE(a.partial.empty());
    REQUIRE(a.not_increasing == 0);
    if (a.count != 0) REQUIRE(a.last > kept);  // the child went on from the recovered end
    acks_total += a.count;
    const std::uint64_t acked = std::max(acked_ever, a.last);

    // Tear the tail of the last segment after the last acknowledged record.
    std::vector<std::string> segs = test::segments(dir);
    if (segs.empty()) {
      // Killed before it made the log (a loaded machine): nothing was
      // acknowledged, nothing to check.
      REQUIRE(a.count == 0);
      REQUIRE(acked_ever == 0);
      continue;
    }
    if (segs.size() != segments_before && round != 0) ++rolled_rounds;
    segments_before = segs.size();
    const std::string last_seg = segs.back();
    {
      const walked w = walk(last_seg);
      if (w.has_header) {
        std::uint64_t lo = header_size;
        if (acked > w.base) {
          const std::uint64_t idx = acked - 1 - w.base;
          INFO("acknowledged record " << acked - 1 << " must be in " << last_seg);
          REQUIRE(idx < w.starts.size());
          lo = w.end_of(static_cast<std::size_t>(idx));
        }
        if (w.good_end < w.size) ++torn_by_kill;
        if ((damage & 1U) != 0) {
          const std::uint64_t cut = lo + rng() % (w.size - lo + 1);
          fs::resize_file(last_seg, cut);
        }
        if ((damage & 2U) != 0) {
          bytes_t b = test::read_file(last_seg);
          const std::size_t n = 1 + static_cast<std::size_t>(rng() % 200);
          const std::size_t from = b.size();
          b.resize(from + n);
          for (std::size_t i = from; i < b.size(); ++i) b[i] = static_cast<unsigned char>(rng());
          b[from] = static_cast<unsigned char>(b[from] | 1U);  // not a zero-filled frame
          test::write_file(last_seg, b);
        }
        if (damage != 0) ++torn_by_us;
      }
    }

    // The reference: what a correct recovery keeps of the last segment.
    const walked ref = walk(last_seg);
    const bytes_t torn = test::read_file(last_seg);
    const std::uint64_t whole = ref.has_header ? ref.base + ref.starts.size() : 0;

    // A reader before recovery: every whole record, in order; damage, if
    // any, only at the end of the last segment.
    {
      const read_result r = read_log(dir, *types);
      INFO(r.error.describe());
      REQUIRE(r.wrong == 0);
      REQUIRE(r.count >= acked);
      if (ref.has_header) {
        REQUIRE(r.count == whole);
        if (ref.good_end == ref.size) {
          REQUIRE(r.last == sluice::read_status::end);
          REQUIRE(r.pending == 0);
        } else if (r.last == sluice::read_status::end) {
          REQUIRE(r.pending == ref.size - ref.good_end);
        } else {
          REQUIRE(r.last == sluice::read_status::damaged);
          REQUIRE(r.error.file == last_seg);
          REQUIRE(r.error.offset == ref.good_end);
        }
      } else {
        // Killed while rolling, before the new segment's header was written.
        std::uint64_t base = 0;
        REQUIRE(sluice::storage::parse_segment_name(fs::path(last_seg).filename().string(), base));
        REQUIRE(r.count == base);
        REQUIRE(r.last == sluice::read_status::end);
        REQUIRE(r.pending == ref.size);
      }
    }

    std::uint64_t expected_next = whole;
    if (!ref.has_header)
      REQUIRE(sluice::storage::parse_segment_name(fs::path(last_seg).filename().string(),
                                                  expected_next));
    REQUIRE(expected_next >= acked);
    std::uint64_t next = expected_next;

    // Recovery.
    if (parent_recovers) {
      sluice::storage_error err;
      auto log = sluice::file_log::open(crash_log_options(dir), err);
      INFO(err.describe());
      REQUIRE(err.ok());
      REQUIRE(log != nullptr);
      next = log->next_offset();
      const auto& rep = log->recovered();
      if (ref.has_header && ref.good_end == ref.size) {
        REQUIRE(rep.empty());
      } else {
        const std::uint64_t from = ref.has_header ? ref.good_end : 0;
        REQUIRE(rep.size() == 1);
        REQUIRE(rep.front().file == last_seg);
        REQUIRE(rep.front().offset == from);
        REQUIRE(rep.front().bytes == torn.size() - from);
        if (torn.size() > from) {
          REQUIRE(test::read_file(rep.front().saved_to) ==
                  bytes_t(torn.begin() + static_cast<std::ptrdiff_t>(from), torn.end()));
        }
      }
      REQUIRE(next == expected_next);
      log.reset();

      // After recovery: exactly the kept records, no damage, nothing pending.
      const read_result r = read_log(dir, *types);
      INFO(r.error.describe());
      REQUIRE(r.wrong == 0);
      REQUIRE(r.last == sluice::read_status::end);
      REQUIRE(r.pending == 0);
      REQUIRE(r.count == next);
    } else {
      ++child_recovers;
    }
    unacked_kept += next - acked;
    acked_ever = acked;
    kept = next;
  }
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - started).count();
  INFO(rounds_run << " rounds; acknowledged " << acked_ever << " records in " << acks_total
                  << " acks; kept " << kept << " (" << unacked_kept
                  << " unacknowledged); torn by the kill: " << torn_by_kill
                  << ", torn by the test: " << torn_by_us
                  << "; left to the child to recover: " << child_recovers
                  << "; rounds with new segments: " << rolled_rounds << "; " << ms << " ms");
  REQUIRE(acked_ever > 0);
  REQUIRE(acks_total >= waited_rounds);  // every round that waited got an acknowledgement
}

namespace {

// A sink whose appends can be made to fail, as a full disk fails a write.
class failing_sink final : public sluice::sink {
 public:
  sluice::storage_error append(sluice::record_batch& b) override {
    if (fail.load())
      return sluice::storage_error::make(sluice::storage_errc::io,
                                         "write: No space left on device");
    b.seal(stored);
    stored += b.size();
    return {};
  }
  sluice::storage_error sync() override { return {}; }

  std::atomic<bool> fail{false};
  std::uint64_t stored = 0;
};

}  // namespace

// The acknowledgement the crash test relies on: a successful sync() means
// every record written before it is in the log.
TEST_CASE("crash: sync() does not acknowledge records whose append failed", "[storage][crash]") {
  test::watchdog dog(std::chrono::seconds(30), "sync after a failed append");
  for (const auto policy : {sluice::sync_policy::every_batch, sluice::sync_policy::never}) {
    INFO("sync policy " << static_cast<int>(policy));
    auto owned = std::make_unique<failing_sink>();
    failing_sink* s = owned.get();
    sluice::record_options ro;
    ro.sync = policy;
    sluice::recorder rec(std::move(owned), seq_codecs(), ro);
    REQUIRE(rec.write(seq_ev{0, check_of(0)}));
    REQUIRE(rec.sync().ok());
    s->fail.store(true);
    REQUIRE(rec.write(seq_ev{1, check_of(1)}));
    const sluice::storage_error e = rec.sync();
    REQUIRE(rec.stats().failed == 1);
    REQUIRE(e.code == sluice::storage_errc::io);
    REQUIRE(s->stored == 1);
    (void)rec.close();
  }
}

// The same when the failed append completed before anyone asked: the loss
// must still reach the next sync() (or flush()) caller, whose records include
// the lost one.
// Each failed append is reported (once) to the next flush() or sync() caller,
// however long after the failure the call comes.
TEST_CASE("crash: a failed append is reported to the next sync() or flush() caller",
          "[storage][crash]") {
  test::watchdog dog(std::chrono::seconds(30), "a failed append reported later");
  auto owned = std::make_unique<failing_sink>();
  failing_sink* s = owned.get();
  sluice::record_options ro;
  SECTION("sync() after the writer's own sync") {
    ro.sync = sluice::sync_policy::every_batch;
  }
  SECTION("flush()") {
    ro.sync = sluice::sync_policy::never;
  }
  sluice::recorder rec(std::move(owned), seq_codecs(), ro);
  REQUIRE(rec.write(seq_ev{0, check_of(0)}));
  REQUIRE(rec.sync().ok());
  // (The sync() above may have cost the writer one or two syncs, depending on
  // whether its request came before or after the writer's own.)
  const std::uint64_t syncs_before = rec.stats().syncs;
  s->fail.store(true);
  REQUIRE(rec.write(seq_ev{1, check_of(1)}));
  // The writer appends (and fails), and with every_batch syncs; nobody waits.
  const bool own_sync = ro.sync == sluice::sync_policy::every_batch;
  REQUIRE(test::wait_until([&] {
    const auto st = rec.stats();
    return st.failed == 1 && (!own_sync || st.syncs > syncs_before);
  }));
  s->fail.store(false);
  REQUIRE(rec.write(seq_ev{2, check_of(2)}));
  const sluice::storage_error e =
      ro.sync == sluice::sync_policy::every_batch ? rec.sync() : rec.flush();
  REQUIRE(s->stored == 2);  // offsets 0 and 1 hold sequences 0 and 2: sequence 1 is lost
  CHECK(e.code == sluice::storage_errc::io);
  (void)rec.close();
}
