"""One typed, frozen settings object, read from ``EMOSTREAM_*`` environment variables.

Every interval carries its unit in its name. Bad values fail loudly at start-up with the
variable's name, never later in a hot path.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .contract import CLUSTER_NAME, CLUSTER_NAME_RULE, EVENT_ID, EVENT_ID_RULE
from .errors import ConfigError

PREFIX = "EMOSTREAM_"


# A setting's rule, stated beside its default: the check returns what the value must be, or
# "" when it is fine.
def at_least(low: float, default: Any, high: float | None = None) -> Any:
    def check(value: float) -> str:
        if value < low or (high is not None and value > high):
            return f"at least {low}" + (f" and at most {high}" if high is not None else "")
        return ""

    return field(default=default, metadata={"check": check})


def above(low: float, default: float) -> Any:
    return field(default=default, metadata={"check": lambda v: "" if v > low else f"above {low}"})


def one_of(*choices: str) -> Any:
    allowed = " or ".join(choices)
    return field(default=choices[0], metadata={"check": lambda v: "" if v in choices else allowed})


def default_data_dir(environ: Mapping[str, str] | None = None) -> str:
    """Per user, as the XDG base directories say: $XDG_DATA_HOME/emostream, else
    ~/.local/share/emostream."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "emostream")


@dataclass(frozen=True)
class Settings:
    # Unset: `emostream up` starts a private redis-server it owns.
    redis_url: str | None = field(default=None, repr=False)
    # Where that private Redis of `emostream up` keeps its append-only file, so history and
    # seq survive a restart; "" for a throwaway directory (`--ephemeral`).
    data_dir: str = field(default_factory=default_data_dir)
    window_s: float = at_least(0.1, 2.0)
    top_n: int = at_least(1, 5)
    scale: int = at_least(1, 1000)
    flush_interval_ms: int = at_least(1, 500)
    flush_max: int = at_least(1, 20_000)
    # Reactions an ingest process holds before answering 503: room for several flushes
    # while Redis is briefly away, never unbounded memory.
    buffer_max: int = at_least(1, 200_000)
    max_batch: int = at_least(1, 500)
    max_body_bytes: int = at_least(1, 256 * 1024)
    # Raw stream shards; an event always lands on the same shard (and hash slot).
    shards: int = at_least(1, 4)
    raw_maxlen: int = at_least(1, 100_000)
    history_max: int = at_least(1, 10_000)
    # Windows a reconnecting client is replayed at most (newest kept).
    replay_max: int = at_least(1, 100)
    read_block_ms: int = at_least(1, 200)
    read_count: int = at_least(1, 64)
    claim_idle_ms: int = at_least(1, 5_000)
    # A raw entry whose processing failed this many times goes to the dead-letter stream.
    max_deliveries: int = at_least(1, 3)
    # Processed raw entries are kept this long for analytics, then trimmed (an analytics
    # consumer group keeps them until it has read them).
    raw_retention_s: int = at_least(1, 60)
    # A closed window is kept this long to count late reactions into a revision; later ones
    # are only tallied as lost in the event's `lost` field.
    revision_horizon_s: int = at_least(1, 3600)
    close_tick_ms: int = at_least(1, 50)
    # An ingest process whose watermark has not moved for this long no longer holds
    # windows open (it died or lost Redis).
    producer_timeout_ms: int = at_least(1, 5_000)
    # A window is closed at the latest this long after it ended, even if a stuck entry
    # still holds it; what comes later is counted as late.
    close_max_delay_ms: int = at_least(1, 10_000)
    # An event with no reactions for this long stops producing (empty) windows.
    event_idle_s: float = above(0, 60.0)
    heartbeat_s: float = above(0, 15.0)
    client_queue_max: int = at_least(1, 32)
    # A client whose socket accepts nothing for this long is gone: its stream is ended. (A
    # client that vanished without closing is only noticed once its send buffer is full.)
    send_timeout_s: float = above(0, 10.0)
    # Kernel send buffer of each client socket (fixed, so a stalled client fills it and hits
    # the send timeout within a bounded number of windows; Linux doubles the value).
    client_send_buffer_bytes: int = at_least(1, 64 * 1024)
    # A window subscription on which nothing (window or PONG) came back for this long is
    # declared dead and replaced: a half-open socket or a stopped Redis never raises.
    subscription_timeout_ms: int = at_least(1, 3_000)
    # Delivery nodes: the cluster this node belongs to, the base URL clients reach it at
    # (unset: http://host:port) and how long its registration outlives its last heartbeat.
    cluster: str = "default"
    public_url: str = ""
    node_ttl_ms: int = at_least(1, 5_000)
    # Serve HTTPS (and with it HTTP/2 over ALPN, which browsers only speak over TLS) when both
    # are set: PEM certificate chain and private key.
    tls_certfile: str = ""
    tls_keyfile: str = ""
    worker_heartbeat_ttl_ms: int = at_least(1, 10_000)
    # Optional per-event allow-list shared by every event: comma-separated emojis.
    allowed_emojis: tuple[str, ...] = ()
    # Server software of every role: uvicorn (default, picked by measurement) or hypercorn
    # (also serves HTTP/2, over TLS to browsers).
    server: str = one_of("uvicorn", "hypercorn")
    host: str = "127.0.0.1"
    port: int = at_least(1, 8000, high=65535)
    # Rate limits, shared by every ingest process (ingest/limits.py); a rate of 0 turns one
    # off. Reactions a second per user id: a person taps a few times a second, the seed's
    # load generator sends about 100 from one user id, a flooding script thousands.
    # Requests a second per client address: off by default, since a whole stadium can
    # share one address behind NAT.
    user_rate: float = at_least(0, 200.0)
    user_burst: float = at_least(1, 400.0)
    ip_rate: float = at_least(0, 0.0)
    ip_burst: float = at_least(1, 200.0)
    # Proxies (addresses or CIDR networks) whose X-Forwarded-For names the client.
    trusted_proxies: tuple[str, ...] = ()
    rate_sync_interval_ms: int = at_least(10, 100)
    # Where a worker serves its Prometheus metrics (/metrics); 0 serves none. Ingest and
    # delivery serve /metrics on their own port.
    metrics_port: int = at_least(0, 0, high=65535)
    # -- Safe in public (issue 11): bounded events, per-event expiry, Redis pools --
    # Events with open windows at once (the shards' active-events sets). A reaction to a new
    # event beyond it is refused with 429 `too_many_events`; ingest checks a local view it
    # refreshes from Redis once a second, so the count may overshoot a little (README).
    max_active_events: int = at_least(1, 10_000)
    # When set (comma-separated event ids), only these events take reactions; any other gets
    # 404 `unknown_event`.
    events: tuple[str, ...] = ()
    # Every key of an event (state, history, revisions) expires this long after its last
    # published window; a reaction after that starts the event afresh at seq 1.
    event_ttl_s: int = at_least(1, 24 * 3600)
    # Connections of each role's Redis client (`emostream up` gives each role its own). A
    # caller finding every one busy waits up to redis_pool_timeout_ms for one: a burst queues
    # instead of failing at once. 2,000 simultaneous history reads took 4 s to drain on a
    # loaded 2-core machine, the last ones waiting about that long, hence 10 s.
    redis_max_connections: int = at_least(1, 100)
    redis_pool_timeout_ms: int = at_least(1, 10_000)
    # Whether EMOSTREAM_REDIS_URL names a node of a Redis Cluster (or a Valkey cluster):
    # `auto` asks the server (INFO cluster) at start; `yes` and `no` skip the question. On a
    # cluster the connections are per node: redis_max_connections to each node.
    redis_cluster: str = one_of("auto", "yes", "no")
    # Replicas a flushed batch must reach (WAIT, up to redis_wait_timeout_ms) before ingest
    # drops it from memory; short of that it is appended again. 0: asynchronous replication
    # as Redis does it, where a failover can lose what the primary had not yet sent (README).
    # Only with replicas behind every primary.
    redis_wait_replicas: int = at_least(0, 0)
    redis_wait_timeout_ms: int = at_least(1, 1000)
    # Shards each event's reactions are spread over (keys.sub_shards), so one hot event is
    # counted by that many Redis primaries; its windows are still closed once, merged, on its
    # own shard. At most EMOSTREAM_SHARDS; the same in every process.
    event_split: int = at_least(1, 1)
    # -- Safe in public: HTTP limits of every role on either server software, the operator
    # token and client registration (README, "Safe in public").
    # A request head (request line and headers) larger than this is refused with 431.
    max_header_bytes: int = at_least(1024, 16 * 1024)
    # A request head must be complete this long after its first byte (or after the
    # connection opened): a slow head is cut, so idle sockets cannot pile up.
    header_timeout_s: float = above(0, 10.0)
    # A request body must be complete this long after its head, else 408.
    body_timeout_s: float = above(0, 30.0)
    # A keep-alive connection idle this long between requests is closed.
    idle_timeout_s: float = above(0, 30.0)
    # A body answered before it was read (413, 405, ...) is read and dropped up to this many
    # bytes before the connection closes: a client that sends its whole body before reading
    # (Python's urllib) then reads the answer instead of a connection reset.
    drain_max_bytes: int = at_least(0, 8 * 1024 * 1024)
    # The operator's token. When set, /v1/stats (and the dashboard) need
    # `Authorization: Bearer <admin_token>`, and so does every poll admin call; unset, the
    # stats are open but poll admin calls are refused with 403. `emostream up` makes one when
    # none is set and logs it, so under `up` the stats need it too.
    admin_token: str = field(default="", repr=False)
    # Client registrations per client address: a token bucket refilled at this rate.
    registration_rate_per_s: float = above(0, 2.0)
    registration_burst: int = at_least(1, 20)
    # -- Polls, votes and trivia (emostream/polls/), and who may respond (admin_token above).
    # With a token secret, reactions and votes need a signed HS256 user token whose `sub` is
    # the user id; unset, users are anonymous as before.
    token_secret: str = field(default="", repr=False)
    token_audience: str = "emostream"
    # Ingest answers votes from a per-process copy of each poll's rules and state read at most
    # this long ago (one read per poll per interval, not one per vote). A lock takes effect
    # `poll_lock_grace_ms` after it is called, so every process sees it before its clock
    # reaches it: the grace must exceed the cache age plus the clock skew between hosts.
    poll_cache_ms: int = at_least(1, 200)
    poll_lock_grace_ms: int = at_least(0, 500)

    @property
    def window_ms(self) -> int:
        return int(round(self.window_s * 1000))

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check = f.metadata.get("check")
            if check is not None:
                problem = check(getattr(self, f.name))
                if problem:
                    raise ConfigError(f"{PREFIX}{f.name.upper()} must be {problem}")
        if self.buffer_max < self.flush_max:
            raise ConfigError(f"{PREFIX}BUFFER_MAX must be at least {PREFIX}FLUSH_MAX")
        if self.event_split > self.shards:
            raise ConfigError(f"{PREFIX}EVENT_SPLIT must be at most {PREFIX}SHARDS")
        if not CLUSTER_NAME.fullmatch(self.cluster):
            raise ConfigError(f"{PREFIX}CLUSTER must be {CLUSTER_NAME_RULE}")
        if bool(self.tls_certfile) != bool(self.tls_keyfile):
            raise ConfigError(f"{PREFIX}TLS_CERTFILE and {PREFIX}TLS_KEYFILE go together")
        if self.token_secret and len(self.token_secret.encode()) < 32:
            raise ConfigError(f"{PREFIX}TOKEN_SECRET must be at least 32 bytes (RFC 7518)")
        if self.poll_lock_grace_ms <= self.poll_cache_ms:
            raise ConfigError(
                f"{PREFIX}POLL_LOCK_GRACE_MS must be above {PREFIX}POLL_CACHE_MS: a process "
                "could accept a vote after a lock it has not read yet"
            )
        if self.public_url and not _PUBLIC_URL.fullmatch(self.public_url):
            raise ConfigError(f"{PREFIX}PUBLIC_URL must be an http:// or https:// base URL")
        for event_id in self.events:
            if not EVENT_ID.fullmatch(event_id):
                raise ConfigError(f"{PREFIX}EVENTS must list event ids of {EVENT_ID_RULE}")
        if self.event_ttl_s < max(self.event_idle_s, self.revision_horizon_s):
            # An event's keys outlive its idle tail and every revision of its windows.
            raise ConfigError(
                f"{PREFIX}EVENT_TTL_S must be at least {PREFIX}EVENT_IDLE_S and "
                f"{PREFIX}REVISION_HORIZON_S"
            )

    @property
    def node_url(self) -> str:
        """The base URL this delivery node is reached at, as other nodes hand it out."""
        if self.public_url:
            return self.public_url.rstrip("/")
        scheme = "https" if self.tls_certfile else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from the environment; keyword overrides (command-line flags) win."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _cast(f.name, f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def describe(self) -> str:
        """A readable one-line summary that never shows the Redis password."""
        return (
            f"redis={redact_url(self.redis_url) if self.redis_url else '(private)'} "
            f"window_s={self.window_s} top_n={self.top_n} scale={self.scale} "
            f"flush_interval_ms={self.flush_interval_ms} flush_max={self.flush_max} "
            f"shards={self.shards}"
        )

    def __repr__(self) -> str:
        return f"Settings({self.describe()})"


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


_EMOJI_SPLIT = re.compile(r"\s*,\s*")
_PUBLIC_URL = re.compile(r"https?://[^\s/?#]+(/[^\s?#]*)?")


def _cast(name: str, type_name: Any, raw: str) -> Any:
    variable = PREFIX + name.upper()
    kind = str(type_name)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind.startswith("tuple"):
            return tuple(item for item in _EMOJI_SPLIT.split(raw.strip()) if item)
        return raw
    except ValueError:
        raise ConfigError(f"{variable}={raw!r} is not a valid {kind}") from None
