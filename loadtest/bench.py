"""``scripts/bench``: run every benchmark tier on loopback and write docs/benchmarks.md.

Each figure sits beside a reference measured in the same run on the same machine, because
these machines are shared and noisy: the ratios are the result, absolute numbers are context.
Raw results go to a JSON file outside the repository (printed at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import bench_e2e, bench_ingest, bench_worker, environment, plots
from .procs import ROOT

DOCS = ROOT / "docs"
REPORT = DOCS / "benchmarks.md"
FANOUT_BEGIN = "<!-- fanout:begin -->"
FANOUT_END = "<!-- fanout:end -->"
TIERS = ("ingest", "worker", "e2e")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one run per figure, short runs")
    parser.add_argument(
        "--only",
        choices=TIERS,
        action="append",
        help="run only these tiers and print the report (docs/ keeps every tier's tables)",
    )
    parser.add_argument("--no-write", action="store_true", help="print, leave docs/ alone")
    parser.add_argument(
        "--render", metavar="JSON", help="only re-render docs/ from a run's raw results file"
    )
    args = parser.parse_args(argv)
    if args.render:
        stored: dict[str, Any] = json.loads(Path(args.render).read_text())
        figures = plots.draw(stored, DOCS)
        REPORT.write_text(render(stored) + figures_section(figures) + fanout_section())
        print(f"re-rendered {REPORT.relative_to(ROOT)} from {args.render}")
        return 0
    tiers = args.only or list(TIERS)
    command = "scripts/bench" + "".join(
        f" {a}" for a in (argv if argv is not None else sys.argv[1:])
    )
    started = time.monotonic()
    results: dict[str, Any] = {
        "command": command,
        "quick": args.quick,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": environment.machine(),
        "versions": environment.versions(),
        "code": environment.code_version(str(ROOT)),
        "load_before": os.getloadavg(),
    }
    print(f"{command}: {', '.join(tiers)} ({'quick' if args.quick else 'full'})", flush=True)
    if "ingest" in tiers:
        results["ingest"] = bench_ingest.run(args.quick)
        results["sweep"] = bench_ingest.sweep(args.quick)
    if "worker" in tiers:
        results["worker"] = bench_worker.run(args.quick)
    if "e2e" in tiers:
        results["e2e"] = bench_e2e.run(args.quick)
    results["load_after"] = os.getloadavg()
    results["seconds"] = time.monotonic() - started
    raw = Path(tempfile.gettempdir()) / "emostream-bench.json"
    raw.write_text(json.dumps(results, indent=1))
    report = render(results)
    if args.no_write or args.only:
        print(report)
    else:
        DOCS.mkdir(exist_ok=True)
        figures = plots.draw(results, DOCS)
        REPORT.write_text(report + figures_section(figures) + fanout_section())
        print(f"wrote {REPORT.relative_to(ROOT)} and {len(figures)} figures")
    print(f"raw results: {raw}; {results['seconds']:.0f} s")
    return 0


def fanout_section() -> str:
    """The delivery fan-out tier (issue 4) writes between these markers; a rerun keeps it."""
    kept = ""
    if REPORT.exists():
        text = REPORT.read_text()
        if FANOUT_BEGIN in text and FANOUT_END in text:
            kept = text.split(FANOUT_BEGIN, 1)[1].split(FANOUT_END, 1)[0]
    if not kept.strip():
        kept = (
            "\n## Delivery fan-out\n\nThe fan-out benchmark of issue 4 (SSE clients per process, "
            "memory per connection and CPU per delivered message, against nginx + nchan in the "
            "same run) needs nginx with the nchan module and runs on its own: "
            "`scripts/bench-fanout` writes [benchmarks-delivery.md](benchmarks-delivery.md). "
            "Anything written between these markers is kept when `scripts/bench` reruns.\n\n"
        )
    return f"\n{FANOUT_BEGIN}{kept}{FANOUT_END}\n"


def figures_section(figures: list[tuple[str, str]]) -> str:
    if not figures:
        return ""
    lines = ["", "## Figures", ""]
    for name, caption in figures:
        lines += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    return "\n".join(lines)


def _n(value: float | None, digits: int = 0) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:,.{digits}f}"


def _ratio(value: float | None, reference: float | None) -> str:
    if not value or not reference:
        return "-"
    return f"{value / reference:.2f}x"


def _goal(met: bool) -> str:
    return "met" if met else "**missed**"


def render(r: dict[str, Any]) -> str:
    mode = "quick (1 run per figure, short runs)" if r["quick"] else "full (median of 3 runs)"
    out = [
        "# Benchmarks",
        "",
        "Generated by `scripts/bench` (rerunnable; do not edit by hand). Every figure is measured "
        "in the same run as the reference beside it, on the same machine, and the ratio is the "
        "result: these machines are shared and noisy, so absolute numbers move between runs "
        "(the load average before and after the run is given below), ratios much less.",
        "",
        f"- Command: `{r['command']}` ({mode}), {r['date']}, {r.get('seconds', 0):.0f} s",
        "- Machine: "
        + ", ".join(f"{k} {v}" for k, v in r["machine"].items())
        + "; the load generator runs on the same box, on loopback, and shares its 2 cores.",
        f"- Load average (1/5/15 min) before: {_load(r['load_before'])}; after: "
        f"{_load(r['load_after'])}. Other work on this machine runs during the benchmark.",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in r["versions"].items()),
        f"- Code measured: emostream {r.get('code', 'unknown')}",
        "",
    ]
    if "ingest" in r:
        out += render_ingest(r["ingest"], r.get("sweep", []))
    if "worker" in r:
        out += render_worker(r["worker"])
    if "e2e" in r:
        out += render_e2e(r["e2e"])
    return "\n".join(out) + "\n"


def _load(values: Any) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def _row(rows: list[dict[str, Any]], target: str, server: str, per_post: int) -> dict[str, Any]:
    for row in rows:
        if (row["target"], row["server"], row["per_post"]) == (target, server, per_post):
            return row
    return {}


NAMES = {
    "ingest": "emostream ingest (fast path + Quart)",
    "bare": "bare ASGI handler (ceiling)",
    "flask": "seed style: Flask + 1 XADD per reaction",
}


def render_ingest(ingest: dict[str, Any], sweep: list[dict[str, Any]]) -> list[str]:
    rows = ingest["rows"]
    out = [
        "## Ingest",
        "",
        f"`POST /v1/events/live/reactions`, {ingest['connections']} connections, closed loop, "
        f"{ingest['duration_s']:.0f} s per run, median of {ingest['reps']} run(s) (all runs "
        "listed). Bodies are 64 pre-generated requests with a weighted emoji mix (skin tones, "
        "flags, ZWJ-free and VS16 forms) and random user ids. The seed-style app and the bare "
        "handler run on the same server software as ours (hypercorn) so the ratio is about the "
        "design. `ratio` is against the bare handler on the same server.",
        "",
    ]
    servers = sorted({row["server"] for row in rows}, key=SERVER_ORDER.index)
    for per_post in (1, 100):
        out += [
            f"### {per_post} reaction{'s' if per_post > 1 else ''} per POST",
            "",
            "| target | server | req/s | reactions/s | p50 ms | p99 ms | ratio to ceiling | "
            "vs seed style | runs (req/s) | errors |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
        ]
        seed = _row(rows, "flask", "hypercorn", per_post)
        for server in servers:
            ceiling = _row(rows, "bare", server, per_post)
            for target in ("ingest", "bare", "flask"):
                row = _row(rows, target, server, per_post)
                if not row:
                    continue
                out.append(
                    f"| {NAMES[target]} | {server} | {_n(row['rps'])} | "
                    f"{_n(row['reactions_per_s'])} | {_n(row['p50_ms'], 1)} | "
                    f"{_n(row['p99_ms'], 1)} | {_ratio(row['rps'], ceiling.get('rps'))} | "
                    f"{_ratio(row['rps'], seed.get('rps')) if target != 'flask' else '1.00x'} | "
                    f"{', '.join(_n(v) for v in row['rps_runs'])} | {row['errors']} |"
                )
        out.append("")
    out += [
        "### Latency at half of peak load",
        "",
        "Each target paced at half of its own median peak (per-connection pauses drawn at "
        "random so 64 connections do not march in step); the achieved rate is what was measured.",
        "",
        "| target | server | per POST | peak req/s | paced req/s (of peak) | p50 ms | p99 ms |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        out.append(
            f"| {NAMES[row['target']]} | {row['server']} | {row['per_post']} | {_n(row['rps'])} | "
            f"{_n(row['half_rps'])} ({_n(100 * row['half_rps'] / row['rps'])}%) | "
            f"{_n(row['half_p50_ms'], 1)} | {_n(row['half_p99_ms'], 1)} |"
        )
    out.append("")
    out += ingest_goals(rows)
    out += server_choice(rows)
    if sweep:
        out += [
            "### Throughput against connections (1 reaction per POST, hypercorn)",
            "",
            "| connections | emostream ingest req/s | p99 ms | bare ASGI req/s | p99 ms | ratio |",
            "| ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for connections in sorted({p["connections"] for p in sweep}):
            ours = next(
                p for p in sweep if p["target"] == "ingest" and p["connections"] == connections
            )
            bare = next(
                p for p in sweep if p["target"] == "bare" and p["connections"] == connections
            )
            out.append(
                f"| {connections} | {_n(ours['rps'])} | {_n(ours['p99_ms'], 1)} | "
                f"{_n(bare['rps'])} | {_n(bare['p99_ms'], 1)} | "
                f"{_ratio(ours['rps'], bare['rps'])} |"
            )
        out.append("")
    return out


SERVER_ORDER = ["hypercorn", "uvicorn", "granian"]


def ingest_goals(rows: list[dict[str, Any]]) -> list[str]:
    servers = sorted({r["server"] for r in rows if r["target"] == "ingest"}, key=SERVER_ORDER.index)
    out = [
        "### Ingest goals (issue 6), per server software",
        "",
        "| goal | " + " | ".join(servers) + " |",
        "| --- |" + " --- |" * len(servers),
    ]

    def figure(target: str, server: str, per_post: int, name: str = "rps") -> float:
        return float(_row(rows, target, server, per_post)[name])

    def at_least(have: float, want: float, unit: str = "") -> str:
        text = f"{have:.2f}x" if unit == "x" else _n(have)
        return f"{text}: {_goal(have >= want)}"

    checks: list[tuple[str, Callable[[str], str]]] = [
        ("≥ 15,000 single-reaction req/s", lambda s: at_least(figure("ingest", s, 1), 15_000)),
        (
            "≥ 500,000 reactions/s batched",
            lambda s: at_least(figure("ingest", s, 100, "reactions_per_s"), 500_000),
        ),
        (
            "≥ 1/3 of the ceiling, single",
            lambda s: at_least(figure("ingest", s, 1) / figure("bare", s, 1), 1 / 3, "x"),
        ),
        (
            "≥ 1/2 of the ceiling, batched",
            lambda s: at_least(figure("ingest", s, 100) / figure("bare", s, 100), 0.5, "x"),
        ),
        (
            "≥ 10x seed style, single",
            lambda s: at_least(figure("ingest", s, 1) / figure("flask", "hypercorn", 1), 10, "x"),
        ),
        (
            "≥ 10x seed style, batched",
            lambda s: at_least(
                figure("ingest", s, 100) / figure("flask", "hypercorn", 100), 10, "x"
            ),
        ),
        (
            "p99 < 25 ms at half load, single",
            lambda s: _below(figure("ingest", s, 1, "half_p99_ms"), 25),
        ),
        (
            "p99 < 25 ms at half load, batched",
            lambda s: _below(figure("ingest", s, 100, "half_p99_ms"), 25),
        ),
    ]
    for label, check in checks:
        cells = []
        for server in servers:
            try:
                cells.append(check(server))
            except (KeyError, ZeroDivisionError, TypeError):
                cells.append("-")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    out.append("")
    return out


def server_choice(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's rule: if hypercorn misses, pick the ingest server by the numbers."""
    ours = [row for row in rows if row["target"] == "ingest"]
    if len({row["server"] for row in ours}) < 2:
        return [
            "Only one server was measured for ingest in this run; the full run compares "
            "hypercorn, uvicorn and granian.",
            "",
        ]
    out = ["### Server software for ingest", ""]
    hypercorn = {row["per_post"]: row for row in ours if row["server"] == "hypercorn"}
    for per_post in (1, 100):
        best = max((row for row in ours if row["per_post"] == per_post), key=lambda r: r["rps"])
        base = hypercorn[per_post]["rps"]
        out.append(
            f"- {per_post} per POST: fastest is {best['server']} at {_n(best['rps'])} req/s, "
            f"{_ratio(best['rps'], base)} hypercorn's {_n(base)}."
        )
    single_goal = any(r["per_post"] == 1 and r["rps"] >= 15_000 for r in ours)
    batch_goal = any(r["per_post"] == 100 and r["reactions_per_s"] >= 500_000 for r in ours)
    verdict = (
        "A server reaches an absolute goal: see the goals table."
        if single_goal or batch_goal
        else "No server software reaches the absolute goals on this machine, where even the "
        "bare handler stays below them."
    )
    out += [
        f"- {verdict} `emostream ingest` serves on uvicorn by default "
        "(`EMOSTREAM_SERVER=hypercorn` keeps hypercorn): it serves the reaction POSTs "
        "through the plain-ASGI fast path, and uvicorn gives it several times hypercorn's "
        "requests/s for single reactions in the table above; granian is close to uvicorn but "
        "adds a Rust server binary for no clear gain."
    ]
    out.append("")
    return out


