"""PNG figures for docs/benchmarks.md (matplotlib, Agg, small files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLORS = {"ingest": "#d62728", "bare": "#1f77b4", "flask": "#7f7f7f"}
LABELS = {
    "ingest": "emostream ingest",
    "bare": "bare ASGI (ceiling)",
    "flask": "seed style (Flask)",
}


def draw(results: dict[str, Any], docs: Path) -> list[tuple[str, str]]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no figures (pip install -e '.[bench]')")
        return []
    figures: list[tuple[str, str]] = []
    if "ingest" in results:
        figures.append(_ingest_latency(plt, results["ingest"]["rows"], docs))
    if results.get("sweep"):
        figures.append(_sweep(plt, results["sweep"], docs))
    if "e2e" in results or "worker" in results:
        figures.append(_pipeline_latency(plt, results, docs))
    return figures


def _save(plt: Any, figure: Any, docs: Path, name: str) -> None:
    figure.tight_layout()
    figure.savefig(docs / name, dpi=80)
    plt.close(figure)


def _ingest_latency(plt: Any, rows: list[dict[str, Any]], docs: Path) -> tuple[str, str]:
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for axis, per_post in zip(axes, (1, 100), strict=True):
        for row in rows:
            if row["per_post"] != per_post or row["server"] != "hypercorn":
                continue
            points = sorted((float(p), ms) for p, ms in row["latency_ms"].items())
            axis.plot(
                [ms for _p, ms in points],
                [p for p, _ms in points],
                marker="o",
                markersize=3,
                color=COLORS[row["target"]],
                label=f"{LABELS[row['target']]} ({row['rps']:,.0f} req/s)",
            )
        axis.set_xscale("log")
        axis.set_xlabel("latency, ms (log)")
        axis.set_title(f"{per_post} reaction{'s' if per_post > 1 else ''} per POST, peak load")
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    axes[0].set_ylabel("percentile")
    name = "bench-ingest-latency.png"
    _save(plt, figure, docs, name)
    return name, "Ingest latency percentiles at peak load, 64 connections, hypercorn"


def _sweep(plt: Any, sweep: list[dict[str, Any]], docs: Path) -> tuple[str, str]:
    figure, axis = plt.subplots(figsize=(6, 3.6))
    for target in ("ingest", "bare"):
        points = sorted((p["connections"], p["rps"]) for p in sweep if p["target"] == target)
        axis.plot(
            [c for c, _ in points],
            [r for _, r in points],
            marker="o",
            color=COLORS[target],
            label=LABELS[target],
        )
    axis.set_xscale("log", base=2)
    axis.set_xlabel("concurrent connections")
    axis.set_ylabel("requests/s (1 reaction each)")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
    name = "bench-ingest-connections.png"
    _save(plt, figure, docs, name)
    return name, "Ingest throughput against concurrent connections, hypercorn"


def _pipeline_latency(plt: Any, results: dict[str, Any], docs: Path) -> tuple[str, str]:
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    if "e2e" in results and results["e2e"]["latencies_ms"]:
        e2e = results["e2e"]
        axes[0].hist(e2e["latencies_ms"], bins=60, color=COLORS["ingest"])
        limit = e2e["window_s"] * 1000 + 700
        axes[0].axvline(limit, color="black", linestyle="--", label=f"goal p99 {limit:.0f} ms")
        axes[0].axvline(e2e["p99_ms"], color="#2ca02c", label=f"p99 {e2e['p99_ms']:.0f} ms")
        axes[0].set_title(f"reaction received -> SSE client ({e2e['window_s']:.0f} s windows)")
        axes[0].set_xlabel("ms")
        axes[0].legend(fontsize=8)
    if "worker" in results and results["worker"]["latency"]["delays_ms"]:
        latency = results["worker"]["latency"]
        axes[1].hist(latency["delays_ms"], bins=30, color=COLORS["bare"])
        axes[1].axvline(650, color="black", linestyle="--", label="goal p99 650 ms")
        axes[1].axvline(latency["p99_ms"], color="#2ca02c", label=f"p99 {latency['p99_ms']:.0f} ms")
        axes[1].set_title(f"window end -> published, {latency['rate_fed']:,.0f} reactions/s")
        axes[1].set_xlabel("ms")
        axes[1].legend(fontsize=8)
    for axis in axes:
        axis.set_ylabel("count")
        axis.grid(True, alpha=0.3)
    name = "bench-pipeline-latency.png"
    _save(plt, figure, docs, name)
    return name, "End-to-end and window-publish latency distributions"
