// A dispatcher made before fork() is inert in the child, even in a program
// that forks before anything was dispatched (the first thing sluice does in
// this process is make the dispatcher). Its own program: fork handlers are
// process-wide, and a test binary that ran other tests has them already.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <sluice/dispatcher.hpp>

namespace {
struct ping {
  int n;
};
}  // namespace

int main() {
  sluice::dispatcher d;
  int calls = 0;
  sluice::subscription s = d.subscribe([&](const ping&) { ++calls; });
  const pid_t child = ::fork();
  if (child < 0) return 2;
  if (child == 0) {
    ::alarm(20);  // nothing may hang
    int bad = 0;
    if (d.dispatch(ping{1}) != 0 || calls != 0) bad |= 1;
    if (d.subscribe([](const ping&) {}).active()) bad |= 2;
    s.reset();  // must not wait or touch the parent's locks
    {
      sluice::dispatcher fresh;  // made in the child: works
      int n = 0;
      auto t = fresh.subscribe([&](const ping&) { ++n; });
      if (fresh.dispatch(ping{2}) != 1 || n != 1) bad |= 4;
    }
    ::_exit(bad);
  }
  int status = 0;
  if (::waitpid(child, &status, 0) != child || !WIFEXITED(status)) return 3;
  if (WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "child failed: %d\n", WEXITSTATUS(status));
    return 1;
  }
  // The parent goes on as if nothing happened.
  if (d.dispatch(ping{3}) != 1 || calls != 1) return 4;
  std::puts("ok");
  return 0;
}