def _below(have: float, limit: float) -> str:
    return f"{have:.1f} ms: {_goal(have < limit)}"


def render_worker(w: dict[str, Any]) -> list[str]:
    lat = w["latency"]
    ratio_ceiling = w["one"] / w["ceiling"]
    ratio_two = w["two"] / w["one"]
    return [
        "## Worker",
        "",
        f"The raw shards (4) are preloaded with {_n(w['reactions'])} reactions in packed entries "
        f"of {_n(w['batch_reactions'])} (ReactionBuffer + Flusher, exactly as ingest writes "
        "them; 10 weighted emojis; 64 pre-generated chunks of 100 reactions, user ids drawn "
        "from 200k, reused in turn, so at most 6,400 distinct users and each user id about "
        "1.6 times per entry). Each figure is a separate process "
        "started on the same wall-clock instant; the ceiling reads the same entries through its "
        "own consumer group, decodes them and runs one EVALSHA per batch that only XACKs. Order "
        "alternates between runs.",
        "",
        "| figure | reactions/s | reference | reference reactions/s | ratio | goal | runs |",
        "| --- | ---: | --- | ---: | ---: | --- | --- |",
        f"| one worker (`Worker.drain()`) | {_n(w['one'])} | raw ceiling | {_n(w['ceiling'])} | "
        f"{ratio_ceiling:.2f} | ≥ 1,000,000/s: {_goal(w['one'] >= 1e6)}; ≥ 0.70 of ceiling: "
        f"{_goal(ratio_ceiling >= 0.7)} | {', '.join(_n(v) for v in w['one_runs'])} / ceiling "
        f"{', '.join(_n(v) for v in w['ceiling_runs'])} |",
        f"| two worker processes | {_n(w['two'])} | one worker | {_n(w['one'])} | "
        f"{ratio_two:.2f}x | ≥ 1.6x: {_goal(ratio_two >= 1.6)} | "
        f"{', '.join(_n(v) for v in w['two_runs'])} |",
        "",
        "CPU accounting, the same runs (medians): reactions per CPU-second of the aggregating "
        "process(es), which the machine's other work does not dilute, and the Redis server's "
        "CPU per reaction (`INFO cpu` before and after).",
        "",
        "| figure | reactions per process CPU-second | Redis CPU µs per reaction |",
        "| --- | ---: | ---: |",
        *(
            f"| {label} | {_n(w['per_cpu_s'][name])} | {_n(w['redis_us_per_reaction'][name], 3)} |"
            for name, label in (
                ("one", "one worker"),
                ("ceiling", "raw ceiling"),
                ("two", "two workers (sum)"),
            )
        ),
        "",
        "### Window end to window published",
        "",
        f"A feeder process adds {_n(lat['rate_offered'])} reactions/s (achieved "
        f"{_n(lat['rate_fed'])}/s) to a real ReactionBuffer, flushed by the real Flusher every "
        "500 ms on wall-clock multiples; one `emostream worker` process counts and closes "
        "2 s windows; this process subscribes to the windows channel and subtracts each "
        "window's `window_end_ms` from its arrival time (same clock). 4 events, one per shard; "
        "the first and last loaded windows are left out (partial).",
        "",
        "| windows | p50 ms | p99 ms | max ms | goal: p99 < flush interval + 150 ms (650 ms) |",
        "| ---: | ---: | ---: | ---: | --- |",
        f"| {lat['windows']} | {_n(lat['p50_ms'])} | {_n(lat['p99_ms'])} | {_n(lat['max_ms'])} | "
        f"{_goal(lat['p99_ms'] < 650)} |",
        "",
    ]


