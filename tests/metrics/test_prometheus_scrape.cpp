// A real Prometheus scrapes the metrics_server example: both are started by
// the test on free loopback ports (Prometheus with a temporary config and
// data folder) and stopped by it. The test asks Prometheus's HTTP API for
// the counters it scraped and checks them against what the bus counted.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  ::close(fd);
  return ntohs(a.sin_port);
}

// GET `path` from 127.0.0.1:port. Returns the status code (0: no answer)
// and the body.
int http_get(int port, const std::string& path, std::string& body) {
  body.clear();
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return 0;
  }
  const std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    ::close(fd);
    return 0;
  }
  std::string all;
  char buf[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 10000) <= 0) break;  // no answer in 10 s: give up on this one
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    all.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  const auto head_end = all.find("\r\n\r\n");
  if (all.compare(0, 5, "HTTP/") != 0 || head_end == std::string::npos) return 0;
  body = all.substr(head_end + 4);
  return std::atoi(all.c_str() + all.find(' ') + 1);
}

// A child process with its stdout in a pipe the test reads.
class child {
 public:
  explicit child(std::vector<std::string> argv, const std::string& log = "") {
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);  // no other child inherits them
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::dup2(fds[1], 1);  // dup2 clears close-on-exec on the copy
      if (!log.empty()) {
        const int l = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (l >= 0) {
          ::dup2(l, 1);
          ::dup2(l, 2);
        }
      }
      std::vector<char*> args;
      for (auto& s : argv) args.push_back(s.data());
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      std::_Exit(127);
    }
    ::close(fds[1]);
    out_ = fds[0];
  }
  child(const child&) = delete;
  child& operator=(const child&) = delete;
  ~child() {
    stop();
    if (out_ >= 0) ::close(out_);
  }
  // One line of its output (without the newline); empty at its end or after
  // 60 s without one.
  std::string line() {
    std::string s;
    char c;
    for (;;) {
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, 60000) <= 0) return s;
      if (::read(out_, &c, 1) != 1 || c == '\n') return s;
      s += c;
    }
  }
  // True while it runs.
  bool running() {
    if (pid_ <= 0) return false;
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) != pid_) return true;
    pid_ = -1;
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return false;
  }
  // SIGTERM, and waits for it to end (SIGKILL after 30 s). Returns its exit
  // status (-1 if a signal ended it).
  int stop() {
    if (pid_ <= 0) return status_;
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 3000 && running(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int st = 0;
      ::waitpid(pid_, &st, 0);
      pid_ = -1;
      status_ = -1;
    }
    return status_;
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  int status_ = -1;
};

// The number in Prometheus's answer to an instant query with one result:
// ..."value":[<time>,"<number>"]... ; false when there is no result yet.
bool query_value(const std::string& body, double& v) {
  const auto at = body.find("\"value\":[");
  if (body.find("\"status\":\"success\"") == std::string::npos || at == std::string::npos)
    return false;
  const auto q = body.find(",\"", at);
  if (q == std::string::npos) return false;
  v = std::strtod(body.c_str() + q + 2, nullptr);
  return true;
}

std::string url_encode(const std::string& s) {
  std::string out;
  char hex[4];
  for (const unsigned char c : s) {
    if (std::isalnum(c) || c == '_' || c == '-' || c == '.') {
      out += static_cast<char>(c);
    } else {
      std::snprintf(hex, sizeof hex, "%%%02X", c);
      out += hex;
    }
  }
  return out;
}

}  // namespace

