// game_loop — sluice pumped from a game's main loop with a time budget.
//
// Each frame, the game's systems publish events (physics: collisions; AI:
// decisions; effects: particle bursts), then the loop drains the bus with
// bus.poll_for(budget). Whatever does not fit in the budget waits for the next
// frame. The lanes are small, so bursts hit the full-queue policies:
//   - effects use full_policy::drop_newest: a particle burst too many is
//     dropped and counted, never waited for;
//   - gameplay uses full_policy::reject: a refused collision stays with the
//     physics system, which retries it next frame.
// A collision handler applies damage at once with bus.dispatch (an immediate,
// nested call) and queues a sound cue (a publish from inside a handler).
//
// poll_for reads the clock after each batch (up to SLUICE_DRAIN_BATCH events
// of one lane), so a frame with slow handlers can run over its budget by up to
// one batch: the "drain" column shows it.
//
// Everything runs on one thread, as in most game loops. Prints one line per
// frame and exits 0 when every event is accounted for.
#include <sluice/sluice.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <vector>

namespace {

struct collision {
  std::uint32_t a, b;
  float impulse;
};
struct damage {
  std::uint32_t entity;
  int amount;
};
struct ai_decision {
  std::uint32_t entity;
  std::uint8_t action;
};
struct particle_burst {
  float x, y;
  std::uint16_t count;
};
struct sound_cue {
  std::uint32_t id;
  float volume;
};

constexpr int frames = 24;
constexpr auto frame_budget = std::chrono::microseconds(150);
constexpr std::uint32_t entities = 32;

// A small deterministic generator, so that every run publishes the same events.
class lcg {
 public:
  explicit lcg(std::uint32_t seed) : state_(seed) {}
  std::uint32_t next(std::uint32_t bound) {
    state_ = state_ * 1664525u + 1013904223u;
    return (state_ >> 8) % bound;
  }

 private:
  std::uint32_t state_;
};

// Simulated work of a handler (uploading particles, mixing a sound, ...).
void busy_for(std::chrono::nanoseconds d) {
  const auto until = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < until) {
  }
}

struct bus_totals {
  std::uint64_t published = 0, handled = 0, dropped = 0, rejected = 0;
};

template <class Event>
void add(bus_totals& t, const sluice::bus& bus) {
  const sluice::type_stats s = bus.stats<Event>();
  t.published += s.published;
  t.handled += s.delivered + s.unrouted;
  t.dropped += s.dropped;
  t.rejected += s.rejected;
}

bus_totals totals_of(const sluice::bus& bus) {
  bus_totals t;
  add<collision>(t, bus);
  add<ai_decision>(t, bus);
  add<particle_burst>(t, bus);
  add<sound_cue>(t, bus);
  return t;
}

template <class Event>
bool report(const sluice::bus& bus, const char* name) {
  const sluice::type_stats s = bus.stats<Event>();
  std::printf("  %-15s published %5llu  delivered %5llu  dropped %4llu  rejected %4llu  %s\n",
              name, static_cast<unsigned long long>(s.published),
              static_cast<unsigned long long>(s.delivered),
              static_cast<unsigned long long>(s.dropped),
              static_cast<unsigned long long>(s.rejected), s.balanced() ? "balanced" : "UNBALANCED");
  return s.balanced();
}

}  // namespace

