#!/usr/bin/env bash
# Builds the `bench` preset (one compile job at a time: -j1) and runs every
# sluice benchmark binary with 5 repetitions, aggregates only, JSON output into
# build/bench/results/. Then times the compile of a small sluice TU against a
# TU that includes only moodycamel's queue, and runs benchmarks/report.py.
#
# bench_storage writes its files under $TMPDIR (default /tmp), in a folder it
# removes at the end; it needs about 0.8 GB there.
#
# Environment:
#   SLUICE_BENCHES           binaries to run, by short name (default: all);
#                            only those are built
#   SLUICE_BENCH_REPETITIONS repetitions (default 5)
#   SLUICE_BENCH_WAIT_BUDGET seconds the whole script may spend waiting for
#                            the machine to be quiet (< 10% CPU busy) before a
#                            binary runs; 0 = never wait (default 240)
#   SLUICE_BENCH_RETRIES     extra attempts for a binary during which other
#                            processes used > 10% of its wall time (default 2;
#                            the attempt least disturbed is kept). Disturbed
#                            figures that remain are flagged in the report.
#   SLUICE_BENCH_PYTHON      interpreter for report.py (default: python3, or
#                            /usr/bin/python3 if only that one has matplotlib)
# Extra arguments are passed to every benchmark binary (for example
# --benchmark_filter=... or --benchmark_min_time=...).
set -euo pipefail
cd "$(dirname "$0")/.."

build=build/bench
results=$build/results
reps=${SLUICE_BENCH_REPETITIONS:-5}
benches=${SLUICE_BENCHES:-"dispatch queued queued_64B cross_thread keyed latency alloc alloc_64B pipeline storage footprint"}
wait_budget=${SLUICE_BENCH_WAIT_BUDGET:-240}
retries=${SLUICE_BENCH_RETRIES:-2}
waited_total=0
clk_tck=$(getconf CLK_TCK)

# ---- build -------------------------------------------------------------------
# Examples are not needed here; turning them off keeps this configure
# independent of whatever state examples/ is in.
echo "=== configure + build (bench preset, -j1)"
cmake --preset bench -DSLUICE_BUILD_EXAMPLES=OFF >/dev/null
# Only the binaries that are run.
targets=()
for b in $benches; do targets+=("bench_$b"); done
cmake --build "$build" -j1 --target "${targets[@]}"

mkdir -p "$results"
rm -f "$results"/attempt.*

# ---- machine ---------------------------------------------------------------------
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "nproc: $(nproc)"
  echo "kernel: $(uname -sr)"
  echo "compiler: $(c++ --version | head -n 1)"
  echo "compile_command: $(ninja -C "$build" -t commands bench_dispatch 2>/dev/null | awk 'index($0, "bench_dispatch.cpp") && !n++' | sed 's/ -M[TF] [^ ]*//g; s/ -MD//; s/ -o [^ ]*//')"
  echo "lscpu:"
  lscpu | head -n 20 | sed 's/^/  /'
} > "$results/machine.txt"

# ---- helpers -----------------------------------------------------------------
# Prints "busy total" jiffies summed over all CPUs (busy excludes idle+iowait).
cpu_sample() {
  awk '/^cpu /{b=$2+$3+$4+$7+$8+$9; print b, b+$5+$6; exit}' /proc/stat
}

# Percentage of CPU busy over one second.
busy_percent() {
  local b0 t0 b1 t1
  read -r b0 t0 < <(cpu_sample)
  sleep 1
  read -r b1 t1 < <(cpu_sample)
  echo $(( (b1 - b0) * 100 / (t1 - t0 > 0 ? t1 - t0 : 1) ))
}

# Waits until the machine is quiet, within what is left of the wait budget.
# Returns 1 if the budget ran out first.
wait_for_quiet() {
  local busy announced=0
  while :; do
    busy=$(busy_percent)
    [ "$busy" -lt 10 ] && return 0
    if [ "$waited_total" -ge "$wait_budget" ]; then
      echo "    machine ${busy}% busy and the wait budget (${wait_budget}s) is spent: running anyway"
      return 1
    fi
    if [ "$announced" -eq 0 ]; then
      echo "    machine ${busy}% busy (other processes): waiting"
      announced=1
    fi
    waited_total=$((waited_total + 1))
  done
}

