"""Delivery's side of poll updates: a poll record from pub/sub becomes one ``event: poll``
frame per node, sent to every client of the event.

The frame has no ``id:`` line, so a browser's Last-Event-ID keeps naming swarm windows. The
poll is read from Redis once per node and update (not per client); a node with no client of
the event reads nothing. Objects carry the poll's ``version``: a client keeps the newest.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from redis.exceptions import RedisError

from ..clock import now_ms
from ..deliver.hub import Hub
from ..records import PollRecord
from .model import poll_object
from .store import PollStore

log = logging.getLogger(__name__)

POLL_EVENT = "poll"


def poll_frame(poll: dict[str, Any]) -> bytes:
    data = json.dumps(poll, ensure_ascii=False, separators=(",", ":"))
    return f"event: {POLL_EVENT}\ndata: {data}\n\n".encode()


def poll_events(lines: list[str]) -> list[dict[str, Any]]:
    """The client side of ``poll_frame``: the poll objects in an SSE text's lines, and
    whether any of their frames carried an id (``"_id"`` is set on such an object)."""
    found: list[dict[str, Any]] = []
    block: list[str] = []
    for line in [*lines, ""]:
        if line:
            block.append(line)
            continue
        if f"event: {POLL_EVENT}" in block:
            poll: dict[str, Any] = json.loads(
                "\n".join(x[6:] for x in block if x.startswith("data: "))
            )
            if any(x.startswith("id:") for x in block):
                poll["_id"] = True
            found.append(poll)
        block = []
    return found


class PollFanout:
    """``Hub.on_poll``: read the poll once, frame it once, offer it to the event's clients."""

    def __init__(self, store: PollStore, hub: Hub) -> None:
        self.store = store
        self.hub = hub
        self.sent = 0

    async def __call__(self, record: PollRecord) -> None:
        try:
            view = await self.store.read(record.event_id, record.poll_id)
        except (RedisError, OSError) as exc:
            log.warning("poll %s/%s unreadable: %s", record.event_id, record.poll_id, exc)
            return
        if view is None:
            return
        self.sent += 1
        self.hub.offer_unordered(record.event_id, poll_frame(poll_object(view, now_ms())))
