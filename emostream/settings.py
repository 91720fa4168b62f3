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

from .contract import CLUSTER_NAME, CLUSTER_NAME_RULE
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


@dataclass(frozen=True)
class Settings:
    # Unset: `emostream up` starts a private redis-server it owns.
    redis_url: str | None = field(default=None, repr=False)
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
    # off. Reactions a second per user id: a person taps a few times a second, a script
    # thousands. Requests a second per client address: off by default, since a whole
    # stadium can share one address behind NAT.
    user_rate: float = at_least(0, 50.0)
    user_burst: float = at_least(1, 100.0)
    ip_rate: float = at_least(0, 0.0)
    ip_burst: float = at_least(1, 200.0)
    # Proxies (addresses or CIDR networks) whose X-Forwarded-For names the client.
    trusted_proxies: tuple[str, ...] = ()
    rate_sync_interval_ms: int = at_least(10, 100)
    # Polls, votes and trivia (emostream/polls/), and who may respond. The admin token guards
    # every admin call (unset: admin calls are refused with 403; `emostream up` makes one and
    # logs it). With a token secret, reactions and votes need a signed HS256 user token whose
    # `sub` is the user id; unset, users are anonymous as before.
    admin_token: str = field(default="", repr=False)
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
