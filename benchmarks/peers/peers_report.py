#!/usr/bin/env python3
"""Markdown report of the peer benchmarks written by benchmarks/peers/run_peers.sh.

Reads every Google Benchmark JSON file in the results directory (default
build/bench-peers/results), takes the median of the repetitions, and prints,
per scenario, each library's time per event, events per second, spread across
repetitions and ratio to the baseline measured in the same binary; then the
versions of the peers (from each binary's context, and Debian's package
versions from dpkg-query). Standard library only.

Usage: python3 benchmarks/peers/peers_report.py [results_dir]
"""

import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# Suffixes Google Benchmark appends to names for options, not for arguments.
_OPTION_SUFFIX = re.compile(
    r"/(real_time|process_time|manual_time|iterations:\d+|min_time:[0-9.]+|"
    r"min_warmup_time:[0-9.]+|repeats:\d+|threads:\d+)(?=/|$)")

# scenario key -> (title, run-name prefix, baseline library)
SCENARIOS = [
    ("dispatch/1", "Immediate dispatch, 16-byte event, 1 handler", "peers/dispatch/", "/1",
     "raw_fnptr"),
    ("dispatch/10", "Immediate dispatch, 16-byte event, 10 handlers", "peers/dispatch/", "/10",
     "raw_fnptr"),
    ("queued", "Queued on one thread: publish 4096 events, then deliver them all",
     "peers/queued/", "", "raw_moodycamel"),
    ("xt", "Cross-thread, 1 producer -> 1 consumer, 2,097,152 events per iteration",
     "peers/xt/", "", "raw_moodycamel"),
]

# What each library's run does (unknown names are shown as they are).
LIBS = {
    "dispatch": {
        "raw_fnptr": "baseline: loop over a vector of function pointers",
        "sluice": "sluice `bus.dispatch`",
        "entt_sigh": "EnTT `entt::sigh::publish` (connected through `entt::sink`)",
        "entt_dispatcher": "EnTT `entt::dispatcher::trigger`",
        "sigslot_st": "sigslot `signal_st` (single-threaded)",
        "sigslot": "sigslot `signal` (thread-safe)",
        "eventpp_callbacklist": "eventpp `CallbackList`",
        "eventpp_dispatcher": "eventpp `EventDispatcher`",
        "boost_signals2": "Boost.Signals2 `signal`",
        "sigcxx": "sigc++ `signal::emit`",
    },
    "queued": {
        "raw_moodycamel": "baseline: moodycamel, producer token, `try_dequeue_bulk(64)`",
        "sluice": "sluice `producer.publish` + `bus.poll`, default options",
        "sluice_stamp0": "sluice, default options but `stamp_time` off",
        "entt_dispatcher": "EnTT `dispatcher::enqueue` + `update`",
        "eventpp_queue": "eventpp `EventQueue::enqueue` + `process`",
    },
    "xt": {
        "raw_moodycamel": "baseline: moodycamel with tokens, spinning `try_dequeue`",
        "sluice": "sluice `producer.publish`, `bus.run(1)`, default options",
        "sluice_1lane_stamp0": "sluice, 1 lane, `stamp_time` off",
        "eventpp_queue": "eventpp `EventQueue`, consumer `waitFor` + `process`",
        "boost_spsc_queue": "Boost.Lockfree `spsc_queue` (8192), spinning `pop`",
    },
}

DEBIAN_PACKAGES = ["libboost-dev", "libsigc++-3.0-dev", "libbenchmark-dev",
                   "libconcurrentqueue-dev"]


def base_name(run_name):
    return _OPTION_SUFFIX.sub("", run_name)


def load(results_dir):
    """[(binary, context, {base name: {aggregate: entry}})] for each JSON file."""
    out = []
    for fn in sorted(os.listdir(results_dir)):
        if not fn.endswith(".json"):
            continue
        path = os.path.join(results_dir, fn)
        try:
            with open(path) as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            print(f"warning: cannot read {path}: {e}", file=sys.stderr)
            continue
        if "benchmarks" not in doc:
            continue
        runs = {}
        for b in doc["benchmarks"]:
            name = base_name(b.get("run_name", b.get("name", "")))
            agg = b.get("aggregate_name", "") if b.get("run_type") == "aggregate" else "iteration"
            runs.setdefault(name, {})[agg] = b
        out.append((fn[:-len(".json")], doc.get("context", {}), runs))
    return out


def ns_per_event(aggs):
    """Median nanoseconds per event (1e9 / items_per_second), or None."""
    entry = aggs.get("median") or aggs.get("iteration")
    if not entry or entry.get("error_occurred"):
        return None
    ips = entry.get("items_per_second")
    return 1e9 / ips if ips else None


def cv_percent(aggs):
    entry = aggs.get("cv")
    if entry and entry.get("items_per_second") is not None:
        return 100.0 * entry["items_per_second"]
    return None


