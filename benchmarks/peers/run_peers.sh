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
# --no-warn-unused-cli: the variables may name dependencies this tree does
# not declare (meant for binaries built outside it, see SLUICE_PEERS_EXTRA).
if ! cmake --preset bench-peers --no-warn-unused-cli "${defs[@]}" > "$build/configure.log" 2>&1; then
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
cpu_sample() {  # "busy total" jiffies over all CPUs (busy excludes idle, iowait)
  awk '/^cpu /{b=$2+$3+$4+$7+$8+$9; print b, b+$5+$6; exit}' /proc/stat
}
busy_percent() {  # CPU busy over one second, all CPUs, in %
  local b0 t0 b1 t1
  read -r b0 t0 < <(cpu_sample)
  sleep 1
  read -r b1 t1 < <(cpu_sample)
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
# runs.tsv: per binary, wall and CPU seconds, and the CPU seconds that other
# processes used meanwhile (the machine's busy time less the binary's own).
clk_tck=$(getconf CLK_TCK)
printf 'binary\twall_s\tcpu_s\tothers_cpu_s\n' > "$results/runs.tsv"
for bin in "${binaries[@]}"; do
  name=$(basename "$bin")
  echo "=== $name"
  wait_for_quiet
  read -r b0 _ < <(cpu_sample)
  /usr/bin/time -f '%e %U %S' -o "$results/$name.time" \
    "$bin" --benchmark_repetitions="$reps" --benchmark_report_aggregates_only=true \
    --benchmark_enable_random_interleaving=true --benchmark_format=json \
    --benchmark_out="$results/$name.json" --benchmark_out_format=json \
    "$@" > "$results/$name.stdout"
  read -r b1 _ < <(cpu_sample)
  read -r wall user sys < "$results/$name.time"
  rm -f "$results/$name.time"
  awk -v n="$name" -v w="$wall" -v u="$user" -v s="$sys" -v d=$((b1 - b0)) -v h="$clk_tck" \
    'BEGIN{o=d/h-u-s; if (o<0) o=0; printf "%s\t%s\t%.2f\t%.2f\n", n, w, u+s, o}' \
    >> "$results/runs.tsv"
  tail -n 1 "$results/runs.tsv" | awk -F'\t' '{printf "    %ss wall; other processes used %s CPU-s meanwhile\n", $2, $4}'
done

# ---- report ------------------------------------------------------------------
python3 benchmarks/peers/peers_report.py "$results" | tee "$results/report.md"
