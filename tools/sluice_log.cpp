// sluice-log: verify, dump, stats and tail a sluice file log without changing
// it, and repair a damaged one. The manual is docs/sluice-log.md.
//
// Exit codes: 0 ok; 1 damage found (verify) or reading stopped at damage;
// 2 usage error; 3 I/O error, not a log, or another format version.
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <filesystem>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <sluice/storage/error.hpp>
#include <sluice/storage/file_log.hpp>
#include <sluice/storage/format.hpp>
#include <sluice/storage/json_sink.hpp>
#include <sluice/storage/memory_sink.hpp>
#include <sluice/storage/repair.hpp>
#include <sluice/version.hpp>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace {

constexpr int exit_ok = 0;
constexpr int exit_damage = 1;
constexpr int exit_usage = 2;
constexpr int exit_io = 3;

constexpr std::size_t flush_at = std::size_t{64} << 10;  // bytes of output gathered before a write
constexpr std::uint64_t progress_auto_bytes = std::uint64_t{16} << 20;
constexpr long poll_ms = 100;  // tail -f: how often to look for new records

// ---- output --------------------------------------------------------------------

bool out_closed = false;  // stdout failed (or its reader went away: EPIPE)
int out_errno = 0;

// Writes to stdout; false once stdout cannot be written.
bool emit(std::string_view s) {
  if (out_closed) return false;
  if (s.empty()) return true;
  if (std::fwrite(s.data(), 1, s.size(), stdout) != s.size()) {
    out_closed = true;
    out_errno = errno;
    return false;
  }
  return true;
}

bool emit(fmt::memory_buffer& b) {
  const bool ok = emit(std::string_view(b.data(), b.size()));
  b.clear();
  return ok;
}

bool flush_out() {
  if (out_closed) return false;
  if (std::fflush(stdout) != 0) {
    out_closed = true;
    out_errno = errno;
    return false;
  }
  return true;
}

template <class... Args>
void say(fmt::format_string<Args...> f, Args&&... args) {
  fmt::memory_buffer b;
  fmt::format_to(std::back_inserter(b), f, std::forward<Args>(args)...);
  (void)emit(b);
}

template <class... Args>
void error(fmt::format_string<Args...> f, Args&&... args) {
  fmt::memory_buffer b;
  b.append(std::string_view("sluice-log: "));
  fmt::format_to(std::back_inserter(b), f, std::forward<Args>(args)...);
  b.push_back('\n');
  std::fwrite(b.data(), 1, b.size(), stderr);
}

// ---- help ----------------------------------------------------------------------

constexpr const char* main_help =
    "Usage: sluice-log <command> <dir> [options]\n"
    "\n"
    "Reads a sluice file log (a folder of .slog segment files), and may read one\n"
    "that is being written. Only 'repair' changes a log.\n"
    "\n"
    "Commands:\n"
    "  verify <dir>   check every record of every segment\n"
    "  dump <dir>     print events as JSON lines\n"
    "  stats <dir>    counts and bytes per type, time span, rate over time\n"
    "  tail <dir>     print the last events; with -f, follow new ones\n"
    "  repair <dir>   make a damaged log whole, keeping every valid record\n"
    "\n"
    "Options:\n"
    "  -h, --help     show this help; 'sluice-log <command> --help' for a command\n"
    "  --version      show the version\n"
    "\n"
    "Exit codes:\n"
    "  0  ok\n"
    "  1  damage found (verify, repair --dry-run), or reading stopped at damage\n"
    "  2  usage error\n"
    "  3  I/O error, not a sluice log, or another log format version\n";

constexpr const char* verify_help =
    "Usage: sluice-log verify <dir> [--progress | --no-progress] [--max-record N]\n"
    "\n"
    "Checks every record of every segment: framing, checksums, offsets, type\n"
    "names, segment headers and the links between segments. Each damaged place is\n"
    "printed as 'file:byte-offset: reason' (an incomplete record at the end of the\n"
    "log is damage too); after damage, checking goes on with the next segment.\n"
    "Offsets that the log says are missing (a failed sync, a repair) are printed\n"
    "as notes. Then a summary: segments, bytes, records, first and last offset.\n"
    "\n"
    "Options:\n"
    "  --progress       show a progress bar on stderr (by default only when stderr\n"
    "                   is a terminal and the log holds 16 MiB or more)\n"
    "  --no-progress    never show it\n"
    "  --max-record N   the largest record body in version 1 segments (default\n"
    "                   16 MiB; version 2 segments say what their writer took)\n"
    "\n"
    "Exit codes: 0 no damage, 1 damage found, 2 usage error, 3 I/O error, not a\n"
    "log or another format version (3 wins over 1).\n";

constexpr const char* repair_help =
    "Usage: sluice-log repair <dir> [--dry-run] [--max-record N]\n"
    "\n"
    "Makes a damaged log whole so that a writer can open it and readers read it\n"
    "to the end, without losing a valid record and without renumbering one:\n"
    "damaged bytes are moved to side files (<segment>.damaged-<byte offset>);\n"
    "records after damage go to a new segment whose header says which offsets\n"
    "are missing; a segment with a damaged header gets a new one. Each change is\n"
    "printed: file, byte offset, bytes, missing offsets, reason, side file. A\n"
    "writer must not have the log open (repair takes its lock).\n"
    "\n"
    "Options:\n"
    "  --dry-run        say what would change, change nothing\n"
    "  --max-record N   the largest record body in version 1 segments\n"
    "\n"
    "Exit codes: 0 ok (repaired, or nothing to repair), 1 damage found (--dry-run),\n"
    "2 usage error, 3 I/O error, the log is open for writing, or another format\n"
    "version.\n";

constexpr const char* dump_help =
    "Usage: sluice-log dump <dir> [--from N] [--type NAME] [--key K] [--limit N] [--hex]\n"
    "\n"
    "Prints the events as JSON lines on stdout, in offset order: offset, time_ns,\n"
    "type, version, key (null without one), producer, replayed, and the payload\n"
    "as payload_base64 (or payload_hex with --hex).\n"
    "\n"
    "Options:\n"
    "  --from N       start at offset N\n"
    "  --type NAME    only events of this type name\n"
    "  --key K        only events with this key\n"
    "  --limit N      print at most N events\n"
    "  --hex          show payloads in hexadecimal\n"
    "  --max-record N the largest record body in version 1 segments\n"
    "\n"
    "Offsets the log says are missing are noted on stderr.\n"
    "\n"
    "Exit codes: 0 ok, 1 stopped at damage (the events before it were printed),\n"
    "2 usage error, 3 I/O error, not a log or another format version.\n";

