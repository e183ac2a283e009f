#!/usr/bin/env bash
# Where the compile time of a minimal sluice TU goes: clang's -ftime-trace of
# the TU that benchmarks/run.sh times (build/bench/compile_time/, made by a
# run.sh run) and of the queue-only TU, summarised per phase and per header.
#   bash benchmarks/compile_breakdown.sh            (needs clang++ and python3)
set -euo pipefail
cd "$(dirname "$0")/.."
ct=build/bench/compile_time
[ -f "$ct/use_sluice.cpp" ] || { echo "run benchmarks/run.sh first (it writes $ct)"; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for tu in use_sluice use_concurrentqueue; do
  clang++ -std=c++17 -O2 -I include -ftime-trace -c "$ct/$tu.cpp" -o "$out/$tu.o"
done
python3 - "$out/use_sluice.json" "$out/use_concurrentqueue.json" <<'PY'
import collections, json, sys
for path in sys.argv[1:]:
    ev = [e for e in json.load(open(path))["traceEvents"] if e.get("ph") == "X"]
    total = {e["name"][6:]: e["dur"] / 1000 for e in ev if e["name"].startswith("Total ")}
    src = collections.Counter()
    for e in ev:
        if e["name"] == "Source":
            src[e["args"]["detail"]] += e["dur"] / 1000
    print(f"### {path.rsplit('/', 1)[-1].replace('.json', '.cpp')}\n")
    print("| phase | ms |\n|---|---:|")
    for k in ("ExecuteCompiler", "Frontend", "Source", "ParseClass", "InstantiateClass",
              "InstantiateFunction", "Backend", "Optimizer"):
        if k in total:
            print(f"| {k} | {total[k]:.0f} |")
    print("\n| header (inclusive) | ms |\n|---|---:|")
    for f, v in src.most_common(10):
        short = f.split("include/c++/12/")[-1].split("include/sluice/")[-1]
        print(f"| `{short}` | {v:.0f} |")
    print()
PY
