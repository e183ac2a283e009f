#!/usr/bin/env python3
"""Summarises the sluice benchmark results written by benchmarks/run.sh.

Reads the Google Benchmark JSON files (aggregates of 5 repetitions) in the
results directory (default build/bench/results), takes the median of each
figure, compares every sluice figure with its baseline from the same binary,
and prints markdown tables (also written to <results>/report.md). When
matplotlib can be imported, PNG plots are written to docs/img/; otherwise the
plots are skipped with a message. Standard library only otherwise.

Usage: python3 benchmarks/report.py [results_dir] [--img-dir DIR]
"""

import json
import math
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# Suffixes Google Benchmark appends to names for options, not for arguments.
_OPTION_SUFFIX = re.compile(
    r"/(real_time|process_time|manual_time|iterations:\d+|min_time:[0-9.]+|"
    r"min_warmup_time:[0-9.]+|repeats:\d+|threads:\d+)(?=/|$)")


def base_name(run_name):
    return _OPTION_SUFFIX.sub("", run_name)


# ---------------------------------------------------------------------------
# What is compared with what. Each sluice figure is divided by the baseline's
# figure from the same binary; `metric` says which figure:
#   "ns"   nanoseconds per event (1e9 / items_per_second): ratio > 1 = slower
#   "rate" events per second (items_per_second):          ratio > 1 = faster
#   "p50" / "p99"  latency percentiles (counters):         ratio > 1 = slower
# target: (op, value) on the ratio, or None.
COMPARISONS = [
    # binary, label, sluice run, baseline run, metric, target
    ("bench_dispatch", "dispatch, 1 handler", "dispatch/sluice/1", "dispatch/raw_fnptr/1",
     "ns", ("<=", 1.3)),
    ("bench_dispatch", "dispatch, 10 handlers", "dispatch/sluice/10", "dispatch/raw_fnptr/10",
     "ns", ("<=", 1.15)),
    ("bench_pipeline", "filter + transform + route + handler vs hand-written",
     "pipeline/sluice", "pipeline/hand_written", "ns", ("<=", 1.5)),
    ("bench_pipeline", "one filter stage vs no stage", "stage/alone/kind:1",
     "stage/alone/kind:0", "ns", None),
    ("bench_pipeline", "one tap stage vs no stage", "stage/alone/kind:2",
     "stage/alone/kind:0", "ns", None),
    ("bench_pipeline", "one enrich (T -> T) stage vs no stage", "stage/alone/kind:3",
     "stage/alone/kind:0", "ns", None),
    ("bench_pipeline", "one route stage vs no stage", "stage/alone/kind:4",
     "stage/alone/kind:0", "ns", None),
    ("bench_queued", "queued 16 B, stamp off vs vector", "queued/sluice/16B/stamp:0",
     "queued/vector/16B", "rate", None),
    ("bench_queued", "queued 16 B, stamp off vs moodycamel", "queued/sluice/16B/stamp:0",
     "queued/moodycamel/16B", "rate", None),
    ("bench_queued", "queued 16 B, stamp on (default options) vs moodycamel",
     "queued/sluice/16B/stamp:1", "queued/moodycamel/16B", "rate", (">=", 0.9)),
    ("bench_queued", "queued 16 B, publish_bulk vs moodycamel", "queued/sluice_bulk/16B/stamp:0",
     "queued/moodycamel/16B", "rate", None),
    ("bench_queued_64B", "queued 64 B, stamp off vs vector", "queued/sluice/64B/stamp:0",
     "queued/vector/64B", "rate", None),
    ("bench_queued_64B", "queued 64 B, stamp off vs moodycamel", "queued/sluice/64B/stamp:0",
     "queued/moodycamel/64B", "rate", None),
    ("bench_queued_64B", "queued 64 B, stamp on vs moodycamel", "queued/sluice/64B/stamp:1",
     "queued/moodycamel/64B", "rate", None),
    ("bench_cross_thread", "1->1 publish vs raw single-item", "xt/sluice_publish",
     "xt/moodycamel_single", "rate", (">=", 1.0)),
    ("bench_cross_thread", "1->1 publish_bulk(256) vs raw bulk(256)", "xt/sluice_publish_bulk256",
     "xt/moodycamel_bulk256", "rate", (">=", 0.8)),
    ("bench_cross_thread", "1->1 publish, default options vs raw single", "xt/sluice_publish_defaults",
     "xt/moodycamel_single", "rate", (">=", 1.0)),
    ("bench_cross_thread", "1->1 bus.publish (shared) vs raw single", "xt/sluice_bus_publish",
     "xt/moodycamel_single", "rate", None),
    ("bench_cross_thread", "1->1 publish vs raw single, record-sized payload", "xt/sluice_publish",
     "xt/moodycamel_single/record", "rate", None),
    ("bench_cross_thread", "1->1 publish vs raw drain(64) + exact count", "xt/sluice_publish",
     "xt/moodycamel_drain64_counted", "rate", None),
    ("bench_cross_thread", "1->1 publish_bulk vs raw bulk, record-sized payload",
     "xt/sluice_publish_bulk256", "xt/moodycamel_bulk256/record", "rate", None),
    ("bench_keyed", "4->2 keyed vs raw 4->2", "keyed/sluice_4p_2w", "keyed/moodycamel_4p_2c",
     "rate", (">=", 0.8)),
    ("bench_latency", "latency p50 @100k/s", "latency/sluice", "latency/moodycamel", "p50",
     ("<=", 1.3)),
    ("bench_latency", "latency p99 @100k/s", "latency/sluice", "latency/moodycamel", "p99", None),
    ("bench_latency", "latency p50, default options", "latency/sluice_defaults",
     "latency/moodycamel", "p50", ("<=", 1.3)),
    ("bench_latency", "latency p99, default options", "latency/sluice_defaults",
     "latency/moodycamel", "p99", ("<=", 2.0)),
    ("bench_latency", "one poll of empty queues, 1 lane", "poll_empty/sluice/lanes:1",
     "poll_empty/moodycamel", "ns", None),
    ("bench_latency", "one poll of empty queues, 4 lanes", "poll_empty/sluice/lanes:4",
     "poll_empty/moodycamel", "ns", None),
    # The NATS bridge (bench_nats; SLUICE_BENCHES=nats): the raw NATS C client, same server.
    ("bench_nats", "outbound: bus + recorder + nats_sink vs raw async publish",
     "nats/out/sluice", "nats/out/raw/ack_timeout_ms:0/ack_handler:0", "rate", (">=", 0.8)),
    ("bench_nats", "outbound vs raw async publish with an ack handler",
     "nats/out/sluice", "nats/out/raw/ack_timeout_ms:0/ack_handler:1", "rate", None),
    ("bench_nats", "outbound vs raw async publish with a 2 s timeout per message",
     "nats/out/sluice", "nats/out/raw/ack_timeout_ms:2000/ack_handler:1", "rate", None),
    ("bench_nats", "inbound: nats_source into a bus vs raw pull consume",
     "nats/in/sluice/idle_spin_us:200", "nats/in/raw", "rate", (">=", 0.8)),
    ("bench_nats", "inbound, the bus's worker parking at once (idle_spin 0)",
     "nats/in/sluice/idle_spin_us:0", "nats/in/raw", "rate", None),
    ("bench_nats", "end to end p50 @5k/s", "nats/latency/sluice", "nats/latency/raw", "p50", None),
    ("bench_nats", "end to end p99 @5k/s", "nats/latency/sluice", "nats/latency/raw", "p99", None),
    # Footprint (bench_footprint): counters, not times.
    ("bench_footprint", "bytes per queued 16 B event vs raw queue", "footprint/bytes/sluice/16B",
     "footprint/bytes/moodycamel/16B", "bytes_per_event", None),
    ("bench_footprint", "bytes per queued 64 B event vs raw queue", "footprint/bytes/sluice/64B",
     "footprint/bytes/moodycamel/64B", "bytes_per_event", None),
    ("bench_footprint", "bytes per queued 256 B event vs raw queue", "footprint/bytes/sluice/256B",
     "footprint/bytes/moodycamel/256B", "bytes_per_event", None),
    # Storage (bench_storage): 64-byte events, 112-byte records.
    ("bench_storage", "append, recorder (sync never) vs raw write(), same chunks",
     "storage/append/recorder/sync:never", "storage/append/raw_write", "rate", (">=", 0.7)),
    ("bench_storage", "append, recorder (sync never) vs raw write(), 4 MiB chunks",
     "storage/append/recorder/sync:never", "storage/append/raw_write/chunk:4MiB", "rate", None),
    ("bench_storage", "append, recorder rolling 8 MiB segments vs raw write()",
     "storage/append/recorder_rolling/sync:never/segment:8MiB", "storage/append/raw_write",
     "rate", None),
    ("bench_storage", "group commit, 1 producer vs raw write+fdatasync, same chunks",
     "storage/commit/recorder/producers:1", "storage/commit/raw_write_fdatasync/producers:1",
     "rate", None),
    ("bench_storage", "group commit, 4 producers vs raw write+fdatasync, same chunks",
     "storage/commit/recorder/producers:4", "storage/commit/raw_write_fdatasync/producers:4",
     "rate", None),
    ("bench_storage", "log_reader (page cache) vs raw read()", "storage/read/log_reader",
     "storage/read/raw_read", "rate", None),
    ("bench_storage", "log_reader + codecs decode vs log_reader", "storage/read/log_reader_decode",
     "storage/read/log_reader", "rate", None),
    ("bench_storage", "replay into a bus, stamp off, vs log_reader", "storage/read/replay_bus/stamp:0",
     "storage/read/log_reader", "rate", None),
    ("bench_storage", "replay into a bus, stamp on, vs log_reader", "storage/read/replay_bus/stamp:1",
     "storage/read/log_reader", "rate", None),
    ("bench_storage", "bus publish+poll recording to memory_sink vs not, stamp off",
     "storage/bus/memory_sink/stamp:0", "storage/bus/none/stamp:0", "ns", ("<=", 1.2)),
    ("bench_storage", "bus publish+poll recording to file_log vs not, stamp off",
     "storage/bus/file_log/stamp:0", "storage/bus/none/stamp:0", "ns", ("<=", 1.2)),
    ("bench_storage", "bus publish+poll recording to memory_sink vs not, stamp on",
     "storage/bus/memory_sink/stamp:1", "storage/bus/none/stamp:1", "ns", ("<=", 1.2)),
    ("bench_storage", "bus publish+poll recording to file_log vs not, stamp on",
     "storage/bus/file_log/stamp:1", "storage/bus/none/stamp:1", "ns", ("<=", 1.2)),
]

