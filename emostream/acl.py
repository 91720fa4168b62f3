"""Least privilege in Redis: the ACL rules of each role's user, written here once.

The README quotes ``setuser_line`` for each role and the tests apply the same rules to a private
redis-server, run every role as a real process under its own user and check that nothing was
refused (``ACL LOG``) and that each user is refused what its role never does.

Every key and channel emostream uses starts with ``emostream:`` (keys.py), so each user is held
to that prefix; what differs per role is the commands, and for delivery the keys it may write:
it reads everything of the prefix and writes only its node registration, the client
registrations and the live-worker index the stats prune. Commands that Lua scripts call are
checked against the calling user too (Redis 7), so a role that runs a script is also allowed
the commands of that script (listed beside it). ``+select`` lets a URL name a database other
than 0; the key patterns hold in every database.
"""

from __future__ import annotations

from . import keys

ROLES = ("ingest", "worker", "delivery")

PREFIX_PATTERN = f"{keys.PREFIX}:*"

# Every role: PING (redis-py's health checks, the subscription's keep-alive), SELECT,
# MULTI/EXEC (redis-py pipelines are transactions unless told otherwise) and INFO: every role
# asks `INFO cluster` at start whether its Redis is a cluster (connection.py), unless
# EMOSTREAM_REDIS_CLUSTER says so.
_CONNECTION = ("ping", "select", "multi", "exec", "discard", "info")
# Running a script: EVALSHA, and loading it again after NOSCRIPT (a Redis restart empties the
# script cache); a pipeline of scripts checks the cache with SCRIPT EXISTS first.
_SCRIPTS = ("evalsha", "script|load", "script|exists")

_FLUSH_BATCH = ("xadd", "hset")
_POLL_STATE = ("hget", "hgetall", "hincrby", "hset", "publish", "sadd", "zadd", "zincrby")
_APPLY_BATCH = (
    "del", "exists", "expire", "hincrby", "hmget", "hset", "incrby", "pfadd", "pfmerge", "sadd",
    "set", "type", "xack", "xpending", "zadd", "zincrby", "zscore",
)  # fmt: skip
_APPLY_VOTES = (
    "exists", "hget", "hincrby", "hmget", "hset", "hsetnx", "set", "type", "xack", "xadd",
    "xpending",
)  # fmt: skip
_CLOSE_WINDOW = (
    "expire", "get", "hdel", "hget", "hincrby", "hset", "pfcount", "publish", "srem", "xadd",
    "zrange", "zrem", "zscore",
)  # fmt: skip
_FREEZE_POLL = ("hget", "hgetall", "hincrby", "hset", "publish")
# Reading polls, ballots and leaderboards (polls/store.py): the HTTP roles, and the worker
# that freezes and audits a poll.
_POLL_READS = ("hget", "hgetall", "hmget", "hscan", "zcount", "zrange", "zrevrange", "zscore")

COMMANDS: dict[str, tuple[str, ...]] = {
    # Appends packed batches with its watermark (flush_batch.lua), reads the active-events
    # sets for the event cap, counts the shared rate limits, reads polls for the vote gate and
    # runs the poll admin calls (poll_state.lua).
    "ingest": (
        *_CONNECTION,
        *_SCRIPTS,
        *_FLUSH_BATCH,
        *_POLL_STATE,
        *_POLL_READS,
        "hdel",
        "hlen",
        "zrange",
        "incrby",
        "pexpire",
        "hsetnx",
    ),  # fmt: skip
    # Reads its consumer groups, claims the entries of dead workers, counts, closes and
    # publishes windows (the scripts), buries poison entries, trims what every group has
    # acknowledged, writes its heartbeat and looks after polls. ZSCAN and EXISTS: the
    # container health check finds the worker in the live-workers index.
    "worker": (
        *_CONNECTION,
        *_SCRIPTS,
        *_APPLY_BATCH,
        *_APPLY_VOTES,
        *_CLOSE_WINDOW,
        *_FREEZE_POLL,
        *_POLL_READS,
        "xreadgroup",
        "xautoclaim",
        "xclaim",
        "xrange",
        "xtrim",
        "xgroup|create",
        "xgroup|delconsumer",
        "xinfo|groups",
        "xinfo|stream",
        "xinfo|consumers",
        "hgetall",
        "smembers",
        "del",
        "zremrangebyscore",
        "zscan",
    ),  # fmt: skip
    # Subscribes to the windows channel, reads history, polls and the stats, and registers
    # its node and clients. No script, and nothing that appends to a stream.
    "delivery": (
        *_CONNECTION,
        *_POLL_READS,
        "subscribe",
        "unsubscribe",
        "xrange",
        "xrevrange",
        "xlen",
        "xinfo|groups",
        "xpending",
        "get",
        "mget",
        "pttl",
        "smembers",
        "sismember",
        "set",
        "del",
        "expire",
        "hset",
        "hsetnx",
        "hdel",
        "sadd",
        "zadd",
        "zincrby",
        "zrem",
    ),  # fmt: skip
}


