// Storage: the recorder, the file log, reading and replay. 64-byte events
// (bench::ev64, registered with sluice::codecs as "ev64", stored with memcpy:
// 112 bytes per record in the log, 8 frame + 36 body header + 4 name + 64
// payload). Files go to a fresh folder under $TMPDIR (or /tmp), removed at the
// end. Every figure has its baseline in this binary, on the same folder.
//
//  1. storage/append: recorder.write() of N = 262144 events from one thread,
//     then recorder.flush(), into a fresh file_log (sync_policy::never), timed
//     end to end. Baseline: ::write() of the same 262144 records (bytes built
//     up front) to a fresh file in the same folder, in chunks of the
//     recorder's average batch (bytes per sink append, rounded to whole
//     records), measured by three untimed recorder runs at the start of each
//     baseline run. Target >= 0.7x. Also ::write() in 4 MiB chunks (the
//     recorder's buffer_bytes). Each iteration starts a fresh log (29 MB,
//     below segment_bytes: no roll); its pages are dropped (truncate)
//     afterwards, untimed, so nothing waits for the disk. recorder_rolling:
//     the same with segment_bytes = 8 MiB, so each roll syncs the segment it
//     closes (file_log::roll), as a long-running sync_policy::never log does.
//     recorder_write_n256: the same events through recorder.write_n(), 256 at
//     a time (one lock per call).
//  2. storage/commit: sync_policy::every_batch (group commit), 1 and 4
//     producer threads writing N events between them, then flush() (which
//     returns once the last batch is synced). Counters: events per fdatasync
//     (written / syncs), average batch bytes. Baseline: ::write() +
//     ::fdatasync() per chunk of the recorder's average batch with the same
//     producer count, measured as in 1. Target >= 1M events/s.
//  3. storage/read: a log of 2097152 events (224 MiB in four segments) written
//     once and read once (page cache) before any run. log_reader counting
//     events and summing each payload's eight words (target >= 20M events/s);
//     baseline: ::read() of the same files into a buffer of the reader's size
//     (256 KiB), summing 64-bit words. Also replay() into a 1-lane bus with no
//     workers (replay polls when the lane is full; one poll at the end), and
//     log_reader + codecs::decode<ev64>.
//  4. storage/bus: bus publish + poll, 4096 events per iteration through a
//     producer into a 1-lane bus (as bench_queued), without recording, and
//     with bus.record(recorder, sync_policy::never) into a memory_sink (4096
//     records) or a file_log (record_to_folder, segment_bytes 1 GiB so that no
//     roll syncs). 1024 iterations (4.2M events, 470 MB of log) per run.
//     stamp_time off and on. Target <= 1.3x time per event.
//
// Every run counts `proc_cpu_ns_per_event`: CPU time of the whole process
// (all threads, so the recorder's writer too) per event.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>
#include <memory>
#include <sluice/storage.hpp>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common.hpp"

namespace {

using event = bench::ev64;
constexpr char k_name[] = "ev64";
constexpr std::size_t k_name_len = sizeof(k_name) - 1;
constexpr std::size_t k_record_bytes =
    sluice::storage::frame_size + sluice::storage::body_fixed + k_name_len + sizeof(event);
static_assert(k_record_bytes == 112, "record layout");

constexpr std::size_t k_append_events = 262144;   // 29 MB of records
constexpr std::size_t k_replay_events = 2097152;  // 235 MB of records
constexpr std::size_t k_bus_batch = 4096;
constexpr std::size_t k_bus_iterations = 1024;
constexpr std::size_t k_read_buffer = std::size_t{256} << 10;  // as log_reader's

// ---- files ---------------------------------------------------------------------

class temp_root {
 public:
  temp_root() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base != nullptr && *base != '\0' ? base : "/tmp") +
                          "/sluice-bench-storage-XXXXXX";
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) == nullptr) {
      std::perror("mkdtemp");
      std::abort();
    }
    path_ = buf.data();
  }
  ~temp_root() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  temp_root(const temp_root&) = delete;
  temp_root& operator=(const temp_root&) = delete;
  [[nodiscard]] const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
};

