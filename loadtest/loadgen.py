"""HTTP load for the ingest benchmarks: wrk with a generated Lua script, or a Python fallback.

wrk (Debian's ``wrk`` package) is preferred: its C event loop costs a fraction of the CPU a
Python generator needs, and on a 2-core machine the generator shares the cores with the server
under test. Both run closed-loop (each connection sends its next request when the answer
arrives); a paced run adds a per-connection pause so the offered rate is a chosen fraction of
the peak. Latency is measured from a request's write to its answer, so it is the server's
queueing plus service time at that load.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

PERCENTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9)
MARKER = "WRKJSON "


@dataclass
class LoadResult:
    requests: int
    duration_s: float
    errors: int
    latency_ms: dict[float, float] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def p50_ms(self) -> float:
        return self.latency_ms.get(50, math.nan)

    @property
    def p99_ms(self) -> float:
        return self.latency_ms.get(99, math.nan)


def generator_name() -> str:
    return "wrk" if shutil.which("wrk") else "python"


def _lua(bodies: list[bytes], per_connection_delay_ms: float | None) -> str:
    lines = ["local bodies = {"]
    for body in bodies:
        text = body.decode()  # UTF-8 bodies; a Lua string holds bytes as they are
        assert "]==]" not in text
        lines.append(f"  [==[{text}]==],")
    lines.append("}")
    lines.append(
        """
local requests = {}
local counter = 0
function init(args)
  for k, body in ipairs(bodies) do
    requests[k] = wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
  end
  math.randomseed(os.time() + tonumber(tostring(requests):sub(-6), 16))
end
function request()
  counter = counter % #requests + 1
  return requests[counter]
end
"""
    )
    if per_connection_delay_ms is not None:
        # Uniform on [0, 2d] keeps the mean pause d and keeps the 64 connections from
        # marching in step, which would turn a steady rate into bursts of 64 requests.
        lines.append(
            f"""
function delay()
  return math.floor(math.random() * {2 * per_connection_delay_ms:.3f} + 0.5)
end
"""
        )
    points = ", ".join(str(p) for p in PERCENTILES)
    lines.append(
        f"""
function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  local parts = {{}}
  for _, p in ipairs({{{points}}}) do
    table.insert(parts, string.format('"%s": %.3f', p, latency:percentile(p) / 1000))
  end
  io.write(string.format(
    '{MARKER}{{"requests": %d, "duration_us": %d, "errors": %d, "latency_ms": {{%s}}}}\\n',
    summary.requests, summary.duration, errors, table.concat(parts, ", ")))
end
"""
    )
    return "\n".join(lines)


def run_load(
    url: str,
    bodies: list[bytes],
    connections: int,
    duration_s: float,
    pause_ms: float | None = None,
) -> LoadResult:
    """Closed-loop load for ``duration_s``; ``pause_ms`` is each connection's mean pause
    between an answer and its next request (None: no pause, the peak)."""
    if generator_name() == "wrk":
        return _run_wrk(url, bodies, connections, duration_s, pause_ms)
    return asyncio.run(_run_python(url, bodies, connections, duration_s, pause_ms))


def run_paced(
    url: str, bodies: list[bytes], connections: int, duration_s: float, rate: float
) -> LoadResult:
    """Load at about ``rate`` requests/s. A connection's cycle is its pause plus the answer's
    latency, which depends on the load itself, so a 1 s calibration run at the naive pause
    measures the latency at roughly that load and the measured run subtracts it."""
    naive_ms = connections * 1000.0 / rate
    probe = run_load(url, bodies, connections, 1.0, naive_ms)
    latency_ms = connections * 1000.0 / probe.rps - naive_ms if probe.rps else 0.0
    return run_load(url, bodies, connections, duration_s, max(naive_ms - latency_ms, 0.0))


def _run_wrk(
    url: str, bodies: list[bytes], connections: int, duration_s: float, delay_ms: float | None
) -> LoadResult:
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".lua", delete=False) as script:
        script.write(_lua(bodies, delay_ms))
    try:
        completed = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(duration_s))}s",
                "--timeout",
                "5s",
                "-s",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=duration_s + 30,
            check=False,
        )
    finally:
        os.unlink(script.name)
    for line in completed.stdout.splitlines():
        if line.startswith(MARKER):
            data = json.loads(line[len(MARKER) :])
            return LoadResult(
                requests=data["requests"],
                duration_s=data["duration_us"] / 1e6,
                errors=data["errors"],
                latency_ms={float(k): v for k, v in data["latency_ms"].items()},
            )
    raise RuntimeError(f"wrk gave no result: {completed.stdout}\n{completed.stderr}")


async def _run_python(
    url: str, bodies: list[bytes], connections: int, duration_s: float, delay_ms: float | None
) -> LoadResult:
    """The fallback when wrk is missing: raw HTTP/1.1 keep-alive, one task per connection."""
    rest = url.split("://", 1)[1]
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    requests = [
        (
            f"POST /{path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
        for body in bodies
    ]
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    deadline = start + duration_s

    async def connection(index: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, int(port or 80))
        counter = index
        try:
            while time.perf_counter() < deadline:
                counter += 1
                sent = time.perf_counter()
                writer.write(requests[counter % len(requests)])
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                chunked = False
                for line in head.lower().split(b"\r\n"):
                    if line.startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                    chunked = chunked or line == b"transfer-encoding: chunked"
                if chunked:
                    while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
                        await reader.readexactly(size + 2)
                    await reader.readuntil(b"\r\n")
                else:
                    await reader.readexactly(length)
                latencies.append((time.perf_counter() - sent) * 1000)
                if not head.startswith(b"HTTP/1.1 2"):
                    errors += 1
                if delay_ms:
                    await asyncio.sleep(random.uniform(0.5, 1.5) * delay_ms / 1000)
        except (OSError, asyncio.IncompleteReadError):
            errors += 1
        finally:
            writer.close()

    await asyncio.wait_for(
        asyncio.gather(*(connection(i) for i in range(connections))), duration_s + 30
    )
    elapsed = time.perf_counter() - start
    latencies.sort()
    points = (
        {
            float(p): latencies[min(len(latencies) - 1, int(len(latencies) * p / 100))]
            for p in PERCENTILES
        }
        if latencies
        else {}
    )
    return LoadResult(len(latencies), elapsed, errors, points)
