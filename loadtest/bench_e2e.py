"""End to end: a reaction's receipt to its window reaching SSE clients, under steady load.

Real processes on loopback: ``emostream ingest``, ``emostream worker`` and ``emostream
delivery`` against a private Redis, with the default 2 s windows and 500 ms flushes. Background
load (wrk, paced) posts 100-reaction batches to the event ``live``; a probe posts single
reactions to its own event at a steady rate, noting the time each request was sent, while SSE
clients of the probe event note when each window arrives. A reaction's latency is its window's
arrival at a client minus the moment its request was sent (an upper bound on the time since
the server received it, by one loopback hop).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from emostream.deliver.frames import stream_swarm_windows
from emostream.redis_server import PrivateRedis, free_port

from .bench_ingest import make_bodies
from .bench_worker import _percentile
from .loadgen import run_load
from .procs import child, child_env

PROBE_EVENT = "e2e-probe"
WINDOW_S = 2.0
FLUSH_INTERVAL_MS = 500


async def _listen(url: str, seconds: float, arrivals: list[tuple[int, int, int, float]]) -> None:
    """(seq, window_start_ms, total, arrival ms) of every swarm event, for ``seconds``."""

    async def read() -> None:
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=30.0)) as client,
            client.stream("GET", url) as response,
        ):
            async for data in stream_swarm_windows(response.aiter_lines()):
                arrived = time.time() * 1000
                arrivals.append((data["seq"], data["window_start_ms"], data["total"], arrived))

    try:
        await asyncio.wait_for(read(), seconds)
    except TimeoutError:
        pass


async def _probe(url: str, rate: float, seconds: float, sent: list[float]) -> None:
    body = {"user_id": "probe", "emoji": "\U0001f525"}
    loop = asyncio.get_running_loop()
    started = loop.time()
    ticks = 0
    async with httpx.AsyncClient(timeout=5.0) as client:
        while loop.time() - started < seconds:
            ticks += 1
            at = time.time() * 1000
            response = await client.post(url, json=body)
            if response.status_code == 202:
                sent.append(at)
            await asyncio.sleep(max(0.0, started + ticks / rate - loop.time()))


async def _measure(
    ingest: str, delivery: str, clients: int, seconds: float, probe_rate: float
) -> dict[str, Any]:
    arrivals: list[list[tuple[int, int, int, float]]] = [[] for _ in range(clients)]
    stream = f"{delivery}/v1/events/{PROBE_EVENT}/stream"
    listen_s = seconds + WINDOW_S + 3.0
    listeners = [asyncio.create_task(_listen(stream, listen_s, a)) for a in arrivals]
    await asyncio.sleep(0.5)
    sent: list[float] = []
    await _probe(f"{ingest}/v1/events/{PROBE_EVENT}/reactions", probe_rate, seconds, sent)
    await asyncio.gather(*listeners)
    window_ms = int(WINDOW_S * 1000)
    latencies: list[float] = []
    end_to_client: list[float] = []
    mismatched = 0
    for client_arrivals in arrivals:
        first_arrival = {start: arrived for _seq, start, _total, arrived in client_arrivals}
        totals = {start: total for _seq, start, total, _arrived in client_arrivals}
        posted: dict[int, int] = {}
        for at in sent:
            start = int(at) - int(at) % window_ms
            posted[start] = posted.get(start, 0) + 1
            if start in first_arrival:
                latencies.append(first_arrival[start] - at)
        for start, arrived in first_arrival.items():
            if totals[start] > 0:
                end_to_client.append(arrived - (start + window_ms))
        # A request sent just before a boundary can be received just after it.
        mismatched += sum(
            1 for start, n in posted.items() if start in totals and totals[start] != n
        )
    return {
        "clients": clients,
        "seconds": seconds,
        "probe_rate": probe_rate,
        "probe_sent": len(sent),
        "latency_samples": len(latencies),
        "p50_ms": _percentile(latencies, 50),
        "p99_ms": _percentile(latencies, 99),
        "max_ms": max(latencies) if latencies else float("nan"),
        "window_end_p50_ms": _percentile(end_to_client, 50),
        "window_end_p99_ms": _percentile(end_to_client, 99),
        "windows_mismatched": mismatched,
        "latencies_ms": sorted(latencies),
    }


def run(quick: bool) -> dict[str, Any]:
    seconds = 10.0 if quick else 30.0
    background_rps = 100  # x 100 reactions = 10,000 reactions/s of steady background load
    with PrivateRedis() as redis:
        env = child_env(
            redis.url,
            EMOSTREAM_WINDOW_S=str(WINDOW_S),
            EMOSTREAM_FLUSH_INTERVAL_MS=str(FLUSH_INTERVAL_MS),
        )
        ingest_port, delivery_port = free_port(), free_port()
        ingest = f"http://127.0.0.1:{ingest_port}"
        delivery = f"http://127.0.0.1:{delivery_port}"
        with (
            child(["-m", "emostream", "ingest", "--port", str(ingest_port)], env, ingest),
            child(["-m", "emostream", "worker"], env),
            child(["-m", "emostream", "delivery", "--port", str(delivery_port)], env, delivery),
        ):

            async def both() -> dict[str, Any]:
                background = asyncio.to_thread(
                    run_load,
                    f"{ingest}/v1/events/live/reactions",
                    make_bodies(100),
                    16,
                    seconds + 1,
                    16 * 1000 / background_rps,
                )
                measured: dict[str, Any]
                measured, load = await asyncio.gather(
                    _measure(ingest, delivery, 10, seconds, probe_rate=50), background
                )
                measured["background_reactions_per_s"] = load.rps * 100
                measured["background_errors"] = load.errors
                return measured

            result: dict[str, Any] = asyncio.run(both())
    result["window_s"] = WINDOW_S
    result["flush_interval_ms"] = FLUSH_INTERVAL_MS
    print(
        f"  e2e: reaction -> SSE p50 {result['p50_ms']:.0f} ms p99 {result['p99_ms']:.0f} ms; "
        f"window end -> SSE p50 {result['window_end_p50_ms']:.0f} ms "
        f"p99 {result['window_end_p99_ms']:.0f} ms",
        flush=True,
    )
    return result