constexpr const char* stats_help =
    "Usage: sluice-log stats <dir> [--bucket SECONDS] [--max-record N]\n"
    "\n"
    "Prints the number of segments, bytes and records, the first and last offset\n"
    "and time, records and bytes per type, and the rate over time: events per\n"
    "bucket of wall-clock time (UTC), as a table.\n"
    "\n"
    "Options:\n"
    "  --bucket SECONDS  bucket width (default: chosen to give at most 40 rows)\n"
    "  --max-record N    the largest record body in version 1 segments\n"
    "\n"
    "Exit codes: 0 ok, 1 stopped at damage (the figures cover the records before\n"
    "it), 2 usage error, 3 I/O error, not a log or another format version.\n";

constexpr const char* tail_help =
    "Usage: sluice-log tail <dir> [-f] [-n N | --from N] [--type NAME] [--key K] [--hex]\n"
    "\n"
    "Prints the last events as JSON lines (as dump does). With -f, keeps printing\n"
    "new records as they are written, until interrupted (SIGINT or SIGTERM).\n"
    "\n"
    "Options:\n"
    "  -f, --follow   keep following the log (every 100 ms)\n"
    "  -n, --lines N  the last N events (default 10)\n"
    "  --from N       every event from offset N instead of the last N\n"
    "  --type NAME    only events of this type name\n"
    "  --key K        only events with this key\n"
    "  --hex          show payloads in hexadecimal\n"
    "  --max-record N the largest record body in version 1 segments\n"
    "\n"
    "Exit codes: 0 ok (also when -f is interrupted), 1 stopped at damage,\n"
    "2 usage error, 3 I/O error, not a log or another format version.\n";

// ---- arguments -----------------------------------------------------------------

struct option_spec {
  std::string_view name;  // long name, without "--"
  char short_name;        // 0: none
  bool takes_value;
};

struct arguments {
  std::vector<std::string> positional;
  std::vector<std::pair<std::string, std::string>> options;  // in order; the last one counts

  [[nodiscard]] bool has(std::string_view name) const {
    for (const auto& o : options)
      if (o.first == name) return true;
    return false;
  }
  [[nodiscard]] std::optional<std::string> value(std::string_view name) const {
    std::optional<std::string> v;
    for (const auto& o : options)
      if (o.first == name) v = o.second;
    return v;
  }
};

bool wants_help(int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--") return false;
    if (a == "-h" || a == "--help") return true;
  }
  return false;
}

// False with `why` set on a usage error.
bool parse_arguments(int argc, char** argv, int first, const std::vector<option_spec>& specs,
                     arguments& out, std::string& why) {
  bool options_done = false;
  for (int i = first; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (options_done || a.size() < 2 || a[0] != '-') {
      out.positional.emplace_back(a);
      continue;
    }
    if (a == "--") {
      options_done = true;
      continue;
    }
    const option_spec* spec = nullptr;
    std::optional<std::string> attached;
    if (a[1] == '-') {
      std::string_view name = a.substr(2);
      const std::size_t eq = name.find('=');
      if (eq != std::string_view::npos) {
        attached = std::string(name.substr(eq + 1));
        name = name.substr(0, eq);
      }
      for (const auto& s : specs)
        if (s.name == name) spec = &s;
    } else {
      for (const auto& s : specs)
        if (s.short_name != 0 && s.short_name == a[1]) spec = &s;
      if (spec != nullptr && a.size() > 2) {
        if (!spec->takes_value)
          spec = nullptr;  // "-fx": no bundling
        else
          attached = std::string(a.substr(2));
      }
    }
    if (spec == nullptr) {
      why = fmt::format("unknown option '{}'", a);
      return false;
    }
    if (!spec->takes_value) {
      if (attached) {
        why = fmt::format("option '--{}' takes no value", spec->name);
        return false;
      }
      out.options.emplace_back(std::string(spec->name), std::string());
      continue;
    }
    if (!attached) {
      if (i + 1 >= argc) {
        why = fmt::format("option '{}' needs a value", a);
        return false;
      }
      attached = std::string(argv[++i]);
    }
    out.options.emplace_back(std::string(spec->name), std::move(*attached));
  }
  return true;
}