const std::string& root() {
  static const temp_root r;
  return r.path();
}

std::string fresh_path(const char* tag) {
  static std::size_t n = 0;
  return root() + "/" + tag + "-" + std::to_string(n++);
}

// Drops the page-cache pages of every file in `dir` (truncate to 0), so that
// closing a log does not wait for the disk to take them.
void drop_files(const std::string& dir) {
  std::error_code ec;
  for (const auto& f : std::filesystem::directory_iterator(dir, ec))
    if (f.is_regular_file()) (void)::truncate(f.path().c_str(), 0);
}

void remove_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

// The segment files of a log folder, oldest first.
std::vector<std::string> segment_files(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& f : std::filesystem::directory_iterator(dir)) {
    std::uint64_t base = 0;
    if (sluice::storage::parse_segment_name(f.path().filename().string(), base))
      out.push_back(f.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool write_all(int fd, const unsigned char* p, std::size_t n) {
  while (n != 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

std::int64_t process_cpu_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

void set_cpu_counter(benchmark::State& state, std::int64_t cpu_ns, std::size_t events) {
  if (events == 0) return;
  state.counters["proc_cpu_ns_per_event"] =
      static_cast<double>(cpu_ns) / static_cast<double>(events);
}

// ---- sluice pieces -----------------------------------------------------------------

std::shared_ptr<const sluice::codecs> types() {
  static const std::shared_ptr<const sluice::codecs> t = [] {
    auto c = std::make_shared<sluice::codecs>();
    c->add<event>(k_name);
    return std::shared_ptr<const sluice::codecs>(std::move(c));
  }();
  return t;
}

// Sums the payload as 64-bit words: touches every payload byte.
std::uint64_t touch(sluice::byte_view p) noexcept {
  std::uint64_t s = 0;
  for (std::size_t i = 0; i + 8 <= p.size; i += 8) {
    std::uint64_t w = 0;
    std::memcpy(&w, p.data + i, 8);
    s += w;
  }
  return s;
}

std::uint64_t sum_words(const unsigned char* p, std::size_t n) noexcept {
  std::uint64_t s = 0;
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w = 0;
    std::memcpy(&w, p + i, 8);
    s += w;
  }
  for (; i < n; ++i) s += p[i];
  return s;
}

// A recorder on a fresh file_log; on destruction the log's pages are dropped
// (untimed teardown) and the folder removed.
struct log_fixture {
  std::string dir;
  std::shared_ptr<sluice::recorder> rec;

  log_fixture(sluice::sync_policy policy, std::size_t segment_bytes) {
    dir = fresh_path("log");
    sluice::file_log_options fo;
    fo.dir = dir;
    fo.segment_bytes = segment_bytes;
    sluice::storage_error err;
    std::unique_ptr<sluice::file_log> log = sluice::file_log::open(fo, err);
    if (log == nullptr) return;
    sluice::record_options ro;
    ro.sync = policy;
    rec = std::make_shared<sluice::recorder>(std::move(log), types(), ro);
  }
  ~log_fixture() {
    drop_files(dir);
    rec.reset();
    remove_dir(dir);
  }
  log_fixture(const log_fixture&) = delete;
  log_fixture& operator=(const log_fixture&) = delete;
};

// recorder.write() of events first .. first + n - 1 from `threads` threads
// (this one when 1), or recorder.write_n() of `bulk` events at a time.
// Returns how many were refused.
std::size_t produce(sluice::recorder& rec, std::size_t n, std::size_t threads,
                    std::size_t bulk = 0) {
  const auto run = [&rec, bulk](std::size_t first, std::size_t count) {
    std::size_t refused = 0;
    if (bulk != 0) {
      std::vector<event> es(bulk);
      for (std::size_t at = 0; at < count; at += bulk) {
        const std::size_t k = std::min(bulk, count - at);
        for (std::size_t i = 0; i < k; ++i) es[i].a = first + at + i;
        refused += k - rec.write_n(es.data(), k);
      }
      return refused;
    }
    event e{};
    for (std::size_t i = 0; i < count; ++i) {
      e.a = first + i;
      refused += !rec.write(e);
    }
    return refused;
  };
  if (threads <= 1) return run(0, n);
  std::vector<std::size_t> refused(threads, 0);
  std::vector<std::thread> ts;
  ts.reserve(threads);
  const std::size_t per = n / threads;
  for (std::size_t t = 0; t < threads; ++t)
    ts.emplace_back([&, t] { refused[t] = run(t * per, t + 1 == threads ? n - t * per : per); });
  for (auto& t : ts) t.join();
  std::size_t total = 0;
  for (std::size_t r : refused) total += r;
  return total;
}

// The recorder's average batch (bytes per sink append) for k_append_events
// events from `threads` producers under `policy`, over `runs` untimed
// recorder runs made now, rounded to whole records. Batch sizes depend on how
// fast the writer turns around (write, fdatasync), which changes with the
// machine's state, so each baseline run measures them afresh.
std::size_t recorder_chunk(sluice::sync_policy policy, std::size_t threads, int runs = 3) {
  std::uint64_t bytes = 0;
  std::uint64_t batches = 0;
  for (int r = 0; r < runs; ++r) {
    log_fixture f(policy, std::size_t{1} << 30);
    if (f.rec == nullptr) return 0;
    (void)produce(*f.rec, k_append_events, threads);
    (void)f.rec->flush();
    const sluice::recorder_stats st = f.rec->stats();
    bytes += st.bytes;
    batches += st.batches;
  }
  if (batches == 0) return 0;
  const double records = static_cast<double>(bytes) / static_cast<double>(batches) /
                         static_cast<double>(k_record_bytes);
  return std::max<std::size_t>(1, static_cast<std::size_t>(records + 0.5)) * k_record_bytes;
}

// k_append_events records laid out as in a log file, numbered and sealed.
const std::vector<unsigned char>& raw_records() {
  static const std::vector<unsigned char> bytes = [] {
    std::vector<unsigned char> b(k_append_events * k_record_bytes);
    sluice::metadata m{};
    const std::int64_t t0 = sluice::detail::wall_ns();
    for (std::size_t i = 0; i < k_append_events; ++i) {
      unsigned char* p = b.data() + i * k_record_bytes;
      sluice::storage::begin_record(p, t0 + static_cast<std::int64_t>(i), m, 1,
                                    std::string_view(k_name, k_name_len));
      event e{};
      e.a = i;
      std::memcpy(p + sluice::storage::frame_size + sluice::storage::body_fixed + k_name_len, &e,
                  sizeof e);
      sluice::storage::set_length(p, k_record_bytes - sluice::storage::frame_size);
      sluice::storage::seal_record(p, i);
    }
    return b;
  }();
  return bytes;
}

// ---- 1 and 2: appending ---------------------------------------------------------------

void set_recorder_counters(benchmark::State& state, const sluice::recorder_stats& st,
                           std::size_t iterations) {
  const auto d = [](std::uint64_t v) { return static_cast<double>(v); };
  if (st.batches != 0) state.counters["avg_batch_bytes"] = d(st.bytes) / d(st.batches);
  if (st.syncs != 0) state.counters["events_per_sync"] = d(st.written) / d(st.syncs);
  if (iterations != 0) {
    state.counters["syncs_per_iter"] = d(st.syncs) / d(iterations);
    state.counters["batches_per_iter"] = d(st.batches) / d(iterations);
  }
}

void add_stats(sluice::recorder_stats& to, const sluice::recorder_stats& s) {
  to.recorded += s.recorded;
  to.written += s.written;
  to.syncs += s.syncs;
  to.batches += s.batches;
  to.bytes += s.bytes;
  to.failed += s.failed;
  to.dropped += s.dropped;
}

void BM_append_recorder(benchmark::State& state, sluice::sync_policy policy, std::size_t threads,
                        std::size_t segment_bytes, std::size_t bulk = 0) {
  const std::size_t n = k_append_events;
  std::size_t refused = 0;
  bool failed = false;
  sluice::recorder_stats total{};
  std::int64_t cpu = 0;
  for (auto _ : state) {
    state.PauseTiming();
    {
      log_fixture f(policy, segment_bytes);
      if (f.rec == nullptr) {
        state.SkipWithError("cannot open a file_log in the temp folder");
        break;
      }
      const std::int64_t c0 = process_cpu_ns();
      state.ResumeTiming();
      refused += produce(*f.rec, n, threads, bulk);
      failed |= static_cast<bool>(f.rec->flush());
      state.PauseTiming();
      cpu += process_cpu_ns() - c0;
      add_stats(total, f.rec->stats());
    }
    state.ResumeTiming();
  }
  const auto iters = static_cast<std::size_t>(state.iterations());
  if (refused != 0 || failed || total.written != iters * n)
    state.SkipWithError("the recorder refused, lost or failed to write events");
  set_recorder_counters(state, total, iters);
  set_cpu_counter(state, cpu, iters * n);
  state.SetItemsProcessed(state.iterations() * bench::to_i64(n));
  state.SetBytesProcessed(state.iterations() * bench::to_i64(n * k_record_bytes));
}

// ::write() (+ ::fdatasync() per chunk when `sync`) of the same records, to a
// fresh file in the same folder, in chunks of the recorder's average batch in
// the same configuration (measured when this run starts), or of `fixed_chunk`
// bytes.
void BM_append_raw(benchmark::State& state, sluice::sync_policy policy, std::size_t threads,
                   std::size_t fixed_chunk = 0) {
  const std::vector<unsigned char>& bytes = raw_records();
  const std::size_t chunk = fixed_chunk != 0 ? fixed_chunk : recorder_chunk(policy, threads);
  if (chunk == 0) {
    state.SkipWithError("the recorder runs that measure the batch size wrote nothing");
    return;
  }
  std::vector<std::size_t> chunks;
  for (std::size_t at = 0; at < bytes.size(); at += chunk)
    chunks.push_back(std::min(chunk, bytes.size() - at));
  const bool sync = policy == sluice::sync_policy::every_batch;
  bool failed = false;
  std::size_t syncs = 0;
  std::int64_t cpu = 0;
  for (auto _ : state) {
    state.PauseTiming();
    const std::string path = fresh_path("raw");
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      state.SkipWithError("cannot create a file in the temp folder");
      break;
    }
    if (sync) (void)::fdatasync(fd);  // as a new segment is synced when made
    const std::int64_t c0 = process_cpu_ns();
    state.ResumeTiming();
    std::size_t at = 0;
    for (std::size_t c : chunks) {
      failed |= !write_all(fd, bytes.data() + at, c);
      at += c;
      if (sync) {
        failed |= ::fdatasync(fd) != 0;
        ++syncs;
      }
    }
    state.PauseTiming();
    cpu += process_cpu_ns() - c0;
    (void)::ftruncate(fd, 0);
    ::close(fd);
    ::unlink(path.c_str());
    state.ResumeTiming();
  }
  if (failed) state.SkipWithError("write or fdatasync failed");
  const auto iters = static_cast<std::size_t>(state.iterations());
  state.counters["avg_batch_bytes"] =
      static_cast<double>(bytes.size()) / static_cast<double>(chunks.size());
  state.counters["batches_per_iter"] = static_cast<double>(chunks.size());
  if (sync && syncs != 0) {
    state.counters["events_per_sync"] =
        static_cast<double>(iters * k_append_events) / static_cast<double>(syncs);
    state.counters["syncs_per_iter"] = static_cast<double>(chunks.size());
  }
  set_cpu_counter(state, cpu, iters * k_append_events);
  state.SetItemsProcessed(state.iterations() * bench::to_i64(k_append_events));
  state.SetBytesProcessed(state.iterations() * bench::to_i64(bytes.size()));
}

// ---- 3: reading -------------------------------------------------------------------------

std::uint64_t raw_read_dir(const std::vector<std::string>& files, std::vector<unsigned char>& buf,
                           std::uint64_t& bytes) {
  std::uint64_t sum = 0;
  for (const std::string& path : files) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    for (;;) {
      const ssize_t r = ::read(fd, buf.data(), buf.size());
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      sum += sum_words(buf.data(), static_cast<std::size_t>(r));
      bytes += static_cast<std::uint64_t>(r);
    }
    ::close(fd);
  }
  return sum;
}

// The log every read benchmark reads: written once, synced, read once.
const std::string& replay_log() {
  static const std::string dir = [] {
    const std::string d = root() + "/replay-log";
    sluice::file_log_options fo;
    fo.dir = d;
    sluice::storage_error err;
    std::unique_ptr<sluice::file_log> log = sluice::file_log::open(fo, err);
    if (log == nullptr) {
      std::fprintf(stderr, "bench_storage: cannot make %s: %s\n", d.c_str(),
                   err.describe().c_str());
      std::abort();
    }
    sluice::record_options ro;
    ro.sync = sluice::sync_policy::never;
    {
      sluice::recorder rec(std::move(log), types(), ro);
      (void)produce(rec, k_replay_events, 1);
      (void)rec.close();  // syncs: the files are on disk and in the page cache
    }
    std::vector<unsigned char> buf(k_read_buffer);
    std::uint64_t bytes = 0;
    benchmark::DoNotOptimize(raw_read_dir(segment_files(d), buf, bytes));
    return d;
  }();
  return dir;
}

void BM_read_log_reader(benchmark::State& state) {
  const std::string& dir = replay_log();
  std::uint64_t sum = 0;
  std::size_t wrong = 0;
  std::uint64_t bytes = 0;
  const std::int64_t c0 = process_cpu_ns();
  for (auto _ : state) {
    sluice::storage_error err;
    std::unique_ptr<sluice::log_reader> r = sluice::log_reader::open(dir, {}, err);
    if (r == nullptr) {
      state.SkipWithError("log_reader::open failed");
      break;
    }
    sluice::stored_event e;
    std::size_t n = 0;
    while (r->next(e) == sluice::read_status::event) {
      ++n;
      sum += touch(e.payload);
    }
    wrong += n != k_replay_events;
    bytes = r->bytes_read();
  }
  set_cpu_counter(state, process_cpu_ns() - c0,
                  static_cast<std::size_t>(state.iterations()) * k_replay_events);
  benchmark::DoNotOptimize(sum);
  if (wrong != 0) state.SkipWithError("log_reader did not read every event");
  state.SetItemsProcessed(state.iterations() * bench::to_i64(k_replay_events));
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes));
}

