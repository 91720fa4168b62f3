"""`emostream watch` as a real subprocess: it prints windows as they close, in text or JSON,
and resumes across a delivery restart without missing or repeating a window."""

from __future__ import annotations

import json
import queue
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import IO, Any

import httpx
import pytest

from emostream.records import WindowRecord
from emostream.rules import EmojiSwarmRule
from emostream.watch import window_line

from .conftest import Process, ProcessFactory

pytestmark = pytest.mark.e2e

ENV = {"EMOSTREAM_WINDOW_S": "1"}


class Watcher:
    """`emostream watch` running as a child process, its output read line by line."""

    def __init__(self, *args: str) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "emostream", "watch", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.errors: list[str] = []
        assert self.popen.stdout is not None and self.popen.stderr is not None
        self.pumps = [
            threading.Thread(target=self._pump, args=(self.popen.stdout, None), daemon=True),
            threading.Thread(target=self._pump, args=(self.popen.stderr, 1), daemon=True),
        ]
        for pump in self.pumps:
            pump.start()

    def _pump(self, stream: IO[str], errors: int | None) -> None:
        for line in stream:
            if errors is None:
                self.lines.put(line.rstrip("\n"))
            else:
                self.errors.append(line)

    def read_until(self, done: Any, timeout_s: float) -> list[str]:
        """Lines printed until ``done(lines)`` holds; fails after ``timeout_s``."""
        lines: list[str] = []
        deadline = time.monotonic() + timeout_s
        while not done(lines):
            left = deadline - time.monotonic()
            assert left > 0, f"watch printed {lines} (stderr: {self.errors})"
            try:
                lines.append(self.lines.get(timeout=left))
            except queue.Empty:
                continue
        return lines

    def stop(self) -> None:
        self.popen.kill()
        self.popen.wait()
        for pump in self.pumps:
            pump.join(timeout=5)
        for pipe in (self.popen.stdout, self.popen.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def watchers() -> Iterator[list[Watcher]]:
    started: list[Watcher] = []
    try:
        yield started
    finally:
        for watcher in started:
            watcher.stop()


def post(url: str, event: str, emojis: list[str]) -> None:
    reactions = [{"user_id": f"u{i}", "emoji": emoji} for i, emoji in enumerate(emojis)]
    response = httpx.post(f"{url}/v1/events/{event}/reactions", json=reactions)
    assert response.status_code == 202, response.text


def test_a_window_reads_as_one_line() -> None:
    record = WindowRecord("live", 42, 1795000000000, 1795000002000, 5234, 812, (("🔥", 3785),))
    window = EmojiSwarmRule().window_object(record)
    line = window_line(window)
    # Every window carries its mood (emostream/mood.py): 🔥 scores positive.
    assert re.fullmatch(
        r"#42 \d\d:\d\d:\d\d-\d\d:\d\d:\d\d  total 5234  users 812  mood \+0\.\d\d  🔥 3785", line
    )
    assert "  mood +0.25  " in window_line({**window, "mood": 0.25})
    assert "mood" not in window_line({**window, "mood": None})
    revised = EmojiSwarmRule().window_object(WindowRecord("live", 42, 0, 2000, 0, 0, (), 1))
    assert window_line(revised).endswith("  -  (revised)")


def test_watch_prints_each_window_as_it_closes(
    processes: ProcessFactory, watchers: list[Watcher]
) -> None:
    up = processes.role("up", **ENV)
    watcher = Watcher("watchme", "--url", up.url)
    watchers.append(watcher)
    time.sleep(1.0)  # connected before the window opens, so it is seen live
    post(up.url, "watchme", ["🔥", "🔥", "🔥", "😂", "😂"])
    lines = watcher.read_until(lambda lines: any("total 5" in x for x in lines), 30)
    line = next(x for x in lines if "total 5" in x)
    assert re.fullmatch(r"#\d+ \S+  total 5  users 5  (mood \S+  )?🔥 3  😂 2", line), line
    # A stream that cannot be had (here a wrong base URL: 404) ends it, saying why.
    wrong = subprocess.run(
        [sys.executable, "-m", "emostream", "watch", "live", "--url", f"{up.url}/nowhere"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert wrong.returncode == 2 and "404" in wrong.stderr, wrong.stderr


def test_watch_json_resumes_across_a_delivery_restart(
    processes: ProcessFactory, watchers: list[Watcher]
) -> None:
    ingest, _worker, delivery = processes.start_many(
        [("ingest", ENV), ("worker", ENV), ("delivery", ENV)]
    )
    watcher = Watcher("resumed", "--url", delivery.url, "--json")
    watchers.append(watcher)
    time.sleep(1.0)
    post(ingest.url, "resumed", ["🔥"] * 4)
    first = watcher.read_until(lambda lines: _total(lines) == 4, 30)

    assert delivery.popen is not None
    delivery.kill()
    post(ingest.url, "resumed", ["😂"] * 3)  # closed while nobody delivers
    time.sleep(3.0)
    restarted = Process(delivery.args, processes.env(**ENV), delivery.port)
    processes.started.append(restarted.start(processes.tmp_path))
    post(ingest.url, "resumed", ["👏"] * 2)
    rest = watcher.read_until(lambda lines: _total(first + lines) == 9, 30)

    windows = [json.loads(line) for line in first + rest]
    live = [w for w in windows if not w.get("revision")]
    seqs = [w["seq"] for w in live]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs  # no gap, no repeat
    counted: Counter[str] = Counter()
    for window in live:
        counted.update({item["emoji"]: item["count"] for item in window["top"]})
    assert counted == Counter({"🔥": 4, "😂": 3, "👏": 2})
    assert any("reconnecting" in line for line in watcher.errors), watcher.errors


def _total(lines: list[str]) -> int:
    windows = (json.loads(line) for line in lines)
    return sum(w["total"] for w in windows if not w.get("revision"))
