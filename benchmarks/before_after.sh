#!/usr/bin/env bash
# Measures the benchmark binaries of an earlier commit and of the work tree on
# the same machine, in turns, and prints each figure's ratio to the baseline
# of its own binary, before and after. The host's speed moves from one run to
# the next (cross-core latency above all), so only figures measured side by
# side say what a change did.
#
#   bash benchmarks/before_after.sh <commit> [bench ...]     (default: dispatch queued cross_thread keyed latency)
#
# The commit's sources are checked out in a temporary worktree; both sides are
# compiled with the `bench` preset's command line for each binary (-j1), and
# each binary runs SLUICE_BA_ROUNDS times (default 3) per side, alternating,
# each run with 3 repetitions (medians); SLUICE_BA_FILTER, if set, is passed
# as --benchmark_filter. Needs python3. Output: a markdown
# table on stdout, JSON files in build/bench/before_after/.
set -euo pipefail
cd "$(dirname "$0")/.."
commit=${1:?usage: before_after.sh <commit> [bench ...]}
shift
benches=${*:-"dispatch queued cross_thread keyed latency"}
rounds=${SLUICE_BA_ROUNDS:-3}
out=build/bench/before_after
tree=$(mktemp -d /tmp/sluice-before.XXXXXX)
trap 'git worktree remove --force "$tree" >/dev/null 2>&1 || rm -rf "$tree"' EXIT

