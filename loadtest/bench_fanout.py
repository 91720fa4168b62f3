"""Fan-out benchmark: emostream's delivery process against nginx + nchan, same client, one run.

For each server, in turn: start it (one process / one nginx worker) on loopback, note its RSS,
connect ``--clients`` SSE streams from ``--client-procs`` client processes
(``loadtest.fanout_client``), publish ``--publishes`` windows ``--interval-s`` apart and record
when every client received each one. Figures, per server:

- memory per connection: server RSS delta (before connecting -> after the publishes) / clients;
- CPU per delivered message: server utime+stime delta over the publishes / (windows x clients);
- publish -> last client received: p50 / p99 over the windows, and the largest gap between
  consecutive receipts (a stall of the server shows up there).

emostream is sent real window records: the msgpack array of ``lua/close_window.lua``, XADDed
to the event's history and PUBLISHed on ``emostream:windows`` of a private Redis, as the
closer does. nchan is POSTed the same JSON object its clients then receive.

Our delivery runs as ``emostream delivery`` (its CLI ``main``; uvicorn unless
``EMOSTREAM_SERVER`` says hypercorn) inside a thin
wrapper that logs every full garbage collection and obeys SIGUSR1 (run ``gc.collect()`` now),
SIGUSR2 (``gc.freeze()`` now) and SIGHUP (count the tracked objects), for the GC phase: a
series of windows during which a full collection is forced with the clients connected, before
and after freezing them.

    python -m loadtest.bench_fanout [--quick] [--clients N] [--no-write]
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import gc
import http.client
import json
import os
import platform
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import msgpack
from redis import Redis

from emostream import keys
from emostream.deliver.frames import window_frame
from emostream.records import decode_record
from emostream.redis_server import PrivateRedis, free_port
from emostream.rules import EmojiSwarmRule
from emostream.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks-delivery.md"
EVENT_ID = "bench"
# Everything after this line in the doc is hand-written reading of the figures: kept on rerun.
NOTES_MARKER = "<!-- notes: written by hand, kept when the script rewrites the tables -->"
NCHAN_MODULE = "/usr/lib/nginx/modules/ngx_nchan_module.so"
READY_TIMEOUT_S = 600.0
DUMP_TIMEOUT_S = 60.0
START_TIMEOUT_S = 30.0
COLLECT_POLL_S = 0.5
GC_INTERVAL_MAX_S = 4.0
LOAD_LIMIT = 3.0
EMOJIS = ("😂", "🔥", "👏", "😮", "❤️", "😢", "🎉", "👍")


# -- /proc -----------------------------------------------------------------------------------


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# -- windows ---------------------------------------------------------------------------------


def window_record(seq: int) -> bytes:
    """A record as close_window.lua packs it: 8 emojis with counts, like a busy window."""
    start_ms = 1_700_000_000_000 + seq * 2000
    flat: list[str | int] = []
    for rank, emoji in enumerate(EMOJIS):
        flat += [emoji, 5000 - rank * 600]
    total = sum(int(c) for c in flat[1::2])
    packed: bytes = msgpack.packb([EVENT_ID, seq, start_ms, start_ms + 2000, total, 2300, 0, flat])
    return packed


def window_json(settings: Settings, seq: int) -> bytes:
    """The ``data:`` JSON our clients receive for this window: what nchan is sent."""
    frame = window_frame(
        EmojiSwarmRule(settings.top_n, settings.scale).window_object(
            decode_record(window_record(seq))
        )
    )
    return next(line[6:] for line in frame.split(b"\n") if line.startswith(b"data: "))


# -- servers ---------------------------------------------------------------------------------


class Server(Protocol):
    name: str
    port: int
    path: str

    @property
    def pid(self) -> int: ...

    def publish(self, seq: int) -> float: ...


class Nchan:
    name = "nginx + nchan"
    path = f"/sub/{EVENT_ID}"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        self.directory = tempfile.mkdtemp(prefix="bench-nchan-")
        self.process: subprocess.Popen[bytes] | None = None
        self.connection: http.client.HTTPConnection | None = None
        self._worker = 0

    def config(self) -> str:
        user = "user root root;\n" if os.geteuid() == 0 else ""
        return f"""load_module {NCHAN_MODULE};
{user}worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
pid {self.directory}/nginx.pid;
error_log {self.directory}/error.log warn;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  client_body_temp_path {self.directory}/body;
  proxy_temp_path {self.directory}/proxy;
  fastcgi_temp_path {self.directory}/fastcgi;
  uwsgi_temp_path {self.directory}/uwsgi;
  scgi_temp_path {self.directory}/scgi;
  server {{
    listen 127.0.0.1:{self.port} backlog=4096;
    location ~ ^/sub/(\\w+)$ {{
      nchan_subscriber eventsource;
      nchan_channel_id $1;
      nchan_subscriber_first_message newest;
    }}
    location ~ ^/pub/(\\w+)$ {{
      nchan_publisher;
      nchan_channel_id $1;
      nchan_message_buffer_length 8;
    }}
  }}
}}
"""

    def start(self) -> None:
        conf = Path(self.directory) / "nginx.conf"
        conf.write_text(self.config())
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.process = subprocess.Popen(
            [binary, "-p", self.directory, "-c", str(conf), "-e", f"{self.directory}/error.log"],
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and not self._worker:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.error_log()}")
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
            pids = children.read_text().split() if children.exists() else []
            if pids and _answers(f"http://127.0.0.1:{self.port}/pub/{EVENT_ID}"):
                self._worker = int(pids[0])
            time.sleep(0.05)
        if not self._worker:
            raise RuntimeError(f"nginx not serving within {START_TIMEOUT_S} s")
        self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def error_log(self) -> str:
        log = Path(self.directory) / "error.log"
        return log.read_text()[-2000:] if log.exists() else ""

    @property
    def pid(self) -> int:
        return self._worker

    def version(self) -> str:
        out = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
        nchan = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", "libnginx-mod-nchan"],
            capture_output=True,
            text=True,
        ).stdout
        return f"{out.removeprefix('nginx version: ')}, libnginx-mod-nchan {nchan}"

    def publish(self, seq: int) -> float:
        assert self.connection is not None
        body = window_json(self.settings, seq)
        sent = time.time()
        self.connection.request(
            "POST", f"/pub/{EVENT_ID}", body, {"Content-Type": "application/json"}
        )
        response = self.connection.getresponse()
        response.read()
        if response.status >= 300:
            raise RuntimeError(f"nchan publish answered {response.status}")
        return sent

    def stop(self) -> None:
        if self.connection is not None:
            self.connection.close()
        _stop(self.process)
        shutil.rmtree(self.directory, ignore_errors=True)


class Delivery:
    name = "emostream delivery"
    path = f"/v1/events/{EVENT_ID}/stream"

    def __init__(self, settings: Settings, redis_url: str) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.port = free_port()
        self.gc_log = Path(tempfile.mkstemp(prefix="bench-delivery-gc-", suffix=".jsonl")[1])
        self.server_log = tempfile.TemporaryFile()
        self.process: subprocess.Popen[bytes] | None = None
        self.redis = Redis.from_url(redis_url)
        shard = keys.shard_of(EVENT_ID, settings.shards)
        self.history = keys.window_history(shard, EVENT_ID)

    def start(self) -> None:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("EMOSTREAM_") or k == "EMOSTREAM_SERVER"
        }
        env["EMOSTREAM_REDIS_URL"] = self.redis_url
        self.process = subprocess.Popen(
            [sys.executable, "-m", "loadtest.bench_fanout", "serve-delivery"]
            + ["--port", str(self.port), "--gc-log", str(self.gc_log)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.server_log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(f"http://127.0.0.1:{self.port}/healthz"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"delivery did not start: {self.tail()}")
            time.sleep(0.05)

    def tail(self) -> str:
        self.server_log.seek(0)
        return self.server_log.read()[-3000:].decode(errors="replace")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def publish(self, seq: int) -> float:
        record = window_record(seq)
        pipe = self.redis.pipeline(transaction=True)  # XADD + PUBLISH as one step, like Lua
        pipe.xadd(self.history, {"w": record}, id=f"{seq}-0", maxlen=1000, approximate=True)
        pipe.publish(keys.WINDOWS_CHANNEL, record)
        sent = time.time()
        pipe.execute()
        return sent

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def gc_events(self) -> list[dict[str, Any]]:
        lines = self.gc_log.read_text().splitlines() if self.gc_log.exists() else []
        return [json.loads(line) for line in lines]

    def stop(self) -> None:
        _stop(self.process)
        self.redis.close()
        self.server_log.close()
        self.gc_log.unlink(missing_ok=True)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return bool(response.status < 500)
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def _stop(process: subprocess.Popen[Any] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


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
        cpu_before = cpu_s(server.pid)
        windows_began = time.time()
        sent = publish_series(server, seq, args.publishes, args.interval_s)
        seq += args.publishes
        received, alive = clients.collect(list(sent), connected, args.settle_s)
        cpu_used = cpu_s(server.pid) - cpu_before
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


# -- the delivery process under test ---------------------------------------------------------


def serve_delivery(port: int, gc_log: str) -> int:
    """``emostream delivery`` in this process, plus GC logging and the SIGUSR1/2 hooks."""
    from emostream.cli import main

    log = open(gc_log, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    started: list[float] = [0.0]
    forcing: list[bool] = [False]

    def on_collection(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        elif info["generation"] == 2 and not forcing[0]:
            ms = (time.perf_counter() - started[0]) * 1000
            log.write(json.dumps({"kind": "auto", "ms": ms, "at": time.time()}) + "\n")

    def collect(_signum: int, _frame: object) -> None:
        forcing[0] = True
        began = time.perf_counter()
        gc.collect()
        ms = (time.perf_counter() - began) * 1000
        forcing[0] = False
        log.write(json.dumps({"kind": "forced", "ms": ms}) + "\n")

    def freeze(_signum: int, _frame: object) -> None:
        gc.freeze()
        log.write(json.dumps({"kind": "freeze"}) + "\n")

    def count(_signum: int, _frame: object) -> None:
        # Walking millions of objects blocks the loop too: only asked between series.
        tracked = len(gc.get_objects())
        log.write(json.dumps({"kind": "count", "tracked": tracked}) + "\n")

    gc.callbacks.append(on_collection)
    signal.signal(signal.SIGUSR1, collect)
    signal.signal(signal.SIGUSR2, freeze)
    signal.signal(signal.SIGHUP, count)
    raise_nofile()
    return main(["delivery", "--host", "127.0.0.1", "--port", str(port)])


# -- the report ------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "nproc": str(os.cpu_count()),
        "memory": f"{memory_kib / 1024 / 1024:.1f} GiB",
        "cpu": cpu,
    }


def versions(nchan: Nchan) -> dict[str, str]:
    from importlib.metadata import version

    return {
        "python": platform.python_version(),
        "server": os.environ.get("EMOSTREAM_SERVER") or "uvicorn",
        "uvicorn": version("uvicorn"),
        "uvloop": version("uvloop"),
        "httptools": version("httptools"),
        "hypercorn": version("hypercorn"),
        "starlette": version("starlette"),
        "redis-server": subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True
        ).stdout.split()[2],
        "nginx": nchan.version(),
    }


def wait_for_quiet(limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while float(loadavg().split()[0]) > LOAD_LIMIT and time.monotonic() < deadline:
        print(f"load {loadavg()} above {LOAD_LIMIT}; waiting", file=sys.stderr, flush=True)
        time.sleep(min(30.0, max(0.0, deadline - time.monotonic())))


def run(args: argparse.Namespace) -> dict[str, Any]:
    raise_nofile()
    wait_for_quiet(args.wait_load_s)
    report: dict[str, Any] = {"command": args.command_line, "machine": machine()}
    report["load_before"] = loadavg()
    with PrivateRedis() as redis_server:
        settings = Settings.from_env({"EMOSTREAM_REDIS_URL": redis_server.url})
        nchan = Nchan(settings)
        report["versions"] = versions(nchan)
        try:
            nchan.start()
            report["nchan"] = measure(nchan, args)
        finally:
            nchan.stop()
        print(json.dumps(_brief(report["nchan"])), file=sys.stderr, flush=True)
        delivery = Delivery(settings, redis_server.url)
        try:
            delivery.start()
            report["ours"] = measure(delivery, args)
        except BaseException:
            sys.stderr.write(delivery.tail())
            raise
        finally:
            delivery.stop()
        print(json.dumps(_brief(report["ours"])), file=sys.stderr, flush=True)
    report["load_after"] = loadavg()
    return report


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if not isinstance(v, list)}


def _ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or not theirs:
        return "n/a"
    return f"{ours / theirs:.2f}x"


def _met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "missed")


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} ms"


def markdown(report: dict[str, Any]) -> str:
    ours, nchan = report["ours"], report["nchan"]
    mem_ratio = ours["kib_per_connection"] / nchan["kib_per_connection"]
    cpu_ratio = ours["cpu_us_per_message"] / nchan["cpu_us_per_message"]
    m, v = report["machine"], report["versions"]
    held_goal = ours["clients"] >= 10_000 and ours["open_at_end"] >= 10_000
    lines = [
        "# Delivery fan-out: emostream against nginx + nchan",
        "",
        "Generated by `loadtest/bench_fanout.py` (`scripts/bench-fanout`); rerun to refresh. "
        "Both servers are measured in one run, one after the other, on loopback, by the same "
        "client (`loadtest/fanout_client.py`: raw sockets in an epoll loop, "
        f"{report['client_procs']} processes, each copy's arrival time taken from the "
        "kernel's receive timestamp, `SO_TIMESTAMPNS`, so a descheduled client process does "
        "not add its own delay). Timings on a shared 2-core machine are figures "
        "to read, not assertions: the clients, Redis and the server share the cores.",
        "",
        f"- Command: `{report['command']}`",
        f"- Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']} memory; load average "
        f"{report['load_before']} before, {report['load_after']} after.",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        f"- Load: {report['clients']} SSE clients per server; {report['warmup']} warm-up "
        f"windows, then {report['publishes']} windows {report['interval_s']} s apart "
        f"(emostream's windows close every 2 s). Every window is the JSON of an 8-emoji "
        f"window ({report['payload_bytes']} bytes of `data:`).",
        f"- emostream: `emostream delivery` ({v['server']}, one process) subscribed to a private "
        "redis-server; windows are the msgpack records of `lua/close_window.lua`, XADDed to "
        "history and PUBLISHed on `emostream:windows`. nchan: nginx, `worker_processes 1`, "
        "`nchan_subscriber eventsource`, the same JSON POSTed to its publisher location.",
        "",
        "## Clients per process and memory per connection",
        "",
        "Server RSS (nginx: its one worker) before connecting, after every client connected, "
        "and after the windows were delivered; per connection = delta / clients.",
        "",
        "| | clients held | failed | RSS idle | RSS connected | RSS after windows "
        "| per connection (connected) | per connection (after windows) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for result in (ours, nchan):
        lines.append(
            f"| {result['server']} | {result['clients']} | {result['failed']} "
            f"| {result['rss_idle_kib'] / 1024:.1f} MiB "
            f"| {result['rss_connected_kib'] / 1024:.1f} MiB "
            f"| {result['rss_after_kib'] / 1024:.1f} MiB "
            f"| {result['kib_per_connection_connected']:.1f} KiB "
            f"| {result['kib_per_connection']:.1f} KiB |"
        )
    lines += [
        "",
        "| goal | ours | nchan | ratio | result |",
        "| --- | --- | --- | --- | --- |",
        f"| 10,000 clients on one delivery process | {ours['clients']} held, "
        f"{ours['open_at_end']} open at the end | {nchan['clients']} | | "
        f"{_met(held_goal) if report['clients'] >= 10_000 else 'n/a (fewer asked)'} |",
        f"| memory per connection at most 2.5x nchan's | {ours['kib_per_connection']:.1f} KiB "
        f"| {nchan['kib_per_connection']:.1f} KiB | {mem_ratio:.2f}x | {_met(mem_ratio <= 2.5)} |",
        "",
        "## Server CPU per delivered message",
        "",
        "Server process utime + stime (from `/proc/<pid>/stat`) over the measured windows, "
        "divided by windows x clients. emostream's figure excludes Redis (one PUBLISH per "
        "window, independent of clients).",
        "",
        "| | CPU over the windows | messages delivered | CPU per message |",
        "| --- | --- | --- | --- |",
    ]
    for result in (ours, nchan):
        delivered = result["windows"] * result["clients"] - result["missing_receipts"]
        lines.append(
            f"| {result['server']} | {result['cpu_s']:.2f} s | {delivered} "
            f"| {result['cpu_us_per_message']:.1f} µs |"
        )
    lines += [
        "",
        "| goal | ours | nchan | ratio | result |",
        "| --- | --- | --- | --- | --- |",
        f"| CPU per delivered message at most 2x nchan's | {ours['cpu_us_per_message']:.1f} µs "
        f"| {nchan['cpu_us_per_message']:.1f} µs | {cpu_ratio:.2f}x | {_met(cpu_ratio <= 2)} |",
        "",
        "## Publish to last client received",
        "",
        "Per window: from just before the publish (PUBLISH / POST) to the kernel receive "
        "timestamp of the last client's copy; the gap is the largest interval between two "
        "consecutive receipts of one window over all clients; the longest pause is the longest "
        "time the server sent nothing to anyone while it owed some window (from a publish "
        "to that window's last receipt, receipts of every window counted), where a stall "
        "of the server shows however windows overlap. "
        f"p99 over {report['publishes']} windows is close to their maximum.",
        "",
        "| | windows | receipts missing | first client p50 | first client max "
        "| last client p50 | last client p99 | last client max | largest gap "
        "| longest pause |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for result in (ours, nchan):
        lines.append(
            f"| {result['server']} | {result['windows']} | {result['missing_receipts']} "
            f"| {_ms(result['first_p50_ms'])} | {_ms(result['first_max_ms'])} "
            f"| {_ms(result['last_p50_ms'])} "
            f"| {_ms(result['last_p99_ms'])} | {_ms(result['last_max_ms'])} "
            f"| {_ms(result['gap_max_ms'])} | {_ms(result['pause_max_ms'])} |"
        )
    p99_ok = ours["last_p99_ms"] is not None and ours["last_p99_ms"] < 300
    gap_ok = ours["pause_max_ms"] is not None and ours["pause_max_ms"] <= 100
    lines += [
        "",
        "| goal | ours | nchan | ratio | result |",
        "| --- | --- | --- | --- | --- |",
        f"| p99 publish -> last of {ours['clients']} clients under 300 ms "
        f"| {_ms(ours['last_p99_ms'])} | {_ms(nchan['last_p99_ms'])} "
        f"| {_ratio(ours['last_p99_ms'], nchan['last_p99_ms'])} | {_met(p99_ok)} |",
        f"| no pause over 100 ms (longest pause) | {_ms(ours['pause_max_ms'])} "
        f"| {_ms(nchan['pause_max_ms'])} "
        f"| {_ratio(ours['pause_max_ms'], nchan['pause_max_ms'])} | {_met(gap_ok)} |",
    ]
    if "gc" in ours:
        gc_result = ours["gc"]
        lines += [
            "",
            "## Garbage collection with the clients connected (emostream)",
            "",
            "`emostream delivery` runs `gc.collect(); gc.freeze()` at start-up, before any "
            "client connects; every object of a connection is created later, so it is tracked "
            "by the collector. Here windows are published every "
            f"{gc_result['interval_s']:.2f} s (twice the last-client p50 above, at most "
            f"{GC_INTERVAL_MAX_S:.0f} s; {report['gc_windows']} per series) and "
            f"{gc_result['delay_s'] * 1000:.0f} ms after the publish of the middle window the "
            "process is made to run a full `gc.collect()` (SIGUSR1, on its main thread, as an "
            "automatic full collection would): first as shipped, then after `gc.freeze()` was "
            "called with every client connected (SIGUSR2). Largest gap: the worst window of "
            "the series; the other windows' median gap is given for comparison. Unforced full "
            "collections: those run during the series without the signal (by the delivery "
            "process's collection pacer, between windows, or by the interpreter).",
            "",
            "| series | forced full collection took | objects tracked | largest gap "
            "| median window's gap | last client, worst window | last client p50 "
            "| unforced full collections | receipts missing |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name in ("collect", "freeze, then collect"):
            row = gc_result[name]
            gaps = row["gaps_ms"]
            lines.append(
                f"| {name} | {_ms(row['collect_ms'])} | {row['tracked_objects']} "
                f"| {_ms(row['gap_max_ms'])} | {_ms(quantile(gaps, 0.5) if gaps else None)} "
                f"| {_ms(row['last_max_ms'])} | {_ms(row['last_p50_ms'])} "
                f"| {row['automatic']} (longest {row['automatic_max_ms']:.0f} ms) "
                f"| {row['missing_receipts']} |"
            )
    if "auto_full_gc" in ours:
        auto = ours["auto_full_gc"]
        lines += [
            "",
            "Unforced full (generation 2) collections in the delivery process (the pacer's, "
            "between windows, or the interpreter's), timed by a "
            f"`gc.callbacks` hook: {auto['all']} from start-up to the end of the measured "
            f"windows (longest {auto['all_max_ms']:.0f} ms), of which {auto['during_windows']} "
            f"during the measured windows (longest {auto['during_windows_max_ms']:.0f} ms).",
        ]
    lines += ["", NOTES_MARKER, ""]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> bool:
    """Publish -> last client per window, both servers, log scale; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axes = plt.subplots(figsize=(7, 3.2), dpi=90)
    for key, color in (("ours", "#d62728"), ("nchan", "#1f77b4")):
        result = report[key]
        axes.plot(result["last_ms"], marker="o", markersize=3, color=color, label=result["server"])
    axes.axhline(300, color="#7f7f7f", linestyle="--", linewidth=1, label="goal p99 300 ms")
    axes.set_yscale("log")
    axes.set_xlabel("window")
    axes.set_ylabel("publish -> last client (ms)")
    axes.set_title(
        f"{report['clients']} SSE clients per server, one window every {report['interval_s']} s",
        fontsize=10,
    )
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return True


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="SSE fan-out: emostream delivery vs nchan.")
    parser.add_argument("--quick", action="store_true", help="1,000 clients, a short run")
    parser.add_argument("--clients", type=int)
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--publishes", type=int)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--interval-s", type=float, help="between windows (full: 2, quick: 0.5)")
    parser.add_argument(
        "--settle-s", type=float, default=60.0, help="longest wait for late windows"
    )
    parser.add_argument("--gc-interval-s", type=float, default=0.1)
    parser.add_argument("--gc-windows", type=int, default=12)
    parser.add_argument("--no-gc-phase", dest="gc_phase", action="store_false")
    parser.add_argument("--wait-load-s", type=float, help="wait this long for load < 3")
    parser.add_argument("--no-write", action="store_true", help="print, do not write the doc")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args(argv)
    if args.clients is None:
        args.clients = 1000 if args.quick else 10_000
    if args.publishes is None:
        args.publishes = 10 if args.quick else 30
    if args.interval_s is None:
        args.interval_s = 0.5 if args.quick else 2.0
    if args.wait_load_s is None:
        args.wait_load_s = 0.0 if args.quick else 600.0
    if args.quick:
        args.settle_s = min(args.settle_s, 15.0)
    return args


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["serve-delivery"]:
        serve = argparse.ArgumentParser()
        serve.add_argument("--port", type=int, required=True)
        serve.add_argument("--gc-log", required=True)
        options = serve.parse_args(arguments[1:])
        return serve_delivery(options.port, options.gc_log)
    if not Path(NCHAN_MODULE).exists():
        print("nchan is missing: apt-get install -y nginx libnginx-mod-nchan", file=sys.stderr)
        return 2
    args = parse_args(arguments)
    args.command_line = "python -m loadtest.bench_fanout " + " ".join(arguments)
    report = run(args)
    settings = Settings()
    report.update(
        clients=args.clients,
        client_procs=args.client_procs,
        warmup=args.warmup,
        publishes=args.publishes,
        interval_s=args.interval_s,
        gc_interval_s=args.gc_interval_s,
        gc_windows=args.gc_windows,
        payload_bytes=len(window_json(settings, 1)),
    )
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1))
    text = markdown(report)
    if args.no_write:
        print(text)
    else:
        kept = ""
        if DOC.exists() and NOTES_MARKER in DOC.read_text():
            kept = DOC.read_text().split(NOTES_MARKER, 1)[1].lstrip("\n")
        figure = DOC.parent / "bench-fanout-latency.png"
        if plot(report, figure):
            text = text.replace(
                NOTES_MARKER,
                f"![publish to last client per window]({figure.name})\n\n" + NOTES_MARKER,
            )
        DOC.write_text(text + kept)
        print(f"wrote {DOC.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
