"""Ingest's side of votes: which to accept (202) and the buffer they wait in for the flush.

No Redis round trip per vote: each process keeps a copy of each poll's rules and state, read
at most ``poll_cache_ms`` ago (one read per poll per interval, shared by the requests that
wait for it). Measured: one HGETALL of a poll costs 116 us of ingest CPU (140 us wall) from
redis-py asyncio here, while validating and buffering a 100-vote request costs 56 us; a read
per request would have cost more than the rest of a one-vote request's handling.

That copy is enough to answer exactly, because a lock takes effect ``poll_lock_grace_ms``
(> ``poll_cache_ms``) after it is called: a copy read before the lock call was made cannot
be used past the lock time, and a copy read after it knows the lock time. So a vote is
answered 202 exactly when it was received before the lock, which is what
lua/apply_votes.lua counts. (Hosts' clocks must agree within the difference.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from .. import keys
from ..batch import VoteColumns
from ..clock import now_ms
from ..contract import USER_ID, USER_ID_RULE, USER_IDS, validate_event_id
from ..errors import (
    InvalidField,
    MalformedBody,
    PollNotOpen,
    TooManyReactions,
    Unavailable,
)
from ..ingest.admission import EventAdmission
from ..ingest.buffer import ShardedBuffer
from ..ingest.limits import RateLimiter
from ..settings import Settings
from ..web import redis_or_503
from .model import PollView, validate_poll_id
from .store import no_poll, view_of

log = logging.getLogger(__name__)

CACHED_POLLS_MAX = 10_000


class VoteBuffer(ShardedBuffer[tuple[str, str], VoteColumns]):
    """Accepted votes waiting for the next flush, bounded like the reaction buffer."""

    def placed(self, key: tuple[str, str], columns: VoteColumns) -> list[tuple[int, VoteColumns]]:
        return [(keys.shard_of(key[0], self.shards), columns)]

    def add(
        self, event_id: str, poll_id: str, users: list[str], options: list[str], at_ms: int
    ) -> None:
        columns = self._columns_of((event_id, poll_id), VoteColumns)
        columns.users += users
        columns.options += options
        columns.received_ms += [at_ms] * len(users)
        self._added(len(users))


@dataclass(eq=False)
class PollGate:
    redis: Redis
    settings: Settings
    buffer: VoteBuffer
    # Called when ``flush_max`` votes wait, as the reaction path pokes the flusher.
    flush_now: Callable[[], None] | None = None
    # The reactions' per-user rate limits (issue 11: votes count against the same ones).
    limiter: RateLimiter | None = None
    # The reactions' event admission: the allow-list (404) and the active-events cap
    # (429). A vote opens no window, so it takes no place among the active events.
    events: EventAdmission | None = None
    reads: int = field(init=False, default=0)
    # (event, poll) -> (monotonic time its read began, the poll or None if unknown)
    _cache: dict[tuple[str, str], tuple[float, PollView | None]] = field(
        init=False, default_factory=dict
    )
    _reading: dict[tuple[str, str], asyncio.Future[tuple[float, PollView | None]]] = field(
        init=False, default_factory=dict
    )

    async def _read(self, event_id: str, poll_id: str) -> tuple[float, PollView | None]:
        began = time.monotonic()
        self.reads += 1
        shard = keys.shard_of(event_id, self.settings.shards)
        with redis_or_503("polls"):
            fields: Any = await self.redis.hgetall(keys.poll(shard, event_id, poll_id))
        view = view_of(event_id, poll_id, fields, None) if fields else None
        if len(self._cache) >= CACHED_POLLS_MAX:
            self._cache.clear()
        self._cache[(event_id, poll_id)] = (began, view)
        return began, view

    async def poll(self, event_id: str, poll_id: str) -> tuple[float, PollView | None]:
        """(when it was read, the poll), read again once older than ``poll_cache_ms``.

        A copy past half its age is refreshed in the background while it still answers, so
        under load requests do not queue behind a read every interval (measured: with 32
        connections of 100 votes, a loaded event loop let such reads outlast the grace)."""
        key = (event_id, poll_id)
        cached = self._cache.get(key)
        max_age_s = self.settings.poll_cache_ms / 1000
        if cached is not None:
            age_s = time.monotonic() - cached[0]
            if age_s < max_age_s:
                if age_s > max_age_s / 2 and key not in self._reading:
                    self._start_read(key)
                return cached
        reading = self._reading.get(key) or self._start_read(key)
        return await asyncio.shield(reading)

    def _start_read(self, key: tuple[str, str]) -> asyncio.Future[tuple[float, PollView | None]]:
        reading = asyncio.ensure_future(self._read(*key))
        self._reading[key] = reading

        def done(future: asyncio.Future[tuple[float, PollView | None]]) -> None:
            self._reading.pop(key, None)
            if not future.cancelled() and future.exception() is not None:
                log.warning("reading poll %s/%s failed: %s", *key, future.exception())

        reading.add_done_callback(done)
        return reading

    async def accept(
        self, event_id: str, poll_id: str, payload: Any, user_id: str | None = None
    ) -> int:
        """Buffer every vote of the payload or none; how many. ``user_id`` (a user token's
        subject) replaces the users the body names."""
        validate_event_id(event_id)
        validate_poll_id(poll_id)
        users, options = self._votes(payload, user_id)
        if self.events is not None:
            self.events.check(event_id)
        began, view = await self.poll(event_id, poll_id)
        received = now_ms()
        # A copy read before a lock call cannot know its lock time, which is at least the
        # grace after the read began: it answers only for votes received before that.
        if time.monotonic() - began >= self.settings.poll_lock_grace_ms / 1000:
            raise Unavailable("the poll's state could not be read in time; retry shortly")
        if view is None:
            raise no_poll(event_id, poll_id)
        if not view.accepts(received):
            raise PollNotOpen(f"the poll is {view.effective_state(received)}, not open", "state")
        valid = view.definition.options
        if not set(options).issubset(valid):
            index = next(i for i, option in enumerate(options) if option not in valid)
            where = f"[{index}]." if isinstance(payload, list) else ""
            raise InvalidField(f"{where}option", "option is not one of the poll's options")
        if self.buffer.room() < len(users):
            raise Unavailable("the ingest buffer is full; retry shortly", retry_after_s=1)
        if self.limiter is not None:
            self.limiter.check_users(users)
        self.buffer.add(event_id, poll_id, users, options, received)
        if self.buffer.pending >= self.settings.flush_max and self.flush_now is not None:
            self.flush_now()
        return len(users)

    def _votes(self, payload: Any, user_id: str | None) -> tuple[list[str], list[str]]:
        """(users, options) of a vote object or an array of them, checked for shape. The
        common case is checked a column at a time, as reactions are (ingest/validation.py);
        anything else is checked vote by vote, which also names the bad field."""
        is_array = isinstance(payload, list)
        items = payload if is_array else [payload]
        if not isinstance(payload, list | dict) or not items:
            raise MalformedBody("body must be a vote object or a non-empty array of them")
        if len(items) > self.settings.max_batch:
            raise TooManyReactions(self.settings.max_batch, len(items))
        try:
            users = [item.get("user_id") for item in items] if user_id is None else []
            options = [item.get("option") for item in items]
            joined = "\n".join(users)  # TypeError unless every user id is a str
            if all(type(o) is str for o in options) and (
                user_id is not None
                or (joined.count("\n") == len(users) - 1 and USER_IDS.fullmatch(joined + "\n"))
            ):
                return users or [user_id or ""] * len(items), options
        except (AttributeError, TypeError):
            pass
        return self._votes_one_by_one(items, is_array, user_id)

    def _votes_one_by_one(
        self, items: list[Any], is_array: bool, user_id: str | None
    ) -> tuple[list[str], list[str]]:
        users: list[str] = []
        options: list[str] = []
        for index, item in enumerate(items):
            where = f"[{index}]." if is_array else ""
            if not isinstance(item, dict):
                raise MalformedBody("a vote must be an object", where.rstrip(".") or None)
            user = user_id if user_id is not None else item.get("user_id")
            if not isinstance(user, str) or not USER_ID.fullmatch(user):
                raise InvalidField(f"{where}user_id", f"user_id must be {USER_ID_RULE}")
            option = item.get("option")
            if not isinstance(option, str):
                raise InvalidField(f"{where}option", "option must be a string")
            users.append(user)
            options.append(option)
        return users, options
