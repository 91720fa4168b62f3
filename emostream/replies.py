"""Reading Redis replies: a client made without ``decode_responses`` answers bytes, one made
with it answers str, and Lua replies mix in integers; every reader takes text through here."""

from __future__ import annotations


def text(value: object, errors: str = "strict") -> str:
    """The reply as text: bytes decoded as UTF-8 (``errors`` as for ``bytes.decode``)."""
    return value.decode(errors=errors) if isinstance(value, bytes) else str(value)
