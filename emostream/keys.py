"""Every Redis name emostream uses: keys, streams, groups and channels, decided here once.

Cluster rule: everything one Lua call touches shares one hash slot. An event always lives on
one raw-stream shard, and every key of the shard and of its events carries the shard's hash
tag (``shard_tag``), so applying a batch (counts + XACK) and closing a window (read + seq + history)
each stay in one slot. Event ids are limited to ``A-Za-z0-9_-``, so they never carry braces.
"""

from __future__ import annotations

import zlib

PREFIX = "emostream"

# Consumer group of the aggregating workers on every raw shard.
AGGREGATORS_GROUP = "aggregators"

# On a single Redis one channel carries every closed window and each delivery node holds one
# subscription; on Redis Cluster each shard has its own sharded channel (windows_channel).
# The Lua scripts publish with SPUBLISH to a channel that carries a hash tag, else PUBLISH.
WINDOWS_CHANNEL = f"{PREFIX}:windows"


def shard_of(event_id: str, shards: int) -> int:
    """Stable shard of an event (CRC32, the same in every process and language)."""
    return zlib.crc32(event_id.encode()) % shards


# The hash tag of each raw shard's keys. On Redis Cluster a tag decides the slot, so the slot
# decides the primary: tags ``{s0}``, ``{s1}``, ... hash to arbitrary slots and put several
# shards on one primary. These tags hash to chosen slots instead: for every shard count N up
# to 12, the first N land in N distinct ranges of 16384 / N slots, so a cluster whose
# primaries own equal contiguous ranges (what `redis-cli --cluster create` makes) gets the
# shards spread evenly (3 primaries: 4 shards 2-1-1, 6 shards 2-2-2, 12 shards 4-4-4).
# SHARD_SLOTS is what a search found; tests/test_keys.py checks both properties.
SHARD_SLOTS = (0, 8192, 12288, 4096, 14336, 7021, 10240, 2048, 15019, 5462, 10923, 2731)
SHARD_TAGS = (
    "s0.169207",
    "s1.19949",
    "s2.14581",
    "s3.106908",
    "s4.39490",
    "s5.6448",
    "s6.41995",
    "s7.12624",
    "s8.23113",
    "s9.13194",
    "s10.43846",
    "s11.5510",
)


def shard_tag(shard: int) -> str:
    """The hash tag (without braces) of one shard: a chosen one for the first twelve."""
    return SHARD_TAGS[shard] if shard < len(SHARD_TAGS) else f"s{shard}"


