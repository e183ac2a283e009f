// An interleaving checker for sluice's hand-rolled protocols (handler
// tracking, worker and producer parking), in the spirit of moodycamel's
// Relacy tests: the real code paths run on real threads, but one at a time,
// and a scheduler decides at every schedule point (SLUICE_SCHEDULE_POINT in
// the protocols) which thread goes on. Locks and condition variables of the
// protocols (detail/sync.hpp) are the scheduler's own, so a thread that would
// block hands over instead. When every thread is blocked the scheduler calls
// the test back ("quiescent"): that is where a stranded event shows (an event
// queued and every drainer asleep), or a deadlock.
//
// What it checks: sequentially consistent interleavings at the granularity of
// the schedule points, chosen at random (seeded, so a failure can be
// replayed) with two strategies: a switch at every point, and long runs of
// one thread with rare switches. What it cannot check: orderings weaker than
// sequential consistency (the fences themselves: ThreadSanitizer and the
// stress tests look at those), and steps between two points.
//
// Include this before any sluice header; it defines SLUICE_MODEL_CHECK.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace sluice_model {

enum class run_state : std::uint8_t { runnable, blocked, timed, finished };

struct thread_rec {
  int id = 0;
  run_state st = run_state::runnable;
  const void* waiting_on = nullptr;
  std::condition_variable turn;
};

enum class strategy : std::uint8_t {
  every_point,  // pick a runnable thread at random at every point
  sticky,       // go on with the same thread, switching at 1 point in 8
};

struct world {
  std::mutex m;
  std::condition_variable main_cv;
  std::vector<std::unique_ptr<thread_rec>> threads;
  thread_rec* running = nullptr;  // nullptr: the test's own thread acts
  bool active = false;
  bool free_run = false;  // gave up serialising (step bound): threads run freely
  std::mt19937_64 rng;
  strategy how = strategy::every_point;
  long steps = 0;
  long max_steps = 0;
  unsigned mutations = 0;
  bool spurious_empty = false;
};

inline world& the_world() {
  static world w;
  return w;
}
inline thread_local thread_rec* t_me = nullptr;

// ---- the scheduler (world::m held) -------------------------------------------

inline thread_rec* pick(world& w, thread_rec* me) {
  std::vector<thread_rec*> ready;
  for (auto& t : w.threads)
    if (t->st == run_state::runnable) ready.push_back(t.get());
  if (ready.empty()) {
    // Nobody can go on: a timed wait times out, if there is one.
    std::vector<thread_rec*> timed;
    for (auto& t : w.threads)
      if (t->st == run_state::timed) timed.push_back(t.get());
    if (timed.empty()) return nullptr;
    thread_rec* t = timed[w.rng() % timed.size()];
    t->st = run_state::runnable;
    t->waiting_on = nullptr;
    return t;
  }
  if (w.how == strategy::sticky && me != nullptr && me->st == run_state::runnable &&
      (w.rng() % 8) != 0)
    return me;
  return ready[w.rng() % ready.size()];
}

// Hands the turn to the next thread and waits for this one's next turn
// (returns at once if the next is this one; never for a finished thread).
inline void hand_over(world& w, std::unique_lock<std::mutex>& lock, thread_rec* me) {
  thread_rec* next = pick(w, me);
  w.running = next;
  if (next == nullptr) {
    w.main_cv.notify_all();  // quiescent: the test's thread acts
  } else if (next != me) {
    next->turn.notify_one();
  }
  if (me->st == run_state::finished) return;
  me->turn.wait(lock, [&] { return w.running == me || w.free_run; });
}

inline bool serialised(world& w) {
  return w.active && !w.free_run && t_me != nullptr;
}

inline void give_up_serialising(world& w) {
  w.free_run = true;
  for (auto& t : w.threads) t->turn.notify_all();
  w.main_cv.notify_all();
}

