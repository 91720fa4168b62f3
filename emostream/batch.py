"""The raw stream's entry format: one packed batch of reactions per entry.

One msgpack entry carries up to ``flush_max`` reactions (40x the throughput of one entry per
reaction on this machine class). Reactions are stored column-wise per event so the worker can
count a window's slice with C-speed ``Counter``/``set`` calls instead of a per-reaction loop::

    {"v": 1, "id": <batch id>, "p": <producer id>, "wm": <watermark ms>,
     "events": {event_id: [users, emojis, received_ms, client_ts_ms_or_nil]}}

Within one event's columns ``received_ms`` never decreases (the ingest clock is monotonic).
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgpack

from .rules import AggregationRule

BATCH_VERSION = 1
PAYLOAD_FIELD = b"b"


@dataclass(slots=True)
class EventColumns:
    users: list[str] = field(default_factory=list)
    emojis: list[str] = field(default_factory=list)
    received_ms: list[int] = field(default_factory=list)
    client_ts_ms: list[int | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.users)


@dataclass(frozen=True, slots=True)
class Batch:
    batch_id: str
    producer: str
    watermark_ms: int
    events: dict[str, EventColumns]

    @property
    def size(self) -> int:
        return sum(len(columns) for columns in self.events.values())


class BatchError(ValueError):
    """An entry of the raw stream cannot be decoded (a poison entry)."""


def pack_batch(batch: Batch) -> bytes:
    events = {
        event_id: [c.users, c.emojis, c.received_ms, c.client_ts_ms]
        for event_id, c in batch.events.items()
    }
    return msgpack.packb(
        {
            "v": BATCH_VERSION,
            "id": batch.batch_id,
            "p": batch.producer,
            "wm": batch.watermark_ms,
            "events": events,
        }
    )


def unpack_batch(payload: bytes) -> Batch:
    try:
        data: Any = msgpack.unpackb(payload, raw=False)
        if data.get("v") != BATCH_VERSION:
            raise BatchError(f"unknown batch version {data.get('v')!r}")
        events: dict[str, EventColumns] = {}
        for event_id, (users, emojis, received, client_ts) in data["events"].items():
            if not len(users) == len(emojis) == len(received) == len(client_ts):
                raise BatchError(f"columns of event {event_id!r} differ in length")
            events[str(event_id)] = EventColumns(users, emojis, received, client_ts)
        return Batch(str(data["id"]), str(data["p"]), int(data["wm"]), events)
    except BatchError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, msgpack.UnpackException) as exc:
        raise BatchError(f"undecodable batch: {exc!r}") from exc


@dataclass(slots=True)
class WindowTally:
    """What one batch adds to one event's window."""

    event_id: str
    window_start_ms: int
    total: int
    counts: Counter[str]
    users: set[str]


def tally_batch(batch: Batch, window_ms: int, rule: AggregationRule) -> list[WindowTally]:
    """Split each event's columns by window and count each slice.

    A batch spans one flush interval, so most events fall in one window: the split is a few
    bisects on the sorted receive times, and each slice is counted at C speed.
    """
    tallies: list[WindowTally] = []
    for event_id, columns in batch.events.items():
        received = columns.received_ms
        if not received:
            continue
        start = received[0] - received[0] % window_ms
        index = 0
        while index < len(received):
            end = bisect.bisect_left(received, start + window_ms, index)
            if end > index:
                users = columns.users[index:end]
                tallies.append(
                    WindowTally(
                        event_id,
                        start,
                        end - index,
                        rule.tally(users, columns.emojis[index:end]),
                        set(users),
                    )
                )
            index = end
            if index < len(received):
                start = received[index] - received[index] % window_ms
    return tallies
