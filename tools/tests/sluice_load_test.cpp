// sluice-load, run as a user runs it: its exit codes, and the accounting in
// its JSON and CSV reports for each kind of load (closed and open loop, keys,
// failures, each full policy, polling, recording, ramp, sweep).
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace {

struct outcome {
  int code = -1;
  std::string out;
};

// Runs sluice-load with `args`; its standard output (standard error goes to
// the test's log).
outcome load(const std::string& args) {
  const std::string cmd = std::string(SLUICE_LOAD) + " --quiet " + args;
  outcome r;
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = ::pclose(p);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

// The number after "key": in the k-th run's JSON (counted from 0).
double field(const std::string& json, const std::string& key, int run = 0) {
  std::size_t at = json.find("\"runs\"");
  REQUIRE(at != std::string::npos);
  for (int i = 0; i <= run; ++i) {
    at = json.find("{\"lanes\"", at + 1);
    INFO("run " << run << " in " << json);
    REQUIRE(at != std::string::npos);
  }
  const std::size_t k = json.find("\"" + key + "\": ", at);
  INFO("field " << key << " in " << json);
  REQUIRE(k != std::string::npos);
  const std::string rest = json.substr(k + key.size() + 4, 8);
  if (rest.rfind("true", 0) == 0) return 1;
  if (rest.rfind("false", 0) == 0) return 0;
  return std::strtod(json.c_str() + k + key.size() + 4, nullptr);
}

int runs_in(const std::string& json) {
  int n = 0;
  for (std::size_t at = json.find("{\"lanes\""); at != std::string::npos;
       at = json.find("{\"lanes\"", at + 1))
    ++n;
  return n;
}

double top(const std::string& json, const std::string& key) {
  const std::size_t k = json.find("\"" + key + "\": ");
  REQUIRE(k != std::string::npos);
  return std::strtod(json.c_str() + k + key.size() + 4, nullptr);
}

// The accounting every run must show.
void check_balanced(const std::string& j, int run = 0) {
  CHECK(field(j, "balanced", run) == 1);
  CHECK(field(j, "sent", run) == field(j, "accepted", run) + field(j, "rejected", run));
  CHECK(field(j, "accepted", run) == field(j, "delivered", run) + field(j, "dropped", run));
  CHECK(field(j, "p50_ns", run) <= field(j, "p99_ns", run));
  CHECK(field(j, "p99_ns", run) <= field(j, "max_ns", run));
}

}  // namespace

TEST_CASE("sluice-load: closed loop, every event delivered and accounted", "[load]") {
  const outcome r = load("--duration 0.2 --format json");
  REQUIRE(r.code == 0);
  check_balanced(r.out);
  REQUIRE(field(r.out, "delivered") > 0);
  REQUIRE(field(r.out, "throughput") > 0);
  REQUIRE(field(r.out, "cpu_s") > 0);
  REQUIRE(field(r.out, "peak_rss_kb") > 0);
}

TEST_CASE("sluice-load: open loop sends exactly rate x duration, keyed, two producers", "[load]") {
  const outcome r =
      load("--rate 10000 --duration 0.5 --producers 2 --keys 10 --event-size 64 --format json");
  REQUIRE(r.code == 0);
  check_balanced(r.out);
  REQUIRE(field(r.out, "sent") == 5000);
  REQUIRE(field(r.out, "delivered") == 5000);
  REQUIRE(field(r.out, "event_size") == 64);
}

TEST_CASE("sluice-load: failures, drops, rejects and polling are counted", "[load]") {
  SECTION("half the handler calls fail") {
    const outcome r = load("--rate 10000 --duration 0.5 --fail-rate 0.5 --format json");
    REQUIRE(r.code == 0);
    check_balanced(r.out);
    REQUIRE(field(r.out, "failed") > 0);
    REQUIRE(field(r.out, "failed") < field(r.out, "delivered"));
  }
  SECTION("a one-place lane with a slow handler drops") {
    const outcome r = load(
        "--policy drop --lanes 1 --capacity 1 --workers 1 --handler-ns 200000 --duration 0.2 "
        "--format json");
    REQUIRE(r.code == 1);  // dropped events: not a sustainable load
    check_balanced(r.out);
    REQUIRE(field(r.out, "dropped") > 0);
    REQUIRE(field(r.out, "meets_slo") == 0);
  }
  SECTION("and with reject, refuses") {
    const outcome r = load(
        "--policy reject --lanes 1 --capacity 1 --workers 1 --handler-ns 200000 --duration 0.2 "
        "--format json");
    REQUIRE(r.code == 1);
    check_balanced(r.out);
    REQUIRE(field(r.out, "rejected") > 0);
  }
  SECTION("no workers: one thread polls") {
    const outcome r = load("--workers 0 --rate 4000 --duration 0.5 --format json");
    REQUIRE(r.code == 0);
    check_balanced(r.out);
    REQUIRE(field(r.out, "delivered") == 2000);
    REQUIRE(field(r.out, "workers") == 0);
  }
}

// A file or folder removed when the test ends, however it ends.
struct scratch {
  std::filesystem::path path;
  explicit scratch(const std::string& name)
      : path(std::filesystem::temp_directory_path() / (name + std::to_string(::getpid()))) {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  ~scratch() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

TEST_CASE("sluice-load: recording stores every event, and a folder it cannot use is exit 3",
          "[load]") {
  const scratch tmp("sluice_load_test_");
  const std::filesystem::path& dir = tmp.path;
  const outcome r = load("--rate 4000 --duration 0.5 --record " + dir.string() + " --format json");
  REQUIRE(r.code == 0);
  check_balanced(r.out);
  REQUIRE(field(r.out, "recorded") == field(r.out, "delivered"));
  REQUIRE(field(r.out, "recorded_bytes") > 0);
  REQUIRE(std::filesystem::is_directory(dir / "run-1"));
  REQUIRE(load("--duration 0.1 --record /dev/null/x").code == 3);
}

TEST_CASE("sluice-load: ramp finds a rate that meets the objective, or says none does", "[load]") {
  const outcome r = load(
      "--ramp --slo 2s --rate 2000 --ramp-factor 10 --ramp-steps 1 --duration 0.5 "
      "--format json");
  const int best = static_cast<int>(top(r.out, "best"));
  REQUIRE(runs_in(r.out) >= 2);
  // 2000 events/s with a 2 s objective is met on any machine.
  REQUIRE(r.code == 0);
  REQUIRE(best >= 0);
  REQUIRE(field(r.out, "meets_slo", best) == 1);
  for (int i = 0; i < runs_in(r.out); ++i) {
    check_balanced(r.out, i);
    if (field(r.out, "meets_slo", i) == 1)
      REQUIRE(field(r.out, "rate", i) <= field(r.out, "rate", best));
  }
  // One nanosecond cannot be met: exit 1, no best run.
  // (Each missed rate is run twice by default: --ramp-retries 1.)
  const outcome none = load("--ramp --slo 1ns --rate 1000 --duration 0.1 --format json");
  REQUIRE(none.code == 1);
  REQUIRE(top(none.out, "best") == -1);
  REQUIRE(runs_in(none.out) == 2);
  const outcome once =
      load("--ramp --slo 1ns --rate 1000 --duration 0.1 --ramp-retries 0 --format json");
  REQUIRE(once.code == 1);
  REQUIRE(runs_in(once.out) == 1);
}

TEST_CASE("sluice-load: sweep tries each configuration and recommends the smallest that meets",
          "[load]") {
  const outcome r = load(
      "--sweep --sweep-lanes 1,2 --sweep-workers 1,2 --rate 5000 --duration 0.5 --slo 2s "
      "--format json");
  REQUIRE(r.code == 0);
  REQUIRE(runs_in(r.out) == 4);
  const int best = static_cast<int>(top(r.out, "best"));
  REQUIRE(best >= 0);
  // The rule: the chosen run met the objective, and no other run that met
  // it has fewer workers, or as many workers and fewer lanes.
  REQUIRE(field(r.out, "meets_slo", best) == 1);
  for (int i = 0; i < 4; ++i) {
    check_balanced(r.out, i);
    if (i == best || field(r.out, "meets_slo", i) == 0) continue;
    const double w = field(r.out, "workers", i), bw = field(r.out, "workers", best);
    REQUIRE(w >= bw);
    if (w == bw) REQUIRE(field(r.out, "lanes", i) >= field(r.out, "lanes", best));
  }
  const outcome text =
      load("--sweep --sweep-lanes 2 --sweep-workers 1 --rate 5000 --duration 0.5 --slo 2s");
  REQUIRE(text.code == 0);
  REQUIRE(text.out.find("sweep: recommended --lanes 2 --workers 1") != std::string::npos);
}

TEST_CASE("sluice-load: CSV has a header and a row per run, and --out writes a file", "[load]") {
  const scratch tmp("sluice_load_csv_");
  const std::filesystem::path& file = tmp.path;
  const outcome r = load(
      "--sweep --sweep-lanes 1,2 --sweep-workers 1 --rate 5000 --duration 0.5 "
      "--format csv --out " +
      file.string());
  REQUIRE(r.code == 0);
  REQUIRE(r.out.empty());
  std::ifstream in(file);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  REQUIRE(lines.size() == 3);
  REQUIRE(lines[0].rfind("lanes,capacity,policy,", 0) == 0);
  REQUIRE(lines[0].find(",p99_ns,") != std::string::npos);
  const auto commas = [](const std::string& s) { return std::count(s.begin(), s.end(), ','); };
  REQUIRE(commas(lines[1]) == commas(lines[0]));
  REQUIRE(commas(lines[2]) == commas(lines[0]));
  REQUIRE(lines[1].rfind("1,8192,block,", 0) == 0);
  REQUIRE(lines[2].rfind("2,8192,block,", 0) == 0);
}

TEST_CASE("sluice-load: impossible flags are refused with exit 2", "[load]") {
  for (const char* bad :
       {"--lanes 0", "--lanes", "--event-size 17", "--policy fast", "--rate -1", "--slo 5",
        "--slo 1h", "--fail-rate 2", "--duration 0", "--ramp", "--ramp --sweep --slo 1ms",
        "--format xml", "--sweep-lanes 1,,2", "--bogus", "--workers 65", "--out ''",
        "--ramp-retries 11", "--rate 1 --duration 0.1"}) {
    INFO(bad);
    REQUIRE(load(bad).code == 2);
  }
  const outcome help = load("--help");
  REQUIRE(help.code == 0);
  REQUIRE(help.out.find("usage: sluice-load") != std::string::npos);
}