void BM_read_raw(benchmark::State& state) {
  const std::vector<std::string> files = segment_files(replay_log());
  std::vector<unsigned char> buf(k_read_buffer);
  std::uint64_t sum = 0;
  std::uint64_t bytes = 0;
  const std::int64_t c0 = process_cpu_ns();
  for (auto _ : state) sum += raw_read_dir(files, buf, bytes);
  set_cpu_counter(state, process_cpu_ns() - c0,
                  static_cast<std::size_t>(state.iterations()) * k_replay_events);
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(state.iterations() * bench::to_i64(k_replay_events));
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
}

void BM_read_decode(benchmark::State& state) {
  const std::string& dir = replay_log();
  const std::shared_ptr<const sluice::codecs> t = types();
  std::uint64_t sum = 0;
  std::size_t wrong = 0;
  const std::int64_t c0 = process_cpu_ns();
  for (auto _ : state) {
    sluice::storage_error err;
    std::unique_ptr<sluice::log_reader> r = sluice::log_reader::open(dir, {}, err);
    if (r == nullptr) {
      state.SkipWithError("log_reader::open failed");
      break;
    }
    sluice::stored_event e;
    std::size_t n = 0;
    while (r->next(e) == sluice::read_status::event) {
      sluice::decoded<event> d = t->decode<event>(e);
      if (!d) break;
      ++n;
      sum += d->a + d->rest[6];
    }
    wrong += n != k_replay_events;
  }
  set_cpu_counter(state, process_cpu_ns() - c0,
                  static_cast<std::size_t>(state.iterations()) * k_replay_events);
  benchmark::DoNotOptimize(sum);
  if (wrong != 0) state.SkipWithError("decode failed or events were missing");
  state.SetItemsProcessed(state.iterations() * bench::to_i64(k_replay_events));
}