// A whole decimal number, without sign, spaces or suffix.
bool parse_u64(std::string_view s, std::uint64_t& v) {
  if (s.empty()) return false;
  for (const char c : s)
    if (c < '0' || c > '9') return false;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

int show(const char* text) {
  (void)emit(text);
  return exit_ok;
}

int usage_error(std::string_view command, const std::string& why) {
  error("{}{}{}", command, command.empty() ? "" : ": ", why);
  error("try 'sluice-log {}{}--help'", command, command.empty() ? "" : " ");
  return exit_usage;
}

// Parses a command's arguments: exactly one folder and the given options.
// Returns exit_ok, or exit_usage after saying why.
int parse_command(int argc, char** argv, std::string_view command,
                  const std::vector<option_spec>& specs, arguments& a, std::string& dir) {
  std::string why;
  if (!parse_arguments(argc, argv, 2, specs, a, why)) return usage_error(command, why);
  if (a.positional.empty()) return usage_error(command, "missing the log folder");
  if (a.positional.size() > 1)
    return usage_error(command, fmt::format("unexpected argument '{}'", a.positional[1]));
  dir = a.positional[0];
  if (dir.empty()) return usage_error(command, "the log folder is an empty string");
  return exit_ok;
}

// Reads option `name` as a number into `v` (left alone when absent).
int number_option(const arguments& a, std::string_view command, std::string_view name,
                  std::uint64_t& v, std::uint64_t min = 0, std::uint64_t max = UINT64_MAX) {
  const std::optional<std::string> s = a.value(name);
  if (!s) return exit_ok;
  std::uint64_t n = 0;
  if (!parse_u64(*s, n))
    return usage_error(command, fmt::format("--{} needs a whole number, not '{}'", name, *s));
  if (n < min || n > max)
    return usage_error(command, fmt::format("--{} must be between {} and {}", name, min, max));
  v = n;
  return exit_ok;
}

// ---- the log folder ---------------------------------------------------------------

struct segment {
  std::uint64_t base = 0;
  std::string path;
  std::uint64_t size = 0;
};

struct listing {
  std::vector<segment> segments;        // by base offset
  std::vector<std::string> side_files;  // <segment>.damaged-<offset>, kept by recovery
  [[nodiscard]] std::uint64_t bytes() const {
    std::uint64_t n = 0;
    for (const auto& s : segments) n += s.size;
    return n;
  }
};

// Lists the segments of `dir`. Returns exit_ok, or exit_io after saying why.
int list_log(const std::string& dir, listing& out, bool allow_empty) {
  namespace fs = std::filesystem;
  out = {};
  std::error_code ec;
  const fs::file_status st = fs::status(dir, ec);
  if (!fs::exists(st)) {
    if (ec && ec != std::errc::no_such_file_or_directory)
      error("cannot reach '{}': {}", dir, ec.message());
    else
      error("no such folder: '{}'", dir);
    return exit_io;
  }
  if (!fs::is_directory(st)) {
    error("not a folder: '{}'", dir);
    return exit_io;
  }
  fs::directory_iterator it(dir, ec);
  for (; !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::uint64_t base = 0;
    if (!sluice::storage::parse_segment_name(name, base)) {
      if (name.size() > 25 && sluice::storage::parse_segment_name(name.substr(0, 25), base) &&
          name.compare(25, 9, ".damaged-") == 0)
        out.side_files.push_back(it->path().string());
      continue;
    }
    std::error_code fec;
    if (!it->is_regular_file(fec)) continue;  // the reader skips what is not a file too
    const std::uintmax_t size = it->file_size(fec);
    if (fec) continue;  // removed meanwhile (retention)
    out.segments.push_back({base, it->path().string(), static_cast<std::uint64_t>(size)});
  }
  if (ec) {
    error("cannot list '{}': {}", dir, ec.message());
    return exit_io;
  }
  std::sort(out.segments.begin(), out.segments.end(),
            [](const segment& a, const segment& b) { return a.base < b.base; });
  std::sort(out.side_files.begin(), out.side_files.end());
  if (out.segments.empty() && !allow_empty) {
    error("not a sluice log: no segment files (*.slog) in '{}'", dir);
    return exit_io;
  }
  return exit_ok;
}

enum class header_kind : std::uint8_t {
  valid,
  foreign,        // not a segment at all (bad magic)
  other_version,  // a whole header of another format version
  damaged,
  unreadable,
};

// What the header of the file at `path` is.
header_kind inspect_header(const std::string& path, std::uint64_t& base) {
  namespace st = sluice::storage;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return header_kind::unreadable;
  unsigned char h[st::segment_header_size] = {};
  std::size_t n = 0;
  while (n < sizeof h) {
    const ssize_t r = ::pread(fd, h + n, sizeof h - n, static_cast<off_t>(n));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    n += static_cast<std::size_t>(r);
  }
  ::close(fd);
  const std::size_t m = std::min(n, sizeof st::segment_magic);
  const bool zero = std::all_of(h, h + n, [](unsigned char c) { return c == 0; });
  if (n == 0 || zero) return header_kind::damaged;
  if (std::memcmp(h, st::segment_magic, m) != 0) return header_kind::foreign;
  if (n < sizeof h || st::load_le<std::uint32_t>(h + 60) != sluice::detail::crc32c(h, 60))
    return header_kind::damaged;
  const std::uint32_t version = st::load_le<std::uint32_t>(h + 8);
  if (version < st::oldest_format_version || version > st::format_version)
    return header_kind::other_version;
  st::segment_header sh;
  if (st::read_segment_header(h, sh) != nullptr) return header_kind::damaged;
  base = sh.base;
  return header_kind::valid;
}

// The exit code an error of a reader calls for: damage (1), or a file that
// cannot be read, is not a segment, or is of another format version (3).
int classify(const sluice::storage_error& e) {
  if (e.code != sluice::storage_errc::damaged) return exit_io;
  if (e.offset != 0 || e.file.empty()) return exit_damage;
  std::uint64_t base = 0;
  switch (inspect_header(e.file, base)) {
    case header_kind::foreign:
    case header_kind::other_version:
    case header_kind::unreadable:
      return exit_io;
    case header_kind::valid:
    case header_kind::damaged:
      break;
  }
  return exit_damage;
}

void sleep_ms(long ms) {
  timespec ts{};
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (ms % 1000) * 1000000L;
  ::nanosleep(&ts, nullptr);  // a signal ends it early: the caller looks at its flag
}

// At the end of the log: the size of the segment the reader stopped in when
// it is shorter than a segment header (the reader waits there for a segment
// being made; pending_bytes() counts its bytes, which may be none).
std::optional<std::uint64_t> short_segment(const sluice::log_reader& r) {
  const std::string& file = r.current_file();
  if (file.empty()) return std::nullopt;
  std::error_code ec;
  const std::uintmax_t size = std::filesystem::file_size(file, ec);
  if (ec || size >= sluice::storage::segment_header_size) return std::nullopt;
  return static_cast<std::uint64_t>(size);
}

// The reader's next event. At the end of the log, an incomplete record (or
// segment header) is, when `tail_is_damage`, waited for once (a write in
// progress) and then reported as damage. `err` is set when damaged is returned.
sluice::read_status next_event(sluice::log_reader& r, sluice::stored_event& e,
                               sluice::storage_error& err, bool tail_is_damage) {
  bool waited = false;
  for (;;) {
    const sluice::read_status s = r.next(e);
    if (s == sluice::read_status::damaged) {
      err = r.error();
      return s;
    }
    if (s == sluice::read_status::event || s == sluice::read_status::lost || !tail_is_damage)
      return s;
    const std::optional<std::uint64_t> short_size = short_segment(r);
    if (r.pending_bytes() == 0 && !short_size) return s;
    if (!waited) {
      waited = true;
      sleep_ms(poll_ms);
      continue;
    }
    const std::string& file = r.current_file();
    if (short_size) {
      std::uint64_t base = 0;
      const bool foreign = *short_size != 0 && inspect_header(file, base) == header_kind::foreign;
      err = sluice::storage_error::make(
          sluice::storage_errc::damaged,
          foreign ? std::string("not a sluice log segment (bad magic)")
                  : fmt::format("segment shorter than its header ({} bytes; torn while it was "
                                "made)",
                                *short_size),
          file, 0);
      return sluice::read_status::damaged;
    }
    std::error_code ec;
    const std::uintmax_t size = std::filesystem::file_size(file, ec);
    const std::uint64_t pending = r.pending_bytes();
    const std::uint64_t at =
        !ec && size >= pending ? static_cast<std::uint64_t>(size) - pending : 0;
    err = sluice::storage_error::make(
        sluice::storage_errc::damaged,
        fmt::format(
            "incomplete record at the end (torn write: {} byte{} after the last whole record)",
            pending, pending == 1 ? "" : "s"),
        file, at);
    return sluice::read_status::damaged;
  }
}

// "offset 7 is" or "offsets 7 to 9 are": the offsets [from, to), to > from.
std::string offsets_are(std::uint64_t from, std::uint64_t to) {
  return to - from == 1 ? fmt::format("offset {} is", from)
                        : fmt::format("offsets {} to {} are", from, to - 1);
}

// Says which offsets the log says are missing (not an error: the log is
// whole, and says why).
void note_lost(const sluice::log_reader& r) {
  const sluice::lost_records& l = r.lost();
  if (l.to == l.from) return;
  error("note: {} not in the log: {} ({}:{})", offsets_are(l.from, l.to), l.why, l.file, l.offset);
}

// --max-record N (for version 1 segments) into `o`.
int max_record_option(const arguments& a, std::string_view command, sluice::reader_options& o) {
  std::uint64_t m = o.max_record;
  if (int rc = number_option(a, command, "max-record", m, sluice::storage::body_fixed + 1,
                             std::uint64_t{1} << 31))
    return rc;
  o.max_record = static_cast<std::size_t>(m);
  return exit_ok;
}

std::unique_ptr<sluice::log_reader> open_reader(const std::string& dir, sluice::reader_options o,
                                                int& rc) {
  sluice::storage_error err;
  std::unique_ptr<sluice::log_reader> r = sluice::log_reader::open(dir, std::move(o), err);
  if (r == nullptr) {
    error("{}", err.describe());
    rc = exit_io;
  }
  return r;
}

// Says why reading stopped and returns the exit code for it.
int stopped_at(const sluice::storage_error& err) {
  const int rc = classify(err);
  if (rc == exit_damage)
    error("reading stopped at damage: {}", err.describe());
  else
    error("{}", err.describe());
  return rc;
}

// ---- formatting --------------------------------------------------------------------

// q = floor(a / b), r = a - q * b (0 <= r < b), for b > 0; never overflows.
void floor_divmod(std::int64_t a, std::int64_t b, std::int64_t& q, std::int64_t& r) {
  q = a / b;
  r = a % b;
  if (r < 0) {
    r += b;
    --q;
  }
}

// "2025-01-01T00:00:00Z" for a time in seconds, with `frac` nanoseconds
// after it when frac >= 0.
std::string utc_seconds(std::int64_t sec, std::int64_t frac = -1) {
  const auto t = static_cast<time_t>(sec);
  tm parts{};
  if (::gmtime_r(&t, &parts) == nullptr) return fmt::format("{} s", sec);
  std::string s =
      fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", parts.tm_year + 1900, parts.tm_mon + 1,
                  parts.tm_mday, parts.tm_hour, parts.tm_min, parts.tm_sec);
  if (frac >= 0) s += fmt::format(".{:09}", frac);
  s += 'Z';
  return s;
}

