"""Ingest tier: our ingest against the Python ceiling and the seed-style design, side by side.

For each payload size (1 and 100 reactions per POST) every target is loaded with the same
bodies and the same 64 connections: closed-loop peak runs (median of ``reps``), then one run
paced at half of that target's own peak for the latency goal.
"""

from __future__ import annotations

import contextlib
import json
import random
import statistics
from dataclasses import dataclass, field
from typing import Any

from emostream.redis_server import PrivateRedis, free_port

from .audience import reactions
from .loadgen import LoadResult, run_load, run_paced
from .procs import child, child_env

CONNECTIONS = 64
PATH = "/v1/events/live/reactions"


def make_bodies(per_post: int, count: int = 64, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    bodies = []
    for _ in range(count):
        batch = reactions(rng, per_post)
        payload: Any = batch[0] if per_post == 1 else batch
        bodies.append(json.dumps(payload, separators=(",", ":")).encode("ascii"))
    return bodies


@dataclass
class Measured:
    target: str
    server: str
    per_post: int
    peaks: list[LoadResult] = field(default_factory=list)
    half: LoadResult | None = None

    def median(self, attribute: str) -> float:
        return float(statistics.median(getattr(run, attribute) for run in self.peaks))

    def as_dict(self) -> dict[str, Any]:
        half = self.half
        return {
            "target": self.target,
            "server": self.server,
            "per_post": self.per_post,
            "rps": self.median("rps"),
            "rps_runs": [round(run.rps, 1) for run in self.peaks],
            "reactions_per_s": self.median("rps") * self.per_post,
            "p50_ms": self.median("p50_ms"),
            "p99_ms": self.median("p99_ms"),
            "errors": sum(run.errors for run in self.peaks),
            "latency_ms": {
                str(k): v for k, v in self.peaks[len(self.peaks) // 2].latency_ms.items()
            },
            "half_rps": half.rps if half else None,
            "half_p50_ms": half.p50_ms if half else None,
            "half_p99_ms": half.p99_ms if half else None,
            "half_errors": half.errors if half else None,
        }


def run(quick: bool) -> dict[str, Any]:
    """Every target runs as its own process for the whole tier, and the runs are interleaved
    (each repetition loads every target in turn), so a burst of other work on this shared
    machine lands on all of them rather than on whichever happened to run then."""
    reps, duration_s = (1, 2.0) if quick else (3, 8.0)
    plan = [("ingest", "hypercorn"), ("bare", "hypercorn"), ("flask", "hypercorn")]
    # uvicorn is what `emostream ingest` serves on (picked by these numbers), so even the
    # quick run measures it; the full run adds granian, the other candidate. Each is compared
    # with the bare handler on the same server software.
    plan += [("ingest", "uvicorn"), ("bare", "uvicorn")]
    if not quick:
        plan += [("ingest", "granian"), ("bare", "granian")]
    with PrivateRedis() as redis, contextlib.ExitStack() as stack:
        urls = {}
        for target, server in plan:
            port = free_port()
            urls[target, server] = f"http://127.0.0.1:{port}{PATH}"
            args = ["-m", "loadtest.servers", target, "--server", server, "--port", str(port)]
            stack.enter_context(child(args, child_env(redis.url), f"http://127.0.0.1:{port}"))
        # A short warm-up so imports, caches and the first flush are behind every target.
        for url in urls.values():
            run_load(url, make_bodies(1), CONNECTIONS, 1)
        measured = {
            (target, server, per_post): Measured(target, server, per_post)
            for per_post in (1, 100)
            for target, server in plan
        }
        for per_post in (1, 100):
            bodies = make_bodies(per_post)
            for _ in range(reps):
                for target, server in plan:
                    result = run_load(urls[target, server], bodies, CONNECTIONS, duration_s)
                    measured[target, server, per_post].peaks.append(result)
            for target, server in plan:
                row = measured[target, server, per_post]
                peak = row.median("rps")
                row.half = run_paced(
                    urls[target, server], bodies, CONNECTIONS, duration_s, peak / 2
                )
                print(
                    f"  ingest {target:6s} {server:9s} {per_post:3d}/POST: {peak:8.0f} req/s "
                    f"p99 {row.median('p99_ms'):.1f} ms; half load {row.half.rps:.0f} "
                    f"req/s p99 {row.half.p99_ms:.1f} ms",
                    flush=True,
                )
    rows = [m.as_dict() for m in measured.values()]
    return {"reps": reps, "duration_s": duration_s, "connections": CONNECTIONS, "rows": rows}


def _flush(redis: PrivateRedis) -> None:
    import redis as sync_redis

    client = sync_redis.Redis.from_url(redis.url)
    try:
        client.flushall()  # our private server: raw streams from the last target go
    finally:
        client.close()


def sweep(quick: bool) -> list[dict[str, Any]]:
    """Throughput against concurrent connections, 1 reaction per POST, ours vs the ceiling."""
    if quick:
        return []
    points: list[dict[str, Any]] = []
    with PrivateRedis() as redis:
        for target in ("ingest", "bare"):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            args = ["-m", "loadtest.servers", target, "--server", "hypercorn", "--port", str(port)]
            with child(args, child_env(redis.url), health_url=url):
                for connections in (1, 4, 16, 64, 256):
                    result = run_load(url + PATH, make_bodies(1), connections, 3.0)
                    points.append(
                        {
                            "target": target,
                            "connections": connections,
                            "rps": result.rps,
                            "p99_ms": result.p99_ms,
                        }
                    )
            _flush(redis)
    return points