int main() {
  sluice::bus bus{sluice::bus_options{}
                      .with_lanes(2)
                      .with_lane_capacity(160)
                      .with_policy(sluice::full_policy::drop_newest)
                      .with_expected_producers(2)};
  sluice::producer gameplay =
      bus.make_producer(sluice::producer_options::with_policy(sluice::full_policy::reject));
  sluice::producer effects = bus.make_producer();  // the bus's policy: drop_newest

  int health[entities] = {};
  for (int& h : health) h = 100;
  unsigned long long damage_dispatched = 0, cues = 0, particles = 0, decisions = 0;

  auto on_damage = bus.subscribe<damage>([&](const damage& d) {
    health[d.entity] = d.amount < health[d.entity] ? health[d.entity] - d.amount : 0;
    ++damage_dispatched;
  });
  auto on_collision = bus.subscribe<collision>([&](const collision& c) {
    const int amount = static_cast<int>(c.impulse);
    bus.dispatch(damage{c.a, amount});  // immediate: runs on_damage now, nested
    bus.dispatch(damage{c.b, amount});
    // Queued for later in this frame (or the next); dropped if effects are full.
    (void)effects.publish(sound_cue{c.a, c.impulse / 10.0f});
  });
  auto on_decision = bus.subscribe<ai_decision>([&](const ai_decision&) {
    ++decisions;
    busy_for(std::chrono::microseconds(1));
  });
  auto on_particles = bus.subscribe<particle_burst>([&](const particle_burst& p) {
    particles += p.count;
    busy_for(std::chrono::microseconds(4));
  });
  auto on_sound = bus.subscribe<sound_cue>([&](const sound_cue&) {
    ++cues;
    busy_for(std::chrono::microseconds(2));
  });

  lcg rng(2026);
  std::vector<collision> retry;  // collisions the bus refused, kept for next frame
  std::printf("%zu lanes x %zu events; frame budget %lld us, checked between drain passes\n"
              "(a pass takes up to SLUICE_DRAIN_BATCH = %d events per lane)\n\n",
              bus.lane_count(), bus.options().lane_capacity,
              static_cast<long long>(frame_budget.count()), SLUICE_DRAIN_BATCH);
  std::printf("frame  published  dropped  rejected  handled  queued  drain\n");
  bus_totals before = totals_of(bus);
  for (int frame = 0; frame < frames; ++frame) {
    // --- effects: bursts of particles, an explosion now and then ---
    const std::uint32_t bursts = frame % 6 == 2 ? 200 : 4 + rng.next(12);
    for (std::uint32_t i = 0; i < bursts; ++i)
      (void)effects.publish(particle_burst{static_cast<float>(rng.next(640)),
                                           static_cast<float>(rng.next(480)),
                                           static_cast<std::uint16_t>(16 + rng.next(64))});

    // --- physics: collisions keyed by the first entity, so that one entity's
    // collisions are handled in order. Refused ones (and all after them, to keep
    // that order) wait for the next frame, ahead of the new ones. ---
    std::vector<collision> now;
    now.swap(retry);
    const std::uint32_t hits = 2 + rng.next(frame % 6 == 2 ? 60 : 8);
    for (std::uint32_t i = 0; i < hits; ++i)
      now.push_back({rng.next(entities), rng.next(entities), 1.0f + static_cast<float>(rng.next(20))});
    bool refused = false;
    for (const collision& c : now) {
      if (!refused) refused = gameplay.publish(c, c.a) == sluice::publish_result::full;
      if (refused) retry.push_back(c);
    }

    // --- AI: a decision for every other entity, every third frame. A refused
    // decision is not kept: the AI decides again next time it runs. ---
    if (frame % 3 == 0)
      for (std::uint32_t e = 0; e < entities; e += 2)
        (void)gameplay.publish(ai_decision{e, static_cast<std::uint8_t>(rng.next(4))}, e);

    // --- drain within the frame budget ---
    const auto t0 = std::chrono::steady_clock::now();
    bus.poll_for(frame_budget);
    const auto spent = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - t0);

    const bus_totals after = totals_of(bus);
    std::printf("%5d  %9llu  %7llu  %8llu  %7llu  %6zu  %4lld us\n", frame,
                static_cast<unsigned long long>(after.published - before.published),
                static_cast<unsigned long long>(after.dropped - before.dropped),
                static_cast<unsigned long long>(after.rejected - before.rejected),
                static_cast<unsigned long long>(after.handled - before.handled), bus.queued(),
                static_cast<long long>(spent.count()));
    before = after;
  }

  // Shut down: deliver what is still queued. Collisions still waiting for a
  // retry were never accepted by the bus, so they are not in its accounts.
  bus.stop(sluice::stop_mode::drain);
  std::printf("\nafter %d frames (%zu collisions still waiting for a retry):\n", frames,
              retry.size());
  bool ok = true;
  ok &= report<collision>(bus, "collision");
  ok &= report<ai_decision>(bus, "ai_decision");
  ok &= report<particle_burst>(bus, "particle_burst");
  ok &= report<sound_cue>(bus, "sound_cue");
  std::printf("  damage dispatched immediately: %llu (dispatch is a call, not a publication)\n",
              damage_dispatched);
  std::printf("  particles drawn: %llu, sound cues played: %llu, AI decisions: %llu\n", particles,
              cues, decisions);
  int down = 0;
  for (int h : health) down += h == 0 ? 1 : 0;
  std::printf("  entities down: %d of %u\n", down, static_cast<unsigned>(entities));
  return ok ? 0 : 1;
}
