// Tests of the sluice-log tool: writes logs with sluice's file log and
// recorder, runs the tool on them and checks its exit codes and output.
//
//   sluice_log_test <path of sluice-log> <case>
//
// Each case is one CTest test (tools/CMakeLists.txt). Exits 0 when every check
// of the case passed, 1 otherwise, naming each failed check.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <sluice/storage.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

// ---- checks -----------------------------------------------------------------------

int failures = 0;

void check(bool ok, const std::string& what) {
  if (ok) return;
  ++failures;
  std::fprintf(stderr, "FAILED: %s\n", what.c_str());
}

template <class A, class B>
void check_eq(const A& got, const B& want, const std::string& what) {
  std::ostringstream s;
  s << what << ": got " << got << ", want " << want;
  check(got == want, s.str());
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at < text.size()) {
    std::size_t nl = text.find('\n', at);
    if (nl == std::string::npos) nl = text.size();
    out.push_back(text.substr(at, nl - at));
    at = nl + 1;
  }
  return out;
}

std::vector<std::string> words_of(const std::string& line) {
  std::istringstream s(line);
  return std::vector<std::string>(std::istream_iterator<std::string>(s),
                                  std::istream_iterator<std::string>());
}

// The value after "name:" on the line that starts with it ("" if none).
std::string field(const std::string& text, const std::string& name) {
  for (const auto& l : lines_of(text))
    if (l.rfind(name + ":", 0) == 0) {
      const auto w = words_of(l.substr(name.size() + 1));
      std::string v;
      for (const auto& x : w) v += (v.empty() ? "" : " ") + x;
      return v;
    }
  return "";
}

// ---- a temporary folder --------------------------------------------------------------

class temp_dir {
 public:
  temp_dir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern =
        std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/sluice-log-test-XXXXXX";
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) == nullptr) {
      std::perror("mkdtemp");
      std::exit(2);
    }
    path_ = buf.data();
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::permissions(path_, std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::add, ec);
    std::filesystem::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  [[nodiscard]] std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// ---- running the tool -----------------------------------------------------------------

std::string tool;  // path of sluice-log

struct result {
  int status = -1;  // exit code, or -1 when it did not exit normally
  std::string out;
  std::string err;
};

std::string show_args(const std::vector<std::string>& args) {
  std::string s = "sluice-log";
  for (const auto& a : args) s += " " + a;
  return s;
}

// A running sluice-log with its stdout and stderr on pipes.
struct child {
  pid_t pid = -1;
  int out = -1;
  int err = -1;
};

child spawn(const std::vector<std::string>& args) {
  int out[2];
  int err[2];
  if (::pipe(out) != 0 || ::pipe(err) != 0) {
    std::perror("pipe");
    std::exit(2);
  }
  std::vector<std::string> all{tool};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("fork");
    std::exit(2);
  }
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    ::close(out[0]);
    ::close(out[1]);
    ::close(err[0]);
    ::close(err[1]);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(out[1]);
  ::close(err[1]);
  return {pid, out[0], err[0]};
}

// Reads what the child wrote until `done` says enough, both pipes close, or
// the deadline passes. False at the deadline.
bool collect(child& c, result& r, std::chrono::milliseconds limit,
             const std::function<bool(const result&)>& done = nullptr) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  char buf[4096];
  while (c.out >= 0 || c.err >= 0) {
    if (done && done(r)) return true;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd fds[2] = {{c.out, POLLIN, 0}, {c.err, POLLIN, 0}};
    const int n = ::poll(fds, 2, static_cast<int>(std::min<long long>(left.count(), 100)));
    if (n < 0 && errno != EINTR) return false;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      const ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
      if (got > 0) {
        (i == 0 ? r.out : r.err).append(buf, static_cast<std::size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        (i == 0 ? c.out : c.err) = -1;
      }
    }
  }
  return !done || done(r);
}

