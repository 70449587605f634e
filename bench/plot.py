"""Plots of the benchmark summary (bench/results/summary.json): latency percentiles per scenario
and the throughput–latency curve (ctrserve vs the Python peer, with the compute ceiling).

Usage: python3 bench/plot.py [results-dir]
"""
import json
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def finite(x):
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def latency_plot(summary, out: Path) -> None:
    rows = [r for r in summary["rows"] if r["mode"] != "in-process" and finite(r["p50"])]
    labels = [r["scenario"].replace(" — ", "\n") + ("\n(autocannon)" if r["mode"] == "autocannon" else "") for r in rows]
    keys = [("p50", "p50"), ("p95", "p95"), ("p99", "p99"), ("p999", "p99.9")]
    fig, ax = plt.subplots(figsize=(max(10, 1.1 * len(rows)), 6))
    width = 0.2
    for j, (k, name) in enumerate(keys):
        xs = [i + (j - 1.5) * width for i in range(len(rows))]
        ax.bar(xs, [r[k] if finite(r[k]) and r[k] > 0 else 0.01 for r in rows], width, label=name)
    ax.set_yscale("log")
    ax.set_ylabel("latency (ms, log)")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(labels, rotation=35, ha="right", fontsize=7)
    for y, name in ((10, "10 ms"), (50, "50 ms"), (200, "200 ms budget")):
        ax.axhline(y, color="grey", lw=0.7, ls="--")
        ax.text(len(rows) - 0.5, y * 1.05, name, fontsize=7, ha="right", color="grey")
    ax.legend()
    ax.set_title("Latency percentiles per scenario (open loop, from due time)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def sweep_plot(summary, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(9, 6))
    palette = ["tab:blue", "tab:cyan", "tab:orange", "tab:red", "tab:purple"]
    for idx, (name, pts) in enumerate(summary.get("sweeps", {}).items()):
        color = palette[idx % len(palette)]
        if not pts:
            continue
        tp = [p["throughput"] for p in pts]
        ax.plot(tp, [p["p50"] for p in pts], "o--", color=color, label=f"{name} p50")
        ax.plot(tp, [p["p99"] for p in pts], "s-", color=color, label=f"{name} p99")
        for p in pts:
            ax.annotate(str(p["rate"]), (p["throughput"], p["p99"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ceiling = summary.get("ceiling")
    if ceiling:
        c = round(1000 / ceiling["totalMs"]["p50"])  # median batch time, as in the targets
        ax.axvline(c, color="green", ls=":", label=f"ceiling (head+stats, median) {c} req/s")
        ax.axvline(0.6 * c, color="green", ls="-.", lw=0.7, label="60% of ceiling")
    ax.axhline(50, color="grey", ls="--", lw=0.7, label="p99 50 ms")
    ax.set_yscale("log")
    ax.set_xlabel("throughput (2xx req/s, 100 items/request; labels = offered rate)")
    ax.set_ylabel("latency (ms, log)")
    ax.set_title("Throughput–latency, all-L1 workload")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> int:
    d = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results")
    summary = json.loads((d / "summary.json").read_text())
    latency_plot(summary, d / "latency-percentiles.png")
    sweep_plot(summary, d / "throughput-latency.png")
    print(f"wrote {d / 'latency-percentiles.png'} and {d / 'throughput-latency.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
