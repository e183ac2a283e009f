// Handler tracking (detail/tracking.hpp) when its fence fails, and a bus
// across fork(): the paths where reset() could return too early or never.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <csignal>
#include <sluice/sluice.hpp>
#include <thread>

#include "support.hpp"

namespace {
struct ping {
  int n;
};
struct warm {
  int n;
};

long failing_membarrier(int, unsigned) {
  errno = EPERM;  // what a seccomp filter installed after start-up would answer
  return -1;
}

// A handler that blocks until let go, so that a reset() can be caught waiting.
struct gate {
  std::atomic<bool> entered{false}, open{false}, finished{false};
  void pass() {
    entered = true;
    while (!open.load()) std::this_thread::yield();
    finished = true;
  }
};
}  // namespace

TEST_CASE("membarrier failing after start-up: readers are fenced, reset still waits",
          "[tracking][membarrier]") {
  test::watchdog wd(std::chrono::seconds(60), "membarrier failure");
  using sluice::detail::fence_mode;
  sluice::bus bus{sluice::bus_options{}.with_lanes(1)};
  gate g;
  auto sub = bus.subscribe<ping>([&](const ping&) { g.pass(); });
  (void)bus.dispatch(warm{0});  // decides the fence mode (first delivery)
  const fence_mode before = sluice::detail::current_fence_mode();
  if (before != fence_mode::asymmetric) {
    WARN(
        "membarrier is not in use here (ThreadSanitizer, or the kernel refuses it): "
        "readers are fenced already; checking that nothing changes");
  }
  sluice::detail::process().membarrier.store(&failing_membarrier);
  REQUIRE(bus.run(1));
  bus.publish(ping{1});
  REQUIRE(test::wait_until([&] { return g.entered.load(); }));
  std::thread opener([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    g.open = true;
  });
  sub.reset();  // its fence fails: falls back, and still waits for the handler
  CHECK(g.finished.load());
  opener.join();
  const fence_mode after = sluice::detail::current_fence_mode();
  if (before == fence_mode::asymmetric) {
    CHECK(after == fence_mode::degraded);
    CHECK_FALSE(sluice::detail::asymmetric_mode());  // later deliveries fence themselves
  } else {
    CHECK(after == before);
  }
  // Subscribing and unsubscribing go on working in the fallback mode.
  int calls = 0;
  for (int i = 0; i < 50; ++i) {
    auto s = bus.subscribe<ping>([&](const ping&) { ++calls; });
    bus.publish(ping{i});
    REQUIRE(bus.wait_idle(std::chrono::seconds(30)));
  }
  CHECK(calls == 50);
  sluice::detail::process().membarrier.store(nullptr);
  bus.stop();
}

TEST_CASE("a bus made before fork() is inert in the child, and reset() there never waits",
          "[tracking][fork]") {
  test::watchdog wd(std::chrono::seconds(60), "fork");
  sluice::bus bus{sluice::bus_options{}.with_lanes(2)};
  gate g;
  std::atomic<int> calls{0};
  auto blocked = bus.subscribe<ping>([&](const ping& p) {
    ++calls;
    if (p.n == 1) g.pass();
  });
  REQUIRE(bus.run(1));
  bus.publish(ping{1}, 1);
  REQUIRE(test::wait_until([&] { return g.entered.load(); }));  // a worker is in the handler

  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // The child: the worker does not exist here. Nothing may hang (the alarm
    // kills the child if something does) and nothing may be delivered twice.
    ::alarm(20);
    int bad = 0;
    blocked.reset();  // would wait for the parent's worker for ever
    if (bus.publish(ping{2}) != sluice::publish_result::stopped) bad |= 1;
    if (bus.poll() != 0) bad |= 2;
    if (bus.dispatch(ping{3}) != 0) bad |= 4;
    if (bus.subscribe<ping>([](const ping&) {}).active()) bad |= 8;
    if (bus.wait_idle(std::chrono::seconds(1))) bad |= 16;
    if (bus.stop()) bad |= 32;
    {
      // A bus made in the child works as any other.
      sluice::bus fresh;
      int n = 0;
      auto s = fresh.subscribe<ping>([&](const ping&) { ++n; });
      fresh.publish(ping{4});
      fresh.poll();
      s.reset();
      if (n != 1) bad |= 64;
    }
    ::_exit(bad);  // the parent's bus is destroyed by the parent
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  INFO("child status " << status);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);

  // The parent goes on as if nothing happened.
  g.open = true;
  bus.publish(ping{5}, 1);
  REQUIRE(bus.wait_idle(std::chrono::seconds(30)));
  CHECK(calls.load() == 2);
  blocked.reset();
  bus.stop();
  CHECK(bus.stats<ping>().balanced());
}

TEST_CASE("destroying a parent's bus with a parked worker in a fork() child returns",
          "[tracking][fork]") {
  test::watchdog wd(std::chrono::seconds(60), "fork destroy parked");
  auto bus = std::make_unique<sluice::bus>(sluice::bus_options{}.with_lanes(1));
  REQUIRE(bus->run(1, std::chrono::microseconds(0)));  // no idle spin: it parks at once
  sluice::detail::bus_core& core = sluice::detail::bus_access::core(*bus);
  REQUIRE(test::wait_until([&] { return core.parked_workers() == 1; }));
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::alarm(20);  // a hang ends the child by SIGALRM
    bus.reset();  // its condition variable counts the parent's parked worker
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  INFO("child status " << status);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  bus.reset();
}

TEST_CASE("destroying a parent's bus in a fork() child returns at once", "[tracking][fork]") {
  test::watchdog wd(std::chrono::seconds(60), "fork destroy");
  auto bus = std::make_unique<sluice::bus>(sluice::bus_options{}.with_lanes(1));
  gate g;
  sluice::subscription sub = bus->subscribe<ping>([&](const ping&) { g.pass(); });
  REQUIRE(bus->run(1));
  bus->publish(ping{1});
  REQUIRE(test::wait_until([&] { return g.entered.load(); }));
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::alarm(20);
    bus.reset();  // no join of a worker that is not here, no drain of the parent's events
    sub.reset();  // the subscription outlives the bus: still nothing to wait for
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  g.open = true;
  sub.reset();
  bus.reset();
}
