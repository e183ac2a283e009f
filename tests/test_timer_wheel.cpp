// The timing wheel that delayed deliveries build on: every value comes out
// exactly once, at its tick (or at once when scheduled late), in the order
// of ticks and, within a tick, of scheduling; a full pool refuses without
// touching the value; nothing leaks. Checked against a plain ordered model
// under random schedules and advances, delays beyond the wheel's reach
// included.
#include <catch2/catch.hpp>
#include <cstdint>
#include <map>
#include <random>
#include <sluice/detail/timer_wheel.hpp>
#include <utility>
#include <vector>

namespace {

// A move-only value that counts the live ones (leaks and double destroys show).
struct tracked {
  static inline long live = 0;
  std::uint64_t id = 0;
  bool moved_from = false;
  explicit tracked(std::uint64_t i) noexcept : id(i) { ++live; }
  tracked(tracked&& o) noexcept : id(o.id) {
    o.moved_from = true;
    ++live;
  }
  tracked& operator=(tracked&&) = delete;
  ~tracked() { --live; }
};

using wheel = sluice::detail::timer_wheel<tracked>;

// The model: values ordered by (the tick they come out at, scheduling order).
struct model {
  std::map<std::pair<std::uint64_t, std::uint64_t>, std::uint64_t> pending;  // -> id
  std::uint64_t seq = 0;
  void schedule(std::uint64_t due, std::uint64_t now, std::uint64_t id) {
    pending.emplace(std::make_pair(due > now ? due : now, seq++), id);
  }
  // Values due by `to`, in order, removed.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> take(std::uint64_t to) {
    std::vector<std::pair<std::uint64_t, std::uint64_t>> out;  // (tick, id)
    while (!pending.empty() && pending.begin()->first.first <= to) {
      out.emplace_back(pending.begin()->first.first, pending.begin()->second);
      pending.erase(pending.begin());
    }
    return out;
  }
};

void run_random(std::uint64_t seed, std::uint64_t start, std::uint64_t reach) {
  std::mt19937_64 rng(seed);
  model m;
  std::vector<std::uint64_t> due_of;
  {
    wheel w(512, start);
    REQUIRE(w.valid());
    std::uint64_t now = start;
    for (int step = 0; step < 400; ++step) {
      // Schedule a few: mostly near, some far, some already due.
      const int k = static_cast<int>(rng() % 6);
      for (int i = 0; i < k && w.size() < w.capacity(); ++i) {
        std::uint64_t due;
        const unsigned kind = static_cast<unsigned>(rng() % 10);
        if (kind == 0) {
          due = now - (rng() % (now - start + 1));  // already due
        } else if (kind < 3) {
          due = now + rng() % reach;  // far
        } else {
          due = now + rng() % 300;  // near, many in the same tick
        }
        const std::uint64_t id = due_of.size();
        due_of.push_back(due);
        REQUIRE(w.schedule(due, tracked(id)));
        m.schedule(due, now, id);
      }
      // next_due is never after the first value due, nor before now.
      if (!m.pending.empty()) {
        const std::uint64_t first = m.pending.begin()->first.first;
        CHECK(w.next_due() <= first);
        CHECK(w.next_due() >= w.now());
      } else {
        CHECK(w.next_due() == wheel::none_due);
      }
      // Advance by a random amount: a tick, a few hundred, or a long jump.
      const unsigned how = static_cast<unsigned>(rng() % 8);
      const std::uint64_t to = now + (how == 0  ? reach / 2 + rng() % reach
                                      : how < 3 ? 1
                                                : rng() % 700);
      std::vector<std::pair<std::uint64_t, std::uint64_t>> got;
      w.advance(to, [&](tracked&& v, std::uint64_t due) {
        CHECK(!v.moved_from);
        CHECK(due == due_of[v.id]);
        got.emplace_back(w.now(), v.id);
      });
      now = to;
      CHECK(w.now() == to);
      const auto want = m.take(to);
      REQUIRE(got == want);
      CHECK(w.size() == m.pending.size());
    }
    // What is left comes out, by advancing far enough (the last due) ...
    std::uint64_t last = now;
    for (const auto& p : m.pending) last = p.first.first > last ? p.first.first : last;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> got;
    w.advance(last, [&](tracked&& v, std::uint64_t) { got.emplace_back(w.now(), v.id); });
    REQUIRE(got == m.take(last));
    CHECK(w.empty());
  }
  CHECK(tracked::live == 0);
}

}  // namespace

