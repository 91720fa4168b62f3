"""Accepting a request's reactions: parse, validate whole, stamp, buffer. No framework here:
the fast path (ingest/fastpath.py) calls it for both reaction POSTs."""

from __future__ import annotations

from typing import Any

from ..clock import now_ms
from ..contract import DEFAULT_EVENT, validate_event_id
from ..errors import InvalidField, Unavailable
from ..settings import Settings
from .buffer import ReactionBuffer
from .flusher import Flusher
from .limits import RateLimiter
from .validation import (
    CONTRACT_FIELDS,
    SEED_FIELDS,
    FieldNames,
    normalize_emoji,
    parse_body,
    validate_reactions,
)


class Acceptor:
    def __init__(
        self,
        settings: Settings,
        buffer: ReactionBuffer,
        flusher: Flusher,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.settings = settings
        self.buffer = buffer
        self.flusher = flusher
        self.limiter = limiter
        self.allowed = frozenset(
            normalized
            for normalized in (normalize_emoji(e) for e in settings.allowed_emojis)
            if normalized is not None
        )

    def accept(
        self, event_id: str, names: FieldNames, payload: Any, user_id: str | None = None
    ) -> int:
        """Buffer every reaction of the payload or none (ApiError); returns how many.
        ``user_id`` (a signed user token's subject) replaces the users the body names."""
        reactions = validate_reactions(payload, self.settings.max_batch, self.allowed, names)
        if user_id is not None:
            reactions.users = [user_id] * len(reactions)
        if self.buffer.room() < len(reactions):
            raise Unavailable("the ingest buffer is full; retry shortly", retry_after_s=1)
        if self.limiter is not None:
            self.limiter.check_users(reactions.users)
        self.buffer.add(event_id, reactions, now_ms())
        if self.buffer.pending >= self.settings.flush_max:
            self.flusher.poke()
        return len(reactions)

    def reactions(
        self, event_id: str, content_type: str | None, body: bytes, user_id: str | None = None
    ) -> int:
        """``POST /v1/events/{event_id}/reactions``."""
        validate_event_id(event_id)
        return self.accept(event_id, CONTRACT_FIELDS, parse_body(content_type, body), user_id)

    def send_emoji(self, content_type: str | None, body: bytes, user_id: str | None = None) -> int:
        """The seed-compatible ``POST /send_emoji``: ``{"user_id", "emoji_type",
        "timestamp"?, "event_id"?}``, counted under ``event_id`` or the default event."""
        payload = parse_body(content_type, body)
        event_id = DEFAULT_EVENT
        if isinstance(payload, dict) and "event_id" in payload:
            candidate = payload["event_id"]
            if not isinstance(candidate, str):
                raise InvalidField("event_id", "event_id must be a string")
            event_id = validate_event_id(candidate)
        return self.accept(event_id, SEED_FIELDS, payload, user_id)
