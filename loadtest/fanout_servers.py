"""The two servers of the fan-out benchmark (nginx + nchan, and `emostream delivery` in a wrapper
that logs its full collections), the windows they are sent, and /proc readings of them."""

from __future__ import annotations

import gc
import http.client
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Protocol

from redis import Redis

from emostream import keys
from emostream.deliver.frames import window_frame
from emostream.records import HISTORY_FIELD, WindowRecord, encode_record, history_entry_id
from emostream.redis_server import free_port
from emostream.rules import EmojiSwarmRule
from emostream.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
EVENT_ID = "bench"
NCHAN_MODULE = "/usr/lib/nginx/modules/ngx_nchan_module.so"
START_TIMEOUT_S = 30.0
EMOJIS = ("😂", "🔥", "👏", "😮", "❤️", "😢", "🎉", "👍")


# -- /proc -----------------------------------------------------------------------------------


def cpu_s(pid: int) -> float:
    user, system = cpu_split_s(pid)
    return user + system


def cpu_split_s(pid: int) -> tuple[float, float]:
    """(utime, stime) of ``pid``: the process's own code, and the kernel's on its behalf
    (on loopback, a send also runs the receiving side's TCP input)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


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


def window(seq: int) -> WindowRecord:
    """8 emojis with counts, like a busy window."""
    start_ms = 1_700_000_000_000 + seq * 2000
    counts = tuple((emoji, 5000 - rank * 600) for rank, emoji in enumerate(EMOJIS))
    total = sum(count for _emoji, count in counts)
    return WindowRecord(EVENT_ID, seq, start_ms, start_ms + 2000, total, 2300, counts)


def window_json(settings: Settings, seq: int) -> bytes:
    """The ``data:`` JSON our clients receive for this window: what nchan is sent."""
    frame = window_frame(EmojiSwarmRule(settings.top_n, settings.scale).window_object(window(seq)))
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
        record = encode_record(window(seq))
        pipe = self.redis.pipeline(transaction=True)  # XADD + PUBLISH as one step, like Lua
        entry_id = history_entry_id(seq)
        pipe.xadd(self.history, {HISTORY_FIELD: record}, id=entry_id, maxlen=1000, approximate=True)
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
