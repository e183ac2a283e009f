// sluice against the peers that Debian packages, in the scenarios of
// peers_common.hpp, with the raw baselines and sluice in the same binary:
//  - immediate dispatch, 1 and 10 handlers: Boost.Signals2 signal (its
//    default, thread-safe), sigc++ 3 signal (single-threaded);
//  - cross-thread 1 -> 1: Boost.Lockfree spsc_queue (bounded at 8192, as a
//    sluice lane; the producer spins while it is full, the consumer spins on
//    pop), an extra raw baseline.
// There is no Debian-packaged queued event library to set beside the queued
// scenario; it runs with its baselines only.
//
// CMake defines SLUICE_PEERS_BOOST / SLUICE_PEERS_SIGCXX when it found the
// library; a missing one is left out (CMake says so at configure time).
#include "peers_common.hpp"

#if SLUICE_PEERS_BOOST
#include <boost/lockfree/spsc_queue.hpp>
#include <boost/signals2/signal.hpp>
#include <boost/version.hpp>
#endif
#if SLUICE_PEERS_SIGCXX
#include <sigc++/sigc++.h>
#endif

namespace {

using bench::ev16;
namespace peers = bench::peers;

#if SLUICE_PEERS_BOOST
void bm_dispatch_boost_signals2(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  boost::signals2::signal<void(const ev16&)> sig;
  peers::for_first_n(n, [&](auto i) { sig.connect(peers::fn<decltype(i)::value>); });
  peers::escape(sig);
  peers::run_dispatch(state, n, [&](const ev16& e) { sig(e); });
}

void bm_xt_boost_spsc(benchmark::State& state) {
  boost::lockfree::spsc_queue<ev16, boost::lockfree::capacity<8192>> q;
  bench::padded_counter handled;
  std::atomic<bool> stop{false};
  const peers::xt_handler handler{&handled};
  std::thread consumer([&] {
    ev16 x;
    while (!stop.load(std::memory_order_relaxed)) {
      if (q.pop(x)) handler(x);
    }
  });
  peers::run_xt(state, handled, [&](const ev16& e) {
    while (!q.push(e)) bench::cpu_relax();
  });
  stop.store(true, std::memory_order_relaxed);
  consumer.join();
}
#endif

#if SLUICE_PEERS_SIGCXX
void bm_dispatch_sigcxx(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  sigc::signal<void(const ev16&)> sig;
  peers::for_first_n(n, [&](auto i) { sig.connect(sigc::ptr_fun(peers::fn<decltype(i)::value>)); });
  peers::escape(sig);
  peers::run_dispatch(state, n, [&](const ev16& e) { sig.emit(e); });
}
#endif

void register_benchmarks() {
  peers::register_baselines_and_sluice();
#if SLUICE_PEERS_BOOST
  peers::register_dispatch("boost_signals2", bm_dispatch_boost_signals2);
  peers::register_xt("boost_spsc_queue", bm_xt_boost_spsc);
  peers::add_peer_context("boost", BOOST_LIB_VERSION);
#endif
#if SLUICE_PEERS_SIGCXX
  peers::register_dispatch("sigcxx", bm_dispatch_sigcxx);
  peers::add_peer_context("sigcxx", std::to_string(SIGCXX_MAJOR_VERSION) + "." +
                                        std::to_string(SIGCXX_MINOR_VERSION) + "." +
                                        std::to_string(SIGCXX_MICRO_VERSION));
#endif
}

}  // namespace

SLUICE_BENCH_MAIN()
