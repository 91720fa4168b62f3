"""``scripts/bench-closer``: how long one closer tick takes with N active events, this tree
against a base commit, in the same run.

Each measurement runs in its own process on its own private redis-server. The base commit is
extracted with ``git archive`` into a temporary directory and imported from there, so the same
harness (this file, which only uses what both trees have: Settings, ReactionBuffer, Flusher,
Worker) drives both. One reaction per event is stamped inside one window, flushed and counted;
once the window has ended one ``WindowCloser.tick()`` must publish every event's window (the
first tick), and after the next boundary every event's empty window (the second tick).

Timings on a shared machine are figures to read, not assertions: not part of scripts/test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "docs" / "benchmarks.md"
# This benchmark's section of docs/benchmarks.md; scripts/bench keeps it when it reruns.
CLOSER_BEGIN = "<!-- closer:begin -->"
CLOSER_END = "<!-- closer:end -->"
WINDOW_MS = 2000


async def measure(events: int, shards: int) -> dict[str, Any]:
    """Tick times of the tree on PYTHONPATH for ``events`` active events."""
    import emostream
    from emostream.aggregate.worker import Worker
    from emostream.clock import now_ms
    from emostream.connection import connect
    from emostream.ingest.buffer import ReactionBuffer
    from emostream.ingest.flusher import Flusher
    from emostream.ingest.validation import Reaction, ReactionColumns
    from emostream.redis_server import PrivateRedis
    from emostream.settings import Settings

    with PrivateRedis() as server:
        redis = connect(server.url)
        settings = Settings(
            redis_url=server.url,
            shards=shards,
            window_s=WINDOW_MS / 1000,
            # Only the watermark closes windows here, and no event goes idle meanwhile.
            close_max_delay_ms=600_000,
            producer_timeout_ms=600_000,
            event_idle_s=600.0,
            buffer_max=max(200_000, events),
            flush_max=max(20_000, events),
        )
        buffer = ReactionBuffer(shards, settings.buffer_max)
        flusher = Flusher(redis, settings, buffer, "bench-closer")
        worker = Worker(redis, settings, worker_id="bench-closer")
        await worker.ensure_groups()
        # Start right after a boundary so the whole set-up fits in one window.
        await asyncio.sleep((WINDOW_MS - now_ms() % WINDOW_MS) / 1000 + 0.01)
        start = now_ms() - now_ms() % WINDOW_MS
        one = ReactionColumns.of([Reaction("u1", "🔥", None)])
        for number in range(events):
            buffer.add(f"event-{number}", one, start + 1)
        await flusher.flush()
        await worker.drain()
        ticks: list[dict[str, float]] = []
        for boundary in (start + WINDOW_MS, start + 2 * WINDOW_MS):
            await asyncio.sleep(max(0, boundary - now_ms()) / 1000 + 0.02)
            await flusher.flush()  # the watermark passes the window's end
            await worker.drain()
            began = time.perf_counter()
            published = await worker.closer.tick()
            ticks.append({"seconds": time.perf_counter() - began, "published": published})
        memory: Any = await redis.info("memory")
        await redis.aclose()
    return {
        "code": str(Path(emostream.__file__).resolve().parent.parent),
        "events": events,
        "shards": shards,
        "ticks": ticks,
        "used_memory": memory["used_memory"],
    }


def extract(revision: str, into: str) -> str:
    """The tree of ``revision`` as an importable directory (lua/ is the package emostream.lua
    once installed; a symlink stands in for the install)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)
    os.symlink(os.path.join(into, "lua"), os.path.join(into, "emostream", "lua"))
    return into


def run_in(tree: str, events: int, shards: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": tree}
    args = [sys.executable, __file__, "--measure", str(events), "--shards", str(shards)]
    with subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True) as child:
        try:
            output, _ = child.communicate()
        except BaseException:
            child.send_signal(signal.SIGINT)  # so its private redis-server is stopped too
            child.wait()
            raise
    if child.returncode:
        raise RuntimeError(f"measuring {events} events in {tree} failed")
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    if Path(result["code"]) != Path(tree).resolve():
        raise RuntimeError(f"measured {result['code']}, not {tree}")
    return result


def write_section(section: str) -> None:
    from .bench_report import write_section as write_report_section

    write_report_section(CLOSER_BEGIN, CLOSER_END, section)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-closer", description=__doc__)
    parser.add_argument("--events", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--base", default="", help="also measure this commit (e.g. main)")
    parser.add_argument("--no-write", action="store_true", help="print, leave docs/ alone")
    parser.add_argument("--measure", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure is not None:
        print(json.dumps(asyncio.run(measure(args.measure, args.shards))))
        return 0
    # Here, not at the top: --measure runs this file as a script on another tree.
    from .environment import code_version

    command = "scripts/bench-closer " + " ".join(argv if argv is not None else sys.argv[1:])
    began = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before = os.getloadavg()
    rows = [
        "| code | events | first tick s (windows) | second tick s (empty windows) |",
        "| --- | ---: | ---: | ---: |",
    ]
    print("\n".join(rows), flush=True)
    with tempfile.TemporaryDirectory(prefix="emostream-base-") as base_dir:
        trees = [(f"this tree ({code_version(str(ROOT))})", str(ROOT))]
        if args.base:
            base = subprocess.run(
                ["git", "-C", str(ROOT), "rev-parse", "--short", args.base],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            trees.append((f"base {args.base} ({base})", extract(args.base, base_dir)))
        for events in args.events:
            for name, tree in trees:
                result = run_in(tree, events, args.shards)
                first, second = result["ticks"]
                rows.append(
                    f"| {name} | {events:,} | {first['seconds']:.3f} ({first['published']:,}) "
                    f"| {second['seconds']:.3f} ({second['published']:,}) |"
                )
                print(rows[-1], flush=True)
    load_after = os.getloadavg()
    section = (
        "\n## Closing many events\n\n"
        f"`{command.strip()}`, {began}, {os.cpu_count()} cpus; load average (1/5/15 min) "
        f"before {' / '.join(f'{x:.2f}' for x in load_before)}, after "
        f"{' / '.join(f'{x:.2f}' for x in load_after)}. Written by `scripts/bench-closer` "
        "(loadtest/bench_closer.py), kept when `scripts/bench` reruns.\n\n"
        f"One `WindowCloser.tick()` with N active events, {args.shards} shards and "
        f"{WINDOW_MS // 1000} s windows, each tree in its own process on its own "
        "redis-server: the first tick after every event's window has ended (one reaction "
        "each), then the first after the next boundary (an empty window each). A tick that "
        "takes longer than a window leaves more windows due for the next: the count closed "
        "is in brackets.\n\n" + "\n".join(rows) + "\n\n"
    )
    if not args.no_write:
        write_section(section)
        print(f"wrote the closer section of {REPORT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
