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

from .errors import ConfigError

PREFIX = "EMOSTREAM_"


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
    window_s: float = 2.0
    top_n: int = 5
    scale: int = 1000
    flush_interval_ms: int = 500
    flush_max: int = 20_000
    # Reactions an ingest process holds before answering 503: room for several flushes
    # while Redis is briefly away, never unbounded memory.
    buffer_max: int = 200_000
    max_batch: int = 500
    max_body_bytes: int = 256 * 1024
    # Raw stream shards; an event always lands on the same shard (and hash slot).
    shards: int = 4
    raw_maxlen: int = 100_000
    history_max: int = 10_000
    # Windows a reconnecting client is replayed at most (newest kept).
    replay_max: int = 100
    read_block_ms: int = 200
    read_count: int = 64
    claim_idle_ms: int = 5_000
    # A raw entry whose processing failed this many times goes to the dead-letter stream.
    max_deliveries: int = 3
    # Processed raw entries are kept this long for analytics, then trimmed (an analytics
    # consumer group keeps them until it has read them).
    raw_retention_s: int = 60
    # A closed window is kept this long to count late reactions into a revision; later ones
    # are only tallied as lost in the event's `late` field.
    revision_horizon_s: int = 3600
    close_tick_ms: int = 50
    # An ingest process whose watermark has not moved for this long no longer holds
    # windows open (it died or lost Redis).
    producer_timeout_ms: int = 5_000
    # A window is closed at the latest this long after it ended, even if a stuck entry
    # still holds it; what comes later is counted as late.
    close_max_delay_ms: int = 10_000
    # An event with no reactions for this long stops producing (empty) windows.
    event_idle_s: float = 60.0
    heartbeat_s: float = 15.0
    client_queue_max: int = 32
    # A client whose socket accepts nothing for this long is gone: its stream is ended. (A
    # client that vanished without closing is only noticed once its send buffer is full.)
    send_timeout_s: float = 10.0
    # Kernel send buffer of each client socket (fixed, so a stalled client fills it and hits
    # the send timeout within a bounded number of windows; Linux doubles the value).
    client_send_buffer_bytes: int = 64 * 1024
    # A window subscription on which nothing (window or PONG) came back for this long is
    # declared dead and replaced: a half-open socket or a stopped Redis never raises.
    subscription_timeout_ms: int = 3_000
    # Delivery nodes: the cluster this node belongs to, the base URL clients reach it at
    # (unset: http://host:port) and how long its registration outlives its last heartbeat.
    cluster: str = "default"
    public_url: str = ""
    node_ttl_ms: int = 5_000
    # Serve HTTPS (and with it HTTP/2 over ALPN, which browsers only speak over TLS) when both
    # are set: PEM certificate chain and private key.
    tls_certfile: str = ""
    tls_keyfile: str = ""
    worker_heartbeat_ttl_ms: int = 10_000
    # Optional per-event allow-list shared by every event: comma-separated emojis.
    allowed_emojis: tuple[str, ...] = ()
    # Server software of every role: uvicorn (default, picked by measurement) or hypercorn
    # (also serves HTTP/2, over TLS to browsers).
    server: str = "uvicorn"
    host: str = "127.0.0.1"
    port: int = 8000

    @property
    def window_ms(self) -> int:
        return int(round(self.window_s * 1000))

    def __post_init__(self) -> None:
        if self.window_ms < 100:
            raise ConfigError("EMOSTREAM_WINDOW_S must be at least 0.1")
        positive = (
            "top_n",
            "scale",
            "flush_interval_ms",
            "flush_max",
            "buffer_max",
            "max_batch",
            "max_body_bytes",
            "shards",
            "raw_maxlen",
            "history_max",
            "read_block_ms",
            "read_count",
            "claim_idle_ms",
            "max_deliveries",
            "raw_retention_s",
            "revision_horizon_s",
            "close_tick_ms",
            "producer_timeout_ms",
            "client_queue_max",
            "subscription_timeout_ms",
            "client_send_buffer_bytes",
            "node_ttl_ms",
            "worker_heartbeat_ttl_ms",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{PREFIX}{name.upper()} must be positive")
        if self.buffer_max < self.flush_max:
            raise ConfigError(f"{PREFIX}BUFFER_MAX must be at least {PREFIX}FLUSH_MAX")
        if self.heartbeat_s <= 0 or self.event_idle_s <= 0:
            raise ConfigError("EMOSTREAM_HEARTBEAT_S and EMOSTREAM_EVENT_IDLE_S must be positive")
        if self.server not in ("uvicorn", "hypercorn"):
            raise ConfigError(f"{PREFIX}SERVER must be uvicorn or hypercorn")
        if self.send_timeout_s <= 0:
            raise ConfigError(f"{PREFIX}SEND_TIMEOUT_S must be positive")
        if not _CLUSTER_NAME.fullmatch(self.cluster):
            raise ConfigError(f"{PREFIX}CLUSTER must be 1-64 characters of A-Za-z0-9_-")
        if bool(self.tls_certfile) != bool(self.tls_keyfile):
            raise ConfigError(f"{PREFIX}TLS_CERTFILE and {PREFIX}TLS_KEYFILE go together")
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
_CLUSTER_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
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
