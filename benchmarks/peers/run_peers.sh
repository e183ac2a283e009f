#!/usr/bin/env bash
# Builds the `bench-peers` preset (one compile job: -j1), runs the peer
# benchmarks with 5 repetitions (aggregates only, random interleaving, JSON)
# into build/bench-peers/results/, and prints the markdown report of
# benchmarks/peers/peers_report.py (also written to results/report.md).
# A whole run takes about two minutes.
#
# Environment:
#   FETCHCONTENT_*          passed to the configure step as -D variables, e.g.
#                           FETCHCONTENT_SOURCE_DIR_<NAME>=/path for a local
#                           copy of a dependency, FETCHCONTENT_FULLY_DISCONNECTED=ON
#   SLUICE_PEERS_EXTRA      more benchmark binaries to run the same way (paths,
#                           space-separated), e.g. peers built outside this tree
#                           against benchmarks/peers/peers_common.hpp
#   SLUICE_BENCH_REPETITIONS repetitions (default 5)
#   SLUICE_BENCH_WAIT_BUDGET seconds to wait in all for a quiet machine (< 10%
#                           CPU busy) before each binary; 0 = never (default 120)
# Extra arguments are passed to every benchmark binary.
set -euo pipefail
cd "$(dirname "$0")/../.."

build=build/bench-peers
results=$build/results
reps=${SLUICE_BENCH_REPETITIONS:-5}
wait_budget=${SLUICE_BENCH_WAIT_BUDGET:-120}
waited=0

# ---- build -------------------------------------------------------------------
defs=()
while IFS= read -r var; do
  defs+=("-D$var=${!var}")
done < <(compgen -v | grep '^FETCHCONTENT_' || true)
echo "=== configure (cmake --preset bench-peers ${defs[*]})"
mkdir -p "$build"
if ! cmake --preset bench-peers "${defs[@]}" > "$build/configure.log" 2>&1; then
  cat "$build/configure.log"
  exit 1
fi
grep -E 'sluice|Warning' "$build/configure.log" || true
echo "=== build (-j1)"
cmake --build "$build" -j1 --target sluice_peer_benchmarks

binaries=("$build/benchmarks/peers/bench_peers")
for b in ${SLUICE_PEERS_EXTRA:-}; do binaries+=("$b"); done

mkdir -p "$results"
rm -f "$results"/*.json "$results"/*.stdout
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "compiler: $(c++ --version | head -n 1)"
  echo "lscpu:"
  lscpu | head -n 20 | sed 's/^/  /'
} > "$results/machine.txt"

# ---- quiet machine -----------------------------------------------------------
busy_percent() {  # CPU busy over one second, all CPUs, in %
  local b0 t0 b1 t1
  read -r b0 t0 < <(awk '/^cpu /{b=$2+$3+$4+$7+$8+$9; print b, b+$5+$6; exit}' /proc/stat)
  sleep 1
  read -r b1 t1 < <(awk '/^cpu /{b=$2+$3+$4+$7+$8+$9; print b, b+$5+$6; exit}' /proc/stat)
  echo $(((b1 - b0) * 100 / (t1 - t0 > 0 ? t1 - t0 : 1)))
}
wait_for_quiet() {
  local busy
  while [ "$waited" -lt "$wait_budget" ]; do
    busy=$(busy_percent)
    [ "$busy" -lt 10 ] && return 0
    [ "$waited" -eq 0 ] && echo "    machine ${busy}% busy (other processes): waiting"
    waited=$((waited + 1))
  done
  [ "$wait_budget" -gt 0 ] && echo "    wait budget (${wait_budget}s) spent: running anyway"
  return 0
}

# ---- run ---------------------------------------------------------------------
for bin in "${binaries[@]}"; do
  name=$(basename "$bin")
  echo "=== $name"
  wait_for_quiet
  "$bin" --benchmark_repetitions="$reps" --benchmark_report_aggregates_only=true \
    --benchmark_enable_random_interleaving=true --benchmark_format=json \
    --benchmark_out="$results/$name.json" --benchmark_out_format=json \
    "$@" > "$results/$name.stdout"
  echo "    load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
done

# ---- report ------------------------------------------------------------------
python3 benchmarks/peers/peers_report.py "$results" | tee "$results/report.md"
