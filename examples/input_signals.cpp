// input_signals — the dispatch-only sluice::dispatcher, as a game's input and
// UI layer uses it: handlers called at once on the caller's thread, with
// nothing queued and no threads of sluice's own.
//
//  - the input system dispatches key presses and pointer moves each frame;
//  - a menu subscribes while it is open and unsubscribes itself when closed
//    (from inside its own handler);
//  - an audio plugin runs on its own thread and is unloaded while the main
//    thread keeps dispatching: its reset() returns only once no call of its
//    handler is running, so the plugin's state can be freed right after;
//  - a handler that fails returns a failed outcome: it is counted and
//    reported, and the other handlers still run.
//
// Only <sluice/dispatcher.hpp> of sluice is included: the queue, the worker
// pool, stages and storage are not compiled. Exits 0 when every count adds up.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <sluice/dispatcher.hpp>
#include <thread>

namespace {

struct key_pressed {
  int key;
};
struct pointer_moved {
  float x, y;
};

constexpr int key_escape = 27;

struct audio_plugin {
  std::atomic<long> clicks{0};
  long buffer[64] = {};  // state freed when the plugin is unloaded
};

}  // namespace

int main() {
  long reported = 0;
  sluice::dispatcher input([&](const sluice::failure_info& f) {
    ++reported;
    if (reported == 1) std::printf("reported: %s (code %d)\n", f.message, f.code);
  });

  // The HUD: always there. It refuses pointer positions off the screen.
  long hud_moves = 0;
  sluice::subscription hud = input.subscribe([&](const pointer_moved& p) {
    if (p.x < 0 || p.y < 0) return sluice::outcome::failure(1, "pointer off the screen");
    ++hud_moves;
    return sluice::outcome::success();
  });

  // The menu: open until Escape, which closes it from inside its handler.
  int menu_keys = 0;
  sluice::subscription menu;
  menu = input.subscribe([&](const key_pressed& k) {
    ++menu_keys;
    if (k.key == key_escape) menu.reset();  // does not wait for itself
  });

  // The audio plugin, loaded as a heap object another thread will unload.
  auto plugin = std::make_unique<audio_plugin>();
  audio_plugin* live = plugin.get();
  sluice::subscription audio = input.subscribe([live](const key_pressed& k) {
    live->clicks.fetch_add(1, std::memory_order_relaxed);
    live->buffer[k.key % 64] += 1;
  });

  std::atomic<bool> unloaded{false};
  std::thread loader([&] {
    // Unload the plugin while the main thread dispatches.
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    audio.reset();   // returns once no call of the handler runs anywhere
    plugin.reset();  // so its state may go now
    unloaded = true;
  });

  long frames = 0, key_calls = 0, move_calls = 0;
  const int keys[] = {'w', 'a', 's', 'd', key_escape, 'w'};
  while (!unloaded.load() || frames < 6) {
    const int k = keys[frames % 6];
    key_calls += static_cast<long>(input.dispatch(key_pressed{k}));
    const float x = frames % 50 == 0 ? -1.0f : static_cast<float>(frames % 640);
    move_calls += static_cast<long>(input.dispatch(pointer_moved{x, 10.0f}));
    ++frames;
  }
  loader.join();

  const auto refused = static_cast<long>(input.failures<pointer_moved>());
  std::printf(
      "frames %ld: key handler calls %ld, menu saw %d keys, pointer calls %ld "
      "(%ld refused, %ld reported)\n",
      frames, key_calls, menu_keys, move_calls, refused, reported);
  bool ok = true;
  ok = ok && menu_keys == 5;                         // w a s d Escape, then closed
  ok = ok && move_calls == frames;                   // the HUD, once per frame
  ok = ok && hud_moves + refused == move_calls;      // each call succeeded or was refused
  ok = ok && refused == reported && refused > 0;     // every failure reported once
  ok = ok && input.dispatch(key_pressed{'q'}) == 0;  // menu closed, plugin unloaded
  std::printf("%s\n", ok ? "every count adds up" : "MISMATCH");
  return ok ? 0 : 1;
}