def fmt_ns(ns):
    if ns is None:
        return "—"
    return f"{ns:.3g}" if ns < 100 else f"{ns:,.0f}"


def fmt_rate(ns):
    if ns is None:
        return "—"
    return f"{1e3 / ns:.3g}"


def errors_of(aggs):
    for e in aggs.values():
        if e.get("error_occurred"):
            return e.get("error_message", "error")
    return None


def lib_order(kind, lib, baseline):
    known = list(LIBS.get(kind, {}))
    if lib == baseline:
        return (0, 0, lib)
    if lib.startswith("sluice"):
        return (1, known.index(lib) if lib in known else 99, lib)
    return (2, known.index(lib) if lib in known else 99, lib)


def scenario_table(data, key, title, prefix, suffix, baseline):
    kind = key.split("/")[0]
    rows = []
    for binary, _ctx, runs in data:
        base = runs.get(prefix + baseline + suffix)
        base_ns = ns_per_event(base) if base else None
        libs = []
        for name in runs:
            if not name.startswith(prefix) or not name.endswith(suffix):
                continue
            lib = name[len(prefix):len(name) - len(suffix)] if suffix else name[len(prefix):]
            if "/" in lib:
                continue
            libs.append(lib)
        for lib in sorted(libs, key=lambda l: lib_order(kind, l, baseline)):
            aggs = runs[prefix + lib + suffix]
            ns = ns_per_event(aggs)
            cv = cv_percent(aggs)
            ratio = (ns / base_ns) if ns is not None and base_ns else None
            err = errors_of(aggs)
            what = LIBS.get(kind, {}).get(lib, lib)
            rows.append((lib, what, binary, ns, cv, ratio, err))
    if not rows:
        return []
    out = [f"### {title}", "",
           "| library | what runs | binary | ns/event | M events/s | CV % | time × baseline |",
           "|---|---|---|---:|---:|---:|---:|"]
    for lib, what, binary, ns, cv, ratio, err in rows:
        if err:
            out.append(f"| {lib} | {what} | {binary} | — | — | — | ERROR: {err} |")
            continue
        cv_s = "—" if cv is None else f"{cv:.1f}"
        ratio_s = "—" if ratio is None else ("1 (baseline)" if lib == baseline else f"{ratio:.2f}")
        out.append(f"| {lib} | {what} | {binary} | {fmt_ns(ns)} | {fmt_rate(ns)} | {cv_s} | "
                   f"{ratio_s} |")
    out.append("")
    return out


def dpkg_versions(packages):
    try:
        p = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\t${Version}\n"] + packages,
                           capture_output=True, text=True, check=False)
    except OSError:
        return {}
    vers = {}
    for line in p.stdout.splitlines():
        name, _, ver = line.partition("\t")
        if ver:
            vers[name.split(":")[0]] = ver
    return vers


def versions(data):
    out = ["### Versions", "", "| what | version | from |", "|---|---|---|"]
    seen = set()
    for binary, ctx, _runs in data:
        if "sluice_version" in ctx and "sluice" not in seen:
            seen.add("sluice")
            out.append(f"| sluice | {ctx['sluice_version']} | this tree |")
        for k in sorted(ctx):
            if k.startswith("peer:") and k not in seen:
                seen.add(k)
                out.append(f"| {k[len('peer:'):]} | {ctx[k]} | {binary} (compiled in) |")
    for pkg, ver in sorted(dpkg_versions(DEBIAN_PACKAGES).items()):
        out.append(f"| {pkg} | {ver} | Debian package (dpkg-query) |")
    compilers = sorted({ctx.get("compiler", "?") for _b, ctx, _r in data})
    out.append(f"| compiler | {', '.join(compilers)} | `__VERSION__` |")
    out.append("")
    return out


def disturbance(results_dir):
    """run_peers.sh's runs.tsv: how much CPU other processes used during each binary."""
    path = os.path.join(results_dir, "runs.tsv")
    try:
        with open(path) as f:
            rows = [line.rstrip("\n").split("\t") for line in f]
    except OSError:
        return []
    if len(rows) < 2:
        return []
    out = ["### Other processes during the run", "",
           "| binary | wall s | its CPU s | other processes' CPU s | attempts |",
           "|---|---:|---:|---:|---:|"]
    for r in rows[1:]:
        if len(r) >= 5:
            out.append(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} |")
    out.append("")
    return out


def main():
    results = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "bench-peers",
                                                                 "results")
    data = load(results)
    if not data:
        print(f"no benchmark JSON in {results}", file=sys.stderr)
        return 1
    out = ["Medians of the repetitions; ns/event is per event handed over (a dispatch "
           "with 10 handlers is one event); time × baseline divides by the baseline of "
           "the same binary and run (> 1 = slower). CV: spread of events/s across "
           "repetitions.", ""]
    for key, title, prefix, suffix, baseline in SCENARIOS:
        out += scenario_table(data, key, title, prefix, suffix, baseline)
    out += versions(data)
    out += disturbance(results)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