# Absolute targets: binary, label, run, metric, (op, value), unit.
ABSOLUTE = [
    ("bench_footprint", "bytes per queued 16 B event (lane memory / capacity)",
     "footprint/bytes/sluice/16B", "bytes_per_event", ("<=", 48), "bytes"),
    ("bench_footprint", "bytes per queued 64 B event", "footprint/bytes/sluice/64B",
     "bytes_per_event", None, "bytes"),
    ("bench_footprint", "bytes per queued 256 B event", "footprint/bytes/sluice/256B",
     "bytes_per_event", None, "bytes"),
    ("bench_footprint", "idle workers (run(2)), CPU after 100 ms idle",
     "footprint/idle_cpu/sluice_run2", "idle_cpu_pct", ("<=", 2.0), "% of a core"),
    ("bench_footprint", "peak RSS growth under a 10x overload (configured lane memory: configured_kib)",
     "footprint/overload_rss/sluice", "rss_growth_kib", None, "KiB"),
    ("bench_footprint", "configured lane memory of that bus", "footprint/overload_rss/sluice",
     "configured_kib", None, "KiB"),
    ("bench_queued", "queued 16 B publish+poll, stamp off", "queued/sluice/16B/stamp:0", "rate",
     None, "events/s"),
    ("bench_queued", "queued 16 B publish+poll, stamp on", "queued/sluice/16B/stamp:1", "rate",
     None, "events/s"),
    ("bench_alloc", "allocs/event, publish+poll 16 B", "alloc/publish_poll/16B", "allocs",
     ("<=", 0.0), "allocs/event"),
    ("bench_alloc", "allocs/event, publish_bulk+poll 16 B", "alloc/publish_bulk_poll/16B", "allocs",
     ("<=", 0.0), "allocs/event"),
    ("bench_alloc", "allocs/event, bus.publish+poll 16 B", "alloc/bus_publish_poll/16B", "allocs",
     ("<=", 0.0), "allocs/event"),
    ("bench_alloc", "allocs/event, dispatch 16 B", "alloc/dispatch/16B", "allocs",
     ("<=", 0.0), "allocs/event"),
    ("bench_alloc_64B", "allocs/event, publish+poll 64 B (boxed)", "alloc/publish_poll/64B", "allocs",
     None, "allocs/event"),
    ("bench_alloc_64B", "allocs/event, publish_bulk+poll 64 B (boxed)", "alloc/publish_bulk_poll/64B",
     "allocs", None, "allocs/event"),
    ("bench_alloc_64B", "allocs/event, dispatch 64 B", "alloc/dispatch/64B", "allocs",
     ("<=", 0.0), "allocs/event"),
    ("bench_storage", "group commit (every_batch), 1 producer", "storage/commit/recorder/producers:1",
     "rate", (">=", 1e6), "events/s"),
    ("bench_storage", "group commit (every_batch), 4 producers", "storage/commit/recorder/producers:4",
     "rate", (">=", 1e6), "events/s"),
    ("bench_storage", "log_reader from the page cache", "storage/read/log_reader", "rate",
     (">=", 20e6), "events/s"),
]


