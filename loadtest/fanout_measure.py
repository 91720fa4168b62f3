"""The fan-out measurement: the client processes, publishing windows, and what is read off the
receipts (publish -> last client, pauses, the GC phase)."""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .fanout_profile import Profiler
from .fanout_servers import ROOT, Delivery, Server, cpu_split_s, rss_kib

READY_TIMEOUT_S = 600.0
DUMP_TIMEOUT_S = 60.0
COLLECT_POLL_S = 0.5
GC_INTERVAL_MAX_S = 4.0


# -- clients ---------------------------------------------------------------------------------


@dataclass
class Clients:
    """``procs`` client processes holding ``total`` streams between them."""

    port: int
    path: str
    total: int
    procs: int
    processes: list[subprocess.Popen[str]] = field(default_factory=list)
    connected: int = 0
    failed: int = 0
    unstamped: int = 0

    def start(self) -> None:
        share, extra = divmod(self.total, self.procs)
        for index in range(self.procs):
            count = share + (1 if index < extra else 0)
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "loadtest.fanout_client", "--port", str(self.port)]
                    + ["--path", self.path, "--clients", str(count)],
                    cwd=ROOT,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for process in self.processes:
            _ready, opened, failed = self._line(process, READY_TIMEOUT_S).split()
            self.connected += int(opened)
            self.failed += int(failed)

    @staticmethod
    def _line(process: subprocess.Popen[str], timeout_s: float) -> str:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout_s):
                raise RuntimeError(f"client process silent for {timeout_s} s")
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"client process exited ({process.poll()})")
        return line

    def dump(self) -> tuple[dict[int, list[float]], int]:
        """Receive times per seq from every process (each list sorted), and streams open."""
        merged: dict[int, list[float]] = {}
        alive = 0
        self.unstamped = 0
        with tempfile.TemporaryDirectory(prefix="bench-fanout-") as directory:
            for index, process in enumerate(self.processes):
                assert process.stdin is not None
                path = f"{directory}/{index}.json"
                process.stdin.write(f"dump {path}\n")
                process.stdin.flush()
                self._line(process, DUMP_TIMEOUT_S)
                data = json.loads(Path(path).read_text())
                alive += data["open"]
                self.unstamped += data["unstamped"]
                for seq, at in data["times"].items():
                    merged.setdefault(int(seq), []).extend(at)
        for at in merged.values():
            at.sort()
        return merged, alive

    def collect(
        self, seqs: list[int], expected: int, limit_s: float
    ) -> tuple[dict[int, list[float]], int]:
        """Receive times of ``seqs`` once every client has every one, or after ``limit_s``
        (a window still missing then is counted missing)."""
        merged: dict[int, list[float]] = {}
        alive = 0
        deadline = time.monotonic() + limit_s
        while True:
            time.sleep(COLLECT_POLL_S)
            received, alive = self.dump()
            for seq, at in received.items():
                merged.setdefault(seq, []).extend(at)
            complete = all(len(merged.get(seq, ())) >= expected for seq in seqs)
            if complete or time.monotonic() > deadline:
                break
        for at in merged.values():
            at.sort()
        return merged, alive

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None and process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.write("quit\n")
                    process.stdin.flush()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)


@contextlib.contextmanager
def clients_connected(server: Server, total: int, procs: int) -> Iterator[Clients]:
    clients = Clients(server.port, server.path, total, procs)
    try:
        clients.start()
        yield clients
    finally:
        clients.stop()


# -- measurement -----------------------------------------------------------------------------


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered) + 0.5)) - 1))]


def deliveries(
    sent: dict[int, float], received: dict[int, list[float]], clients: int
) -> dict[str, Any]:
    """Per window: publish -> last client, the largest gap between consecutive receipts."""
    last_ms, first_ms, gap_ms, missing = [], [], [], 0
    for seq, at in sent.items():
        times = received.get(seq, [])
        missing += clients - len(times)
        if not times:
            continue
        first_ms.append((times[0] - at) * 1000)
        last_ms.append((times[-1] - at) * 1000)
        # Between receipts only: a window queued behind the previous one shows in first_ms.
        gap_ms.append(max((b - a) * 1000 for a, b in zip(times, times[1:], strict=False)))
    return {
        "windows": len(sent),
        "missing_receipts": missing,
        "pause_max_ms": longest_pause(sent, received),
        "last_ms": last_ms,
        "first_ms": first_ms,
        "gap_ms": gap_ms,
        "last_p50_ms": quantile(last_ms, 0.5) if last_ms else None,
        "last_p99_ms": quantile(last_ms, 0.99) if last_ms else None,
        "last_max_ms": max(last_ms) if last_ms else None,
        "first_p50_ms": quantile(first_ms, 0.5) if first_ms else None,
        "first_max_ms": max(first_ms) if first_ms else None,
        "gap_max_ms": max(gap_ms) if gap_ms else None,
    }


def longest_pause(sent: dict[int, float], received: dict[int, list[float]]) -> float | None:
    """The longest time the server sent nothing to anyone while it owed some window: over
    the periods from a publish to that window's last receipt (merged when they overlap),
    the largest interval between consecutive receipts of any window, or from the publish to
    the first of them. A full garbage collection shows here however the windows overlap."""
    spans = sorted((at, received[seq][-1]) for seq, at in sent.items() if received.get(seq))
    if not spans:
        return None
    busy: list[list[float]] = []
    for start, end in spans:
        if busy and start <= busy[-1][1]:
            busy[-1][1] = max(busy[-1][1], end)
        else:
            busy.append([start, end])
    receipts = sorted(t for at in received.values() for t in at)
    longest = 0.0
    for start, end in busy:
        inside = receipts[bisect.bisect_left(receipts, start) : bisect.bisect_right(receipts, end)]
        points = [start, *inside]
        longest = max(
            longest, max((b - a for a, b in zip(points, points[1:], strict=False)), default=0.0)
        )
    return longest * 1000


