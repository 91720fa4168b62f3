"""`emostream recount EVENT POLL`: recompute a frozen poll from its votes and compare.

The votes are those of the poll's log (keys.poll_log): every group of the raw stream that
lua/apply_votes.lua took for the poll, as ingest packed it, in the order it was counted. They
are replayed through polls/ballots.py, the rules' independent Python twin, with the same
lock time, and the totals and the audit digest of the replayed ballots must equal the frozen
ones. Entries of the poll still in the raw shard stream (it is trimmed after
EMOSTREAM_RAW_RETENTION_S) must each be in the log with the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import msgpack
from redis.asyncio import Redis

from .. import keys
from ..batch import PAYLOAD_FIELD, VOTES_KIND, VoteGroup, unpack_vote_columns
from ..settings import Settings
from .ballots import audit_digest, replay, vote_rule
from .store import PollStore


@dataclass
class Recount:
    frozen: dict[str, Any]
    recounted: dict[str, Any]
    raw_entries_checked: int
    problems: list[str]

    @property
    def agrees(self) -> bool:
        return not self.problems and self.frozen == self.recounted


async def recount(redis: Redis, settings: Settings, event_id: str, poll_id: str) -> Recount:
    store = PollStore(redis, settings)
    view = await store.read(event_id, poll_id)
    if view is None:
        raise LookupError(f"no poll {poll_id!r} in event {event_id!r}")
    problems: list[str] = []
    if not view.frozen:
        problems.append(f"the poll is {view.state} and not frozen: nothing to compare with")
    shard = keys.shard_of(event_id, settings.shards)
    logged: dict[bytes, list[tuple[bytes, bytes, bytes]]] = {}
    votes: list[tuple[str, str, int]] = []
    log: Any = await redis.xrange(keys.poll_log(shard, event_id, poll_id))
    for _id, fields in log:
        group = VoteGroup(event_id, poll_id, fields[b"u"], fields[b"o"], fields[b"t"])
        logged.setdefault(fields[b"e"], []).append((fields[b"u"], fields[b"o"], fields[b"t"]))
        columns = unpack_vote_columns(group)
        votes += zip(columns.users, columns.options, columns.received_ms, strict=True)
    result = replay(vote_rule(view.definition), votes, view.lock_ms)
    checked = 0
    raw: Any = await redis.xrange(keys.raw_stream(shard))
    for entry_id, fields in raw:
        data: Any = msgpack.unpackb(fields.get(PAYLOAD_FIELD, b"\xc0"), raw=False)
        if not isinstance(data, dict) or data.get("kind") != VOTES_KIND:
            continue
        for group in data["groups"]:
            if group[0] == event_id and group[1] == poll_id:
                checked += 1
                if (group[2], group[3], group[4]) not in logged.get(entry_id, []):
                    problems.append(f"raw entry {entry_id.decode()} is missing from the log")
    options = view.definition.options
    return Recount(
        {
            "totals": {o: view.counts.get(o, 0) for o in options},
            "audit": view.audit,
        },
        {
            "totals": {o: result.tally.get(o, 0) for o in options},
            "audit": audit_digest(result.ballots),
        },
        checked,
        problems,
    )


def report(result: Recount) -> str:
    lines = [
        "frozen:    " + json.dumps(result.frozen, ensure_ascii=False),
        "recounted: " + json.dumps(result.recounted, ensure_ascii=False),
        f"raw stream: {result.raw_entries_checked} of the poll's entries still there, checked",
        *("problem: " + problem for problem in result.problems),
        "agree" if result.agrees else "DIFFER",
    ]
    return "\n".join(lines)