std::string utc_time(std::int64_t ns) {
  std::int64_t sec = 0;
  std::int64_t frac = 0;
  floor_divmod(ns, 1000000000, sec, frac);
  return utc_seconds(sec, frac);
}

std::string human_bytes(std::uint64_t n) {
  if (n < 1024) return fmt::format("{} B", n);
  const char* units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  auto v = static_cast<double>(n) / 1024.0;
  std::size_t u = 0;
  while (v >= 1024.0 && u + 1 < std::size(units)) {
    v /= 1024.0;
    ++u;
  }
  return fmt::format("{:.1f} {}", v, units[u]);
}

std::string seconds_text(std::int64_t s) {
  if (s % 86400 == 0) return fmt::format("{} d", s / 86400);
  if (s % 3600 == 0) return fmt::format("{} h", s / 3600);
  if (s % 60 == 0) return fmt::format("{} min", s / 60);
  return fmt::format("{} s", s);
}

std::string span_text(double s) {
  if (s >= 86400.0) return fmt::format("{:.3f} s ({:.1f} d)", s, s / 86400.0);
  if (s >= 3600.0) return fmt::format("{:.3f} s ({:.1f} h)", s, s / 3600.0);
  if (s >= 1.0 || s == 0.0) return fmt::format("{:.3f} s", s);
  if (s >= 1e-3) return fmt::format("{:.3f} ms", s * 1e3);
  return fmt::format("{:.3f} us", s * 1e6);
}

std::string rate_text(double r) {
  if (r >= 100.0) return fmt::format("{:.0f}", r);
  if (r >= 1.0) return fmt::format("{:.1f}", r);
  return fmt::format("{:.3g}", r);
}

// ---- progress ------------------------------------------------------------------------

class progress_bar {
 public:
  progress_bar(bool on, std::uint64_t total) : on_(on), tty_(::isatty(2) == 1), total_(total) {}

