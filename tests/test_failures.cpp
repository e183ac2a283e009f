// Contract 7, failures: a handler's failure is caught, counted and reported;
// it never stops other handlers, never empties a queue, never kills a worker.
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <mutex>
#include <sluice/sluice.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

namespace {
struct work {
  int n;
};
}  // namespace

TEST_CASE("a throwing handler does not stop the others or the queue", "[failures]") {
  test::watchdog wd(std::chrono::seconds(30), "throwing handler");
  std::mutex m;
  std::vector<std::string> messages;
  sluice::bus bus{sluice::bus_options{}.with_on_failure([&](const sluice::failure_info& f) {
    std::lock_guard<std::mutex> lock(m);
    if (f.kind == sluice::failure_kind::exception && f.event != nullptr)
      messages.emplace_back(f.message);
  })};
  std::atomic<int> first{0}, second{0};
  auto a = bus.subscribe<work>([&](const work& w) {
    ++first;
    if (w.n % 2 == 0) throw std::runtime_error("even " + std::to_string(w.n));
  });
  auto b = bus.subscribe<work>([&](const work&) { ++second; });
  REQUIRE(bus.run(2));
  auto p = bus.make_producer();
  for (int i = 0; i < 1000; ++i) p.publish(work{i}, static_cast<sluice::key_type>(i % 7));
  bus.stop();
  CHECK(first.load() == 1000);
  CHECK(second.load() == 1000);
  const auto st = bus.stats<work>();
  CHECK(st.failed == 500);
  CHECK(st.delivered == 1000);
  CHECK(st.handler_calls == 2000);
  CHECK(st.balanced());
  REQUIRE(messages.size() == 500);
  CHECK(messages[0].rfind("even ", 0) == 0);
}

TEST_CASE("a throw that is not a std::exception is caught too", "[failures]") {
  sluice::bus bus;
  auto a = bus.subscribe<work>([](const work&) { throw 42; });
  CHECK(bus.dispatch(work{1}) == 1);
  bus.publish(work{1});
  bus.poll();
  CHECK(bus.stats<work>().failed == 2);
}

TEST_CASE("a handler reports failure by returning an outcome", "[failures]") {
  int code = 0;
  std::string message;
  sluice::bus bus{sluice::bus_options{}.with_on_failure([&](const sluice::failure_info& f) {
    CHECK(f.kind == sluice::failure_kind::outcome);
    code = f.code;
    message = f.message;
  })};
  int calls = 0;
  auto a = bus.subscribe<work>([&](const work& w) {
    ++calls;
    return w.n < 0 ? sluice::outcome::failure(7, "negative") : sluice::outcome::success();
  });
  bus.dispatch(work{1});
  CHECK(bus.stats<work>().failed == 0);
  bus.dispatch(work{-1});
  CHECK(bus.stats<work>().failed == 1);
  CHECK(code == 7);
  CHECK(message == "negative");
  CHECK(calls == 2);
  CHECK_FALSE(sluice::outcome::failure(0).ok());  // a failure is never "ok"
}

TEST_CASE("an observer that throws is contained", "[failures]") {
  sluice::bus bus{sluice::bus_options{}.with_on_failure(
      [](const sluice::failure_info&) { throw std::logic_error("observer"); })};
  int after = 0;
  auto a = bus.subscribe<work>([](const work&) { throw std::runtime_error("x"); });
  auto b = bus.subscribe<work>([&](const work&) { ++after; });
  bus.publish(work{1});
  bus.poll();
  CHECK(after == 1);
  CHECK(bus.stats<work>().failed == 1);
}

namespace {
struct fragile {  // boxed (larger than the inline size); its copy may throw
  static inline int copies_left = 0;
  char bytes[SLUICE_INLINE_SIZE + 16] = {};
  fragile() = default;
  fragile(const fragile&) {
    if (copies_left-- <= 0) throw std::runtime_error("copy failed");
  }
  fragile(fragile&&) noexcept {}
  fragile& operator=(const fragile&) = default;
  ~fragile() = default;
};
}  // namespace

TEST_CASE("a throwing event copy loses nothing already accepted", "[failures]") {
  test::watchdog wd(std::chrono::seconds(30), "throwing copy");
  sluice::bus bus{sluice::bus_options{}.with_lanes(1)};
  int calls = 0;
  auto s = bus.subscribe<fragile>([&](const fragile&) { ++calls; });
  auto p = bus.make_producer();
  const fragile one;
  fragile::copies_left = 1;
  CHECK(p.publish(one) == sluice::publish_result::ok);
  CHECK_THROWS_AS(p.publish(one), std::runtime_error);  // the place is given back
  const std::vector<fragile> many(5);
  fragile::copies_left = 2;
  CHECK_THROWS_AS(p.publish_bulk(many.begin(), many.end()), std::runtime_error);
  fragile::copies_left = 100;
  CHECK(p.publish_bulk(many.begin(), many.end()) == 5);
  REQUIRE(bus.stop());  // would hang on a leaked reservation
  const auto st = bus.stats<fragile>();
  CHECK(st.balanced());
  CHECK(st.delivered == 8);  // 1 single, 2 before the throwing element, 5 in bulk
  CHECK(static_cast<std::uint64_t>(calls) == st.delivered);
  CHECK(bus.queued() == 0);
}