void BM_read_replay_bus(benchmark::State& state, bool stamp) {
  const std::string& dir = replay_log();
  sluice::bus_options o;
  o.lanes = 1;
  o.lane_capacity = k_bus_batch;
  o.stamp_time = stamp;
  sluice::bus bus(o);
  std::uint64_t seen = 0;
  std::uint64_t sum = 0;
  const sluice::subscription sub = bus.subscribe<event>([&seen, &sum](const event& e) {
    ++seen;
    sum += e.a + e.rest[6];
  });
  std::size_t wrong = 0;
  const std::int64_t c0 = process_cpu_ns();
  for (auto _ : state) {
    const sluice::replay_result res = sluice::replay(dir, bus, *types());
    bus.poll();
    wrong += !res.ok() || res.published != k_replay_events;
  }
  set_cpu_counter(state, process_cpu_ns() - c0,
                  static_cast<std::size_t>(state.iterations()) * k_replay_events);
  benchmark::DoNotOptimize(sum);
  if (wrong != 0 || seen != static_cast<std::uint64_t>(state.iterations()) * k_replay_events)
    state.SkipWithError("replay did not publish and deliver every event");
  state.SetItemsProcessed(state.iterations() * bench::to_i64(k_replay_events));
}

// ---- 4: a recording bus ------------------------------------------------------------------