  void update(std::uint64_t done) {
    if (!on_) return;
    const int pct = percent(done);
    if (pct == pct_) return;
    const auto now = std::chrono::steady_clock::now();
    if (drawn_ && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    draw(pct, done);
  }

  // Takes the bar off the terminal before other output.
  void clear() {
    if (!on_ || !drawn_ || !tty_) return;
    std::fputs("\r\033[K", stderr);
    drawn_ = false;
    pct_ = -1;
  }

  void finish(std::uint64_t done) {
    if (!on_) return;
    if (tty_) {
      clear();
      return;
    }
    draw(percent(done), done);
    std::fputc('\n', stderr);
  }

 private:
  [[nodiscard]] int percent(std::uint64_t done) const {
    if (total_ == 0 || done >= total_) return 100;
    return static_cast<int>(static_cast<double>(done) * 100.0 / static_cast<double>(total_));
  }

  void draw(int pct, std::uint64_t done) {
    constexpr int width = 30;
    const int full = pct * width / 100;
    std::string bar(static_cast<std::size_t>(full), '#');
    bar.append(static_cast<std::size_t>(width - full), '.');
    fmt::print(stderr, "\rverifying [{}] {:3}%  {} of {}", bar, pct,
               human_bytes(std::min(done, total_)), human_bytes(total_));
    std::fflush(stderr);
    pct_ = pct;
    drawn_ = true;
  }

  bool on_;
  bool tty_;
  std::uint64_t total_;
  int pct_ = -1;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_{};
};

// ---- verify ---------------------------------------------------------------------------

int cmd_verify(int argc, char** argv) {
  if (wants_help(argc, argv, 2)) return show(verify_help);
  arguments a;
  std::string dir;
  if (int rc = parse_command(
          argc, argv, "verify",
          {{"progress", 0, false}, {"no-progress", 0, false}, {"max-record", 0, true}}, a, dir))
    return rc;
  sluice::reader_options base_options;
  if (int rc = max_record_option(a, "verify", base_options)) return rc;
  listing log;
  if (int rc = list_log(dir, log, false)) return rc;
  const std::uint64_t total = log.bytes();
  const bool show_bar = !a.has("no-progress") &&
                        (a.has("progress") || (::isatty(2) == 1 && total >= progress_auto_bytes));
  progress_bar bar(show_bar, total);

  std::uint64_t records = 0;
  std::uint64_t lost = 0;
  std::optional<std::uint64_t> first;
  std::uint64_t last = 0;
  std::size_t problems = 0;
  int result = exit_ok;
  std::uint64_t done = 0;
  auto problem = [&](const sluice::storage_error& e) {
    bar.clear();
    say("{}\n", e.describe());
    (void)flush_out();
    result = std::max(result, classify(e));
    ++problems;
  };

  // One reader from the start; after damage, a new one from the next segment
  // (from the damaged one itself when only its link to the one before is broken).
  std::size_t start = 0;
  while (start < log.segments.size()) {
    std::uint64_t before = 0;  // bytes of the segments before `start`
    for (std::size_t i = 0; i < start; ++i) before += log.segments[i].size;
    sluice::reader_options o = base_options;
    o.from = log.segments[start].base;
    sluice::storage_error err;
    std::unique_ptr<sluice::log_reader> r = sluice::log_reader::open(dir, o, err);
    if (r == nullptr) {
      problem(err);
      break;
    }
    std::optional<std::size_t> next;
    sluice::stored_event e;
    for (;;) {
      const sluice::read_status s = next_event(*r, e, err, true);
      done = before + r->bytes_read();
      if (s == sluice::read_status::event) {
        ++records;
        if (!first) first = e.offset;
        last = e.offset;
        bar.update(done);
        continue;
      }
      if (s == sluice::read_status::lost) {
        bar.clear();
        note_lost(*r);
        lost += r->lost().to - r->lost().from;
        continue;
      }
      if (s == sluice::read_status::end) break;
      problem(err);
      std::size_t at = log.segments.size();
      for (std::size_t i = 0; i < log.segments.size(); ++i)
        if (log.segments[i].path == err.file) at = i;
      if (at == log.segments.size()) break;  // not a segment of the listing: stop here
      std::size_t n = at + 1;
      std::uint64_t base = 0;
      if (err.code == sluice::storage_errc::damaged && err.offset == 0 &&
          inspect_header(err.file, base) == header_kind::valid && base == log.segments[at].base)
        n = at;  // the segment is fine but does not continue the one before: check it too
      if (n > start) next = n;
      break;
    }
    if (!next) break;
    start = *next;
  }
  bar.finish(std::max(done, total));

  fmt::memory_buffer out;
  auto it = std::back_inserter(out);
  for (const auto& f : log.side_files)
    fmt::format_to(
        it, "note: {} holds bytes cut off by recovery or a repair (not part of the log)\n", f);
  fmt::format_to(it, "log:       {}\n", dir);
  fmt::format_to(it, "segments:  {}\n", log.segments.size());
  fmt::format_to(it, "bytes:     {}\n", total);
  fmt::format_to(it, "records:   {}\n", records);
  if (lost != 0)
    fmt::format_to(it, "missing:   {} offset{} (said by the log; see the notes)\n", lost,
                   lost == 1 ? "" : "s");
  if (first)
    fmt::format_to(it, "offsets:   {} to {}\n", *first, last);
  else
    fmt::format_to(it, "offsets:   none\n");
  if (result == exit_ok)
    fmt::format_to(it, "result:    ok\n");
  else
    fmt::format_to(it, "result:    {} ({} problem{})\n",
                   result == exit_damage ? "damaged" : "unreadable", problems,
                   problems == 1 ? "" : "s");
  (void)emit(out);
  return result;
}

// ---- dump -------------------------------------------------------------------------------

int cmd_dump(int argc, char** argv) {
  if (wants_help(argc, argv, 2)) return show(dump_help);
  arguments a;
  std::string dir;
  if (int rc = parse_command(argc, argv, "dump",
                             {{"from", 0, true},
                              {"type", 0, true},
                              {"key", 0, true},
                              {"limit", 0, true},
                              {"hex", 0, false},
                              {"max-record", 0, true}},
                             a, dir))
    return rc;
  sluice::reader_options o;
  if (int rc = max_record_option(a, "dump", o)) return rc;
  std::uint64_t limit = UINT64_MAX;
  if (int rc = number_option(a, "dump", "from", o.from)) return rc;
  if (int rc = number_option(a, "dump", "limit", limit)) return rc;
  if (a.has("key")) {
    std::uint64_t k = 0;
    if (int rc = number_option(a, "dump", "key", k)) return rc;
    o.key = k;
  }
  if (const auto t = a.value("type")) {
    if (t->empty()) return usage_error("dump", "--type needs a type name");
    o.type = *t;
  }
  const bool hex = a.has("hex");
  listing log;
  if (int rc = list_log(dir, log, false)) return rc;
  int rc = exit_ok;
  std::unique_ptr<sluice::log_reader> r = open_reader(dir, o, rc);
  if (r == nullptr) return rc;

  fmt::memory_buffer out;
  sluice::stored_event e;
  sluice::storage_error err;
  std::uint64_t printed = 0;
  while (printed < limit) {
    const sluice::read_status s = next_event(*r, e, err, true);
    if (s == sluice::read_status::end) break;
    if (s == sluice::read_status::damaged) {
      (void)emit(out);
      (void)flush_out();
      return stopped_at(err);
    }
    if (s == sluice::read_status::lost) {
      note_lost(*r);
      continue;
    }
    sluice::append_json_line(out, e, nullptr, hex);
    ++printed;
    if (out.size() >= flush_at && !emit(out)) return exit_ok;  // stdout went away
  }
  (void)emit(out);
  return exit_ok;
}

// ---- stats --------------------------------------------------------------------------------

// Events per bucket of wall-clock time. With a chosen width the buckets keep
// it; otherwise they start at one second and widen (each width divides the
// next, so counts merge exactly) to keep the table short.
class rate_counter {
 public:
  explicit rate_counter(std::int64_t width) : fixed_(width != 0), width_(width != 0 ? width : 1) {}

