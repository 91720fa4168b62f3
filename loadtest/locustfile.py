"""Locust scenario: a live-match audience tapping emojis and watching the swarm.

- ``ReactionSender``: a viewer tapping. Mostly single taps; sometimes a client-batched burst
  (the app collects a second of taps and posts them together), weighted emoji mix, user ids
  from a million-strong audience.
- ``SwarmListener``: holds the SSE stream open with a small client of our own and reports
  every window to locust's statistics as request type ``SSE``, name ``window end -> client``,
  with ``response_time`` = arrival time minus the window's ``window_end_ms`` (same machine,
  same clock). A stream that fails to open, or a gap in ``seq``, is reported as a failure.

Headless, bounded by user count and duration:

    locust -f loadtest/locustfile.py --headless -u 50 -r 10 -t 30s --host http://127.0.0.1:8000

Options: ``--event-id`` (default ``live``), ``--listeners`` (SSE users, default 2).
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import requests
from locust import HttpUser, User, between, events, task

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from loadtest.audience import reactions  # noqa: E402

# A stream is reopened (with Last-Event-ID) at least this often, so a listener never blocks
# past the end of a run for longer than one read timeout.
STREAM_MAX_S = 60.0
READ_TIMEOUT_S = 10.0


def _options(parser: Any) -> None:
    parser.add_argument("--event-id", default="live", help="event the audience reacts to")
    parser.add_argument("--listeners", type=int, default=2, help="SSE listener users")


def _apply_options(environment: Any, **_kwargs: Any) -> None:
    options = environment.parsed_options
    if options is not None:
        SwarmListener.fixed_count = options.listeners


events.init_command_line_parser.add_listener(_options)  # type: ignore[no-untyped-call]
events.init.add_listener(_apply_options)  # type: ignore[no-untyped-call]


def _event_id(user: User) -> str:
    options = user.environment.parsed_options
    return options.event_id if options is not None else "live"


class ReactionSender(HttpUser):
    weight = 10
    wait_time = between(0.05, 0.3)

    def on_start(self) -> None:
        self.rng = random.Random()
        self.path = f"/v1/events/{_event_id(self)}/reactions"

    @task(8)
    def tap(self) -> None:
        self.client.post(self.path, json=reactions(self.rng, 1)[0], name="POST 1 reaction")

    @task(2)
    def burst(self) -> None:
        batch = reactions(self.rng, self.rng.randint(5, 50))
        with self.client.post(
            self.path, json=batch, name="POST batch 5-50", catch_response=True
        ) as response:
            if response.status_code != 202 or response.json() != {"accepted": len(batch)}:
                response.failure(f"{response.status_code}: {response.text[:200]}")


class SwarmListener(User):
    fixed_count = 2
    wait_time = between(0.5, 1.0)

    def on_start(self) -> None:
        self.last_seq: int | None = None
        self.opened_ms = 0.0
        self.url = f"{self.host}/v1/events/{_event_id(self)}/stream"

    def _report(self, latency_ms: float, length: int, error: Exception | None = None) -> None:
        self.environment.events.request.fire(
            request_type="SSE",
            name="window end -> client",
            response_time=latency_ms,
            response_length=length,
            exception=error,
            context={},
        )

    @task
    def listen(self) -> None:
        headers = {"Accept": "text/event-stream"}
        if self.last_seq is not None:
            headers["Last-Event-ID"] = str(self.last_seq)
        opened = time.monotonic()
        self.opened_ms = time.time() * 1000
        try:
            with requests.get(
                self.url, headers=headers, stream=True, timeout=(5.0, READ_TIMEOUT_S)
            ) as response:
                response.raise_for_status()
                block: list[str] = []
                for raw in response.iter_lines(decode_unicode=True):
                    line = raw if isinstance(raw, str) else raw.decode()
                    if line:
                        block.append(line)
                    else:
                        self._on_block(block)
                        block = []
                    if time.monotonic() - opened > STREAM_MAX_S:
                        return
        except requests.RequestException as exc:
            self._report((time.monotonic() - opened) * 1000, 0, exc)

    def _on_block(self, block: list[str]) -> None:
        if "event: swarm" not in block:
            return  # heartbeat comment or retry hint
        data = "\n".join(line[6:] for line in block if line.startswith("data: "))
        window = json.loads(data)
        latency_ms = time.time() * 1000 - window["window_end_ms"]
        error = None
        seq = window["seq"]
        if self.last_seq is not None and seq != self.last_seq + 1 and seq > self.last_seq:
            error = RuntimeError(f"seq jumped from {self.last_seq} to {seq}")
        if self.last_seq is None or seq > self.last_seq:
            self.last_seq = seq
            # A new or resumed stream first replays windows that ended before it opened:
            # only live windows say anything about delivery latency.
            if window["window_end_ms"] >= self.opened_ms or error is not None:
                self._report(latency_ms, len(data), error)
