"""Ingest tier: our ingest against the Python ceilings and the seed-style design, side by side.

For each payload size (1 and 100 reactions per POST) every target is loaded with the same
bodies and the same 64 connections: closed-loop peak runs (median of ``reps``), then one run
paced at half of that target's own peak for the latency goal.

Targets (``TARGETS``): our ingest with the per-user and per-address rate limits on (as
deployed; their rates set so high they never refuse, so every figure counts accepted
reactions and still pays every check) and the same with both off, which prices the limits;
the bare handler that ``json.loads`` the body; the bare handler that answers 202 without
parsing (the server software's own limit); and the seed-style Flask app.

``python -m loadtest.bench_ingest`` runs the uvicorn targets alone and prints the goals of
issue 16 (``--reps``, ``--duration-s``): the quick loop while working on the hot path.
"""

from __future__ import annotations

import contextlib
import json
import random
import statistics
from dataclasses import dataclass, field
from typing import Any

from emostream.redis_server import PrivateRedis, free_port

from .audience import AUDIENCE, EMOJI_MIX
from .loadgen import LoadResult, run_load, run_paced
from .procs import child, child_env

CONNECTIONS = 64
PATH = "/v1/events/live/reactions"

# The audience's mix plus what a real crowd also sends: more skin tones, ZWJ sequences
# (several code points joined by U+200D, some with VS16 and skin tones inside) and flags, so
# validation sees every multi-code-point form. About a fifth of the reactions are one of these.
INGEST_EMOJI_MIX = {
    **EMOJI_MIX,
    "\U0001f44d\U0001f3fb": 3,  # thumbs up, light skin tone
    "\U0001f44f\U0001f3fe": 3,  # clapping hands, medium-dark skin tone
    "\u2764\ufe0f\u200d\U0001f525": 3,  # heart on fire (ZWJ)
    "\U0001f926\U0001f3fd\u200d\u2640\ufe0f": 2,  # woman facepalming, medium skin tone
    "\U0001f3f3\ufe0f\u200d\U0001f308": 2,  # rainbow flag (ZWJ)
    "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466": 1,  # family (ZWJ)
    "\U0001f1e7\U0001f1f7": 2,  # flag of Brazil
    "\U0001f1e6\U0001f1f7": 2,  # flag of Argentina
    "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f": 1,  # England
}

# Each target of the tier: (loadtest.servers target, environment of its process).
# The limits' rates never refuse (the load repeats a few thousand users and one address far
# faster than people tap), so the "on" target measures their whole cost on accepted requests.
NEVER_REFUSED = "1e9"
LIMITS_ON = {
    "EMOSTREAM_USER_RATE": NEVER_REFUSED,
    "EMOSTREAM_USER_BURST": NEVER_REFUSED,
    "EMOSTREAM_IP_RATE": NEVER_REFUSED,
    "EMOSTREAM_IP_BURST": NEVER_REFUSED,
}
LIMITS_OFF = {"EMOSTREAM_USER_RATE": "0", "EMOSTREAM_IP_RATE": "0"}
TARGETS: dict[str, tuple[str, dict[str, str]]] = {
    "ingest": ("ingest", LIMITS_ON),
    "ingest-nolimits": ("ingest", LIMITS_OFF),
    "bare": ("bare", {}),
    "noparse": ("noparse", {}),
    "flask": ("flask", {}),
}


def make_bodies(
    per_post: int, count: int = 64, seed: int = 7, one_user: bool = False
) -> list[bytes]:
    """``count`` bodies of ``per_post`` reactions (one object when 1), UTF-8 as browsers send
    them (``JSON.stringify`` leaves emojis unescaped), random user ids of a large audience:
    a user per reaction (what a relay gathering many viewers sends, the per-user limit's worst
    case), or with ``one_user`` one per body (one viewer's taps, what the page sends)."""
    rng = random.Random(seed)
    emojis, weights = list(INGEST_EMOJI_MIX), list(INGEST_EMOJI_MIX.values())
    bodies = []
    for _ in range(count):
        # one_user draws its user first; the default bodies stay the ones measured before
        viewer = f"u-{rng.randrange(AUDIENCE)}" if one_user else None
        batch = [
            {"user_id": viewer or f"u-{rng.randrange(AUDIENCE)}", "emoji": emoji}
            for emoji in rng.choices(emojis, weights, k=per_post)
        ]
        payload: Any = batch[0] if per_post == 1 else batch
        text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        bodies.append(text.encode())
    return bodies


@dataclass
class Measured:
    target: str
    server: str
    per_post: int
    one_user: bool = False
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
            "one_user": self.one_user,
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