cmake --preset bench -DSLUICE_BUILD_EXAMPLES=OFF >/dev/null
git worktree add -q --detach "$tree" "$commit"
mkdir -p "$out"
rm -f "$out"/*.json
here=$(pwd)
for b in $benches; do
  cmake --build build/bench -j1 --target "bench_$b" >/dev/null
  # The preset's compile command for this binary, pointed at the old tree.
  # (awk reads the whole list: a reader that stops early would end ninja
  # with SIGPIPE, which pipefail turns into a failed script.)
  cmd=$(ninja -C build/bench -t commands "bench_$b" | awk -v f="bench_$b.cpp" 'index($0, f) && !n++' |
    sed 's/ -M[TF] [^ ]*//g; s/ -MD//; s/ -o [^ ]*//')
  [ -n "$cmd" ] || { echo "before_after.sh: no compile command for bench_$b in build/bench" >&2; exit 1; }
  old=${cmd//$here\/include/$tree\/include}
  old=${old//$here\/benchmarks\//$tree\/benchmarks\/}
  eval "$old -o $out/bench_${b}_before.o"
  c++ "$out/bench_${b}_before.o" -o "$out/bench_${b}_before" -lbenchmark -lpthread
  for r in $(seq 1 "$rounds"); do
    for side in before after; do
      bin=$out/bench_${b}_before
      [ "$side" = after ] && bin=build/bench/benchmarks/bench_$b
      echo "=== $b $side round $r" >&2
      "$bin" ${SLUICE_BA_FILTER:+--benchmark_filter="$SLUICE_BA_FILTER"} \
        --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
        --benchmark_format=json --benchmark_out="$out/${b}_${side}_$r.json" \
        --benchmark_out_format=json >/dev/null
    done
  done
done

python3 - "$out" "$commit" <<'EOF'
import json, os, re, statistics, sys
out, commit = sys.argv[1], sys.argv[2]
opt = re.compile(r"/(real_time|min_time:[0-9.]+|iterations:\d+)(?=/|$)")
# sluice run, baseline run, figure ("ns": time per event; "rate": events/s; "p50"/"p99")
pairs = [
    ("dispatch/sluice/1", "dispatch/raw_fnptr/1", "ns"),
    ("dispatch/sluice/10", "dispatch/raw_fnptr/10", "ns"),
    ("queued/sluice/16B/stamp:0", "queued/moodycamel/16B", "rate"),
    ("queued/sluice/16B/stamp:1", "queued/moodycamel/16B", "rate"),
    ("queued/sluice_bulk/16B/stamp:0", "queued/moodycamel/16B", "rate"),
    ("xt/sluice_publish", "xt/moodycamel_single", "rate"),
    ("xt/sluice_publish_defaults", "xt/moodycamel_single", "rate"),
    ("xt/sluice_bus_publish", "xt/moodycamel_single", "rate"),
    ("xt/sluice_publish_bulk256", "xt/moodycamel_bulk256", "rate"),
    ("keyed/sluice_4p_2w", "keyed/moodycamel_4p_2c", "rate"),
    ("latency/sluice", "latency/moodycamel", "p50"),
    ("latency/sluice_defaults", "latency/moodycamel", "p50"),
    ("latency/sluice_defaults", "latency/moodycamel", "p99"),
    ("poll_empty/sluice/lanes:1", "poll_empty/moodycamel", "ns"),
    ("poll_empty/sluice/lanes:4", "poll_empty/moodycamel", "ns"),
    ("pipeline/sluice", "pipeline/hand_written", "ns"),
    ("stage/alone/kind:1", "stage/alone/kind:0", "ns"),
    ("stage/alone/kind:2", "stage/alone/kind:0", "ns"),
    ("stage/alone/kind:3", "stage/alone/kind:0", "ns"),
    ("stage/alone/kind:4", "stage/alone/kind:0", "ns"),
    ("stage/filters/8", "stage/filters/1", "ns"),
    ("storage/append/recorder/sync:never", "storage/append/raw_write", "rate"),
    ("storage/append/recorder/sync:never", "storage/append/raw_write/chunk:4MiB", "rate"),
    ("storage/bus/memory_sink/stamp:0", "storage/bus/none/stamp:0", "ns"),
    ("storage/bus/file_log/stamp:0", "storage/bus/none/stamp:0", "ns"),
    ("storage/bus/memory_sink/stamp:1", "storage/bus/none/stamp:1", "ns"),
    ("storage/bus/file_log/stamp:1", "storage/bus/none/stamp:1", "ns"),
]
def fig(e, m):
    if m == "rate":
        return e.get("items_per_second")
    if m == "ns":
        v = e.get("items_per_second")
        return 1e9 / v if v else None
    return e.get(m + "_ns")
vals = {}  # (side, run, metric) -> {round: median of that run}
for fn in sorted(os.listdir(out)):
    m = re.match(r"(.+)_(before|after)_(\d+)\.json$", fn)
    if not m:
        continue
    side, rnd = m.group(2), int(m.group(3))
    for b in json.load(open(os.path.join(out, fn))).get("benchmarks", []):
        if b.get("aggregate_name") != "median":
            continue
        name = opt.sub("", b["run_name"])
        for metric in ("rate", "ns", "p50", "p99"):
            v = fig(b, metric)
            if v is not None:
                vals.setdefault((side, name, metric), {})[(m.group(1), rnd)] = v
def med(side, run, metric):
    v = vals.get((side, run, metric))
    return statistics.median(v.values()) if v else None
def ratio(side, s, b, metric):
    # Each run's sluice figure over the baseline of the same run (the host's
    # speed moves between runs), then the median over the runs.
    sv, bv = vals.get((side, s, metric), {}), vals.get((side, b, metric), {})
    rs = [sv[k] / bv[k] for k in sv if k in bv and bv[k]]
    return (statistics.median(rs), min(rs), max(rs)) if rs else None
def show(v, metric):
    if v is None:
        return "n/a"
    if metric == "rate":
        return f"{v/1e6:.1f} M/s"
    return f"{v:.1f} ns" if metric == "ns" else f"{v:.0f} ns"
def show_ratio(r):
    return "n/a" if r is None else f"{r[0]:.2f}x ({r[1]:.2f}-{r[2]:.2f})"
print("Ratio: each run's sluice figure over the baseline of the same run; median over "
      "the runs (range in brackets). Figures: medians over the runs.\n")
print(f"| sluice run / baseline (figure) | before ({commit}) | baseline | ratio | after | baseline | ratio |")
print("|---|---:|---:|---:|---:|---:|---:|")
for s, b, m in pairs:
    row = []
    for side in ("before", "after"):
        row += [show(med(side, s, m), m), show(med(side, b, m), m), show_ratio(ratio(side, s, b, m))]
    if all(x == "n/a" for x in row):
        continue
    print(f"| `{s}` / `{b}` ({m}) | " + " | ".join(row) + " |")
EOF