# ---------------------------------------------------------------------------
def load_results(results_dir):
    """{binary: {"context": {...}, "runs": {base name: {aggregate: entry}}}}"""
    data = {}
    for fn in sorted(os.listdir(results_dir)):
        if not (fn.startswith("bench_") and fn.endswith(".json")):
            continue
        path = os.path.join(results_dir, fn)
        try:
            with open(path) as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            print(f"warning: cannot read {path}: {e}", file=sys.stderr)
            continue
        runs = {}
        for b in doc.get("benchmarks", []):
            name = base_name(b.get("run_name", b.get("name", "")))
            agg = b.get("aggregate_name", "iteration") if b.get("run_type") == "aggregate" else "iteration"
            runs.setdefault(name, {})[agg] = b
        data[fn[:-len(".json")]] = {"context": doc.get("context", {}), "runs": runs}
    return data


def figure(entry, metric):
    """The value of `metric` in one aggregate entry, or None."""
    if entry is None or entry.get("error_occurred"):
        return None
    if metric == "rate":
        return entry.get("items_per_second")
    if metric == "ns":
        ips = entry.get("items_per_second")
        return 1e9 / ips if ips else None
    if metric in ("p50", "p90", "p99", "p999"):
        return entry.get(metric + "_ns")
    if metric == "max":
        return entry.get("max_ns")
    if metric == "allocs":
        return entry.get("allocs_per_event")
    return entry.get(metric)


