// The dispatch-only dispatcher (dispatcher.hpp): the handler contracts of a
// bus without its lanes. This file includes only <sluice/dispatcher.hpp> of
// sluice, so it also checks that the header stands alone.
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <random>
#include <sluice/dispatcher.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

namespace {
struct moved {
  int x, y;
};
struct hit {
  int damage;
};
struct resource {
  std::atomic<int> uses{0};
  int payload = 12345;
};
}  // namespace

TEST_CASE("dispatcher: handlers run now, in the order they subscribed", "[dispatcher]") {
  sluice::dispatcher d;
  std::vector<std::string> seen;
  auto a = d.subscribe<moved>([&](const moved& m) { seen.push_back("a" + std::to_string(m.x)); });
  auto b = d.subscribe([&](const moved& m) { seen.push_back("b" + std::to_string(m.y)); });
  auto c = d.subscribe([&](const hit& h) { seen.push_back("c" + std::to_string(h.damage)); });
  CHECK(d.dispatch(moved{1, 2}) == 2);
  CHECK(d.dispatch(hit{7}) == 1);
  CHECK(seen == std::vector<std::string>{"a1", "b2", "c7"});
  b.reset();
  CHECK(d.dispatch(moved{3, 4}) == 1);
  CHECK(seen.back() == "a3");
  struct unheard {
    int v;
  };
  CHECK(d.dispatch(unheard{1}) == 0);  // a type nobody subscribed to
}

TEST_CASE("dispatcher: an event_view's metadata is all zero", "[dispatcher]") {
  sluice::dispatcher d;
  sluice::metadata got;
  got.sequence = 99;
  got.producer = 5;
  int x = 0;
  auto s = d.subscribe([&](sluice::event_view<moved> v) {
    got = v.meta();
    x = v->x;
  });
  CHECK(d.dispatch(moved{8, 0}) == 1);
  CHECK(x == 8);
  CHECK(got.sequence == 0);
  CHECK(got.producer == 0);
  CHECK_FALSE(got.has_key);
}

TEST_CASE("dispatcher: a failing handler is counted and reported, the others still run",
          "[dispatcher]") {
  std::vector<sluice::failure_kind> kinds;
  std::vector<std::string> messages;
  sluice::dispatcher d([&](const sluice::failure_info& f) {
    kinds.push_back(f.kind);
    messages.emplace_back(f.message);
  });
  int after = 0;
  auto thrower = d.subscribe([](const moved& m) {
    if (m.x < 0) throw std::runtime_error("negative x");
  });
  auto refuser = d.subscribe([](const moved& m) {
    return m.y < 0 ? sluice::outcome::failure(7, "negative y") : sluice::outcome::success();
  });
  auto counter = d.subscribe([&](const moved&) { ++after; });
  CHECK(d.dispatch(moved{1, 1}) == 3);
  CHECK(d.failures<moved>() == 0);
  CHECK(d.dispatch(moved{-1, -1}) == 3);
  CHECK(after == 2);
  CHECK(d.failures<moved>() == 2);
  REQUIRE(kinds.size() == 2);
  CHECK(kinds[0] == sluice::failure_kind::exception);
  CHECK(messages[0] == "negative x");
  CHECK(kinds[1] == sluice::failure_kind::outcome);
  CHECK(messages[1] == "negative y");
  CHECK(d.failures<hit>() == 0);
}

namespace {
// An observer that says it is empty (as an empty std::function does), and
// counts the calls it should not get.
struct empty_observer {
  int* calls;
  explicit operator bool() const noexcept { return false; }
  void operator()(const sluice::failure_info&) const noexcept { ++*calls; }
};
}  // namespace

TEST_CASE("dispatcher: an empty observer observes nothing, a mutable one is called",
          "[dispatcher]") {
  int empty_calls = 0;
  {
    sluice::dispatcher d{empty_observer{&empty_calls}};
    auto s = d.subscribe([](const moved&) { return sluice::outcome::failure(1, "no"); });
    CHECK(d.dispatch(moved{1, 1}) == 1);
    CHECK(d.failures<moved>() == 1);  // counted
  }
  CHECK(empty_calls == 0);  // and not observed
  {
    sluice::dispatcher d{std::function<void(const sluice::failure_info&)>{}};
    auto s = d.subscribe([](const moved&) { return sluice::outcome::failure(1, "no"); });
    CHECK(d.dispatch(moved{1, 1}) == 1);
    CHECK(d.failures<moved>() == 1);
  }
  int seen = 0;
  sluice::dispatcher d{[n = 0, &seen](const sluice::failure_info&) mutable { seen = ++n; }};
  auto s = d.subscribe([](const moved&) { return sluice::outcome::failure(1, "no"); });
  d.dispatch(moved{1, 1});
  d.dispatch(moved{1, 1});
  CHECK(seen == 2);  // the observer's own state went on
}