// A schedule point: maybe another thread goes on first.
inline void point() {
  world& w = the_world();
  if (t_me == nullptr) return;
  std::unique_lock<std::mutex> lock(w.m);
  if (!serialised(w)) return;
  if (++w.steps > w.max_steps) {
    give_up_serialising(w);
    return;
  }
  hand_over(w, lock, t_me);
}

inline bool spurious_empty() {
  world& w = the_world();
  if (t_me == nullptr) return false;
  std::lock_guard<std::mutex> lock(w.m);
  return serialised(w) && w.spurious_empty && (w.rng() % 4) == 0;
}

inline bool mutation(unsigned n) {
  world& w = the_world();
  return (w.mutations & (1u << n)) != 0;
}

// Makes every thread blocked on `obj` runnable (or one of them, chosen).
inline void wake(world& w, const void* obj, bool all) {
  std::vector<thread_rec*> waiting;
  for (auto& t : w.threads)
    if ((t->st == run_state::blocked || t->st == run_state::timed) && t->waiting_on == obj)
      waiting.push_back(t.get());
  if (waiting.empty()) return;
  if (!all) {
    thread_rec* t = waiting[w.rng() % waiting.size()];
    waiting.assign(1, t);
  }
  for (thread_rec* t : waiting) {
    t->st = run_state::runnable;
    t->waiting_on = nullptr;
  }
}

// ---- the primitives detail/sync.hpp uses -------------------------------------------

class mutex {
 public:
  void lock() {
    world& w = the_world();
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(w.m);
        if (!serialised(w)) {
          lock.unlock();
          real_.lock();
          return;
        }
        if (++w.steps > w.max_steps) {
          give_up_serialising(w);
          continue;
        }
        if (real_.try_lock()) return;
        t_me->st = run_state::blocked;
        t_me->waiting_on = this;
        hand_over(w, lock, t_me);
      }
    }
  }
  bool try_lock() {
    point();
    return real_.try_lock();
  }
  void unlock() {
    world& w = the_world();
    real_.unlock();
    std::lock_guard<std::mutex> lock(w.m);
    wake(w, this, true);
  }

 private:
  std::mutex real_;
};

class condition_variable {
 public:
  void notify_one() {
    world& w = the_world();
    {
      std::lock_guard<std::mutex> lock(w.m);
      wake(w, this, false);
    }
    real_.notify_one();
  }
  void notify_all() {
    world& w = the_world();
    {
      std::lock_guard<std::mutex> lock(w.m);
      wake(w, this, true);
    }
    real_.notify_all();
  }
  void wait(std::unique_lock<mutex>& lk) { wait_as(lk, run_state::blocked); }
  template <class Pred>
  void wait(std::unique_lock<mutex>& lk, Pred pred) {
    while (!pred()) wait(lk);
  }
  // A timed wait may end at any time: the scheduler ends it when nothing
  // else can go on.
  template <class Rep, class Period>
  std::cv_status wait_for(std::unique_lock<mutex>& lk, std::chrono::duration<Rep, Period> d) {
    return wait_as(lk, run_state::timed, d) ? std::cv_status::no_timeout : std::cv_status::timeout;
  }

 private:
  bool wait_as(std::unique_lock<mutex>& lk, run_state how,
               std::chrono::nanoseconds d = std::chrono::milliseconds(10)) {
    world& w = the_world();
    std::unique_lock<std::mutex> lock(w.m);
    if (!serialised(w)) {
      lock.unlock();
      return real_.wait_for(lk, d) == std::cv_status::no_timeout;
    }
    t_me->st = how;
    t_me->waiting_on = this;
    lock.unlock();
    lk.unlock();  // wakes threads waiting for the mutex
    lock.lock();
    if (serialised(w) && t_me->st != run_state::runnable) hand_over(w, lock, t_me);
    t_me->st = run_state::runnable;
    t_me->waiting_on = nullptr;
    lock.unlock();
    lk.lock();
    return true;
  }
  std::condition_variable_any real_;
};