def render_e2e(e: dict[str, Any]) -> list[str]:
    goal = e["window_s"] * 1000 + 700
    return [
        "## End to end",
        "",
        f"`emostream ingest`, `emostream worker` and `emostream delivery` as separate processes "
        f"on a private Redis; windows of {e['window_s']:.0f} s, flush every "
        f"{e['flush_interval_ms']} ms. Steady background load of "
        f"{_n(e['background_reactions_per_s'])} reactions/s (100 per POST, paced wrk) on one "
        f"event; a probe sends {e['probe_rate']:.0f} single reactions/s to its own event for "
        f"{e['seconds']:.0f} s while {e['clients']} SSE clients listen to it. A reaction's "
        "latency is its window's arrival at a client minus the moment its request was sent, so "
        "it includes the wait for its window to end (up to one window length). Windows whose "
        "total differs from the probe's own count (a request sent just before a boundary and "
        f"received after it): {e['windows_mismatched']} of the per-client windows.",
        "",
        "| figure | samples | p50 ms | p99 ms | max ms | goal |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
        f"| reaction received -> its window at an SSE client | {e['latency_samples']} | "
        f"{_n(e['p50_ms'])} | {_n(e['p99_ms'])} | {_n(e['max_ms'])} | p99 < window + 700 ms "
        f"({goal:.0f} ms): {_goal(e['p99_ms'] < goal)} |",
        f"| window end -> SSE client | - | {_n(e['window_end_p50_ms'])} | "
        f"{_n(e['window_end_p99_ms'])} | - | (for scale: the window is "
        f"{e['window_s'] * 1000:.0f} ms) |",
        "",
    ]


if __name__ == "__main__":
    sys.exit(main())