def median(data, binary, run, metric):
    runs = data.get(binary, {}).get("runs", {})
    aggs = runs.get(run)
    if not aggs:
        return None
    entry = aggs.get("median") or aggs.get("iteration")
    return figure(entry, metric)


def cv(data, binary, run, metric):
    """Coefficient of variation across repetitions, in %, for `metric`."""
    aggs = data.get(binary, {}).get("runs", {}).get(run) or {}
    if "cv" in aggs:
        key = {"rate": "items_per_second", "ns": "items_per_second"}.get(metric, None)
        if metric in ("p50", "p90", "p99", "p999"):
            key = metric + "_ns"
        entry = aggs["cv"]
        v = entry.get(key) if key else None
        if v is None:
            v = entry.get("real_time")
        return None if v is None else 100.0 * v
    mean, sd = aggs.get("mean"), aggs.get("stddev")
    m, s = figure(mean, metric), figure(sd, metric)
    if m and s is not None:
        return 100.0 * s / m
    return None


def errors(data):
    out = []
    for binary, d in data.items():
        for run, aggs in d["runs"].items():
            for e in aggs.values():
                if e.get("error_occurred"):
                    out.append(f"{binary}: {run}: {e.get('error_message', 'error')}")
                    break
    return out


def check(op, value, target):
    if value is None:
        return None
    return value <= target + 1e-12 if op == "<=" else value >= target - 1e-12