TEST_CASE("prometheus: a real server scrapes the example, and its counters match the bus's",
          "[metrics][prometheus]") {
  char tmpl[] = "/tmp/sluice-prometheus-XXXXXX";
  const char* made = ::mkdtemp(tmpl);
  REQUIRE(made != nullptr);
  const std::string dir = made;
  struct cleanup {
    std::string d;
    ~cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(d, ec);
    }
  } rm{dir};

  child example({SLUICE_METRICS_EXAMPLE, "--events", "3000", "--port", "0"});
  const std::string listening = example.line();
  INFO(listening);
  const auto colon = listening.rfind(':');
  REQUIRE(listening.rfind("listening on http://127.0.0.1:", 0) == 0);
  const int example_port = std::atoi(listening.c_str() + colon + 1);
  REQUIRE(example_port > 0);
  const std::string counted = example.line();
  INFO(counted);
  unsigned long long orders = 0, payments = 0, delivered = 0, cents = 0;
  REQUIRE(std::sscanf(counted.c_str(),
                      "published %llu orders, %llu payments; delivered %llu orders worth %llu",
                      &orders, &payments, &delivered, &cents) == 4);
  REQUIRE(orders == 3000);
  REQUIRE(delivered == 3000);
  const std::string timed_line = example.line();
  INFO(timed_line);
  unsigned long long timed = 0;
  REQUIRE(std::sscanf(timed_line.c_str(), "orders timed: %llu;", &timed) == 1);
  REQUIRE(timed >= 3000 / 16);  // one in 16 per lane, the first of each included

  // The example answers /metrics itself, and 404 elsewhere.
  std::string body;
  REQUIRE(http_get(example_port, "/metrics", body) == 200);
  REQUIRE(body.find("sluice_events_published_total{bus=\"shop\",type=\"order_placed\"} 3000\n") !=
          std::string::npos);
  REQUIRE(http_get(example_port, "/", body) == 404);

  {
    std::ofstream cfg(dir + "/prometheus.yml");
    cfg << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        << "scrape_configs:\n  - job_name: sluice\n    static_configs:\n"
        << "      - targets: ['127.0.0.1:" << example_port << "']\n";
  }
  // A free port may be taken by another process before Prometheus binds
  // it: then it exits at once, and is started again on another port.
  int prom_port = 0;
  std::unique_ptr<child> prometheus;
  for (int attempt = 0; attempt < 5; ++attempt) {
    prom_port = free_port();
    prometheus = std::make_unique<child>(
        std::vector<std::string>{SLUICE_PROMETHEUS, "--config.file=" + dir + "/prometheus.yml",
                                 "--storage.tsdb.path=" + dir + "/data",
                                 "--web.listen-address=127.0.0.1:" + std::to_string(prom_port)},
        dir + "/prometheus.log");
    // Up when its readiness endpoint answers; gone when it exited. (The
    // deadline only keeps a broken install from hanging the suite.)
    const auto ready_by = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (prometheus->running() && http_get(prom_port, "/-/ready", body) != 200 &&
           std::chrono::steady_clock::now() < ready_by)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (prometheus->running()) break;
  }
  REQUIRE(prometheus->running());

  // Waits for each answer to exist (a scrape every second); the deadline
  // only keeps a broken setup from hanging the suite.
  auto query = [&](const std::string& q, double& v) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(90);
    while (std::chrono::steady_clock::now() < deadline) {
      if (http_get(prom_port, "/api/v1/query?query=" + url_encode(q), body) == 200 &&
          query_value(body, v))
        return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return false;
  };
  // The answer to q, or the test fails with Prometheus's last answer and log.
  auto need = [&](const std::string& q) {
    double v = 0;
    if (!query(q, v)) {
      std::ifstream log(dir + "/prometheus.log");
      const std::string text((std::istreambuf_iterator<char>(log)),
                             std::istreambuf_iterator<char>());
      FAIL("no answer to " << q << "; last: " << body << "\nprometheus log:\n"
                           << text.substr(text.size() > 4000 ? text.size() - 4000 : 0));
    }
    return v;
  };
  REQUIRE(need("up{job=\"sluice\"} == 1") == 1);
  REQUIRE(need("sluice_events_published_total{bus=\"shop\",type=\"order_placed\"}") ==
          static_cast<double>(orders));
  REQUIRE(need("sluice_events_published_total{type=\"payment_received\"}") ==
          static_cast<double>(payments));
  REQUIRE(need("sluice_events_settled_total{type=\"payment_received\",fate=\"unrouted\"}") ==
          static_cast<double>(payments));
  // Summed over fates, what settled is what was published.
  REQUIRE(need("sum(sluice_events_settled_total{type=\"order_placed\"})") ==
          static_cast<double>(orders));
  REQUIRE(need("sluice_recorder_recorded_records_total{recorder=\"orders_log\"}") ==
          static_cast<double>(orders + payments));
  REQUIRE(need("sum(sluice_lane_capacity{bus=\"shop\"})") > 0);
  // The latency histograms: as many queue waits as the example timed, and
  // a handler call for each.
  REQUIRE(need("sluice_event_queue_wait_seconds_count{bus=\"shop\",type=\"order_placed\"}") ==
          static_cast<double>(timed));
  REQUIRE(need("sluice_handler_duration_seconds_count{type=\"order_placed\"}") ==
          static_cast<double>(timed));
  REQUIRE(need("histogram_quantile(0.5, "
               "sluice_handler_duration_seconds_bucket{type=\"order_placed\"})") > 0);

  REQUIRE(prometheus->stop() == 0);
  REQUIRE(example.stop() == 0);
}