# The goals of issue 16 are measured on uvicorn, what `emostream ingest` serves on.
UVICORN_PLAN = [
    ("ingest", "uvicorn"),
    ("ingest-nolimits", "uvicorn"),
    ("bare", "uvicorn"),
    ("noparse", "uvicorn"),
]


def run(
    quick: bool,
    plan: list[tuple[str, str]] | None = None,
    reps: int | None = None,
    duration_s: float | None = None,
) -> dict[str, Any]:
    """Every target runs as its own process for the whole tier, and the runs are interleaved
    (each repetition loads every target in turn), so a burst of other work on this shared
    machine lands on all of them rather than on whichever happened to run then. Even the quick
    run takes the median of 3 runs: the ratios of issue 16 are read from it."""
    reps = reps or 3
    duration_s = duration_s or (2.0 if quick else 8.0)
    if plan is None:
        plan = [("ingest", "hypercorn"), ("bare", "hypercorn"), ("flask", "hypercorn")]
        # uvicorn is what `emostream ingest` serves on (picked by these numbers), so even the
        # quick run measures it, with every reference; the full run adds granian, the other
        # candidate. Each is compared with the bare handler on the same server software.
        plan += UVICORN_PLAN
        if not quick:
            plan += [("ingest", "granian"), ("bare", "granian")]
    with PrivateRedis() as redis, contextlib.ExitStack() as stack:
        urls = {}
        for target, server in plan:
            port = free_port()
            urls[target, server] = f"http://127.0.0.1:{port}{PATH}"
            module_target, env = TARGETS[target]
            args = ["-m", "loadtest.servers", module_target, "--server", server]
            args += ["--port", str(port)]
            environment = child_env(redis.url, **env)
            stack.enter_context(child(args, environment, f"http://127.0.0.1:{port}"))
        # A short warm-up so imports, caches and the first flush are behind every target.
        for url in urls.values():
            run_load(url, make_bodies(1), CONNECTIONS, 1)
        measured = {
            (target, server, per_post, False): Measured(target, server, per_post)
            for per_post in (1, 100)
            for target, server in plan
        }
        for per_post in (1, 100):
            bodies = make_bodies(per_post)
            for _ in range(reps):
                for target, server in plan:
                    result = run_load(urls[target, server], bodies, CONNECTIONS, duration_s)
                    measured[target, server, per_post, False].peaks.append(result)
            for target, server in plan:
                row = measured[target, server, per_post, False]
                peak = row.median("rps")
                row.half = run_paced(
                    urls[target, server], bodies, CONNECTIONS, duration_s, peak / 2
                )
                print(
                    f"  ingest {target:15s} {server:9s} {per_post:3d}/POST: {peak:8.0f} req/s "
                    f"p99 {row.median('p99_ms'):.1f} ms; half load {row.half.rps:.0f} "
                    f"req/s p99 {row.half.p99_ms:.1f} ms",
                    flush=True,
                )
        measured.update(_limits_on_page_bodies(urls, reps, duration_s))
    rows = [m.as_dict() for m in measured.values()]
    return {"reps": reps, "duration_s": duration_s, "connections": CONNECTIONS, "rows": rows}


# The rate limits' price on the bodies a page sends (one viewer's taps per POST), beside the
# worst case above (a user per reaction): uvicorn, limits on and off, peaks only.
PAGE_PLAN = [("ingest", "uvicorn"), ("ingest-nolimits", "uvicorn")]


def _limits_on_page_bodies(
    urls: dict[tuple[str, str], str], reps: int, duration_s: float
) -> dict[tuple[str, str, int, bool], Measured]:
    if any(target not in urls for target in PAGE_PLAN):
        return {}
    bodies = make_bodies(100, one_user=True)
    measured = {(t, s, 100, True): Measured(t, s, 100, one_user=True) for t, s in PAGE_PLAN}
    for _ in range(reps):
        for target, server in PAGE_PLAN:
            result = run_load(urls[target, server], bodies, CONNECTIONS, duration_s)
            measured[target, server, 100, True].peaks.append(result)
    for (target, server, _, _), row in measured.items():
        peak = row.median("rps")
        print(f"  ingest {target:15s} {server:9s} 100/POST, one user: {peak:8.0f} req/s")
    return measured


def main() -> None:
    import argparse
    import os

    from .bench_report_ingest import issue16_goals

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--duration-s", type=float, default=2.0)
    args = parser.parse_args()
    load_before = os.getloadavg()
    result = run(True, UVICORN_PLAN, args.reps, args.duration_s)
    print("load average before: " + " ".join(f"{v:.2f}" for v in load_before))
    print("load average after: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    print("\n".join(issue16_goals(result["rows"])))


if __name__ == "__main__":
    main()


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
