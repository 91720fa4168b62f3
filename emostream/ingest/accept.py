"""Accepting a request's reactions: parse, validate whole, stamp, buffer. No framework here:
the fast path (ingest/fastpath.py) calls it for both reaction POSTs and answers with the
status and body it returns."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ..clock import now_ms
from ..contract import DEFAULT_EVENT, validate_event_id
from ..errors import InvalidField, Unavailable
from ..settings import Settings
from .buffer import ReactionBuffer
from .decoding import read_reactions
from .flusher import Flusher
from .limits import RateLimiter
from .seed import validate_seed_reactions
from .validation import ReactionColumns, normalize_emoji, parse_body

# (HTTP status, JSON body) of an accepted request.
Answer = tuple[int, bytes]


@dataclass(eq=False)
class Acceptor:
    settings: Settings
    buffer: ReactionBuffer
    flusher: Flusher
    limiter: RateLimiter | None = None
    # For /metrics: reactions buffered, and requests refused by error code.
    accepted: int = field(init=False, default=0)
    refused: Counter[str] = field(init=False, default_factory=Counter)
    allowed: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        self.allowed = frozenset(
            normalized
            for normalized in (normalize_emoji(e) for e in self.settings.allowed_emojis)
            if normalized is not None
        )

    def admit_client(self, peer: tuple[str, int] | None, forwarded_for: str | None) -> None:
        """Count a request against its client address's limit (429 past it), the address
        taken from X-Forwarded-For only when the peer is a trusted proxy."""
        limiter = self.limiter
        if limiter is not None and limiter.addresses is not None and peer is not None:
            limiter.check_address(limiter.proxies.client(peer[0], forwarded_for))

    def accept(self, event_id: str, reactions: ReactionColumns, user_id: str | None = None) -> int:
        """Buffer every one of the validated reactions or none (404, 429, 503); returns how
        many. ``user_id`` (a signed user token's subject) replaces the users the body names."""
        if user_id is not None:
            reactions.users = [user_id] * len(reactions)
        # The event is checked first: a request it refuses takes no user's tokens, and one the
        # rate limits refuse takes no place among the active events.
        events = self.flusher.events
        new_event = events.check(event_id)
        if self.buffer.room() < len(reactions):
            raise Unavailable("the ingest buffer is full; retry shortly", retry_after_s=1)
        if self.limiter is not None:
            self.limiter.check_users(reactions.users)
        received_ms = now_ms()
        if new_event:
            events.admit(event_id, received_ms)
        self.buffer.add(event_id, reactions, received_ms)
        self.accepted += len(reactions)
        if self.buffer.pending >= self.settings.flush_max:
            self.flusher.poke()
        return len(reactions)

    def reactions(
        self, event_id: str, content_type: str | None, body: bytes, user_id: str | None = None
    ) -> Answer:
        """``POST /v1/events/{event_id}/reactions``: 202 ``{"accepted": n}``."""
        validate_event_id(event_id)
        reactions = read_reactions(content_type, body, self.settings.max_batch, self.allowed)
        return 202, b'{"accepted":%d}' % self.accept(event_id, reactions, user_id)

    def send_emoji(
        self, content_type: str | None, body: bytes, user_id: str | None = None
    ) -> Answer:
        """The seed-compatible ``POST /send_emoji``: ``{"user_id", "emoji_type",
        "timestamp"?, "event_id"?}``, counted under ``event_id`` or the default event.
        200 ``{"accepted": n, "ts_dropped": k}``, as the seed answered 200: its clients count
        anything else as a failure and may send again."""
        payload = parse_body(content_type, body)
        event_id = DEFAULT_EVENT
        if isinstance(payload, dict) and "event_id" in payload:
            candidate = payload["event_id"]
            if not isinstance(candidate, str):
                raise InvalidField("event_id", "event_id must be a string")
            event_id = validate_event_id(candidate)
        reactions, dropped = validate_seed_reactions(payload, self.settings.max_batch, self.allowed)
        accepted = self.accept(event_id, reactions, user_id)
        return 200, b'{"accepted":%d,"ts_dropped":%d}' % (accepted, dropped)