# Runs one binary into $results/$2.json and .stdout; prints
# "wall user sys machine_busy foreign_busy loadavg_before loadavg_after".
run_once() {
  local bin=$1 out=$2 la0 la1 b0 b1 wall user sys machine foreign
  shift 2
  la0=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' '/')
  read -r b0 _ < <(cpu_sample)
  /usr/bin/time -f '%e %U %S' -o "$results/$out.time" \
    "$bin" --benchmark_repetitions="$reps" --benchmark_report_aggregates_only=true \
    --benchmark_format=json --benchmark_out="$results/$out.json" --benchmark_out_format=json \
    --benchmark_enable_random_interleaving=true "$@" > "$results/$out.stdout"
  read -r b1 _ < <(cpu_sample)
  la1=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' '/')
  read -r wall user sys < "$results/$out.time"
  rm -f "$results/$out.time"
  # CPU time the whole machine spent busy during the run, minus this binary's.
  machine=$(awk -v d=$((b1 - b0)) -v h="$clk_tck" 'BEGIN{printf "%.2f", d / h}')
  foreign=$(awk -v m="$machine" -v u="$user" -v s="$sys" 'BEGIN{f=m-u-s; if (f<0) f=0; printf "%.2f", f}')
  echo "$wall $user $sys $machine $foreign $la0 $la1"
}

# ---- benchmarks --------------------------------------------------------------
# Results of binaries not run this time are kept (SLUICE_BENCHES may name a
# subset); runs.tsv gets one row per binary, the latest.
header=$(printf 'binary\twall_s\tuser_s\tsys_s\tmachine_busy_s\tforeign_busy_s\tloadavg_before\tloadavg_after\tattempts')
if [ ! -f "$results/runs.tsv" ] || [ "$(head -n 1 "$results/runs.tsv")" != "$header" ]; then
  printf '%s\n' "$header" > "$results/runs.tsv"
fi
for b in $benches; do
  bin="$build/benchmarks/bench_$b"
  echo "=== bench_$b"
  rm -f "$results/bench_$b.json" "$results/bench_$b.stdout"
  awk -F'\t' -v n="bench_$b" '$1 != n' "$results/runs.tsv" > "$results/runs.tsv.new"
  mv "$results/runs.tsv.new" "$results/runs.tsv"
  best=""
  attempt=0
  while :; do
    attempt=$((attempt + 1))
    quiet=0
    [ "$wait_budget" -gt 0 ] && wait_for_quiet && quiet=1
    run_once "$bin" "attempt" "$@" > "$results/attempt.stats"
    read -r wall user sys machine foreign la0 la1 < "$results/attempt.stats"
    rm -f "$results/attempt.stats"
    echo "    attempt $attempt: ${wall}s wall; other processes used ${foreign} CPU-s meanwhile"
    if [ -z "$best" ] || awk -v f="$foreign" -v b="$best" 'BEGIN{exit !(f < b)}'; then
      best=$foreign
      best_wall=$wall
      mv "$results/attempt.json" "$results/bench_$b.json"
      mv "$results/attempt.stdout" "$results/bench_$b.stdout"
      row=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' "bench_$b" "$wall" "$user" "$sys" "$machine" \
        "$foreign" "$la0" "$la1")
    fi
    rm -f "$results/attempt.json" "$results/attempt.stdout"
    disturbed=$(awk -v f="$best" -v w="$best_wall" 'BEGIN{print (f > 0.1 * w) ? 1 : 0}')
    [ "$disturbed" -eq 0 ] && break
    [ "$attempt" -gt "$retries" ] && break
    # Retrying is only worth it if the machine can be found quiet.
    [ "$quiet" -eq 1 ] || [ "$waited_total" -lt "$wait_budget" ] || break
  done
  printf '%s\t%s\n' "$row" "$attempt" >> "$results/runs.tsv"