enum class recording { none, memory_sink, file_log };

void BM_bus(benchmark::State& state, recording kind, bool stamp) {
  std::string dir;
  {
    sluice::bus_options o;
    o.lanes = 1;
    o.lane_capacity = k_bus_batch;
    o.stamp_time = stamp;
    sluice::bus bus(o);
    sluice::record_options ro;
    ro.sync = sluice::sync_policy::never;
    std::shared_ptr<sluice::recorder> rec;
    if (kind == recording::memory_sink) {
      rec = std::make_shared<sluice::recorder>(std::make_unique<sluice::memory_sink>(k_bus_batch),
                                               types(), ro);
      bus.record(rec);
    } else if (kind == recording::file_log) {
      dir = fresh_path("bus");
      sluice::file_log_options fo;
      fo.segment_bytes = std::size_t{1} << 30;  // 1 GiB: no roll (a roll syncs) in a run
      sluice::folder_recording fr = sluice::record_to_folder(bus, dir, types(), ro, fo);
      if (!fr) {
        state.SkipWithError("record_to_folder failed");
        return;
      }
      rec = fr.rec;
    }
    const sluice::subscription sub =
        bus.subscribe<event>([](const event& e) { bench::work<0>(e); });
    sluice::producer prod = bus.make_producer();
    event e{};
    std::size_t not_ok = 0;
    std::size_t drained = 0;
    const std::int64_t c0 = process_cpu_ns();
    for (auto _ : state) {
      for (std::size_t i = 0; i < k_bus_batch; ++i) {
        e.a = i;
        not_ok += prod.publish(e) != sluice::publish_result::ok;
      }
      drained += bus.poll();
    }
    const auto expected = static_cast<std::size_t>(state.iterations()) * k_bus_batch;
    if (rec != nullptr) {
      // Let the writer finish (at most one buffer): its CPU time is counted.
      if (rec->flush()) state.SkipWithError("the recorder failed to write");
      const sluice::recorder_stats st = rec->stats();
      if (st.written != expected) state.SkipWithError("the recorder lost events");
      set_recorder_counters(state, st, static_cast<std::size_t>(state.iterations()));
    }
    set_cpu_counter(state, process_cpu_ns() - c0, expected);
    benchmark::DoNotOptimize(bench::g_sink);
    if (not_ok != 0 || drained != expected) state.SkipWithError("sluice refused or lost events");
    state.SetItemsProcessed(state.iterations() * bench::to_i64(k_bus_batch));
    state.SetBytesProcessed(state.iterations() * bench::to_i64(k_bus_batch * sizeof(event)));
    bus.stop();
    if (!dir.empty()) drop_files(dir);
  }
  if (!dir.empty()) remove_dir(dir);
}