// A handler may end its own thread (pthread_exit, or pthread_cancel at a
// cancellation point). glibc does that by unwinding the stack with a "forced
// unwind" that a catch-all must let through: the process goes on, the thread's
// tracking slot is left clean (no reset waits for a dead thread), the lane is
// unlocked, and the rest of the batch stays queued for the next drainer.
namespace {
struct ender {
  int n;
};
struct dispatch_args {
  sluice::bus* bus;
};
void* dispatch_and_exit(void* p) {
  auto* a = static_cast<dispatch_args*>(p);
  a->bus->dispatch(ender{1});
  return nullptr;  // not reached: the handler ends the thread
}
}  // namespace

TEST_CASE("a handler that calls pthread_exit ends only its own thread (dispatch)",
          "[failures][thread_exit]") {
  test::watchdog wd(std::chrono::seconds(30), "pthread_exit in dispatch");
  sluice::bus bus;
  std::atomic<int> calls{0};
  auto quitter = bus.subscribe<ender>([&](const ender&) {
    ++calls;
    pthread_exit(nullptr);
  });
  dispatch_args args{&bus};
  pthread_t t;
  REQUIRE(pthread_create(&t, nullptr, &dispatch_and_exit, &args) == 0);
  REQUIRE(pthread_join(t, nullptr) == 0);
  CHECK(calls.load() == 1);
  // The dead thread's slot shows nothing: this reset does not wait for it.
  quitter.reset();
  int later = 0;
  auto sub = bus.subscribe<ender>([&](const ender&) { ++later; });
  CHECK(bus.dispatch(ender{2}) == 1);
  CHECK(later == 1);
}

namespace {
struct cause {
  int n;
};
struct effect {
  int n;
};
void* dispatch_cause_and_exit(void* p) {
  static_cast<dispatch_args*>(p)->bus->dispatch(cause{1});
  return nullptr;  // not reached: the output's handler ends the thread
}
}  // namespace

TEST_CASE(
    "a thread that ends in the handler of a transform's output leaves the output's counts "
    "balanced",
    "[failures][thread_exit]") {
  test::watchdog wd(std::chrono::seconds(30), "pthread_exit in a transform's output handler");
  sluice::bus bus;
  bus.stages<cause>().transform([](const cause& c) { return effect{c.n}; });
  std::atomic<int> calls{0};
  auto sub = bus.subscribe<effect>([&](const effect& e) {
    ++calls;
    if (e.n == 1) pthread_exit(nullptr);
  });
  dispatch_args args{&bus};
  pthread_t t;
  REQUIRE(pthread_create(&t, nullptr, &dispatch_cause_and_exit, &args) == 0);
  REQUIRE(pthread_join(t, nullptr) == 0);
  // Made in the thread's count cell, ended by the unwind in the shared counts.
  sluice::type_stats st = bus.stats<effect>();
  CHECK(st.published == 1);
  CHECK(st.delivered == 1);
  CHECK(st.handler_calls == 1);
  CHECK(st.balanced());
  CHECK(bus.dispatch(cause{2}) == 0);  // dispatch counts only the input's own handlers
  st = bus.stats<effect>();
  CHECK(calls.load() == 2);
  CHECK(st.published == 2);
  CHECK(st.delivered == 2);
  CHECK(st.balanced());
}

namespace {
struct staged_end {
  int n;
};
void* dispatch_staged_and_exit(void* p) {
  static_cast<dispatch_args*>(p)->bus->dispatch(staged_end{1});
  return nullptr;  // not reached: a stage or the handler ends the thread
}
}  // namespace

TEST_CASE(
    "a thread that ends in a stage, or in the handler after a chain, leaves no handler "
    "announced",
    "[failures][thread_exit][pipeline]") {
  test::watchdog wd(std::chrono::seconds(30), "pthread_exit in a stage chain");
  const int where = GENERATE(0, 1);  // 0: in a tap, 1: in the handler after the chain
  sluice::bus bus;
  std::atomic<int> taps{0};
  bus.stages<staged_end>()
      .tap([&](const staged_end& e) {
        ++taps;
        if (e.n == 1 && where == 0) pthread_exit(nullptr);
      })
      .transform([](const staged_end& e) { return staged_end{e.n * 10}; });
  std::atomic<int> calls{0};
  auto sub = bus.subscribe<staged_end>([&](const staged_end& e) {
    ++calls;
    if (e.n == 10 && where == 1) pthread_exit(nullptr);
  });
  dispatch_args args{&bus};
  pthread_t t;
  REQUIRE(pthread_create(&t, nullptr, &dispatch_staged_and_exit, &args) == 0);
  REQUIRE(pthread_join(t, nullptr) == 0);
  CHECK(taps.load() == 1);
  CHECK(calls.load() == where);
  // The dead thread's slot shows no handler: this reset does not wait for it.
  sub.reset();
  int later = 0;
  auto again = bus.subscribe<staged_end>([&](const staged_end& e) { later = e.n; });
  CHECK(bus.dispatch(staged_end{2}) == 1);
  CHECK(later == 20);
  CHECK(taps.load() == 2);
}