  void add(std::int64_t time_ns) {
    std::int64_t sec = 0;
    std::int64_t rem = 0;
    floor_divmod(time_ns, 1000000000, sec, rem);
    std::int64_t bucket = 0;
    floor_divmod(sec, width_, bucket, rem);
    ++counts_[bucket];
    if (!fixed_ && counts_.size() > 4096) widen();
  }

  // Widens (unless fixed) until the table spans at most `rows` buckets.
  void settle(std::int64_t rows) {
    if (fixed_) return;
    while (!counts_.empty() && counts_.rbegin()->first - counts_.begin()->first + 1 > rows &&
           widen()) {
    }
  }

  [[nodiscard]] std::int64_t width() const noexcept { return width_; }
  [[nodiscard]] const std::map<std::int64_t, std::uint64_t>& counts() const noexcept {
    return counts_;
  }

 private:
  bool widen() {
    static constexpr std::int64_t widths[] = {1,     2,      10,      20,       60,       120,
                                              600,   1200,   3600,    7200,     21600,    43200,
                                              86400, 604800, 2419200, 31449600, 314496000};
    std::int64_t next = 0;
    for (const std::int64_t w : widths)
      if (w > width_) {
        next = w;
        break;
      }
    if (next == 0) return false;
    std::map<std::int64_t, std::uint64_t> merged;
    for (const auto& [bucket, n] : counts_) {
      std::int64_t q = 0;
      std::int64_t r = 0;
      floor_divmod(bucket * width_, next, q, r);
      merged[q] += n;
    }
    counts_ = std::move(merged);
    width_ = next;
    return true;
  }