// ---- running a scenario ----------------------------------------------------------------

struct options {
  std::uint64_t seed = 1;
  strategy how = strategy::every_point;
  long max_steps = 20000;
  unsigned mutations = 0;  // bit n: SLUICE_MODEL_MUTATION(n)
  bool spurious_empty = false;
};

struct outcome {
  long steps = 0;
  int quiescent = 0;        // times every thread was blocked
  bool deadlock = false;    // every thread blocked, and the test's action freed none
  bool step_bound = false;  // gave up serialising
};

// Runs `bodies` as model threads. `on_quiescent(true)` runs on the calling
// thread whenever every model thread is blocked (or finished while some are
// blocked); it checks what must hold then and may act (notify) to let them
// go on. `on_quiescent(false)`: the run hit its step bound and the threads
// now run freely; the callback only acts to let them end. Returns when every
// thread has finished.
inline outcome run(const options& o, std::vector<std::function<void()>> bodies,
                   const std::function<void(bool quiescent)>& on_quiescent) {
  world& w = the_world();
  outcome out;
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(w.m);
    w.threads.clear();
    w.rng.seed(o.seed);
    w.how = o.how;
    w.steps = 0;
    w.max_steps = o.max_steps;
    w.mutations = o.mutations;
    w.spurious_empty = o.spurious_empty;
    w.free_run = false;
    w.running = nullptr;
    w.active = true;
    for (std::size_t i = 0; i < bodies.size(); ++i) {
      auto t = std::make_unique<thread_rec>();
      t->id = static_cast<int>(i);
      w.threads.push_back(std::move(t));
    }
  }
  for (std::size_t i = 0; i < bodies.size(); ++i) {
    thread_rec* me = w.threads[i].get();
    threads.emplace_back([&w, me, body = std::move(bodies[i])] {
      {
        std::unique_lock<std::mutex> lock(w.m);
        me->turn.wait(lock, [&] { return w.running == me || w.free_run; });
      }
      t_me = me;
      body();
      std::unique_lock<std::mutex> lock(w.m);
      me->st = run_state::finished;
      t_me = nullptr;
      if (!w.free_run && w.running == me) hand_over(w, lock, me);
      w.main_cv.notify_all();
    });
  }
  std::unique_lock<std::mutex> lock(w.m);
  auto all_finished = [&] {
    for (auto& t : w.threads)
      if (t->st != run_state::finished) return false;
    return true;
  };
  w.running = pick(w, nullptr);
  if (w.running != nullptr) w.running->turn.notify_one();
  for (;;) {
    w.main_cv.wait(lock, [&] { return all_finished() || w.running == nullptr || w.free_run; });
    if (all_finished()) break;
    if (w.free_run) {
      lock.unlock();
      on_quiescent(false);
      lock.lock();
      w.main_cv.wait(lock, all_finished);
      break;
    }
    // Every live thread is blocked: the test looks, and acts.
    ++out.quiescent;
    lock.unlock();
    on_quiescent(true);
    lock.lock();
    w.running = pick(w, nullptr);
    if (w.running == nullptr) {
      if (all_finished()) break;
      out.deadlock = true;  // nothing can go on: let them run freely to end
      for (auto& t : w.threads)
        if (t->st != run_state::finished) t->st = run_state::runnable;
      give_up_serialising(w);
      w.main_cv.wait(lock, all_finished);
      break;
    }
    w.running->turn.notify_one();
  }
  out.steps = w.steps;
  out.step_bound = w.free_run && !out.deadlock;
  w.active = false;
  lock.unlock();
  for (auto& t : threads) t.join();
  return out;
}

}  // namespace sluice_model

#define SLUICE_MODEL_CHECK 1
#define SLUICE_SCHEDULE_POINT() ::sluice_model::point()
#define SLUICE_SPURIOUS_EMPTY() ::sluice_model::spurious_empty()
#define SLUICE_MODEL_MUTATION(n) ::sluice_model::mutation(n)
