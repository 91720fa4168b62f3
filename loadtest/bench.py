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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import bench_e2e, bench_ingest, bench_votes, bench_worker, environment, plots
from .bench_closer import CLOSER_BEGIN, CLOSER_END
from .bench_report import figures_section, render
from .bench_scaleout import SCALEOUT_BEGIN, SCALEOUT_END
from .procs import ROOT

DOCS = ROOT / "docs"
REPORT = DOCS / "benchmarks.md"
FANOUT_BEGIN = "<!-- fanout:begin -->"
FANOUT_END = "<!-- fanout:end -->"
# Engineers' notes about particular runs: written by hand, kept by every rerun.
NOTES_BEGIN = "<!-- notes:begin -->"
NOTES_END = "<!-- notes:end -->"
TIERS = ("ingest", "worker", "e2e", "votes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one run per figure, short runs")
    parser.add_argument(
        "--only",
        choices=TIERS,
        action="append",
        help="run only these tiers and print the report (docs/ keeps every tier's tables; "
        "the votes tier writes its own section)",
    )
    parser.add_argument("--no-write", action="store_true", help="print, leave docs/ alone")
    parser.add_argument(
        "--render", metavar="JSON", help="only re-render docs/ from a run's raw results file"
    )
    args = parser.parse_args(argv)
    if args.render:
        stored: dict[str, Any] = json.loads(Path(args.render).read_text())
        figures = plots.draw(stored, DOCS)
        votes = bench_votes.section(REPORT.read_text() if REPORT.exists() else "", None)
        REPORT.write_text(render(stored) + figures_section(figures) + votes + kept_sections())
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
    votes_block = None
    if "votes" in tiers:
        results["votes"] = bench_votes.run(args.quick)
        votes_block = bench_votes.render(results["votes"], results["date"], command)
    results["load_after"] = os.getloadavg()
    results["seconds"] = time.monotonic() - started
    raw = Path(tempfile.gettempdir()) / "emostream-bench.json"
    raw.write_text(json.dumps(results, indent=1))
    report = render(results)
    existing = REPORT.read_text() if REPORT.exists() else ""
    if args.no_write or args.only:
        print(report + (votes_block or ""))
        if votes_block is not None and not args.no_write and existing:
            # The votes section stands alone: write it in place, the rest untouched.
            kept = bench_votes.section(existing, None)
            fresh = bench_votes.section(existing, votes_block)
            REPORT.write_text(
                existing.replace(kept.strip(), fresh.strip())
                if bench_votes.BEGIN in existing
                else existing.replace(f"\n{FANOUT_BEGIN}", fresh + f"\n{FANOUT_BEGIN}", 1)
            )
            print(f"wrote the votes section of {REPORT.relative_to(ROOT)}")
    else:
        DOCS.mkdir(exist_ok=True)
        figures = plots.draw(results, DOCS)
        votes = bench_votes.section(existing, votes_block)
        REPORT.write_text(report + figures_section(figures) + votes + kept_sections())
        print(f"wrote {REPORT.relative_to(ROOT)} and {len(figures)} figures")
    print(f"raw results: {raw}; {results['seconds']:.0f} s")
    return 0


def kept_between(begin: str, end: str) -> str:
    """What the report holds between two markers: a section a benchmark that runs on its own
    wrote there ("" if none)."""
    if REPORT.exists():
        text = REPORT.read_text()
        if begin in text and end in text:
            return text.split(begin, 1)[1].split(end, 1)[0]
    return ""


def kept_sections() -> str:
    """The fan-out, closer and scale-out sections and the notes, kept when scripts/bench
    reruns."""
    kept = fanout_section()
    for begin, end in (
        (CLOSER_BEGIN, CLOSER_END),
        (SCALEOUT_BEGIN, SCALEOUT_END),
        (NOTES_BEGIN, NOTES_END),
    ):
        section = kept_between(begin, end)
        kept += f"\n{begin}{section}{end}\n" if section else ""
    return kept


def fanout_section() -> str:
    """The delivery fan-out tier (issue 4) writes between these markers; a rerun keeps it."""
    kept = kept_between(FANOUT_BEGIN, FANOUT_END)
    if not kept.strip():
        kept = (
            "\n## Delivery fan-out\n\nThe fan-out benchmark of issue 4 (SSE clients per process, "
            "memory per connection and CPU per delivered message, against nginx + nchan in the "
            "same run) needs nginx with the nchan module and runs on its own: "
            "`scripts/bench-fanout` writes [benchmarks-delivery.md](benchmarks-delivery.md). "
            "Anything written between these markers is kept when `scripts/bench` reruns.\n\n"
        )
    return f"\n{FANOUT_BEGIN}{kept}{FANOUT_END}\n"


if __name__ == "__main__":
    sys.exit(main())