  bool fixed_;
  std::int64_t width_;
  std::map<std::int64_t, std::uint64_t> counts_;
};

struct type_stats {
  std::uint64_t records = 0;
  std::uint64_t bytes = 0;
};

int cmd_stats(int argc, char** argv) {
  if (wants_help(argc, argv, 2)) return show(stats_help);
  arguments a;
  std::string dir;
  if (int rc = parse_command(argc, argv, "stats", {{"bucket", 0, true}, {"max-record", 0, true}}, a,
                             dir))
    return rc;
  std::uint64_t bucket = 0;
  if (int rc = number_option(a, "stats", "bucket", bucket, 1, 1000000000)) return rc;
  sluice::reader_options ro;
  if (int rc = max_record_option(a, "stats", ro)) return rc;
  listing log;
  if (int rc = list_log(dir, log, false)) return rc;
  int rc = exit_ok;
  std::unique_ptr<sluice::log_reader> r = open_reader(dir, ro, rc);
  if (r == nullptr) return rc;

  std::map<std::string, type_stats, std::less<>> types;
  rate_counter rate(static_cast<std::int64_t>(bucket));
  std::uint64_t records = 0;
  std::uint64_t first = 0, last = 0;
  std::int64_t first_time = 0, last_time = 0;
  std::int64_t min_time = INT64_MAX, max_time = INT64_MIN;
  sluice::stored_event e;
  sluice::storage_error err;
  for (;;) {
    const sluice::read_status s = next_event(*r, e, err, true);
    if (s == sluice::read_status::end) break;
    if (s == sluice::read_status::damaged) {
      rc = stopped_at(err);
      break;
    }
    if (s == sluice::read_status::lost) {
      note_lost(*r);
      continue;
    }
    if (records == 0) {
      first = e.offset;
      first_time = e.time_ns;
    }
    ++records;
    last = e.offset;
    last_time = e.time_ns;
    min_time = std::min(min_time, e.time_ns);
    max_time = std::max(max_time, e.time_ns);
    auto t = types.find(e.type);
    if (t == types.end()) t = types.emplace(std::string(e.type), type_stats{}).first;
    ++t->second.records;
    t->second.bytes +=
        sluice::storage::frame_size + sluice::storage::body_fixed + e.type.size() + e.payload.size;
    rate.add(e.time_ns);
  }
  rate.settle(40);

  fmt::memory_buffer out;
  auto it = std::back_inserter(out);
  fmt::format_to(it, "log:       {}\n", dir);
  fmt::format_to(it, "segments:  {}\n", log.segments.size());
  fmt::format_to(it, "bytes:     {} ({})\n", log.bytes(), human_bytes(log.bytes()));
  fmt::format_to(it, "records:   {}\n", records);
  if (records == 0) {
    (void)emit(out);
    return rc;
  }
  fmt::format_to(it, "offsets:   {} to {}\n", first, last);
  fmt::format_to(it, "first:     {}\n", utc_time(first_time));
  fmt::format_to(it, "last:      {}\n", utc_time(last_time));
  const double span = (static_cast<double>(max_time) - static_cast<double>(min_time)) / 1e9;
  fmt::format_to(it, "span:      {}\n", span_text(span));
  if (span > 0)
    fmt::format_to(it, "average:   {} events/s\n", rate_text(static_cast<double>(records) / span));
  fmt::format_to(it, "\n");

  // Per type, most records first.
  std::vector<std::pair<std::string, type_stats>> rows(types.begin(), types.end());
  std::stable_sort(rows.begin(), rows.end(), [](const auto& x, const auto& y) {
    return x.second.records > y.second.records;
  });
  std::size_t name_w = 4;
  for (const auto& row : rows) name_w = std::max(name_w, row.first.size());
  fmt::format_to(it, "{:<{}}  {:>12}  {:>14}  {:>6}\n", "type", name_w, "records", "bytes",
                 "share");
  for (const auto& [name, ts] : rows)
    fmt::format_to(it, "{:<{}}  {:>12}  {:>14}  {:>5.1f}%\n", name, name_w, ts.records, ts.bytes,
                   static_cast<double>(ts.records) * 100.0 / static_cast<double>(records));

  // Rate over time. Runs of more than three empty buckets are shown as one line.
  const std::int64_t w = rate.width();
  std::uint64_t peak = 1;
  for (const auto& [b, n] : rate.counts()) peak = std::max(peak, n);
  fmt::format_to(it, "\nrate per {} (UTC)\n", seconds_text(w));
  fmt::format_to(it, "{:<20}  {:>12}  {:>10}\n", "bucket start", "events", "events/s");
  auto row = [&](std::int64_t b, std::uint64_t n) {
    const auto bar =
        static_cast<std::size_t>(static_cast<double>(n) * 30.0 / static_cast<double>(peak) + 0.5);
    fmt::format_to(it, "{:<20}  {:>12}  {:>10}  {}\n", utc_seconds(b * w), n,
                   rate_text(static_cast<double>(n) / static_cast<double>(w)),
                   std::string(bar, '#'));
  };
  std::optional<std::int64_t> prev;
  for (const auto& [b, n] : rate.counts()) {
    if (prev) {
      const std::int64_t gap = b - *prev - 1;
      if (gap > 3)
        fmt::format_to(it, "{:<20}  {:>12}  ({} buckets without events)\n", "...", 0, gap);
      else
        for (std::int64_t g = *prev + 1; g < b; ++g) row(g, 0);
    }
    row(b, n);
    prev = b;
    if (out.size() >= flush_at && !emit(out)) return rc;
  }
  (void)emit(out);
  return rc;
}

// ---- tail ----------------------------------------------------------------------------------

volatile std::sig_atomic_t stop_requested = 0;

extern "C" void on_stop_signal(int) {
  stop_requested = 1;
}

void catch_stop_signals() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: the poll's sleep ends at once
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

struct event_filter {
  std::optional<std::string> type;
  std::optional<std::uint64_t> key;
  [[nodiscard]] bool match(const sluice::stored_event& e) const {
    if (type && e.type != *type) return false;
    if (key && (!e.has_key || e.key != *key)) return false;
    return true;
  }
};

int cmd_tail(int argc, char** argv) {
  if (wants_help(argc, argv, 2)) return show(tail_help);
  arguments a;
  std::string dir;
  if (int rc = parse_command(argc, argv, "tail",
                             {{"follow", 'f', false},
                              {"lines", 'n', true},
                              {"from", 0, true},
                              {"type", 0, true},
                              {"key", 0, true},
                              {"hex", 0, false},
                              {"max-record", 0, true}},
                             a, dir))
    return rc;
  sluice::reader_options base_options;
  if (int rc = max_record_option(a, "tail", base_options)) return rc;
  const bool follow = a.has("follow");
  const bool hex = a.has("hex");
  if (a.has("lines") && a.has("from"))
    return usage_error("tail", "give either -n/--lines or --from, not both");
  std::uint64_t lines = 10;
  std::optional<std::uint64_t> from;
  if (int rc = number_option(a, "tail", "lines", lines)) return rc;
  if (a.has("from")) {
    std::uint64_t f = 0;
    if (int rc = number_option(a, "tail", "from", f)) return rc;
    from = f;
  }
  event_filter filter;
  if (a.has("key")) {
    std::uint64_t k = 0;
    if (int rc = number_option(a, "tail", "key", k)) return rc;
    filter.key = k;
  }
  if (const auto t = a.value("type")) {
    if (t->empty()) return usage_error("tail", "--type needs a type name");
    filter.type = *t;
  }
  listing log;
  if (int rc = list_log(dir, log, follow)) return rc;
  if (follow) catch_stop_signals();

  fmt::memory_buffer out;
  sluice::stored_event e;
  sluice::storage_error err;
  std::unique_ptr<sluice::log_reader> live;  // at the end of the log, to follow it
  int rc = exit_ok;
  std::vector<sluice::storage_error> damage;  // met while looking back, newest first

  if (from) {
    sluice::reader_options o = base_options;
    o.from = *from;
    live = open_reader(dir, o, rc);
    if (live == nullptr) return rc;
  } else if (lines != 0 && !log.segments.empty()) {
    // The last N: read the newest segment, then older ones until N are found.
    // Damage ends a segment's part; the events before it still count.
    std::vector<std::vector<sluice::owned_event>> chunks;  // newest first
    std::uint64_t found = 0;
    for (std::size_t i = log.segments.size(); i-- > 0 && found < lines && !stop_requested;) {
      const bool newest = i + 1 == log.segments.size();
      const std::uint64_t end = newest ? UINT64_MAX : log.segments[i + 1].base;
      sluice::reader_options o = base_options;
      o.from = log.segments[i].base;
      std::unique_ptr<sluice::log_reader> r = open_reader(dir, o, rc);
      if (r == nullptr) return rc;
      std::deque<sluice::owned_event> chunk;
      for (;;) {
        const sluice::read_status s = next_event(*r, e, err, !follow);
        if (s == sluice::read_status::end) break;
        if (s == sluice::read_status::damaged) {
          // Reading on into the next segment may meet what its own part met.
          const bool seen = std::any_of(damage.begin(), damage.end(), [&](const auto& d) {
            return d.file == err.file && d.offset == err.offset;
          });
          if (!seen) damage.push_back(err);
          break;
        }
        if (s == sluice::read_status::lost) continue;  // said when followed
        if (e.offset >= end) break;
        if (!filter.match(e)) continue;
        chunk.push_back(sluice::owned_event::from(e));
        if (chunk.size() > lines) chunk.pop_front();
      }
      found += chunk.size();
      chunks.emplace_back(std::make_move_iterator(chunk.begin()),
                          std::make_move_iterator(chunk.end()));
      if (newest) live = std::move(r);
    }
    std::vector<sluice::owned_event> all;
    for (auto c = chunks.rbegin(); c != chunks.rend(); ++c)
      for (auto& ev : *c) all.push_back(std::move(ev));
    const std::size_t skip = all.size() > lines ? all.size() - static_cast<std::size_t>(lines) : 0;
    for (std::size_t i = skip; i < all.size(); ++i)
      sluice::append_json_line(out, all[i].view(), nullptr, hex);
    (void)emit(out);
    if (!damage.empty()) {
      (void)flush_out();
      for (const auto& d : damage) rc = std::max(rc, stopped_at(d));
      return rc;
    }
  } else {
    // Nothing to show (-n 0, or an empty folder to follow): start at the end.
    sluice::reader_options o = base_options;
    o.from = log.segments.empty() ? 0 : log.segments.back().base;
    live = open_reader(dir, o, rc);
    if (live == nullptr) return rc;
    if (lines == 0) {
      for (;;) {
        const sluice::read_status s = next_event(*live, e, err, !follow);
        if (s == sluice::read_status::end) break;
        if (s == sluice::read_status::damaged) return stopped_at(err);
        if (s == sluice::read_status::lost) note_lost(*live);
      }
    }
  }

  // --from: everything from there on; then, with -f, whatever comes next.
  if (!from && !follow) return exit_ok;
  for (;;) {
    if (stop_requested) break;
    const sluice::read_status s = next_event(*live, e, err, !follow);
    if (s == sluice::read_status::event) {
      if (filter.match(e)) sluice::append_json_line(out, e, nullptr, hex);
      if (out.size() >= flush_at && !emit(out)) return exit_ok;
      continue;
    }
    if (s == sluice::read_status::lost) {
      (void)emit(out);
      (void)flush_out();
      note_lost(*live);
      continue;
    }
    if (!emit(out) || !flush_out()) return exit_ok;  // stdout went away
    if (s == sluice::read_status::damaged) return stopped_at(err);
    if (!follow) break;
    sleep_ms(poll_ms);
  }
  (void)emit(out);
  return exit_ok;
}

// ---- repair ----------------------------------------------------------------------------------

int cmd_repair(int argc, char** argv) {
  if (wants_help(argc, argv, 2)) return show(repair_help);
  arguments a;
  std::string dir;
  if (int rc = parse_command(argc, argv, "repair", {{"dry-run", 0, false}, {"max-record", 0, true}},
                             a, dir))
    return rc;
  sluice::reader_options limits;
  if (int rc = max_record_option(a, "repair", limits)) return rc;
  listing log;
  if (int rc = list_log(dir, log, false)) return rc;
  sluice::repair_options o;
  o.dir = dir;
  o.max_record = limits.max_record;
  o.dry_run = a.has("dry-run");
  const sluice::repair_report r = sluice::repair_log(o);
  fmt::memory_buffer out;
  auto it = std::back_inserter(out);
  const char* verb = o.dry_run ? "would move" : "moved";
  for (const auto& c : r.changes) {
    fmt::format_to(it, "{}:{}: {}: {} {} byte{} to {}", c.file, c.at, c.reason, verb, c.bytes,
                   c.bytes == 1 ? "" : "s", c.saved_to.empty() ? "nowhere" : c.saved_to);
    if (c.lost_to > c.lost_from)
      fmt::format_to(it, "; {} missing", offsets_are(c.lost_from, c.lost_to));
    fmt::format_to(it, "\n");
  }
  for (const auto& f : r.segments_made)
    fmt::format_to(it, "{} {}\n", o.dry_run ? "would make" : "made", f);
  for (const auto& f : r.headers_rewritten)
    fmt::format_to(it, "{} the header of {}\n", o.dry_run ? "would rewrite" : "rewrote", f);
  fmt::format_to(it, "records kept: {}\n", r.records);
  fmt::format_to(
      it, "result:       {}\n",
      !r.ok() ? "stopped (see the error)"
              : (r.changed() ? (o.dry_run ? "damaged (dry run: nothing changed)" : "repaired")
                             : "nothing to repair"));
  (void)emit(out);
  (void)flush_out();
  if (!r.ok()) {
    error("{}", r.error.describe());
    return exit_io;
  }
  // A dry run that found something to repair says so, as verify does.
  return o.dry_run && r.changed() ? exit_damage : exit_ok;
}

// ---- main ------------------------------------------------------------------------------------

struct command {
  std::string_view name;
  int (*run)(int, char**);
  const char* help;
};

constexpr command commands[] = {
    {"verify", cmd_verify, verify_help}, {"dump", cmd_dump, dump_help},
    {"stats", cmd_stats, stats_help},    {"tail", cmd_tail, tail_help},
    {"repair", cmd_repair, repair_help},
};

int run(int argc, char** argv) {
  // A reader that goes away (`sluice-log dump ... | head`) ends the output
  // quietly instead of killing the process.
  struct sigaction sa {};
  sa.sa_handler = SIG_IGN;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGPIPE, &sa, nullptr);