TEST_CASE("timer wheel: values come out once, at their tick, in order", "[timer]") {
  for (std::uint64_t seed = 1; seed <= 12; ++seed) {
    // Delays within the first levels, across all of them, and beyond the
    // wheel's reach (2^36 ticks); starting at 0 and just before a top-level
    // boundary.
    run_random(seed, 0, 5000);
    run_random(seed + 100, (std::uint64_t{1} << 36) - 777, std::uint64_t{1} << 30);
    run_random(seed + 200, 12345, std::uint64_t{1} << 38);
  }
}

TEST_CASE("timer wheel: the same tick keeps the order values were scheduled in", "[timer]") {
  wheel w(64, 0);
  // One value far ahead first (held in a high level), then more for the same
  // tick as time comes closer (held in lower levels).
  const std::uint64_t due = 3 * 4096 + 5 * 64 + 7;
  REQUIRE(w.schedule(due, tracked(0)));
  std::vector<std::uint64_t> out;
  auto collect = [&](tracked&& v, std::uint64_t) { out.push_back(v.id); };
  w.advance(3 * 4096 + 1, collect);
  REQUIRE(w.schedule(due, tracked(1)));
  w.advance(due - 3, collect);
  REQUIRE(w.schedule(due, tracked(2)));
  REQUIRE(w.schedule(due - 1, tracked(3)));  // an earlier tick comes first
  CHECK(out.empty());
  w.advance(due, collect);
  CHECK(out == std::vector<std::uint64_t>{3, 0, 1, 2});
}

TEST_CASE("timer wheel: a full pool refuses, leaves the value, and takes more once values leave",
          "[timer]") {
  {
    wheel w(3, 10);
    CHECK(w.capacity() == 3);
    for (std::uint64_t i = 0; i < 3; ++i) REQUIRE(w.schedule(20 + i, tracked(i)));
    tracked extra(99);
    CHECK_FALSE(w.schedule(15, std::move(extra)));
    CHECK_FALSE(extra.moved_from);
    CHECK(w.size() == 3);
    std::size_t n = w.advance(20, [](tracked&&, std::uint64_t) {});
    CHECK(n == 1);
    CHECK(w.schedule(15, std::move(extra)));  // due already: out at the next advance
    std::vector<std::uint64_t> out;
    w.advance(20, [&](tracked&& v, std::uint64_t) { out.push_back(v.id); });
    CHECK(out == std::vector<std::uint64_t>{99});
    // `max` stops early; the rest stays for the next call.
    out.clear();
    CHECK(w.advance(
              1000, [&](tracked&& v, std::uint64_t) { out.push_back(v.id); }, 1) == 1);
    CHECK(out == std::vector<std::uint64_t>{1});
    CHECK(w.now() == 21);
    CHECK(w.size() == 1);
    // Destroyed with a value held: no leak.
  }
  CHECK(tracked::live == 0);
}

TEST_CASE("timer wheel: drain_all hands out every value, due or not", "[timer]") {
  wheel w(100, 0);
  std::uint64_t sum = 0;
  for (std::uint64_t i = 0; i < 100; ++i) {
    REQUIRE(w.schedule(i * i * i * 1000, tracked(i)));  // up to about 2^30
    sum += i;
  }
  std::uint64_t seen = 0;
  CHECK(w.drain_all([&](tracked&& v, std::uint64_t) { seen += v.id; }) == 100);
  CHECK(seen == sum);
  CHECK(w.empty());
  CHECK(w.next_due() == wheel::none_due);
  CHECK(tracked::live == 0);
  // Usable again.
  REQUIRE(w.schedule(5, tracked(7)));
  CHECK(w.advance(4, [](tracked&&, std::uint64_t) {}) == 0);
  CHECK(w.advance(5, [](tracked&&, std::uint64_t) {}) == 1);
}
