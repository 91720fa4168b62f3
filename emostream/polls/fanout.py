"""Delivery's side of poll updates: a poll record from pub/sub becomes one ``event: poll``
frame per node (``deliver.frames.poll_frame``), sent to every client of the event.

The frame has no ``id:`` line, so a browser's Last-Event-ID keeps naming swarm windows. The
poll is read from Redis once per node and update (not per client); a node with no client of
the event reads nothing. Objects carry the poll's ``version``: a client keeps the newest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..clock import now_ms
from ..connection import REDIS_FAULTS
from ..deliver.frames import poll_frame
from ..deliver.hub import Hub
from ..records import PollRecord
from .model import poll_object
from .store import PollStore

log = logging.getLogger(__name__)


@dataclass(eq=False)
class PollFanout:
    """``Hub.on_poll``: read the poll once, frame it once, offer it to the event's clients."""

    store: PollStore
    hub: Hub
    sent: int = field(init=False, default=0)

    async def __call__(self, record: PollRecord) -> None:
        try:
            view = await self.store.read(record.event_id, record.poll_id)
        except REDIS_FAULTS as exc:
            log.warning("poll %s/%s unreadable: %s", record.event_id, record.poll_id, exc)
            return
        if view is None:
            return
        self.sent += 1
        self.hub.offer_unordered(record.event_id, poll_frame(poll_object(view, now_ms())))