  if (argc < 2) {
    std::fputs(main_help, stderr);
    return exit_usage;
  }
  const std::string_view name = argv[1];
  if (name == "-h" || name == "--help" || name == "help") {
    if (argc > 2) {
      for (const auto& c : commands)
        if (c.name == argv[2]) return show(c.help);
      return usage_error("", fmt::format("no such command: '{}'", argv[2]));
    }
    (void)emit(main_help);
    return exit_ok;
  }
  if (name == "--version" || name == "-V") {
    say("sluice-log {}.{}.{} (log format version {})\n", sluice::version_major,
        sluice::version_minor, sluice::version_patch, sluice::storage::format_version);
    return exit_ok;
  }
  for (const auto& c : commands)
    if (c.name == name) return c.run(argc, argv);
  if (!name.empty() && name[0] == '-')
    return usage_error("", fmt::format("unknown option '{}'", name));
  return usage_error("", fmt::format("unknown command '{}'", name));
}

}  // namespace

int main(int argc, char** argv) {
  int rc = exit_io;
  try {
    rc = run(argc, argv);
  } catch (const std::exception& e) {
    error("{}", e.what());
    rc = exit_io;
  }
  (void)flush_out();
  if (out_closed && out_errno != EPIPE && out_errno != 0) {
    error("cannot write the output: {}", std::strerror(out_errno));
    return exit_io;
  }
  return rc;
}
