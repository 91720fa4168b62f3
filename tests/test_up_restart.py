"""`emostream up` keeps its history across restarts (its private Redis persists to a data
directory), and a client resuming beyond a history that was lost anyway starts over at once.
Real processes, a real SIGTERM, real SSE clients."""

from __future__ import annotations

import asyncio
import os
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from emostream.deliver.frames import stream_swarm_windows
from emostream.redis_server import free_port

from .conftest import Process

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

EMOJIS = ["🔥", "😂", "👏", "❤️"]
EVENT = "final"


def up_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """No EMOSTREAM_REDIS_URL: `up` starts its own private Redis, as a user's would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMOSTREAM_")}
    env.update({"EMOSTREAM_SHARDS": "2", "XDG_DATA_HOME": str(tmp_path / "xdg")}, **overrides)
    return env


def start_up(tmp_path: Path, port: int, *flags: str, **env: str) -> Process:
    return Process(["up", "--port", str(port), *flags], up_env(tmp_path, **env), port).start(
        str(tmp_path)
    )


async def send_until(url: str, seed: int, stop: asyncio.Event, sent: Counter[str]) -> None:
    """Random single and batched posts until ``stop`` or until the server is gone; counts
    exactly what got 202 (a request cut off by the shutdown was not accepted)."""
    rng = random.Random(seed)
    async with httpx.AsyncClient(timeout=10.0) as client:
        while not stop.is_set():
            batch = [
                {"user_id": f"s{seed}-u{rng.randrange(40)}", "emoji": rng.choice(EMOJIS)}
                for _ in range(rng.choice([1, 3, 25]))
            ]
            try:
                response = await client.post(f"{url}/v1/events/{EVENT}/reactions", json=batch)
            except httpx.TransportError:
                return
            if response.status_code == 202:
                sent.update(r["emoji"] for r in batch)
            await asyncio.sleep(rng.uniform(0.002, 0.02))


class Follower:
    """An SSE client that reconnects, as EventSource does, with Last-Event-ID set to the
    last window it was given; keeps every window (a revision replaces its window)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seqs: list[int] = []  # in the order they arrived, across connections
        self.final: dict[int, dict[str, Any]] = {}
        self.connections = 0

    def totals(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for window in self.final.values():
            total.update({item["emoji"]: item["count"] for item in window["top"]})
        return total

    async def follow(self, until: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=30.0)) as client:
            while not until.is_set():
                headers = {"Last-Event-ID": str(self.seqs[-1])} if self.seqs else {}
                try:
                    async with client.stream("GET", self.url, headers=headers) as response:
                        if response.status_code == 200:
                            self.connections += 1
                            async for window in stream_swarm_windows(response.aiter_lines()):
                                if not window.get("revision"):
                                    self.seqs.append(window["seq"])
                                self.final[window["seq"]] = window
                except httpx.TransportError:
                    pass  # the server is restarting
                await asyncio.sleep(0.1)