def fmt_num(v, metric):
    if v is None:
        return "n/a"
    if metric in ("rate",):
        return f"{v / 1e6:.1f} M/s" if v >= 1e6 else f"{v / 1e3:.1f} k/s"
    if metric == "ns":
        return f"{v:.2f} ns"
    if metric in ("p50", "p90", "p99", "p999", "max"):
        return f"{v / 1000:.2f} us" if v >= 1000 else f"{v:.0f} ns"
    if metric == "allocs":
        return f"{v:.3f}"
    return f"{v:.4g}"


def fmt_cv(c):
    return "n/a" if c is None or math.isnan(c) else f"{c:.1f}%"


def metric_note(metric):
    return {"ns": "time/event", "rate": "events/s", "p50": "p50 latency",
            "p99": "p99 latency"}.get(metric, metric)


# ---------------------------------------------------------------------------
def comparison_rows(data):
    rows = []
    for binary, label, s_run, b_run, metric, target in COMPARISONS:
        s = median(data, binary, s_run, metric)
        b = median(data, binary, b_run, metric)
        ratio = s / b if (s is not None and b) else None
        met = check(target[0], ratio, target[1]) if target else None
        rows.append(dict(binary=binary, label=label, s_run=s_run, b_run=b_run, metric=metric,
                         s=s, b=b, ratio=ratio, target=target, met=met,
                         s_cv=cv(data, binary, s_run, metric), b_cv=cv(data, binary, b_run, metric)))
    return rows


def absolute_rows(data):
    rows = []
    for binary, label, run, metric, target, unit in ABSOLUTE:
        v = median(data, binary, run, metric)
        met = check(target[0], v, target[1]) if target else None
        rows.append(dict(binary=binary, label=label, run=run, metric=metric, v=v, target=target,
                         met=met, unit=unit))
    return rows


def verdict(met):
    return "n/a" if met is None else ("**met**" if met else "**missed**")


def fmt_target(target, metric=None, unit=None):
    if not target:
        return "-"
    op, val = target
    if unit == "events/s":
        return f"{op} {val / 1e6:.0f} M/s"
    if unit in ("allocs/event", "bytes", "% of a core", "KiB"):
        return f"{op} {val:g}"
    return f"{op} {val:g}x"