def sub_shards(event_id: str, shards: int, split: int) -> list[int]:
    """The shards an event's reactions are spread over (EMOSTREAM_EVENT_SPLIT): its own shard
    (``shard_of``) first, where its windows are closed, numbered and published, then the
    others, chosen ``shards / split`` slot ranges apart so that they land on distinct
    primaries of a cluster whose primaries own equal ranges (for up to 12 shards: the tags'
    slots are in distinct ranges of 16384 / shards, see SHARD_SLOTS)."""
    home = shard_of(event_id, shards)
    if split <= 1:
        return [home]
    step = shards // split
    if shards > len(SHARD_SLOTS):
        return [(home + part * step) % shards for part in range(split)]
    by_range = {SHARD_SLOTS[shard] * shards // 16384: shard for shard in range(shards)}
    first = SHARD_SLOTS[home] * shards // 16384
    return [by_range[(first + part * step) % shards] for part in range(split)]


def _tag(shard: int) -> str:
    return f"{PREFIX}:{{{shard_tag(shard)}}}"


def windows_channel(shard: int) -> str:
    """The sharded pub/sub channel (SPUBLISH) of one shard's closed windows and poll records,
    used on Redis Cluster: it carries the shard's hash tag, so it is published from the Lua
    call that closes the window, on the shard's primary. A single Redis uses WINDOWS_CHANNEL."""
    return f"{_tag(shard)}:live"


def raw_stream(shard: int) -> str:
    """Packed reaction batches of one shard (analytics and the workers' input)."""
    return f"{_tag(shard)}:raw"


def producers(shard: int) -> str:
    """Hash: ingest producer id -> watermark ms (everything it received before is flushed)."""
    return f"{_tag(shard)}:producers"


def active_events(shard: int) -> str:
    """Sorted set: event id -> start ms of its newest window that saw a reaction."""
    return f"{_tag(shard)}:events"


def event_state(shard: int, event_id: str) -> str:
    """Hash of one event: fields ``EVENT_NEXT``, ``EVENT_SEQ`` and ``EVENT_LOST``."""
    return f"{_tag(shard)}:ev:{event_id}:state"


# Fields of the event state hash (lua/apply_batch.lua and lua/close_window.lua write them):
# the start of the oldest window not closed yet, the seq of the newest closed one, and the
# reactions that came later than the revision horizon and were never counted.
EVENT_NEXT = "next"
EVENT_SEQ = "seq"
EVENT_LOST = "lost"


def window_counts(shard: int, event_id: str, window_start_ms: int) -> str:
    """Sorted set: emoji -> count within one open window."""
    return f"{_tag(shard)}:ev:{event_id}:w:{window_start_ms}:counts"


def window_users(shard: int, event_id: str, window_start_ms: int) -> str:
    """HyperLogLog of the users of one open window."""
    return f"{_tag(shard)}:ev:{event_id}:w:{window_start_ms}:users"


def window_total(shard: int, event_id: str, window_start_ms: int) -> str:
    """Counter of every reaction of one open window."""
    return f"{_tag(shard)}:ev:{event_id}:w:{window_start_ms}:total"


def window_meta(shard: int, event_id: str, window_start_ms: int) -> str:
    """Hash of a closed window: its ``seq`` and latest ``rev`` (revision), kept for revisions."""
    return f"{_tag(shard)}:ev:{event_id}:w:{window_start_ms}:meta"


def window_keys(shard: int, event_id: str, window_start_ms: int) -> list[str]:
    """Every key of one window, in the order the Lua scripts take them: counts, users,
    total, meta."""
    return [
        window_counts(shard, event_id, window_start_ms),
        window_users(shard, event_id, window_start_ms),
        window_total(shard, event_id, window_start_ms),
        window_meta(shard, event_id, window_start_ms),
    ]


def window_history(shard: int, event_id: str) -> str:
    """Aggregate stream of closed windows as first published; entry id ``<seq>-0``."""
    return f"{_tag(shard)}:ev:{event_id}:windows"


def window_revisions(shard: int, event_id: str) -> str:
    """Hash: seq -> latest revised record of a window that received late reactions."""
    return f"{_tag(shard)}:ev:{event_id}:revised"


def late_windows(shard: int) -> str:
    """Set of ``"<event_id> <window_start_ms>"`` closed windows that received late reactions
    and wait for their revision to be published."""
    return f"{_tag(shard)}:late"


def hll_scratch(shard: int) -> str:
    """Where lua/apply_batch.lua puts a worker-built HyperLogLog to PFMERGE it, within one
    call (PFMERGE merges keys, not values); never left set."""
    return f"{_tag(shard)}:hll-scratch"


def hll_union(shard: int) -> str:
    """Where lua/close_window.lua unites a split event's HyperLogLogs to count its users,
    within one call; never left set."""
    return f"{_tag(shard)}:hll-union"


def rate_counter(kind: str, key: str, window: int) -> str:
    """Counter of what every ingest process counted for one key of a rate limit (``user`` or
    ``ip``) in one fixed window."""
    return f"{PREFIX}:rate:{kind}:{window}:{key}"


def worker_heartbeat(worker_id: str) -> str:
    """Set with a TTL by a live worker."""
    return f"{PREFIX}:worker:{worker_id}"


# Sorted set: worker id -> ms of its last heartbeat, written with each heartbeat. The stats
# find the workers here instead of scanning the keyspace for their heartbeat keys, and drop
# the members whose heartbeat key has expired.
LIVE_WORKERS = f"{PREFIX}:workers"


def failures(shard: int) -> str:
    """Hash: raw entry id -> why its last processing attempt failed (for the dead letter)."""
    return f"{_tag(shard)}:failures"


def dead_letters(shard: int) -> str:
    """Raw entries that could not be processed, with the reason."""
    return f"{_tag(shard)}:dead"


def batch_marker(shard: int, batch_id: str) -> str:
    """Set once a batch id has been counted, so a re-appended batch is counted once."""
    return f"{_tag(shard)}:batch:{batch_id}"


# Delivery nodes and registered clients. Only pipelines touch these (no Lua), so node and
# cluster keys need no hash tag; a client registration lives on its event's shard tag so an
# event's keys stay together.


def delivery_node(node_id: str) -> str:
    """JSON of a live delivery node (cluster, url, connections), set with a TTL by its
    heartbeat: the key expiring is what makes a node dead."""
    return f"{PREFIX}:delivery:{node_id}"


def cluster_nodes(cluster: str) -> str:
    """Sorted set: node id -> load (its connections at its last heartbeat, plus the clients
    assigned to it since). May name dead nodes until a reader prunes them."""
    return f"{PREFIX}:cluster:{cluster}:nodes"


# Set of every cluster name a node has registered under.
CLUSTERS = f"{PREFIX}:clusters"


def event_clients(shard: int, event_id: str) -> str:
    """Hash: registered client id -> JSON of its assignment (node, cluster, stream URL)."""
    return f"{_tag(shard)}:ev:{event_id}:clients"


# Polls, votes and trivia. A poll lives on its event's shard: every key of one poll, its
# event's leaderboard and the raw stream that carries its votes share the shard's hash tag, so
# the one Lua call that checks and counts a vote also acknowledges the raw entry that carried
# it (lua/apply_votes.lua), and every transition (lock, freeze, reveal with its scores) is
# one call in one slot, on Redis Cluster too. Poll ids have the event id's grammar: no braces.

# Poll state changes (and live tallies each window) ride the windows channels as a record of
# their own kind (records.PollRecord), so a delivery node keeps its one subscription.


def poll(shard: int, event_id: str, poll_id: str) -> str:
    """Hash of one poll: its definition, state, times, frozen result and audit digest
    (fields in polls/store.py)."""
    return f"{_tag(shard)}:ev:{event_id}:poll:{poll_id}"


def poll_tally(shard: int, event_id: str, poll_id: str) -> str:
    """Hash: option -> votes counted so far."""
    return f"{poll(shard, event_id, poll_id)}:tally"


def poll_ballots(shard: int, event_id: str, poll_id: str) -> str:
    """Hash: user id -> JSON array of the options recorded for the user (the ballot)."""
    return f"{poll(shard, event_id, poll_id)}:ballots"


def poll_times(shard: int, event_id: str, poll_id: str) -> str:
    """Hash, trivia only: user id -> server receive ms of the vote that last changed the
    user's ballot (points count the answer time from the open)."""
    return f"{poll(shard, event_id, poll_id)}:times"


def poll_log(shard: int, event_id: str, poll_id: str) -> str:
    """Stream: every vote group of the raw stream counted for the poll, as ingest packed it,
    in the order it was counted: what `emostream recount` replays (the raw shard stream is
    trimmed after EMOSTREAM_RAW_RETENTION_S)."""
    return f"{poll(shard, event_id, poll_id)}:log"


def poll_tick(shard: int, event_id: str, poll_id: str) -> str:
    """String: the newest window boundary at which the poll's live tally was published."""
    return f"{poll(shard, event_id, poll_id)}:tick"


def poll_keys(shard: int, event_id: str, poll_id: str) -> list[str]:
    """The keys of one poll in the order the Lua scripts take them: hash, tally, ballots,
    times, log."""
    return [
        poll(shard, event_id, poll_id),
        poll_tally(shard, event_id, poll_id),
        poll_ballots(shard, event_id, poll_id),
        poll_times(shard, event_id, poll_id),
        poll_log(shard, event_id, poll_id),
    ]


def event_polls(shard: int, event_id: str) -> str:
    """Sorted set: poll id -> creation ms, the event's polls in the order they were made."""
    return f"{_tag(shard)}:ev:{event_id}:polls"


def leaderboard(shard: int, event_id: str) -> str:
    """Sorted set: user id -> trivia points in the event, added at each reveal."""
    return f"{_tag(shard)}:ev:{event_id}:leaderboard"


def live_polls(shard: int) -> str:
    """Set of ``"<event_id> <poll_id>"`` polls of the shard that are open, or locked and not
    yet frozen and audited: what the workers' poll step looks after."""
    return f"{_tag(shard)}:polls"