async def wait_for(check: Any, timeout_s: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def written(process: Process) -> int:
    found = re.findall(r"ingest stopped: (\d+) reactions written", process.log())
    assert len(found) == 1, process.log()
    return int(found[0])


async def test_up_keeps_history_and_seq_across_a_sigterm_and_restart(tmp_path: Path) -> None:
    port = free_port()
    data_dir = str(tmp_path / "data")
    url = f"http://127.0.0.1:{port}"
    first = start_up(tmp_path, port, "--data-dir", data_dir)

    # A second `up` on the same data directory must not start Redis on it.
    second = subprocess.run(
        [
            sys.executable,
            "-m",
            "emostream",
            "up",
            "--port",
            str(free_port()),
            "--data-dir",
            data_dir,
        ],
        env=up_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 2
    assert f"{data_dir} is in use" in second.stderr, second.stderr

    follower = Follower(f"{url}/v1/events/{EVENT}/stream")
    done = asyncio.Event()
    reader = asyncio.create_task(follower.follow(done))
    before: Counter[str] = Counter()
    stop_sending = asyncio.Event()
    senders = [asyncio.create_task(send_until(url, seed, stop_sending, before)) for seed in (1, 2)]
    await wait_for(lambda: sum(before.values()) > 300 and len(follower.seqs) >= 2, 30, "load")
    # SIGTERM while both senders are still posting.
    assert await asyncio.to_thread(first.terminate) == 0, first.log()
    stop_sending.set()
    await asyncio.gather(*senders)
    assert written(first) == sum(before.values())
    seqs_before = list(follower.seqs)

    second_run = start_up(tmp_path, port, "--data-dir", data_dir)
    try:
        after: Counter[str] = Counter()
        stop_sending = asyncio.Event()
        senders = [
            asyncio.create_task(send_until(url, seed, stop_sending, after)) for seed in (3, 4)
        ]
        await asyncio.sleep(3)
        stop_sending.set()
        await asyncio.gather(*senders)
        sent = before + after
        await wait_for(lambda: follower.totals() == sent, 60, f"SSE totals to reach {sent}")
        done.set()
        reader.cancel()

        # One stream across the restart: every seq once, in order, none missed.
        assert follower.connections >= 2
        seqs = follower.seqs
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"seq gaps: {seqs}"
        assert seqs[len(seqs_before)] == seqs_before[-1] + 1, "seq must continue, not restart"

        history = httpx.get(f"{url}/v1/events/{EVENT}/windows?after=0&limit=1000").json()
        assert [w["seq"] for w in history] == list(range(1, len(history) + 1))
        assert history[seqs[0] - 1 :] == [follower.final[seq] for seq in seqs]
        history_totals: Counter[str] = Counter()
        for window in history:
            history_totals.update({item["emoji"]: item["count"] for item in window["top"]})
        assert history_totals == sent
    finally:
        done.set()
        reader.cancel()
        exit_code = second_run.terminate()
    assert exit_code == 0
    assert written(second_run) == sum(after.values())
    assert os.path.isdir(data_dir), "a data directory is never removed"


async def test_a_resume_beyond_a_lost_history_gets_the_latest_window_at_once(
    tmp_path: Path,
) -> None:
    """--ephemeral: the history is gone after a restart and seq numbering starts at 1
    again; a client resuming with its old Last-Event-ID is told so and is sent the latest
    window at once, then live ones."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    stream_url = f"{url}/v1/events/{EVENT}/stream"
    fast = {"EMOSTREAM_WINDOW_S": "0.5"}
    first = start_up(tmp_path, port, "--ephemeral", **fast)
    try:
        httpx.post(f"{url}/v1/events/{EVENT}/reactions", json={"user_id": "u", "emoji": "🔥"})
        follower = Follower(stream_url)
        enough = asyncio.Event()
        reader = asyncio.create_task(follower.follow(enough))
        await wait_for(lambda: len(follower.seqs) >= 1 and follower.seqs[-1] >= 8, 30, "seq 8")
        reader.cancel()
        last_seen = follower.seqs[-1]
    finally:
        assert first.terminate() == 0

    second = start_up(tmp_path, port, "--ephemeral", **fast)
    try:
        httpx.post(f"{url}/v1/events/{EVENT}/reactions", json={"user_id": "u", "emoji": "😂"})

        def newest() -> int:
            windows = httpx.get(f"{url}/v1/events/{EVENT}/windows?after=0&limit=1000").json()
            return int(windows[-1]["seq"]) if windows else 0

        await wait_for(lambda: newest() >= 1, 30, "a window after the restart")
        assert newest() < last_seen, "history must have restarted from 1"

        lines: list[str] = []
        windows: list[dict[str, Any]] = []

        async def read() -> None:
            headers = {"Last-Event-ID": str(last_seen)}
            async with (
                httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=30.0)) as client,
                client.stream("GET", stream_url, headers=headers) as response,
            ):
                assert response.status_code == 200

                async def recorded() -> Any:
                    async for line in response.aiter_lines():
                        lines.append(line)
                        yield line

                async for window in stream_swarm_windows(recorded()):
                    windows.append(window)
                    if len(windows) >= 3:
                        return

        await asyncio.wait_for(read(), 30)
        assert "event: reset" in lines, lines
        reset_at = lines.index("event: reset")
        assert (
            lines[reset_at + 1].startswith("data: ")
            and f'"last_event_id": {last_seen}' in (lines[reset_at + 1])
        )
        assert lines.index("event: swarm") > reset_at
        # The latest window first (from before this connection), then live ones in order.
        seqs = [w["seq"] for w in windows]
        assert seqs[0] < last_seen
        assert seqs == list(range(seqs[0], seqs[0] + 3)), seqs
    finally:
        assert second.terminate() == 0
