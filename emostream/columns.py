"""How the columns of a raw-stream group are packed (batch.py has the entry format): receive
times cut into windows, user ids joined by newlines (or hashed into a HyperLogLog), emojis
dictionary-coded; and how the worker reads them back without a Python step per reaction."""

from __future__ import annotations

import bisect
from collections import Counter
from typing import Any

import msgpack
import numpy as np

from .errors import BatchError
from .hyperloglog import dense_of_joined

# Past this many distinct emojis in one group, a code takes two bytes.
ONE_BYTE_CODES = 256


def window_slices(received: list[int], window_ms: int) -> list[tuple[int, int, int]]:
    """(window start, from, to) slices of sorted receive times: a few bisects per batch."""
    slices: list[tuple[int, int, int]] = []
    index = 0
    while index < len(received):
        start = received[index] - received[index] % window_ms
        end = bisect.bisect_left(received, start + window_ms, index)
        slices.append((start, index, end))
        index = end
    return slices


def joined_users(users: list[str]) -> str | bytes:
    """A group's user ids separated by newlines (cheaper to pack than a msgpack array, and the
    worker finds them with numpy); as a msgpack array should an id hold a newline, which a
    validated one never does."""
    joined = "\n".join(users)
    if joined.count("\n") == len(users) - 1:
        return joined
    return msgpack.packb(users)


def users_of(field: Any) -> list[str]:
    """A group's user ids, as ``joined_users`` packed them."""
    if isinstance(field, str):
        return field.split("\n")
    users = msgpack.unpackb(field, raw=False)
    if not isinstance(users, list):
        raise BatchError("a group's users are malformed")
    return users


def dictionary_coded(emojis: list[str]) -> tuple[list[str], bytes]:
    """The distinct emojis, first seen first, and one code per emoji: a byte, or two
    little-endian bytes past ``ONE_BYTE_CODES`` distinct ones."""
    distinct = list(dict.fromkeys(emojis))
    index = {emoji: code for code, emoji in enumerate(distinct)}
    if len(distinct) <= ONE_BYTE_CODES:
        return distinct, bytes(map(index.__getitem__, emojis))
    return distinct, np.fromiter(map(index.__getitem__, emojis), dtype="<u2").tobytes()


def emoji_codes(distinct: Any, codes: Any) -> np.ndarray:
    """A group's codes as an array of the width its distinct emojis need."""
    if not isinstance(distinct, list) or not isinstance(codes, bytes):
        raise BatchError("emoji codes are malformed")
    width = "u1" if len(distinct) <= ONE_BYTE_CODES else "<u2"
    return np.frombuffer(codes, dtype=width)


def emoji_counts(distinct: list[str], codes: np.ndarray) -> Counter[str]:
    """Per-emoji counts of a dictionary-coded column, at C speed."""
    counts = np.bincount(codes, minlength=len(distinct))
    if len(counts) != len(distinct):
        raise BatchError("an emoji code names no emoji")
    return Counter({str(e): int(n) for e, n in zip(distinct, counts.tolist(), strict=True) if n})


def users_hll(users: str | bytes, total: int) -> bytes | None:
    """The dense HyperLogLog of a large group's users; None for ids that cannot be joined
    by newlines (PFADD takes them as they are)."""
    if isinstance(users, str):
        return dense_of_joined(users.encode(), total)  # ValueError: a BatchError
    ids = msgpack.unpackb(users, raw=True)
    if not isinstance(ids, list) or len(ids) != total:
        raise BatchError("a group's users and emojis differ in length")
    joined = b"\n".join(ids)  # an id that is not a string: TypeError, a BatchError
    return dense_of_joined(joined, total) if joined.count(b"\n") == total - 1 else None