def key_patterns(role: str) -> tuple[str, ...]:
    """The keys a role's user may touch: everything under the prefix, read-only (Redis 7
    ``%R~``) for delivery but for its registrations. Those are read and written (``~``): Redis
    wants one pattern to grant all a command needs of a key, and ZINCRBY, HSETNX and the like
    read as they write."""
    if role != "delivery":
        return (f"~{PREFIX_PATTERN}",)
    writable = (
        keys.delivery_node("*"),
        keys.cluster_nodes("*"),
        keys.CLUSTERS,
        f"{keys.PREFIX}:{{s*}}:ev:*:clients",  # keys.event_clients of any shard and event
        keys.LIVE_WORKERS,
    )
    return (f"%R~{PREFIX_PATTERN}", *(f"~{pattern}" for pattern in writable))


# Redis 7.2 added CLIENT SETINFO, which redis-py sends on every connection (and ignores a
# refusal of); 7.0 does not know the subcommand and refuses the rule naming it.
SETINFO_SINCE = (7, 2)


def rules(role: str, password: str, server_version: tuple[int, int] = (7, 0)) -> list[str]:
    """The ``ACL SETUSER`` arguments after the user name: on, the password, no keys, channels
    or commands but the role's."""
    if role not in COMMANDS:
        raise ValueError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    commands = sorted(set(COMMANDS[role]))
    if server_version >= SETINFO_SINCE:
        commands.append("client|setinfo")
    return [
        "reset",
        "on",
        f">{password}",
        *key_patterns(role),
        f"&{PREFIX_PATTERN}",
        "-@all",
        *(f"+{command}" for command in commands),
    ]


def user_name(role: str) -> str:
    return f"{keys.PREFIX}-{role}"


def setuser_line(role: str, password: str, server_version: tuple[int, int] = (7, 0)) -> str:
    """The command as an operator types it in redis-cli (rules with shell or Redis meaning
    quoted)."""
    words = [user_name(role), *rules(role, password, server_version)]
    return " ".join(["ACL", "SETUSER", *(_quoted(word) for word in words)])


def _quoted(word: str) -> str:
    return f"'{word}'" if any(c in word for c in "{}*|&%~>") else word


# Redis Cluster: a cluster client also needs to learn the slot map and the commands' key
# positions, follow redirections and read from replicas, and the windows travel on sharded
# pub/sub (SPUBLISH from the scripts, SSUBSCRIBE on delivery). Not applied or tested here
# yet: what redis-py's RedisCluster and the cluster mode of emostream send on their own.
CLUSTER_COMMANDS = (
    "cluster|slots", "cluster|shards", "cluster|info", "cluster|nodes", "command", "asking",
    "readonly", "readwrite", "spublish", "ssubscribe", "sunsubscribe",
)  # fmt: skip


def main() -> None:
    """Print the line of every role, with a placeholder password to replace."""
    for role in ROLES:
        print(setuser_line(role, f"CHANGE-ME-{role}"))


if __name__ == "__main__":
    main()