def publish_series(
    server: Server, first_seq: int, count: int, interval_s: float
) -> dict[int, float]:
    sent: dict[int, float] = {}
    start = time.monotonic()
    for index in range(count):
        pause = start + index * interval_s - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        sent[first_seq + index] = server.publish(first_seq + index)
    return sent


def measure(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    time.sleep(1.0)
    rss_idle = rss_kib(server.pid)
    connect_started = time.monotonic()
    with clients_connected(server, args.clients, args.client_procs) as clients:
        connect_s = time.monotonic() - connect_started
        rss_connected = rss_kib(server.pid)
        connected = clients.connected
        time.sleep(1.0)
        seq = 1
        warmup = publish_series(server, seq, args.warmup, args.interval_s)  # first frames
        seq += args.warmup
        clients.collect(list(warmup), connected, args.settle_s)
        profiler = None
        if args.profile is not None and isinstance(server, Delivery):
            profiler = Profiler(server.pid, args.profile)
            profiler.start()
        user_before, system_before = cpu_split_s(server.pid)
        windows_began = time.time()
        sent = publish_series(server, seq, args.publishes, args.interval_s)
        seq += args.publishes
        received, alive = clients.collect(list(sent), connected, args.settle_s)
        user_after, system_after = cpu_split_s(server.pid)
        cpu_user, cpu_system = user_after - user_before, system_after - system_before
        cpu_used = cpu_user + cpu_system
        if profiler is not None:
            profiler.stop()
        windows_ended = time.time()
        rss_after = rss_kib(server.pid)
        result = {
            "server": server.name,
            "clients": connected,
            "failed": clients.failed,
            "open_at_end": alive,
            "reads_without_kernel_stamp": clients.unstamped,
            "connect_s": connect_s,
            "rss_idle_kib": rss_idle,
            "rss_connected_kib": rss_connected,
            "rss_after_kib": rss_after,
            "kib_per_connection_connected": (rss_connected - rss_idle) / max(connected, 1),
            "kib_per_connection": (rss_after - rss_idle) / max(connected, 1),
            "cpu_s": cpu_used,
            "cpu_user_s": cpu_user,
            "cpu_system_s": cpu_system,
            "cpu_us_per_message": cpu_used * 1e6 / max(args.publishes * connected, 1),
            **deliveries(sent, received, connected),
            "next_seq": seq,
        }
        if isinstance(server, Delivery):
            automatic = [e for e in server.gc_events() if e["kind"] == "auto"]
            during = [e for e in automatic if windows_began <= e["at"] <= windows_ended]
            result["auto_full_gc"] = {
                "all": len(automatic),
                "all_max_ms": max((e["ms"] for e in automatic), default=0.0),
                "during_windows": len(during),
                "during_windows_max_ms": max((e["ms"] for e in during), default=0.0),
            }
            if args.gc_phase:
                # Windows apart enough that each is delivered alone; the collection is set
                # off a third into one window's fan-out, so its pause lands between receipts.
                fan_out_s = (result["last_p50_ms"] or 0) / 1000
                interval_s = min(max(args.gc_interval_s, 2 * fan_out_s), GC_INTERVAL_MAX_S)
                delay_s = min(fan_out_s / 3, interval_s / 3)
                result["gc"] = gc_phase(server, clients, seq, connected, interval_s, delay_s, args)
    return result


def gc_phase(
    server: Delivery,
    clients: Clients,
    seq: int,
    connected: int,
    interval_s: float,
    delay_s: float,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Windows every interval_s; a forced full collection mid-series, before and after
    gc.freeze() with the clients connected. Each series is judged by its worst window."""
    phases: dict[str, Any] = {"interval_s": interval_s, "delay_s": delay_s}
    for name, before in (("collect", None), ("freeze, then collect", signal.SIGUSR2)):
        if before is not None:
            server.signal(before)
            time.sleep(1.0)
        server.signal(signal.SIGHUP)  # what the collection will traverse, counted now
        time.sleep(1.0)
        count = args.gc_windows
        sent: dict[int, float] = {}
        began = time.time()
        start = time.monotonic()
        for index in range(count):
            pause = start + index * interval_s - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            sent[seq + index] = server.publish(seq + index)
            if index == count // 2:
                time.sleep(delay_s)
                server.signal(signal.SIGUSR1)  # collects while this window is delivered
        seq += count
        received, _alive = clients.collect(list(sent), connected, args.settle_s)
        summary = deliveries(sent, received, connected)
        events = server.gc_events()
        forced = [e for e in events if e["kind"] == "forced"]
        counted = [e for e in events if e["kind"] == "count"]
        automatic = [e for e in events if e["kind"] == "auto" and e["at"] >= began]
        phases[name] = {
            "windows": count,
            "collect_ms": forced[-1]["ms"] if forced else None,
            "tracked_objects": counted[-1]["tracked"] if counted else None,
            "last_max_ms": summary["last_max_ms"],
            "last_p50_ms": summary["last_p50_ms"],
            "gap_max_ms": summary["gap_max_ms"],
            "missing_receipts": summary["missing_receipts"],
            "gaps_ms": summary["gap_ms"],
            "automatic": len(automatic),
            "automatic_max_ms": max((e["ms"] for e in automatic), default=0.0),
        }
    return phases
