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


def recovery_plot(result, out: Path) -> None:
    """Scenario 9: L1 hit rate of the hot set (probe) and of the traffic over time, queue depth."""
    rec = result["recovery"]
    pts = rec["series"]
    t = [p["t"] for p in pts]
    fig, ax = plt.subplots(figsize=(9, 5))
    ax.plot(t, [100 * p["probeL1"] for p in pts], "o-", ms=3, label="hot set in L1 (probe, all 100 items)")
    ax.plot(t, [100 * p["trafficL1"] if finite(p["trafficL1"]) else None for p in pts], "s-", ms=3, label="traffic L1 hit rate (Zipf over the hot set)")
    if rec.get("secondsToAllL1") is not None:
        ax.axvline(rec["secondsToAllL1"], color="green", ls=":", label=f"all L1 after {rec['secondsToAllL1']} s")
    ax.axvline(10, color="grey", ls="--", lw=0.7, label="target 10 s")
    ax.set_xlabel("seconds after the burst")
    ax.set_ylabel("L1 hits (%)")
    ax2 = ax.twinx()
    ax2.plot(t, [p["depth"] for p in pts], color="red", lw=0.8, label="queue depth")
    ax2.set_ylabel("jobs queued")
    ax.set_title(f"Recovery after a burst ({rec['queuedAfterBurst']} jobs queued)")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="center right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> int:
    d = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results")
    summary = json.loads((d / "summary.json").read_text())
    latency_plot(summary, d / "latency-percentiles.png")
    sweep_plot(summary, d / "throughput-latency.png")
    print(f"wrote {d / 'latency-percentiles.png'} and {d / 'throughput-latency.png'}")
    rec = d / "scenario-9-recovery.json"
    if rec.exists():
        recovery_plot(json.loads(rec.read_text()), d / "recovery.png")
        print(f"wrote {d / 'recovery.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
