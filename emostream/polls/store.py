"""Polls in Redis: every read and change of a poll, thin over keys.py and lua/poll_state.lua.

Fields of the poll hash (keys.poll): ``def`` (definition JSON), ``state``, ``version``,
``opened_ms``, ``lock_ms``, ``frozen`` ("1"), ``result`` (JSON of the frozen counts),
``audit``, ``refused``, ``answer``, and the rules lua/apply_votes.lua reads without decoding
the definition: ``vpu``, ``changeable``, ``quota``, ``kind``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from redis.asyncio import Redis

from .. import keys
from ..clock import now_ms
from ..connection import publish_live
from ..errors import InvalidField, InvalidState, NotFound
from ..records import PollRecord, encode_poll_record
from ..replies import text
from ..scripts import POLL_NO_ANSWER, POLL_NOT_FROZEN, POLL_UNKNOWN, Scripts
from ..settings import Settings
from .ballots import audit_digest
from .model import LEADERBOARD_SHOWN, TRANSITIONS, PollDefinition, PollView

WAIT_STEP_S = 0.05


def no_poll(event_id: str, poll_id: str) -> NotFound:
    return NotFound(f"no poll {poll_id!r} in event {event_id!r}")


def _int(value: Any) -> int | None:
    return None if value is None or value == b"" else int(value)


def view_of(event_id: str, poll_id: str, fields: dict[bytes, bytes], tally: Any) -> PollView:
    definition = PollDefinition.from_json(fields[b"def"])
    answer = fields.get(b"answer")
    if answer:
        definition = PollDefinition(**{**definition.__dict__, "answer": answer.decode()})
    frozen = fields.get(b"frozen") == b"1"
    if frozen and fields.get(b"result"):
        counts = {str(k): int(v) for k, v in json.loads(fields[b"result"]).items()}
    else:
        counts = {text(k): int(v) for k, v in (tally or {}).items()}
    audit = fields.get(b"audit")
    return PollView(
        event_id,
        poll_id,
        definition,
        fields[b"state"].decode(),
        _int(fields.get(b"version")) or 0,
        _int(fields.get(b"opened_ms")),
        _int(fields.get(b"lock_ms")),
        frozen,
        audit.decode() if audit else None,
        counts,
        _int(fields.get(b"refused")) or 0,
    )


class PollStore:
    def __init__(self, redis: Redis, settings: Settings, scripts: Scripts | None = None) -> None:
        self.redis = redis
        self.settings = settings
        self.scripts = scripts or Scripts(redis)

    def shard(self, event_id: str) -> int:
        return keys.shard_of(event_id, self.settings.shards)

    async def put(self, event_id: str, poll_id: str, definition: PollDefinition) -> bool:
        """Create or replace a draft; True when created. 409 once the poll has opened."""
        reply = await self._poll_state(
            event_id,
            poll_id,
            "put",
            now_ms(),
            definition.to_json(),
            definition.votes_per_user,
            int(definition.changeable),
            definition.quota or 0,
            definition.kind,
            definition.answer or "",
        )
        return bool(reply[2])

    async def transition(
        self, event_id: str, poll_id: str, action: str, answer: str | None = None
    ) -> str:
        """Make ``action`` (open, lock, reveal, close); the state it led to."""
        sources, target = TRANSITIONS[action]
        now = now_ms()
        if action == "open":
            view = await self.existing(event_id, poll_id)
            duration = view.definition.duration_s
            timing = int(duration * 1000) if duration else 0
            window = view.definition.answer_window_ms
        else:
            timing = now + self.settings.poll_lock_grace_ms if action == "lock" else 0
            window = 0
            if action == "reveal":
                view = await self.existing(event_id, poll_id)
                window = view.definition.answer_window_ms
                if answer is not None and answer not in view.definition.options:
                    raise InvalidField("answer", "answer must be one of the options")
        reply = await self._poll_state(
            event_id,
            poll_id,
            action,
            now,
            " ".join(sorted(sources)),
            target,
            timing,
            answer or "",
            window,
        )
        return text(reply[1])

    async def _poll_state(
        self, event_id: str, poll_id: str, action: str, now: int, *extra: Any
    ) -> list[Any]:
        """Make ``action`` by lua/poll_state.lua; its reply when it succeeded, else the
        error its code means."""
        reply = await self.scripts.poll_state(
            self.shard(event_id), event_id, poll_id, action, now, *extra
        )
        code, detail = reply[0], text(reply[1])
        if code == 1:
            return reply
        if action == "put":
            raise InvalidState(f"only a draft can be replaced; this poll is {detail}")
        if code == POLL_UNKNOWN:
            raise no_poll(event_id, poll_id)
        if code == POLL_NO_ANSWER:
            raise InvalidState("a trivia question needs its answer before the reveal", "answer")
        if code == POLL_NOT_FROZEN:
            raise InvalidState("the result is not frozen yet; retry in a moment")
        raise InvalidState(f"cannot {action} a poll that is {detail}", "state")

    async def existing(self, event_id: str, poll_id: str) -> PollView:
        """``read``, or a 404 when the event has no such poll."""
        view = await self.read(event_id, poll_id)
        if view is None:
            raise no_poll(event_id, poll_id)
        return view

    async def read(self, event_id: str, poll_id: str) -> PollView | None:
        shard = self.shard(event_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(keys.poll(shard, event_id, poll_id))
        pipe.hgetall(keys.poll_tally(shard, event_id, poll_id))
        fields, tally = await pipe.execute()
        if not fields:
            return None
        view = view_of(event_id, poll_id, fields, tally)
        if view.definition.kind == "trivia" and view.state in ("revealed", "closed"):
            board = await self.leaderboard(event_id, LEADERBOARD_SHOWN)
            view = PollView(**{**view.__dict__, "leaderboard": board})
        return view

    async def wait_frozen(self, event_id: str, poll_id: str, timeout_s: float) -> PollView:
        """The poll once its result is frozen and audited, or as it is after ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            view = await self.existing(event_id, poll_id)
            if (view.frozen and view.audit) or loop.time() > deadline:
                return view
            await asyncio.sleep(WAIT_STEP_S)

    async def polls(self, event_id: str) -> list[str]:
        """The event's poll ids, oldest first."""
        members: Any = await self.redis.zrange(
            keys.event_polls(self.shard(event_id), event_id), 0, -1
        )
        return [text(m) for m in members]

    async def ballot(self, event_id: str, poll_id: str, user_id: str) -> list[str] | None:
        raw: Any = await self.redis.hget(
            keys.poll_ballots(self.shard(event_id), event_id, poll_id), user_id
        )
        return None if raw is None else [str(o) for o in json.loads(raw)]

    async def ballots(self, event_id: str, poll_id: str) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        key = keys.poll_ballots(self.shard(event_id), event_id, poll_id)
        async for user, raw in self.redis.hscan_iter(key, count=1000):
            found[text(user)] = [str(o) for o in json.loads(raw)]
        return found

    async def seal(self, event_id: str, poll_id: str) -> str | None:
        """Write the audit digest of a frozen poll's ballots (once) and announce it; the
        digest, or None if the poll is not frozen."""
        shard = self.shard(event_id)
        poll_key = keys.poll(shard, event_id, poll_id)
        if await self.redis.hget(poll_key, "frozen") != b"1":
            return None
        digest = audit_digest(await self.ballots(event_id, poll_id))
        if await self.redis.hsetnx(poll_key, "audit", digest):
            version = int(await self.redis.hincrby(poll_key, "version", 1))
            record = encode_poll_record(PollRecord(event_id, poll_id, version))
            await publish_live(self.redis, shard, record)
        stored: Any = await self.redis.hget(poll_key, "audit")
        return text(stored)

    async def leaderboard(self, event_id: str, limit: int) -> list[dict[str, Any]]:
        """The top ``limit``, points descending. Equal points share a rank (1, 2, 2, 4): a
        rank is one more than the users with more points."""
        pairs: Any = await self.redis.zrevrange(
            keys.leaderboard(self.shard(event_id), event_id), 0, limit - 1, withscores=True
        )
        board: list[dict[str, Any]] = []
        for index, (user, points) in enumerate(pairs):
            tied = board and board[-1]["points"] == int(points)
            rank = board[-1]["rank"] if tied else index + 1
            board.append({"user_id": text(user), "points": int(points), "rank": rank})
        return board

    async def leaderboard_entry(self, event_id: str, user_id: str) -> dict[str, Any] | None:
        key = keys.leaderboard(self.shard(event_id), event_id)
        points: Any = await self.redis.zscore(key, user_id)
        if points is None:
            return None
        ahead: Any = await self.redis.zcount(key, f"({points}", "+inf")
        return {"user_id": user_id, "points": int(points), "rank": int(ahead) + 1}