TEST_CASE("a worker whose handler calls pthread_exit leaves its batch to the others",
          "[failures][thread_exit]") {
  test::watchdog wd(std::chrono::seconds(30), "pthread_exit in a worker");
  sluice::bus bus{sluice::bus_options{}.with_lanes(1)};
  std::vector<int> seen;
  std::mutex m;
  std::atomic<bool> ended{false};
  auto sub = bus.subscribe<work>([&](const work& w) {
    {
      std::lock_guard<std::mutex> lock(m);
      seen.push_back(w.n);
    }
    if (w.n == 3 && !ended.exchange(true)) pthread_exit(nullptr);
  });
  auto p = bus.make_producer();
  for (int i = 0; i < 10; ++i) REQUIRE(p.publish(work{i}) == sluice::publish_result::ok);
  REQUIRE(bus.run(1));
  REQUIRE(test::wait_until([&] { return ended.load(); }));
  // The only worker is gone; what it had not delivered waits in the lane.
  p = sluice::producer{};
  bus.stop();  // delivers the rest on this thread
  REQUIRE(seen.size() == 10);
  for (int i = 0; i < 10; ++i) CHECK(seen[static_cast<std::size_t>(i)] == i);
  const auto st = bus.stats<work>();
  CHECK(st.delivered == 10);
  CHECK(st.balanced());
}

TEST_CASE("a polling thread cancelled inside a handler loses nothing", "[failures][thread_exit]") {
  test::watchdog wd(std::chrono::seconds(30), "pthread_cancel in poll");
  sluice::bus bus{sluice::bus_options{}.with_lanes(1)};
  std::atomic<int> calls{0};
  std::atomic<bool> inside{false};
  auto sub = bus.subscribe<work>([&](const work& w) {
    ++calls;
    if (w.n == 2) {
      inside = true;
      for (;;) ::usleep(1000);  // a cancellation point, until cancelled
    }
  });
  auto p = bus.make_producer();
  for (int i = 0; i < 8; ++i) REQUIRE(p.publish(work{i}) == sluice::publish_result::ok);
  std::thread t([&] { bus.poll(); });
  REQUIRE(test::wait_until([&] { return inside.load(); }));
  pthread_t native = t.native_handle();
  REQUIRE(pthread_cancel(native) == 0);
  t.join();
  CHECK(calls.load() == 3);
  CHECK(bus.poll() == 5);  // the lane is unlocked and the rest is still in order
  CHECK(calls.load() == 8);
  const auto st = bus.stats<work>();
  CHECK(st.delivered == 8);
  CHECK(bus.queued() == 0);
}

TEST_CASE("a failure report carries the event's metadata: who published it, with which key",
          "[failures]") {
  std::vector<sluice::metadata> seen;
  std::vector<bool> had_meta;
  sluice::bus bus{sluice::bus_options{}.with_on_failure([&](const sluice::failure_info& f) {
    had_meta.push_back(f.meta != nullptr);
    if (f.meta != nullptr) seen.push_back(*f.meta);
  })};
  auto a = bus.subscribe<work>([](const work& w) {
    return w.n < 0 ? sluice::outcome::failure(1, "negative") : sluice::outcome::success();
  });
  auto p = bus.make_producer();
  p.publish(work{1}, 5);
  p.publish(work{-2}, 9);
  const std::uint64_t failed_seq = p.last_sequence();
  p.publish(work{-3}, 9);  // one key: one lane, in order
  const std::uint64_t last = p.last_sequence();
  bus.poll();
  bus.dispatch(work{-4});
  REQUIRE(had_meta == std::vector<bool>{true, true, true});
  REQUIRE(seen.size() == 3);
  CHECK(seen[0].producer == p.id());
  CHECK(seen[0].sequence == failed_seq);
  CHECK(seen[0].has_key);
  CHECK(seen[0].key == 9);
  CHECK(seen[1].sequence == last);
  CHECK(last == failed_seq + 1);
  CHECK(seen[1].key == 9);
  CHECK(seen[2].producer == 0);  // dispatched: no metadata of its own
  CHECK(seen[2].sequence == 0);
}