int wait_exit(child& c, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  int status = 0;
  for (;;) {
    const pid_t p = ::waitpid(c.pid, &status, WNOHANG);
    if (p == c.pid) break;
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(c.pid, SIGKILL);
      ::waitpid(c.pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (c.out >= 0) ::close(c.out);
  if (c.err >= 0) ::close(c.err);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

result run(const std::vector<std::string>& args) {
  child c = spawn(args);
  result r;
  const bool in_time = collect(c, r, std::chrono::seconds(30));
  if (!in_time) ::kill(c.pid, SIGKILL);
  r.status = wait_exit(c, std::chrono::seconds(5));
  check(in_time, show_args(args) + ": finished in time");
  return r;
}

result expect(const std::vector<std::string>& args, int status) {
  result r = run(args);
  check_eq(r.status, status, show_args(args) + ": exit code (stderr: " + r.err + ")");
  return r;
}

// ---- the test log ------------------------------------------------------------------------

struct order {
  std::uint64_t id;
  std::int64_t cents;
};
struct payment {
  std::uint64_t id;
  std::uint64_t cents;
};
struct tick {
  std::uint32_t n;
};

constexpr std::uint64_t records = 300;
constexpr std::int64_t base_ns = 1735689600LL * 1000000000LL;  // 2025-01-01T00:00:00Z
constexpr std::int64_t step_ns = 100000000;                    // 100 ms between records

// Record i of the test log: its type, key and payload bytes.
struct expected {
  std::string type;
  bool has_key = false;
  std::uint64_t key = 0;
  std::uint32_t producer = 0;
  std::vector<unsigned char> payload;
};

template <class T>
std::vector<unsigned char> bytes_of(const T& v) {
  std::vector<unsigned char> b(sizeof v);
  std::memcpy(b.data(), &v, sizeof v);
  return b;
}

expected record(std::uint64_t i) {
  expected e;
  e.producer = static_cast<std::uint32_t>(1 + i % 3);
  const std::uint64_t kind = i % 10;
  if (kind == 9) {
    e.type = "tick";
    e.payload = bytes_of(tick{static_cast<std::uint32_t>(i)});
    return e;
  }
  e.has_key = true;
  e.key = i % 4;
  if (kind < 6) {
    e.type = "order";
    e.payload = bytes_of(order{i, static_cast<std::int64_t>(i) * 100});
  } else {
    e.type = "payment";
    e.payload = bytes_of(payment{i, i * 7});
  }
  return e;
}

std::uint64_t record_size(std::uint64_t i) {
  const expected e = record(i);
  return sluice::storage::frame_size + sluice::storage::body_fixed + e.type.size() +
         e.payload.size();
}

std::shared_ptr<sluice::codecs> make_codecs() {
  auto types = std::make_shared<sluice::codecs>();
  types->add<order>("order");
  types->add<payment>("payment");
  types->add<tick>("tick");
  return types;
}

// Writes records [0, records) with file_log, one batch of up to 7 records at a
// time, with fixed times: 4096-byte segments, so the log has several.
void write_log(const std::string& dir) {
  auto types = make_codecs();
  sluice::file_log_options fo;
  fo.dir = dir;
  fo.segment_bytes = 4096;
  sluice::storage_error err;
  std::unique_ptr<sluice::file_log> log = sluice::file_log::open(fo, err);
  if (log == nullptr) {
    std::fprintf(stderr, "file_log::open: %s\n", err.describe().c_str());
    std::exit(2);
  }
  std::vector<unsigned char> bytes;
  std::size_t count = 0;
  auto append = [&] {
    sluice::record_batch b(bytes, count);
    if (sluice::storage_error e = log->append(b)) {
      std::fprintf(stderr, "append: %s\n", e.describe().c_str());
      std::exit(2);
    }
    bytes.clear();
    count = 0;
  };
  for (std::uint64_t i = 0; i < records; ++i) {
    const expected x = record(i);
    const sluice::codec_entry* c = types->find(x.type);
    sluice::metadata m;
    m.has_key = x.has_key;
    m.key = x.key;
    m.producer = x.producer;
    const std::size_t start = bytes.size();
    bytes.resize(start + sluice::storage::frame_size + sluice::storage::body_fixed +
                 c->name.size());
    sluice::storage::begin_record(bytes.data() + start,
                                  base_ns + static_cast<std::int64_t>(i) * step_ns, m, c->version,
                                  c->name);
    sluice::byte_writer w(bytes);
    if (x.type == "order") {
      order o;
      std::memcpy(&o, x.payload.data(), sizeof o);
      c->encode(c->codec.get(), &o, w);
    } else if (x.type == "payment") {
      payment p;
      std::memcpy(&p, x.payload.data(), sizeof p);
      c->encode(c->codec.get(), &p, w);
    } else {
      tick t;
      std::memcpy(&t, x.payload.data(), sizeof t);
      c->encode(c->codec.get(), &t, w);
    }
    sluice::storage::set_length(bytes.data() + start,
                                bytes.size() - start - sluice::storage::frame_size);
    if (++count == 7) append();
  }
  if (count != 0) append();
  if (sluice::storage_error e = log->close()) {
    std::fprintf(stderr, "close: %s\n", e.describe().c_str());
    std::exit(2);
  }
}

// Appends `n` ticks through a recorder (times: now), as a program would.
void append_ticks(const std::string& dir, std::uint32_t first, std::uint32_t n) {
  sluice::file_log_options fo;
  fo.dir = dir;
  fo.segment_bytes = 4096;
  sluice::storage_error err;
  std::unique_ptr<sluice::file_log> log = sluice::file_log::open(fo, err);
  if (log == nullptr) {
    std::fprintf(stderr, "file_log::open: %s\n", err.describe().c_str());
    std::exit(2);
  }
  sluice::recorder rec(std::move(log), make_codecs());
  for (std::uint32_t i = 0; i < n; ++i) check(rec.write(tick{first + i}), "recorder.write");
  check(!rec.close(), "recorder.close");
}

std::vector<std::string> segment_files(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.size() == 25 && name.substr(20) == ".slog") out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::uint64_t base_of(const std::string& path) {
  return std::stoull(std::filesystem::path(path).filename().string().substr(0, 20));
}

std::uint64_t file_size(const std::string& path) {
  return static_cast<std::uint64_t>(std::filesystem::file_size(path));
}

void flip_byte(const std::string& path, std::uint64_t at) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(at));
  const int c = f.get();
  f.seekp(static_cast<std::streamoff>(at));
  f.put(static_cast<char>(c ^ 0x5A));
}

// ---- the expected output ---------------------------------------------------------------------

std::string base64(const std::vector<unsigned char>& in) {
  static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (std::size_t i = 0; i < in.size(); i += 3) {
    const std::size_t n = std::min<std::size_t>(3, in.size() - i);
    std::uint32_t v = 0;
    for (std::size_t k = 0; k < 3; ++k) v = (v << 8) | (k < n ? in[i + k] : 0U);
    for (std::size_t k = 0; k < 4; ++k) out += k <= n ? digits[(v >> (18 - 6 * k)) & 63] : '=';
  }
  return out;
}

std::string hex(const std::vector<unsigned char>& in) {
  std::string out;
  char b[3];
  for (const unsigned char c : in) {
    std::snprintf(b, sizeof b, "%02x", c);
    out += b;
  }
  return out;
}

// The JSON line dump prints for record i.
std::string json_line(std::uint64_t i, bool as_hex = false) {
  const expected e = record(i);
  std::string s =
      "{\"offset\":" + std::to_string(i) +
      ",\"time_ns\":" + std::to_string(base_ns + static_cast<std::int64_t>(i) * step_ns) +
      ",\"type\":\"" + e.type +
      "\",\"version\":1,\"key\":" + (e.has_key ? std::to_string(e.key) : std::string("null")) +
      ",\"producer\":" + std::to_string(e.producer) + ",\"replayed\":false,";
  s += as_hex ? "\"payload_hex\":\"" + hex(e.payload) : "\"payload_base64\":\"" + base64(e.payload);
  return s + "\"}";
}

// Checks that `out` holds exactly the JSON lines of the given records.
void check_lines(const std::string& out, const std::vector<std::uint64_t>& want,
                 const std::string& what, bool as_hex = false) {
  const std::vector<std::string> got = lines_of(out);
  check_eq(got.size(), want.size(), what + ": number of lines");
  check(out.empty() || out.back() == '\n', what + ": output ends with a newline");
  for (std::size_t i = 0; i < std::min(got.size(), want.size()); ++i)
    if (got[i] != json_line(want[i], as_hex)) {
      check(false, what + ": line " + std::to_string(i) + " is\n  " + got[i] + "\nwant\n  " +
                       json_line(want[i], as_hex));
      break;
    }
}

std::vector<std::uint64_t> matching(const std::function<bool(std::uint64_t)>& f,
                                    std::uint64_t from = 0, std::uint64_t to = records) {
  std::vector<std::uint64_t> out;
  for (std::uint64_t i = from; i < to; ++i)
    if (f(i)) out.push_back(i);
  return out;
}

bool any(std::uint64_t) {
  return true;
}

// ---- the cases ----------------------------------------------------------------------------

void case_verify() {
  temp_dir t;
  const std::string dir = t / "log";
  write_log(dir);
  const auto segs = segment_files(dir);
  check(segs.size() >= 3, "the test log has several segments");
  std::uint64_t bytes = 0;
  for (const auto& s : segs) bytes += file_size(s);

  result r = expect({"verify", dir}, 0);
  check_eq(field(r.out, "records"), std::to_string(records), "verify: records");
  check_eq(field(r.out, "segments"), std::to_string(segs.size()), "verify: segments");
  check_eq(field(r.out, "bytes"), std::to_string(bytes), "verify: bytes");
  check_eq(field(r.out, "offsets"), "0 to 299", "verify: offsets");
  check_eq(field(r.out, "result"), "ok", "verify: result");
  check(r.err.empty(), "verify: nothing on stderr without a terminal (got: " + r.err + ")");

  r = expect({"verify", "--progress", dir}, 0);
  check(contains(r.err, "100%"), "verify --progress: the bar reaches 100% (got: " + r.err + ")");
  check_eq(field(r.out, "records"), std::to_string(records), "verify --progress: records");

  // An empty log (made by a writer, no records yet) verifies.
  const std::string empty = t / "empty";
  {
    sluice::file_log_options fo;
    fo.dir = empty;
    sluice::storage_error err;
    check(sluice::file_log::open(fo, err) != nullptr, "open an empty log");
  }
  r = expect({"verify", empty}, 0);
  check_eq(field(r.out, "records"), "0", "verify empty: records");
  check_eq(field(r.out, "offsets"), "none", "verify empty: offsets");
}

void case_dump() {
  temp_dir t;
  const std::string dir = t / "log";
  write_log(dir);
  result r = expect({"dump", dir}, 0);
  check_lines(r.out, matching(any), "dump");
  r = expect({"dump", dir, "--hex"}, 0);
  check_lines(r.out, matching(any), "dump --hex", true);
  r = expect({"dump", "--from=297", dir}, 0);
  check_lines(r.out, {297, 298, 299}, "dump --from=297");
}

void case_filters() {
  temp_dir t;
  const std::string dir = t / "log";
  write_log(dir);
  auto type_is = [](const char* name) {
    return [name](std::uint64_t i) { return record(i).type == name; };
  };
  result r = expect({"dump", dir, "--type", "payment"}, 0);
  check_lines(r.out, matching(type_is("payment")), "dump --type payment");
  check_eq(lines_of(r.out).size(), 90U, "dump --type payment: count");

  r = expect({"dump", dir, "--key", "1"}, 0);
  const auto key1 =
      matching([](std::uint64_t i) { return record(i).has_key && record(i).key == 1; });
  check_lines(r.out, key1, "dump --key 1");
  check_eq(key1.size(), 60U, "records with key 1");

  r = expect({"dump", dir, "--from", "250"}, 0);
  check_lines(r.out, matching(any, 250), "dump --from 250");
  check_eq(lines_of(r.out).size(), 50U, "dump --from 250: count");

  r = expect({"dump", dir, "--limit", "7"}, 0);
  check_lines(r.out, matching(any, 0, 7), "dump --limit 7");

  r = expect({"dump", dir, "--type", "order", "--key", "2", "--from", "100", "--limit", "1000"}, 0);
  check_lines(
      r.out,
      matching([](std::uint64_t i) { return record(i).type == "order" && record(i).key == 2; },
               100),
      "dump --type order --key 2 --from 100");

  r = expect({"dump", dir, "--type", "tick", "--limit", "2", "--from", "150"}, 0);
  check_lines(r.out, {159, 169}, "dump --type tick --limit 2 --from 150");

  r = expect({"dump", dir, "--type", "nothing"}, 0);
  check(r.out.empty(), "dump --type nothing: no lines");
  r = expect({"dump", dir, "--from", "300"}, 0);
  check(r.out.empty(), "dump --from 300: no lines");
}

void case_stats() {
  temp_dir t;
  const std::string dir = t / "log";
  write_log(dir);
  result r = expect({"stats", dir, "--bucket", "10"}, 0);
  check_eq(field(r.out, "records"), "300", "stats: records");
  check_eq(field(r.out, "offsets"), "0 to 299", "stats: offsets");
  check_eq(field(r.out, "first"), "2025-01-01T00:00:00.000000000Z", "stats: first");
  check_eq(field(r.out, "last"), "2025-01-01T00:00:29.900000000Z", "stats: last");
  struct row {
    const char* type;
    std::uint64_t count;
    std::uint64_t size;  // one record's bytes
    const char* share;
  };
  const row want[] = {{"order", 180, 8 + 36 + 5 + 16, "60.0%"},
                      {"payment", 90, 8 + 36 + 7 + 16, "30.0%"},
                      {"tick", 30, 8 + 36 + 4 + 4, "10.0%"}};
  for (const row& w : want) {
    bool seen = false;
    for (const auto& l : lines_of(r.out)) {
      const auto words = words_of(l);
      if (words.size() != 4 || words[0] != w.type) continue;
      seen = true;
      check_eq(words[1], std::to_string(w.count), std::string("stats: records of ") + w.type);
      check_eq(words[2], std::to_string(w.count * w.size),
               std::string("stats: bytes of ") + w.type);
      check_eq(words[3], w.share, std::string("stats: share of ") + w.type);
    }
    check(seen, std::string("stats: a row for ") + w.type + "\n" + r.out);
  }
  // Rate: three buckets of 10 s, 100 records each (10 per second).
  const char* starts[] = {"2025-01-01T00:00:00Z", "2025-01-01T00:00:10Z", "2025-01-01T00:00:20Z"};
  int buckets = 0;
  for (const auto& l : lines_of(r.out)) {
    const auto words = words_of(l);
    if (words.empty() || words[0].rfind("2025-", 0) != 0) continue;
    check(buckets < 3, "stats: at most three buckets\n" + r.out);
    if (buckets >= 3) break;
    check_eq(words[0], starts[buckets], "stats: bucket start");
    check(words.size() >= 3 && words[1] == "100" && words[2] == "10.0",
          "stats: bucket of 100 events, 10.0/s: " + l);
    ++buckets;
  }
  check_eq(buckets, 3, "stats: rate buckets");
  check(contains(r.out, "rate per 10 s"), "stats: the bucket width is named");

  // Default buckets: 30 s of records fit in at most 40 rows of 1 s.
  r = expect({"stats", dir}, 0);
  check(contains(r.out, "rate per 1 s"), "stats: 1 s buckets by default\n" + r.out);
  int rows = 0;
  for (const auto& l : lines_of(r.out))
    if (l.rfind("2025-01-01T00:00:", 0) == 0) ++rows;
  check_eq(rows, 30, "stats: 1 s rows");
}

void case_tail() {
  temp_dir t;
  const std::string dir = t / "log";
  write_log(dir);
  result r = expect({"tail", dir}, 0);
  check_lines(r.out, matching(any, 290), "tail");
  r = expect({"tail", dir, "-n", "3", "--type", "tick"}, 0);
  check_lines(r.out, {279, 289, 299}, "tail -n 3 --type tick");
  // More than the newest segment holds: older segments are read as well.
  r = expect({"tail", dir, "--lines=120"}, 0);
  check_lines(r.out, matching(any, 180), "tail --lines=120");
  r = expect({"tail", dir, "-n", "25", "--key", "3"}, 0);
  auto key3 = matching([](std::uint64_t i) { return record(i).has_key && record(i).key == 3; });
  key3.erase(key3.begin(), key3.end() - 25);
  check_lines(r.out, key3, "tail -n 25 --key 3");
  r = expect({"tail", dir, "-n", "1000"}, 0);
  check_lines(r.out, matching(any), "tail -n 1000");
  r = expect({"tail", dir, "--from", "295"}, 0);
  check_lines(r.out, matching(any, 295), "tail --from 295");
  r = expect({"tail", dir, "-n", "0"}, 0);
  check(r.out.empty(), "tail -n 0: no lines");
}

// tail -f prints the last lines, then records appended later, and exits 0 on
// SIGTERM or SIGINT.
void follow(const std::string& dir, std::vector<std::string> args, std::size_t initial,
            std::uint32_t first_tick, int sig, const std::string& what) {
  child c = spawn(args);
  result r;
  auto has_lines = [](std::size_t n) {
    return [n](const result& x) { return lines_of(x.out).size() >= n && x.out.back() == '\n'; };
  };
  check(collect(c, r, std::chrono::seconds(20), has_lines(initial)),
        what + ": the first " + std::to_string(initial) + " lines (got: " + r.out + r.err + ")");
  append_ticks(dir, first_tick, 5);
  check(collect(c, r, std::chrono::seconds(20), has_lines(initial + 5)),
        what + ": the appended lines (got: " + r.out + r.err + ")");
  ::kill(c.pid, sig);
  collect(c, r, std::chrono::seconds(10));
  check_eq(wait_exit(c, std::chrono::seconds(10)), 0, what + ": exit code after the signal");
  const auto got = lines_of(r.out);
  check_eq(got.size(), initial + 5, what + ": lines");
  for (std::size_t i = 0; i < std::min(got.size(), initial); ++i) {
    check(got[i].rfind("{\"offset\":", 0) == 0, what + ": a JSON line: " + got[i]);
  }
  for (std::size_t i = initial; i < got.size(); ++i) {
    const std::string off =
        "{\"offset\":" + std::to_string(records + (first_tick - 1000) + i - initial) + ",";
    check(got[i].rfind(off, 0) == 0 && contains(got[i], "\"type\":\"tick\"") &&
              contains(got[i], "\"key\":null"),
          what + ": appended line " + got[i]);
  }
}

void case_follow() {
  temp_dir t;
  const std::string dir = t / "log";
  write_log(dir);
  follow(dir, {"tail", "-f", dir}, 10, 1000, SIGTERM, "tail -f");
  // 305 records now; the ticks from offset 296 on: 299 and the 5 appended, then 5 new ones.
  follow(dir, {"tail", dir, "--follow", "--type", "tick", "--from", "296"}, 6, 1005, SIGINT,
         "tail -f --type tick --from 296");
}

void case_damage_flip() {
  temp_dir t;
  const std::string dir = t / "log";
  write_log(dir);
  const auto segs = segment_files(dir);
  const std::string last = segs.back();
  const std::uint64_t size = file_size(last);
  const std::uint64_t at = size - record_size(records - 1);
  flip_byte(last, size - 1);  // the last payload byte of the last record
  result r = expect({"verify", dir}, 1);
  check(contains(r.out, last + ":" + std::to_string(at) + ": checksum mismatch\n"),
        "verify names the file and offset (got: " + r.out + ")");
  check_eq(field(r.out, "records"), "299", "verify: records before the damage");
  check_eq(field(r.out, "result"), "damaged (1 problem)", "verify: result");
  r = expect({"dump", dir}, 1);
  check_lines(r.out, matching(any, 0, 299), "dump stops at the damage");
  check(contains(r.err, last + ":" + std::to_string(at) + ": checksum mismatch"),
        "dump says where it stopped (got: " + r.err + ")");
  r = expect({"stats", dir}, 1);
  check_eq(field(r.out, "records"), "299", "stats: records before the damage");
  r = expect({"tail", dir, "-n", "2"}, 1);
  check_lines(r.out, {297, 298}, "tail stops at the damage");
  r = expect({"dump", dir, "--limit", "10"}, 0);  // the damage is not reached
  check_lines(r.out, matching(any, 0, 10), "dump --limit 10 before the damage");
}

void case_damage_truncate() {
  temp_dir t;
  const std::string dir = t / "log";
  write_log(dir);
  const std::string last = segment_files(dir).back();
  const std::uint64_t size = file_size(last);
  const std::uint64_t at = size - record_size(records - 1);
  // Cut inside the body, then inside the frame header of the last record.
  for (const std::uint64_t keep : {size - 10, at + 3}) {
    std::filesystem::resize_file(last, keep);
    const std::string what = "truncated to " + std::to_string(keep);
    result r = expect({"verify", dir}, 1);
    check(contains(r.out, last + ":" + std::to_string(at) + ": incomplete record at the end"),
          what + ": verify names the file and offset (got: " + r.out + ")");
    check_eq(field(r.out, "records"), "299", what + ": records");
    r = expect({"dump", dir}, 1);
    check_lines(r.out, matching(any, 0, 299), what + ": dump");
    check(contains(r.err, last + ":" + std::to_string(at)),
          what + ": dump says where (got: " + r.err + ")");
    check_eq(file_size(last), keep, what + ": the log is left as it was");
  }
  // A writer opening the log recovers it; then it verifies.
  append_ticks(t / "log", 1000, 1);
  result r = expect({"verify", dir}, 0);
  check_eq(field(r.out, "records"), "300", "after recovery: records");
  check(contains(r.out, "note: " + last + ".damaged-" + std::to_string(at)),
        "after recovery: the side file is noted (got: " + r.out + ")");
  // A crash while rolling can leave a new segment shorter than its header.
  const std::string torn = t / "log/00000000000000000300.slog";
  { std::ofstream(torn, std::ios::binary) << "SLUI"; }
  r = expect({"verify", dir}, 1);
  check(contains(r.out, torn + ":0: segment shorter than its header"),
        "a torn segment header (got: " + r.out + ")");
  check_eq(field(r.out, "records"), "300", "a torn segment header: records");
  r = expect({"tail", dir, "-n", "3"}, 1);
  const auto got = lines_of(r.out);  // 297, 298, and the tick the recorder appended as 299
  check(got.size() == 3 && got[0] == json_line(297) && got[1] == json_line(298) &&
            got[2].rfind("{\"offset\":299,", 0) == 0 && contains(got[2], "\"type\":\"tick\""),
        "tail with a torn segment header: the events before it (got: " + r.out + ")");
  check(contains(r.err, torn + ":0:"), "tail says where the damage is (got: " + r.err + ")");
}

void case_damage_middle() {
  temp_dir t;
  const std::string dir = t / "log";
  write_log(dir);
  auto segs = segment_files(dir);
  check(segs.size() >= 4, "at least four segments");
  // Damage the first record of the first segment: verify goes on with the next.
  flip_byte(segs[0], 64 + 8 + 9);
  const std::uint64_t lost = base_of(segs[1]);
  result r = expect({"verify", dir}, 1);
  check(contains(r.out, segs[0] + ":64: checksum mismatch\n"),
        "first segment damage (got: " + r.out + ")");
  check_eq(field(r.out, "records"), std::to_string(records - lost),
           "records after the damaged segment");
  check_eq(field(r.out, "offsets"), std::to_string(lost) + " to 299", "offsets");
  // A missing segment: the next one does not continue the one before; its
  // records are still checked.
  std::filesystem::remove(segs[2]);
  const std::uint64_t gap = base_of(segs[3]) - base_of(segs[2]);
  r = expect({"verify", dir}, 1);
  check(contains(r.out, segs[3] + ":0: segment does not continue the previous one"),
        "missing segment (got: " + r.out + ")");
  check_eq(field(r.out, "records"), std::to_string(records - lost - gap), "records around the gap");
  check_eq(field(r.out, "result"), "damaged (2 problems)", "two problems");
  r = expect({"dump", dir}, 1);
  check(r.out.empty(), "dump prints nothing before damage at the first record");
}

// repair: a damaged record in a middle segment. A dry run changes nothing;
// repair keeps every valid record at its offset, and verify is then clean but
// for a note on the missing offset; a second repair finds nothing to do.
void case_repair() {
  temp_dir t;
  const std::string dir = t / "log";
  write_log(dir);
  auto segs = segment_files(dir);
  check(segs.size() >= 4, "at least four segments");
  const std::uint64_t victim = base_of(segs[1]);
  flip_byte(segs[1], 64 + 8 + 9);  // its first record
  expect({"verify", dir}, 1);
  const std::uint64_t bytes_before = std::filesystem::file_size(segs[1]);
  result r = expect({"repair", dir, "--dry-run"}, 1);
  check(contains(r.out, "would move"), "dry run says what it would do (got: " + r.out + ")");
  check(contains(r.out, "offset " + std::to_string(victim) + " is missing"),
        "dry run names the missing offset (got: " + r.out + ")");
  check_eq(std::filesystem::file_size(segs[1]), bytes_before, "a dry run changes nothing");
  expect({"verify", dir}, 1);
  r = expect({"repair", dir}, 0);
  check(contains(r.out, segs[1] + ":64: checksum mismatch: moved"),
        "repair says what it moved (got: " + r.out + ")");
  check_eq(field(r.out, "records kept"), std::to_string(records - 1), "records kept");
  check_eq(field(r.out, "result"), "repaired", "result");
  r = expect({"verify", dir}, 0);
  check_eq(field(r.out, "records"), std::to_string(records - 1), "every other record");
  check(contains(r.err, "note: offset " + std::to_string(victim) + " is not in the log"),
        "verify notes the missing offset (got: " + r.err + ")");
  check(contains(r.out, "missing:   1 offset ("), "summary (got: " + r.out + ")");
  r = expect({"dump", dir}, 0);
  check(contains(r.err, "note: offset " + std::to_string(victim)), "dump notes it too");
  r = expect({"repair", dir}, 0);
  check_eq(field(r.out, "result"), "nothing to repair", "a second repair");
  r = expect({"repair", dir, "--dry-run"}, 0);  // nothing found: 0
  check_eq(field(r.out, "result"), "nothing to repair", "a dry run on a whole log");
  // A log open for writing is not repaired.
  {
    sluice::file_log_options fo;
    fo.dir = dir;
    sluice::storage_error err;
    auto log = sluice::file_log::open(fo, err);
    check(log != nullptr, "the repaired log opens for writing");
    r = expect({"repair", dir}, 3);
    check(contains(r.err, "open for writing"), "locked (got: " + r.err + ")");
  }
  expect({"repair"}, 2);
  expect({"repair", dir, "--max-record", "3"}, 2);
}

// A record whose type name breaks the format (a quote), with a valid
// checksum: damage for every reader, and no invalid JSON printed.
void case_bad_name() {
  temp_dir t;
  const std::string dir = t / "log";
  std::filesystem::create_directories(dir);
  std::vector<unsigned char> b(sluice::storage::segment_header_size);
  sluice::storage::write_segment_header(b.data(), 0, 1);
  auto add = [&](std::uint64_t offset, std::string_view name) {
    const std::size_t at = b.size();
    b.resize(at + sluice::storage::frame_size + sluice::storage::body_fixed + name.size() + 4);
    sluice::metadata m;
    sluice::storage::begin_record(b.data() + at, 1, m, 1, name);
    sluice::storage::set_length(b.data() + at, b.size() - at - sluice::storage::frame_size);
    sluice::storage::seal_record(b.data() + at, offset);
  };
  add(0, "good");
  add(1, "bad\"name");
  add(2, "good");
  {
    std::ofstream f(dir + "/00000000000000000000.slog", std::ios::binary);
    f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  }
  result r = expect({"verify", dir}, 1);
  check(contains(r.out, "type name outside the format"), "verify names it (got: " + r.out + ")");
  r = expect({"dump", dir}, 1);
  check(!contains(r.out, "bad\""), "dump prints no raw quote (got: " + r.out + ")");
  check_eq(static_cast<int>(std::count(r.out.begin(), r.out.end(), '\n')), 1, "one line");
}

// A version 1 log written with a raised record limit: the header does not
// say it, so readers need --max-record; a version 2 log says it itself.
void case_max_record() {
  temp_dir t;
  const std::string dir = t / "log";
  struct blob {
    unsigned char bytes[40000];
  };
  {
    auto types = std::make_shared<sluice::codecs>();
    types->add<blob>("blob");
    sluice::file_log_options fo;
    fo.dir = dir;
    fo.max_record = 100000;
    sluice::storage_error err;
    auto log = sluice::file_log::open(fo, err);
    check(log != nullptr, "open");
    sluice::recorder rec(std::move(log), types);
    blob x{};
    for (int i = 0; i < 3; ++i) check(rec.write(x), "write");
    check(rec.close().ok(), "close");
  }
  result r = expect({"verify", dir}, 0);  // version 2: the header says 100000
  check_eq(field(r.out, "records"), "3", "records");
  // The same as version 1: header fields after the creation time are zero.
  const std::string seg = segment_files(dir)[0];
  std::vector<unsigned char> b;
  {
    std::ifstream f(seg, std::ios::binary);
    b.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  }
  sluice::storage::store_le<std::uint32_t>(b.data() + 8, 1);
  std::fill(b.begin() + 32, b.begin() + 60, 0);
  sluice::storage::store_le<std::uint32_t>(b.data() + 60, sluice::detail::crc32c(b.data(), 60));
  {
    std::ofstream f(seg, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  }
  r = expect({"verify", dir, "--max-record", "1000"}, 1);
  check(contains(r.out, "beyond the largest allowed record"), "limit (got: " + r.out + ")");
  r = expect({"verify", dir, "--max-record", "100000"}, 0);
  check_eq(field(r.out, "records"), "3", "records with the raised limit");
  expect({"dump", dir, "--max-record", "100000"}, 0);
  expect({"stats", dir, "--max-record", "100000"}, 0);
  expect({"tail", dir, "--max-record", "100000"}, 0);
}

void case_not_a_log() {
  temp_dir t;
  result r = expect({"verify", t / "missing"}, 3);
  check(contains(r.err, "no such folder"), "missing folder: message (got: " + r.err + ")");
  expect({"dump", t / "missing"}, 3);
  expect({"stats", t / "missing"}, 3);
  expect({"tail", t / "missing"}, 3);
  expect({"tail", "-f", t / "missing"}, 3);

  std::filesystem::create_directories(t / "empty");
  r = expect({"verify", t / "empty"}, 3);
  check(contains(r.err, "not a sluice log"), "empty folder: message (got: " + r.err + ")");
  expect({"dump", t / "empty"}, 3);

  { std::ofstream(t / "file") << "hello"; }
  r = expect({"verify", t / "file"}, 3);
  check(contains(r.err, "not a folder"), "a file: message (got: " + r.err + ")");

  std::filesystem::create_directories(t / "foreign");
  {
    std::ofstream f(t / "foreign/00000000000000000000.slog");
    for (int i = 0; i < 20; ++i) f << "this is not a log\n";
  }
  r = expect({"verify", t / "foreign"}, 3);
  check(contains(r.out, "00000000000000000000.slog:0: not a sluice log segment"),
        "foreign file: message (got: " + r.out + ")");
  r = expect({"dump", t / "foreign"}, 3);
  check(contains(r.err, "not a sluice log segment"),
        "foreign file: dump message (got: " + r.err + ")");

  // A whole header of format version 3 (this build reads 1 and 2).
  std::filesystem::create_directories(t / "v2");
  {
    unsigned char h[sluice::storage::segment_header_size];
    sluice::storage::write_segment_header(h, 0, base_ns);
    sluice::storage::store_le<std::uint32_t>(h + 8, 3);
    sluice::storage::store_le<std::uint32_t>(h + 60, sluice::detail::crc32c(h, 60));
    std::ofstream f(t / "v2/00000000000000000000.slog", std::ios::binary);
    f.write(reinterpret_cast<const char*>(h), sizeof h);
  }
  r = expect({"verify", t / "v2"}, 3);
  check(contains(r.out, "version"), "version 3: message (got: " + r.out + ")");
  expect({"stats", t / "v2"}, 3);

  // A segment that cannot be opened (not as root, which may open anything).
  if (::geteuid() != 0) {
    const std::string dir = t / "locked";
    write_log(dir);
    const std::string seg = segment_files(dir).front();
    std::filesystem::permissions(seg, std::filesystem::perms::none);
    r = expect({"verify", dir}, 3);
    check(contains(r.out, seg + ":0: open: Permission denied"),
          "unreadable segment (got: " + r.out + ")");
    std::filesystem::permissions(seg, std::filesystem::perms::owner_read);
    std::filesystem::permissions(dir, std::filesystem::perms::none);
    r = expect({"verify", dir}, 3);
    check(contains(r.err, "Permission denied"), "unreadable folder (got: " + r.err + ")");
    std::filesystem::permissions(dir, std::filesystem::perms::owner_all);
  }
}

void case_usage() {
  temp_dir t;
  const std::string dir = t / "log";
  write_log(dir);
  result r = expect({}, 2);
  check(contains(r.err, "Usage: sluice-log"), "no arguments: usage on stderr");
  r = expect({"frobnicate", dir}, 2);
  check(contains(r.err, "unknown command 'frobnicate'"),
        "unknown command: message (got: " + r.err + ")");
  expect({"--frobnicate"}, 2);
  r = expect({"dump"}, 2);
  check(contains(r.err, "missing the log folder"), "no folder: message (got: " + r.err + ")");
  expect({"verify", dir, dir}, 2);
  r = expect({"dump", dir, "--limit", "12x"}, 2);
  check(contains(r.err, "'12x'"), "bad number: message (got: " + r.err + ")");
  expect({"dump", dir, "--from", "-1"}, 2);
  expect({"dump", dir, "--from", ""}, 2);
  expect({"dump", dir, "--key", "18446744073709551616"}, 2);  // 2^64
  expect({"dump", dir, "--key"}, 2);
  expect({"dump", dir, "--type", ""}, 2);
  expect({"dump", dir, "--color"}, 2);
  expect({"dump", dir, "--hex=yes"}, 2);
  expect({"stats", dir, "--bucket", "0"}, 2);
  expect({"stats", dir, "--bucket", "1.5"}, 2);
  expect({"tail", dir, "-n", "3", "--from", "2"}, 2);
  expect({"tail", dir, "-x"}, 2);
  expect({"verify", "--progress"}, 2);
  // Usage errors are found before the folder is looked at.
  expect({"dump", t / "missing", "--limit", "x"}, 2);
  // The biggest key is a number like any other.
  r = expect({"dump", dir, "--key", "18446744073709551615"}, 0);
  check(r.out.empty(), "dump --key 2^64-1: no lines");
}

void case_help() {
  result r = expect({"--help"}, 0);
  check(contains(r.out, "Usage: sluice-log <command>"), "--help: usage");
  check(contains(r.out, "Exit codes"), "--help: exit codes");
  expect({"-h"}, 0);
  expect({"help"}, 0);
  r = expect({"help", "stats"}, 0);
  check(contains(r.out, "Usage: sluice-log stats"), "help stats");
  for (const char* c : {"verify", "dump", "stats", "tail"}) {
    r = expect({c, "--help"}, 0);
    check(contains(r.out, std::string("Usage: sluice-log ") + c), std::string(c) + " --help");
    expect({c, "-h"}, 0);
    expect({c, "/no/such/folder", "--help"}, 0);
  }
  r = expect({"--version"}, 0);
  check(contains(r.out, "sluice-log " + std::to_string(sluice::version_major) + "." +
                            std::to_string(sluice::version_minor) + "." +
                            std::to_string(sluice::version_patch)),
        "--version (got: " + r.out + ")");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: sluice_log_test <path of sluice-log> <case>\n");
    return 2;
  }
  tool = argv[1];
  const std::string name = argv[2];
  const std::pair<const char*, void (*)()> cases[] = {
      {"verify", case_verify},
      {"dump", case_dump},
      {"filters", case_filters},
      {"stats", case_stats},
      {"tail", case_tail},
      {"follow", case_follow},
      {"damage_flip", case_damage_flip},
      {"damage_truncate", case_damage_truncate},
      {"damage_middle", case_damage_middle},
      {"repair", case_repair},
      {"bad_name", case_bad_name},
      {"max_record", case_max_record},
      {"not_a_log", case_not_a_log},
      {"usage", case_usage},
      {"help", case_help},
  };
  for (const auto& c : cases)
    if (name == c.first) {
      c.second();
      if (failures != 0) std::fprintf(stderr, "%d check(s) failed\n", failures);
      return failures == 0 ? 0 : 1;
    }
  std::fprintf(stderr, "no such case: %s\n", name.c_str());
  return 2;
}
