#!/usr/bin/env python3
"""Plots sluice-load reports (docs/load-testing.md).

Reads one or more JSON reports written by `sluice-load --format json` and
draws, into the output folder (default docs/img):
  load_latency_vs_rate.png   p50/p90/p99/p99.9 against the offered rate, for
                             every run of a ramp or a sweep (open loop)
  load_throughput.png        delivered events per second over time, per run
Needs matplotlib (Debian: python3-matplotlib); the standard library otherwise.

Usage: python3 benchmarks/plot_load.py report.json [more.json ...] [--out DIR]
"""

import json
import os
import sys


def main(argv):
    out = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "img")
    files = []
    i = 0
    while i < len(argv):
        if argv[i] == "--out" and i + 1 < len(argv):
            out = argv[i + 1]
            i += 2
            continue
        files.append(argv[i])
        i += 1
    if not files:
        print(__doc__.strip())
        return 2
    runs = []
    for f in files:
        with open(f) as fh:
            report = json.load(fh)
        label = os.path.splitext(os.path.basename(f))[0]
        for r in report["runs"]:
            r["_file"] = label
            r["_slo"] = report.get("slo_p99_ns", 0)
            runs.append(r)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (Debian: python3-matplotlib): no plots")
        return 1
    os.makedirs(out, exist_ok=True)

    open_loop = sorted((r for r in runs if r["rate"] > 0),
                       key=lambda r: (r["_file"], r["rate"]))
    if open_loop:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for file in sorted({r["_file"] for r in open_loop}):
            rs = [r for r in open_loop if r["_file"] == file]
            rate = [r["rate"] for r in rs]
            for key, style in (("p50", "o-"), ("p90", "s-"), ("p99", "^-"), ("p999", "v-")):
                ax.plot(rate, [r[key + "_ns"] / 1e3 for r in rs], style,
                        label=f"{file} {key}")
            slo = rs[0]["_slo"]
            if slo:
                ax.axhline(slo / 1e3, color="grey", linestyle="--", linewidth=1,
                           label=f"objective p99 {slo / 1e3:g} us")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("offered rate (events/s, open loop)")
        ax.set_ylabel("latency from intended send time (us)")
        ax.set_title("sluice-load: latency percentiles against rate")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = os.path.join(out, "load_latency_vs_rate.png")
        fig.savefig(path, dpi=110)
        print("wrote", path)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = 0
    for n, r in enumerate(runs):
        if not r["timeline"]:
            continue
        c = r
        what = f"{c['rate']:.0f}/s" if c["rate"] > 0 else "max"
        ax.plot([t for t, _ in r["timeline"]], [v for _, v in r["timeline"]], "-",
                label=f"{r['_file']} run {n + 1}: {c['lanes']} lanes, {c['workers']} workers, {what}")
        drawn += 1
    if drawn:
        ax.set_xlabel("time since the run started (s)")
        ax.set_ylabel("delivered events per second")
        ax.set_title("sluice-load: throughput over time")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = os.path.join(out, "load_throughput.png")
        fig.savefig(path, dpi=110)
        print("wrote", path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