done

# ---- compile time ------------------------------------------------------------
echo "=== compile time (g++ -std=c++17 -O2 -c, median of 3)"
ct="$build/compile_time"
mkdir -p "$ct"
cat > "$ct/use_sluice.cpp" <<'EOF'
#include <sluice/sluice.hpp>
struct tick { int n; };
int main() {
  sluice::bus bus;
  int seen = 0;
  sluice::subscription sub = bus.subscribe<tick>([&seen](const tick& t) { seen += t.n; });
  sluice::producer p = bus.make_producer();
  p.publish(tick{1});
  bus.poll();
  bus.dispatch(tick{2});
  return seen == 3 ? 0 : 1;
}
EOF
cat > "$ct/use_dispatcher.cpp" <<'EOF'
#include <sluice/dispatcher.hpp>
struct tick { int n; };
int main() {
  sluice::dispatcher d;
  int seen = 0;
  sluice::subscription sub = d.subscribe([&seen](const tick& t) { seen += t.n; });
  d.dispatch(tick{2});
  return seen == 2 ? 0 : 1;
}
EOF
cat > "$ct/use_fnptr_vector.cpp" <<'EOF'
#include <vector>
struct tick { int n; };
static int seen = 0;
static void on_tick(const tick& t) { seen += t.n; }
int main() {
  std::vector<void (*)(const tick&)> handlers{&on_tick};
  for (auto* h : handlers) h(tick{2});
  return seen == 2 ? 0 : 1;
}
EOF
cat > "$ct/use_concurrentqueue.cpp" <<'EOF'
#include <concurrentqueue/concurrentqueue.h>
struct tick { int n; };
int main() {
  moodycamel::ConcurrentQueue<tick> q;
  moodycamel::ProducerToken pt(q);
  moodycamel::ConsumerToken ct(q);
  q.enqueue(pt, tick{1});
  tick t{0};
  return q.try_dequeue(ct, t) && t.n == 1 ? 0 : 1;
}
EOF
cxx=${CXX:-g++}
compile_ms() {  # median of 3 compiles of $1, in milliseconds
  local src=$1 i s e times=()
  for i in 1 2 3; do
    s=$(date +%s%N)
    "$cxx" -std=c++17 -O2 -Iinclude -c "$src" -o "$ct/out.o"
    e=$(date +%s%N)
    times+=($(( (e - s) / 1000000 )))
  done
  printf '%s\n' "${times[@]}" | sort -n | sed -n 2p
}
wait_for_quiet
sl=$(compile_ms "$ct/use_sluice.cpp")
cq=$(compile_ms "$ct/use_concurrentqueue.cpp")
di=$(compile_ms "$ct/use_dispatcher.cpp")
fv=$(compile_ms "$ct/use_fnptr_vector.cpp")
rm -f "$ct/out.o"
printf '{"compiler": "%s", "flags": "-std=c++17 -O2 -c", "sluice_ms": %s, "concurrentqueue_ms": %s, "dispatcher_ms": %s, "fnptr_vector_ms": %s}\n' \
  "$("$cxx" --version | head -n 1)" "$sl" "$cq" "$di" "$fv" > "$results/compile_time.json"
echo "    <sluice/sluice.hpp> TU: ${sl} ms; <concurrentqueue/concurrentqueue.h> TU: ${cq} ms"
echo "    <sluice/dispatcher.hpp> TU: ${di} ms; std::vector of function pointers TU: ${fv} ms"

# ---- report ------------------------------------------------------------------
echo "=== report"
# report.py draws its PNGs with matplotlib. The first python3 on PATH may be a
# separate installation (pyenv, venv) that cannot see the distribution's
# python3-matplotlib, so fall back to /usr/bin/python3 when it can import it.
py=${SLUICE_BENCH_PYTHON:-python3}
if [ -z "${SLUICE_BENCH_PYTHON:-}" ] && ! "$py" -c 'import matplotlib' 2>/dev/null \
   && [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
  py=/usr/bin/python3
fi
"$py" benchmarks/report.py "$results"