def markdown(data, results_dir):
    out = []
    w = out.append
    comps = comparison_rows(data)
    absol = absolute_rows(data)

    w("### Ratios to baselines (median of repetitions)\n")
    w("Ratio = sluice figure / baseline figure, both from the same binary. For "
      "time/event and latency a ratio above 1 means sluice is slower; for events/s "
      "a ratio above 1 means sluice is faster. CV = coefficient of variation across "
      "repetitions.\n")
    w("| scenario | figure | sluice | CV | baseline | CV | ratio | target | result |")
    w("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for r in comps:
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        w(f"| {r['label']} (`{r['s_run']}` / `{r['b_run']}`) | {metric_note(r['metric'])} | "
          f"{fmt_num(r['s'], r['metric'])} | {fmt_cv(r['s_cv'])} | "
          f"{fmt_num(r['b'], r['metric'])} | {fmt_cv(r['b_cv'])} | "
          f"{ratio} | {fmt_target(r['target'])} | {verdict(r['met'])} |")
    w("")

    w("### Absolute targets\n")
    w("| scenario | run | median | target | result |")
    w("|---|---|---:|---:|---|")
    for r in absol:
        w(f"| {r['label']} | `{r['run']}` | {fmt_num(r['v'], r['metric'])} | "
          f"{fmt_target(r['target'], unit=r['unit'])} | {verdict(r['met'])} |")
    w("")

    # Latency detail.
    lat = data.get("bench_latency", {}).get("runs", {})
    if lat:
        w("### Latency percentiles at 100k events/s (median over repetitions)\n")
        w("| run | p50 | p90 | p99 | p99.9 | max |")
        w("|---|---:|---:|---:|---:|---:|")
        for run in sorted(r for r in lat if r.startswith("latency/")):
            cells = [fmt_num(median(data, "bench_latency", run, m), m)
                     for m in ("p50", "p90", "p99", "p999", "max")]
            w(f"| `{run}` | " + " | ".join(cells) + " |")
        w("")

    # Storage detail.
    st = data.get("bench_storage", {}).get("runs", {})
    if st:
        w("### Storage runs, 64-byte events, 112-byte records (median of repetitions)\n")
        w("`proc CPU/event`: CPU time of the whole process (every thread: the recorder's "
          "writer too) per event. `events/sync`: recorder written / syncs, or events per "
          "fdatasync of the baseline. `batch`: average bytes per sink append (per write() "
          "for the baselines).\n")
        w("| run | events/s | MB/s | time/event | proc CPU/event | events/sync | batch | CV |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|")
        for run in sorted(st):
            aggs = st[run]
            e = aggs.get("median") or aggs.get("iteration") or {}
            if e.get("error_occurred"):
                w(f"| `{run}` | error: {e.get('error_message', '')} | | | | | | |")
                continue
            bps = e.get("bytes_per_second")
            mbs = "n/a" if not bps else f"{bps / 1e6:.0f}"
            cpu = e.get("proc_cpu_ns_per_event")
            eps = e.get("events_per_sync")
            batch = e.get("avg_batch_bytes")
            w(f"| `{run}` | {fmt_num(figure(e, 'rate'), 'rate')} | {mbs} | "
              f"{fmt_num(figure(e, 'ns'), 'ns')} | "
              f"{'n/a' if cpu is None else f'{cpu:.0f} ns'} | "
              f"{'-' if not eps else f'{eps:.0f}'} | "
              f"{'-' if not batch else f'{batch / 1024:.1f} KiB'} | "
              f"{fmt_cv(cv(data, 'bench_storage', run, 'rate'))} |")
        w("")

    # Every run.
    w("### All runs (median of repetitions)\n")
    w("| binary | run | events/s | time/event | CV | extra counters |")
    w("|---|---|---:|---:|---:|---|")
    skip = {"items_per_second", "bytes_per_second", "p50_ns", "p90_ns", "p99_ns", "p999_ns", "max_ns"}
    std_keys = {"name", "family_index", "per_family_instance_index", "run_name", "run_type",
                "repetitions", "threads", "aggregate_name", "aggregate_unit", "iterations",
                "real_time", "cpu_time", "time_unit", "repetition_index", "error_occurred",
                "error_message", "label"}
    for binary in sorted(data):
        for run in sorted(data[binary]["runs"]):
            aggs = data[binary]["runs"][run]
            e = aggs.get("median") or aggs.get("iteration") or {}
            if e.get("error_occurred"):
                w(f"| {binary} | `{run}` | error: {e.get('error_message', '')} | | | |")
                continue
            extra = ", ".join(f"{k}={e[k]:.4g}" for k in sorted(e)
                              if k not in std_keys and k not in skip and isinstance(e[k], (int, float)))
            w(f"| {binary} | `{run}` | {fmt_num(figure(e, 'rate'), 'rate')} | "
              f"{fmt_num(figure(e, 'ns'), 'ns')} | {fmt_cv(cv(data, binary, run, 'rate'))} | {extra} |")
    w("")

    # Compile time.
    ct_path = os.path.join(results_dir, "compile_time.json")
    if os.path.exists(ct_path):
        with open(ct_path) as f:
            ct = json.load(f)
        s, c = ct.get("sluice_ms"), ct.get("concurrentqueue_ms")
        w("### Compile time (median of 3)\n")
        w(f"`{ct.get('compiler', 'g++')}`, `{ct.get('flags', '')}`\n")
        w("| translation unit | time | ratio |")
        w("|---|---:|---:|")
        w(f"| `#include <concurrentqueue/concurrentqueue.h>` + minimal use | {c} ms | 1.00x |")
        ratio = f"{s / c:.2f}x" if s and c else "n/a"
        w(f"| `#include <sluice/sluice.hpp>` + minimal use | {s} ms | {ratio} |")
        d, v = ct.get("dispatcher_ms"), ct.get("fnptr_vector_ms")
        if d and c:
            w(f"| `#include <sluice/dispatcher.hpp>` + minimal use | {d} ms | {d / c:.2f}x |")
        if v and c:
            w(f"| `std::vector` of function pointers (no library) | {v} ms | {v / c:.2f}x |")
        w("")

    # Run conditions.
    runs_tsv = os.path.join(results_dir, "runs.tsv")
    if os.path.exists(runs_tsv):
        with open(runs_tsv) as f:
            lines = [l.rstrip("\n").split("\t") for l in f if l.strip()]
        if len(lines) > 1:
            hdr = lines[0]
            w("### Run conditions\n")
            w("`foreign_busy_s`: CPU-seconds the rest of the machine used while the binary ran "
              "(whole-machine busy time minus the binary's own user+sys time). Non-zero means "
              "other work competed for the cores. `attempts`: runs made (the least disturbed "
              "one is kept).\n")
            w("| " + " | ".join(hdr) + " |")
            w("|" + "---|" * len(hdr))
            for l in lines[1:]:
                w("| " + " | ".join(l) + " |")
            w("")
            noisy = [l[0] for l in lines[1:] if len(l) > 5 and _float(l[5]) > 0.1 * max(_float(l[1]), 1e-9)]
            if noisy:
                w("**Warning:** other processes used more than 10% of a core's time during: "
                  + ", ".join(noisy) + ". Treat those figures with care.\n")

    errs = errors(data)
    if errs:
        w("### Errors\n")
        for e in errs:
            w(f"- {e}")
        w("")
    return "\n".join(out), comps, absol


def is_baseline(binary, run):
    """True for a baseline run (plotted orange)."""
    if binary == "bench_storage":
        return "/raw_" in run or "/none/" in run
    return "sluice" not in run


def _float(s):
    try:
        return float(s)
    except ValueError:
        return 0.0


# ---------------------------------------------------------------------------
def plots(data, comps, img_dir):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not importable; skipping plots "
              "(install python3-matplotlib to get PNGs in docs/img/)", file=sys.stderr)
        return []
    os.makedirs(img_dir, exist_ok=True)
    written = []

    # 1. Ratios with targets: the bus's, and storage's (bench_storage) apart.
    def ratio_plot(rows, name, title, width=9):
        if not rows:
            return
        fig, ax = plt.subplots(figsize=(width, 0.45 * len(rows) + 1.5))
        labels = [r["label"] for r in rows]
        vals = [r["ratio"] for r in rows]
        colors = []
        for r in rows:
            colors.append("tab:gray" if r["met"] is None else ("tab:green" if r["met"] else "tab:red"))
        y = list(range(len(rows)))
        ax.barh(y, vals, color=colors)
        for i, r in enumerate(rows):
            if r["target"]:
                ax.plot([r["target"][1]] * 2, [i - 0.4, i + 0.4], color="black", linewidth=2)
            ax.text(r["ratio"], i, f" {r['ratio']:.2f}x", va="center", fontsize=8)
        ax.axvline(1.0, color="black", linewidth=0.5, linestyle=":")
        ax.set_yticks(y)
        ax.set_yticklabels([f"{l} [{metric_note(r['metric'])}]" for l, r in zip(labels, rows)],
                           fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("sluice / baseline (black tick: target; green met, red missed, grey no target)")
        ax.set_title(title)
        fig.tight_layout()
        p = os.path.join(img_dir, name)
        fig.savefig(p, dpi=120)
        plt.close(fig)
        written.append(p)

    rows = [r for r in comps if r["ratio"] is not None]
    ratio_plot([r for r in rows if r["binary"] != "bench_storage"], "bench_ratios.png",
               "sluice vs baselines (median of repetitions)")
    ratio_plot([r for r in rows if r["binary"] == "bench_storage"], "bench_storage_ratios.png",
               "storage vs baselines (median of repetitions)", width=12)

    # 2. Throughput per binary (events/s).
    for binary, title in (("bench_queued", "queued, one thread, 16 B"),
                          ("bench_queued_64B", "queued, one thread, 64 B"),
                          ("bench_cross_thread", "1 producer -> 1 consumer"),
                          ("bench_keyed", "4 producers -> 2 consumers, keyed"),
                          ("bench_dispatch", "immediate dispatch"),
                          ("bench_storage", "storage, 64 B events (112 B records)")):
        runs = data.get(binary, {}).get("runs", {})
        items = [(run, median(data, binary, run, "rate")) for run in sorted(runs)]
        items = [(n, v) for n, v in items if v]
        if not items:
            continue
        fig, ax = plt.subplots(figsize=(9, 0.4 * len(items) + 1.5))
        ax.barh(range(len(items)), [v / 1e6 for _, v in items],
                color=["tab:orange" if is_baseline(binary, n) else "tab:blue" for n, _ in items])
        ax.set_yticks(range(len(items)))
        ax.set_yticklabels([n for n, _ in items], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("million events/s (median); blue sluice, orange baselines")
        ax.set_title(title)
        fig.tight_layout()
        p = os.path.join(img_dir, f"{binary}.png")
        fig.savefig(p, dpi=120)
        plt.close(fig)
        written.append(p)

    # 3. Latency percentiles.
    runs = {k: v for k, v in data.get("bench_latency", {}).get("runs", {}).items()
            if k.startswith("latency/")}
    if runs:
        pcts = ("p50", "p90", "p99", "p999")
        fig, ax = plt.subplots(figsize=(8, 4))
        width = 0.8 / max(len(runs), 1)
        for i, run in enumerate(sorted(runs)):
            vals = [(median(data, "bench_latency", run, m) or 0) / 1000 for m in pcts]
            ax.bar([k + i * width for k in range(len(pcts))], vals, width, label=run)
        ax.set_xticks([k + width * (len(runs) - 1) / 2 for k in range(len(pcts))])
        ax.set_xticklabels(pcts)
        ax.set_yscale("log")
        ax.set_ylabel("microseconds (log)")
        ax.set_title("publish-to-handler latency at 100k events/s")
        ax.legend(fontsize=8)
        fig.tight_layout()
        p = os.path.join(img_dir, "bench_latency.png")
        fig.savefig(p, dpi=120)
        plt.close(fig)
        written.append(p)
    return written


def main(argv):
    args = argv[1:]
    img_dir = os.path.join(ROOT, "docs", "img")
    if "--img-dir" in args:
        i = args.index("--img-dir")
        img_dir = args[i + 1]
        del args[i:i + 2]
    results_dir = args[0] if args else os.path.join(ROOT, "build", "bench", "results")
    if not os.path.isdir(results_dir):
        print(f"error: no results directory {results_dir} (run benchmarks/run.sh first)",
              file=sys.stderr)
        return 1
    data = load_results(results_dir)
    if not data:
        print(f"error: no bench_*.json in {results_dir}", file=sys.stderr)
        return 1
    text, comps, _ = markdown(data, results_dir)
    print(text)
    with open(os.path.join(results_dir, "report.md"), "w") as f:
        f.write(text + "\n")
    for p in plots(data, comps, img_dir):
        print(f"wrote {os.path.relpath(p, ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
