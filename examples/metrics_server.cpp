// metrics_server — a bus and its recorder, their metrics served to Prometheus.
//
// Publishes --events orders and a payment for every other order into a bus
// with two workers and a recorder, waits until they are delivered, prints
// what the bus counted, then answers GET /metrics on 127.0.0.1 (a minimal
// blocking HTTP/1.0 server, one request at a time) until --serve-seconds
// pass or SIGINT/SIGTERM. With --port 0 (the default) the system picks a
// free port; the first line printed names it:
//
//   listening on http://127.0.0.1:40313/metrics
//   published 1000 orders, 500 payments; delivered 1000 orders
//   orders timed: 63; queue wait p50 ... ns, p99 ... ns; handler p50 ... ns
//
// One order in 16 per lane is timed (latency metrics): its queue wait and
// handler time are printed and served as histograms. With --trace FILE, one
// flow in 64 is traced (its publish, queue wait, delivery and handler call)
// and written to FILE as Chrome Trace Event JSON (open it in
// https://ui.perfetto.dev) before serving:
//
//   trace: 93 records (0 lost) written to shop.trace.json
// Exit codes: 0 done, 1 the bus did not become idle within 60 s, 2 bad
// arguments, 3 the socket could not be opened, 4 the trace could not be
// written.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <sluice/metrics/prometheus.hpp>
#include <sluice/sluice.hpp>
#include <sluice/storage.hpp>
#include <sluice/storage/memory_sink.hpp>
#include <string>

namespace {

struct order_placed {
  std::uint64_t id;
  std::uint64_t cents;
};
struct payment_received {
  std::uint64_t order;
  std::uint64_t cents;
};

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) {
  g_stop = 1;
}

bool parse_count(const char* s, long long lo, long long hi, long long& out) {
  if (s == nullptr || *s == '\0') return false;
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(s, &end, 10);
  if (errno != 0 || *end != '\0' || v < lo || v > hi) return false;
  out = v;
  return true;
}

void usage(std::FILE* to) {
  std::fputs(
      "usage: metrics_server [--events N] [--port P] [--serve-seconds S]\n"
      "  --events N         orders to publish (1..100000000, default 1000)\n"
      "  --port P           port on 127.0.0.1 (0..65535; 0, the default: a free one)\n"
      "  --serve-seconds S  serve for S seconds, then exit (0, the default: until SIGTERM)\n"
      "  --trace FILE       trace one flow in 64 and write the trace to FILE (Chrome JSON)\n",
      to);
}

// Answers one connection: GET /metrics gets the exporter's text.
void answer(int fd, const sluice::prometheus_exporter& prom) {
  char req[2048];
  std::size_t got = 0;
  // Read until the end of the request head (or the buffer is full).
  while (got < sizeof req - 1) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 2000) <= 0) return;
    const ssize_t n = ::recv(fd, req + got, sizeof req - 1 - got, 0);
    if (n <= 0) return;
    got += static_cast<std::size_t>(n);
    req[got] = '\0';
    if (std::strstr(req, "\r\n\r\n") != nullptr || std::strstr(req, "\n\n") != nullptr) break;
  }
  req[got] = '\0';
  std::string body, status = "200 OK", type = "text/plain; version=0.0.4; charset=utf-8";
  if (std::strncmp(req, "GET /metrics ", 13) == 0 || std::strncmp(req, "GET /metrics?", 13) == 0) {
    body = prom.render();
  } else {
    status = "404 Not Found";
    type = "text/plain";
    body = "try /metrics\n";
  }
  const std::string head = "HTTP/1.0 " + status + "\r\nContent-Type: " + type +
                           "\r\nContent-Length: " + std::to_string(body.size()) +
                           "\r\nConnection: close\r\n\r\n";
  const std::string all = head + body;
  std::size_t sent = 0;
  while (sent < all.size()) {
    const ssize_t n = ::send(fd, all.data() + sent, all.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return;
    sent += static_cast<std::size_t>(n);
  }
}

}  // namespace