void register_benchmarks() {
  using sluice::sync_policy;
  const auto reg = [](const std::string& name, auto fn) {
    return benchmark::RegisterBenchmark(name.c_str(), fn)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  };
  constexpr std::size_t big_segment = std::size_t{1} << 30;
  // 1. append, sync_policy::never
  reg("storage/append/recorder/sync:never",
      [](benchmark::State& s) { BM_append_recorder(s, sync_policy::never, 1, big_segment); });
  reg("storage/append/recorder_write_n256/sync:never",
      [](benchmark::State& s) { BM_append_recorder(s, sync_policy::never, 1, big_segment, 256); });
  reg("storage/append/raw_write",
      [](benchmark::State& s) { BM_append_raw(s, sync_policy::never, 1); });
  reg("storage/append/raw_write/chunk:4MiB",
      [](benchmark::State& s) { BM_append_raw(s, sync_policy::never, 1, std::size_t{4} << 20); });
  reg("storage/append/recorder_rolling/sync:never/segment:8MiB", [](benchmark::State& s) {
    BM_append_recorder(s, sync_policy::never, 1, std::size_t{8} << 20);
  });
  // 2. group commit, sync_policy::every_batch
  for (std::size_t p : {std::size_t{1}, std::size_t{4}}) {
    const std::string suffix = "/producers:" + std::to_string(p);
    reg("storage/commit/recorder" + suffix, [p](benchmark::State& s) {
      BM_append_recorder(s, sync_policy::every_batch, p, big_segment);
    });
    reg("storage/commit/raw_write_fdatasync" + suffix,
        [p](benchmark::State& s) { BM_append_raw(s, sync_policy::every_batch, p); });
  }
  // 3. reading from the page cache
  reg("storage/read/log_reader", BM_read_log_reader);
  reg("storage/read/raw_read", BM_read_raw);
  reg("storage/read/log_reader_decode", BM_read_decode);
  reg("storage/read/replay_bus/stamp:0", [](benchmark::State& s) { BM_read_replay_bus(s, false); });
  reg("storage/read/replay_bus/stamp:1", [](benchmark::State& s) { BM_read_replay_bus(s, true); });
  // 4. a bus that records
  for (bool stamp : {false, true}) {
    const std::string st = stamp ? "/stamp:1" : "/stamp:0";
    const auto it = static_cast<benchmark::IterationCount>(k_bus_iterations);
    reg("storage/bus/none" + st, [stamp](benchmark::State& s) {
      BM_bus(s, recording::none, stamp);
    })->Iterations(it);
    reg("storage/bus/memory_sink" + st, [stamp](benchmark::State& s) {
      BM_bus(s, recording::memory_sink, stamp);
    })->Iterations(it);
    reg("storage/bus/file_log" + st, [stamp](benchmark::State& s) {
      BM_bus(s, recording::file_log, stamp);
    })->Iterations(it);
  }
}

}  // namespace

SLUICE_BENCH_MAIN()