TEST_CASE("dispatcher: handlers may dispatch, subscribe and reset", "[dispatcher][reentrancy]") {
  sluice::dispatcher d;
  std::vector<int> order;
  sluice::subscription late;
  sluice::subscription self;
  int self_calls = 0;
  auto outer = d.subscribe([&](const moved& m) {
    order.push_back(m.x);
    if (m.x < 3) d.dispatch(moved{m.x + 1, 0});  // nested, depth-first
    if (m.x == 1 && !late) late = d.subscribe([&](const hit&) { order.push_back(100); });
  });
  self = d.subscribe([&](const hit&) {
    ++self_calls;
    self.reset();  // does not wait for itself
  });
  CHECK(d.dispatch(moved{1, 0}) == 1);
  CHECK(order == std::vector<int>{1, 2, 3});
  CHECK(d.dispatch(hit{1}) == 2);  // self (resets itself) and the late one
  CHECK(d.dispatch(hit{2}) == 1);
  CHECK(self_calls == 1);
  CHECK(order == std::vector<int>{1, 2, 3, 100, 100});
}

TEST_CASE("dispatcher: nesting deeper than SLUICE_MAX_DEPTH is refused and reported",
          "[dispatcher][reentrancy]") {
  int too_deep = 0;
  sluice::dispatcher d([&](const sluice::failure_info& f) {
    too_deep += f.kind == sluice::failure_kind::too_deep ? 1 : 0;
  });
  int calls = 0;
  auto s = d.subscribe([&](const moved& m) {
    ++calls;
    d.dispatch(moved{m.x + 1, 0});  // for ever, but for the limit
  });
  CHECK(d.dispatch(moved{0, 0}) == 1);
  CHECK(calls == SLUICE_MAX_DEPTH);
  CHECK(too_deep == 1);
  CHECK(d.failures<moved>() == 1);
}

TEST_CASE("dispatcher: reset waits for a handler running on another thread",
          "[dispatcher][lifetime]") {
  test::watchdog wd(std::chrono::seconds(60), "dispatcher reset waits");
  sluice::dispatcher d;
  std::atomic<bool> entered{false}, release{false}, finished{false};
  auto res = std::make_unique<resource>();
  resource* raw = res.get();
  auto sub = d.subscribe([&, raw](const moved&) {
    entered = true;
    while (!release.load()) std::this_thread::yield();
    raw->uses += raw->payload == 12345 ? 1 : 1000;  // ASan sees a use after free
    finished = true;
  });
  std::thread caller([&] { d.dispatch(moved{1, 1}); });
  const bool in_handler = test::wait_until([&] { return entered.load(); });
  std::atomic<bool> reset_done{false};
  std::thread resetter([&] {
    sub.reset();
    reset_done = true;
  });
  // The reset cannot return while the handler runs: it returns only after
  // the release, and then the handler has finished.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK_FALSE(reset_done.load());
  release = true;
  resetter.join();
  CHECK(finished.load());
  res.reset();
  caller.join();
  REQUIRE(in_handler);
  CHECK(d.dispatch(moved{2, 2}) == 0);
}

TEST_CASE("dispatcher: dispatch, subscribe and reset on many threads at once",
          "[dispatcher][lifetime][stress]") {
  test::watchdog wd(std::chrono::seconds(90), "dispatcher stress");
  sluice::dispatcher d;
  std::atomic<bool> stop{false};
  std::atomic<long> late_calls{0}, calls{0};
  auto steady = d.subscribe([&](const moved&) { calls.fetch_add(1, std::memory_order_relaxed); });
  std::vector<std::thread> callers;
  std::atomic<long> returned{0};
  for (int t = 0; t < 3; ++t)
    callers.emplace_back([&] {
      long n = 0;
      while (!stop.load(std::memory_order_relaxed)) n += static_cast<long>(d.dispatch(moved{1, 1}));
      returned.fetch_add(n);
    });
  std::mt19937 rng(11);
  for (int round = 0; round < 300; ++round) {
    auto res = std::make_unique<resource>();
    auto closed = std::make_shared<std::atomic<bool>>(false);
    resource* raw = res.get();
    auto sub = d.subscribe([raw, closed, &late_calls, &calls](const moved&) {
      if (closed->load()) ++late_calls;
      raw->uses.fetch_add(1, std::memory_order_relaxed);
      calls.fetch_add(1, std::memory_order_relaxed);
      if (closed->load()) ++late_calls;  // still running when reset() returned
    });
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 300));
    sub.reset();
    closed->store(true);
    res.reset();  // ASan reports any later call as a use after free
  }
  stop = true;
  for (auto& t : callers) t.join();
  CHECK(late_calls.load() == 0);
  CHECK(returned.load() == calls.load());  // every call counted by dispatch was made
  CHECK(calls.load() > 0);
}

TEST_CASE("dispatcher: a subscription may outlive its dispatcher", "[dispatcher][lifetime]") {
  sluice::subscription sub;
  auto alive = std::make_shared<int>(1);
  {
    sluice::dispatcher d;
    sub = d.subscribe([keep = alive](const moved&) {});
    CHECK(alive.use_count() == 2);
    CHECK(sub.active());
  }
  CHECK(alive.use_count() == 1);  // the dispatcher destroyed the handler
  CHECK_FALSE(sub.active());
  sub.reset();  // harmless
}