int main(int argc, char** argv) {
  long long events = 1000, port = 0, serve_seconds = 0;
  std::string trace_file;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    bool ok = false;
    if (a == "--help" || a == "-h") {
      usage(stdout);
      return 0;
    } else if (a == "--events") {
      ok = parse_count(v, 1, 100000000, events);
    } else if (a == "--port") {
      ok = parse_count(v, 0, 65535, port);
    } else if (a == "--serve-seconds") {
      ok = parse_count(v, 0, 86400 * 365, serve_seconds);
    } else if (a == "--trace") {
      ok = v != nullptr && *v != '\0';
      if (ok) trace_file = v;
    }
    if (!ok) {
      std::fprintf(stderr, "metrics_server: bad argument %s%s%s\n", a.c_str(), v ? " " : "",
                   v ? v : "");
      usage(stderr);
      return 2;
    }
    ++i;
  }

  // The bus, a recorder keeping the last 4096 records in memory, and the
  // exporter that reports both.
  auto types = std::make_shared<sluice::codecs>();
  types->add<order_placed>("order_placed");
  types->add<payment_received>("payment_received");
  auto rec = std::make_shared<sluice::recorder>(std::make_unique<sluice::memory_sink>(4096), types);
  sluice::bus_options options;
  options.lanes = 2;
  options.latency_sample_every = 16;  // time one event in 16 per lane
  std::shared_ptr<sluice::tracer> tracer;
  if (!trace_file.empty()) {
    tracer = std::make_shared<sluice::tracer>(64);
    tracer->name<order_placed>("order_placed").name<payment_received>("payment_received");
    options.tracer = tracer;
  }
  sluice::bus bus(options);
  bus.record(rec);
  sluice::prometheus_exporter prom;
  prom.add(bus, "shop")
      .type<order_placed>("order_placed")
      .type<payment_received>("payment_received");
  prom.add(*rec, "orders_log");

  std::atomic<std::uint64_t> revenue{0};  // two workers deliver at once (one lane each)
  sluice::subscription on_order = bus.subscribe<order_placed>(
      [&revenue](const order_placed& o) { revenue.fetch_add(o.cents, std::memory_order_relaxed); });
  // Payments have no subscriber: they show as unrouted.

  // The socket first, so that a port in use is reported before any work.
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  const int yes = 1;
  socklen_t len = sizeof addr;
  if (listener < 0 || ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes) != 0 ||
      ::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listener, 16) != 0 ||
      ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    std::fprintf(stderr, "metrics_server: cannot listen on 127.0.0.1:%lld: %s\n", port,
                 std::strerror(errno));
    return 3;
  }
  std::printf("listening on http://127.0.0.1:%u/metrics\n", ntohs(addr.sin_port));
  std::fflush(stdout);

  bus.run(2);
  {
    sluice::producer p = bus.make_producer();
    for (long long i = 0; i < events; ++i) {
      const auto id = static_cast<std::uint64_t>(i);
      // Blocking policy (the default): a full lane waits, nothing is lost.
      p.publish(order_placed{id, 1000 + static_cast<std::uint64_t>(i % 500)}, id);
      if (i % 2 == 1) p.publish(payment_received{id, 1000}, id);
    }
  }
  if (!bus.wait_idle(std::chrono::seconds(60))) {
    std::fprintf(stderr, "metrics_server: the bus did not become idle\n");
    return 1;
  }
  const sluice::type_stats o = bus.stats<order_placed>();
  const sluice::type_stats pay = bus.stats<payment_received>();
  std::printf("published %llu orders, %llu payments; delivered %llu orders worth %llu cents\n",
              static_cast<unsigned long long>(o.published),
              static_cast<unsigned long long>(pay.published),
              static_cast<unsigned long long>(o.delivered),
              static_cast<unsigned long long>(revenue.load()));
  const sluice::type_latency l = bus.latency<order_placed>();
  std::printf("orders timed: %llu; queue wait p50 %llu ns, p99 %llu ns; handler p50 %llu ns\n",
              static_cast<unsigned long long>(l.queue_wait.count()),
              static_cast<unsigned long long>(l.queue_wait.percentile(0.5)),
              static_cast<unsigned long long>(l.queue_wait.percentile(0.99)),
              static_cast<unsigned long long>(l.handler.percentile(0.5)));
  if (tracer) {
    std::string error;
    if (!tracer->write(trace_file, &error)) {
      std::fprintf(stderr, "metrics_server: %s\n", error.c_str());
      return 4;
    }
    std::printf("trace: %zu records (%llu lost) written to %s\n", tracer->size(),
                static_cast<unsigned long long>(tracer->lost()), trace_file.c_str());
  }
  std::fflush(stdout);

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(serve_seconds);
  while (g_stop == 0 && (serve_seconds == 0 || std::chrono::steady_clock::now() < end)) {
    pollfd p{listener, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    const int fd = ::accept(listener, nullptr, nullptr);
    if (fd < 0) continue;
    answer(fd, prom);
    ::close(fd);
  }
  ::close(listener);
  prom.remove(bus);
  prom.remove(*rec);
  bus.stop();
  return 0;
}
