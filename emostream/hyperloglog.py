"""Redis's own HyperLogLog, built in the worker: the bytes PFADD would leave in a key.

A window's unique users live in a Redis HyperLogLog. Adding a batch's user ids with PFADD cost
Redis about 0.1 µs per id (Lua decoding the ids, one argument each, then the hash), most of
Redis's work per reaction. Instead the worker hashes the ids (numpy, a column at a time) into
the 16,384 registers and lua/apply_batch.lua merges them with PFMERGE, whose cost does not grow
with the ids: about 65-120 µs per window and batch on this machine class, which PFADD spends on
about 800 ids (``MERGE_MIN_USERS``). Smaller tallies still travel as ids for PFADD.

Exact, not an approximation of Redis: the same MurmurHash64A (seed 0xadc83b19), the same
register index (the low 14 bits) and run length (trailing zeros of the other 50 bits, plus
one) as Redis's hyperloglog.c, so the estimate is the one PFADD of the same ids would give;
tests/test_hyperloglog.py compares the registers with PFDEBUG GETREG and the bytes with GET on
a real Redis. The dense format: the header ``HYLL``, encoding 0 (dense), 3 unused bytes, 8 bytes
of cached cardinality (the top bit of the last byte set: "not cached", as PFADD leaves it),
then 16,384 registers of 6 bits, packed from the least significant bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Fewest user ids for which a merge costs Redis less than PFADD (measured: at 1,000 ids
# PFADD ~89 µs, PFMERGE ~70 µs; at 300 ids 25 against 64).
MERGE_MIN_USERS = 1000

_P = 14
_REGISTERS = 1 << _P
_Q = 64 - _P
_M = np.uint64(0xC6A4A7935BD1E995)
_R = np.uint64(47)
_SEED = np.uint64(0xADC83B19)
_ONE = np.uint64(1)
# Dense header: magic, encoding (0 = dense), 3 unused bytes, cardinality cache marked invalid.
_DENSE_HEADER = b"HYLL" + bytes(4) + bytes(7) + b"\x80"


def murmur64a(ids: Sequence[bytes]) -> np.ndarray:
    """MurmurHash64A with Redis's seed of every id, a column at a time."""
    return _murmur64a_joined(b"\n".join(ids), len(ids))


def _murmur64a_joined(joined: bytes, count: int) -> np.ndarray:
    """MurmurHash64A of the ``count`` ids of ``joined`` (separated by newlines, which no
    user id holds): the ids are found by their separators, no Python object per id."""
    raw = np.frombuffer(joined, dtype=np.uint8)
    ends = np.flatnonzero(raw == 10)
    if len(ends) != count - 1:
        raise ValueError(f"{len(ends) + 1} newline-separated ids, not {count}")
    starts = np.empty(count, dtype=np.int64)
    starts[0] = 0
    starts[1:] = ends + 1
    lengths = np.empty(count, dtype=np.int64)
    lengths[:-1] = ends - starts[:-1]
    lengths[-1] = len(joined) - starts[-1]
    longest = int(lengths.max())
    # Padded so that every 8-byte read below, even for the shorter ids, stays inside.
    blob = joined + bytes(longest + 8)
    # The little-endian 64-bit word at every byte offset (a view, unaligned reads).
    words: np.ndarray = np.ndarray((len(blob) - 7,), dtype="<u8", buffer=blob, strides=(1,))
    h = _SEED ^ (lengths.astype(np.uint64) * _M)
    blocks = lengths >> 3
    for block in range(longest >> 3):
        k = words[starts + 8 * block]
        k *= _M
        k ^= k >> _R
        k *= _M
        h = np.where(blocks > block, (h ^ k) * _M, h)
    tail_bytes = (lengths & 7).astype(np.uint64)
    tail = words[starts + 8 * blocks] & ((_ONE << (tail_bytes * np.uint64(8))) - _ONE)
    h = np.where(tail_bytes > 0, (h ^ tail) * _M, h)
    h ^= h >> _R
    h *= _M
    h ^= h >> _R
    return h


def registers(ids: Sequence[bytes]) -> np.ndarray:
    """The 16,384 registers PFADD of ``ids`` into an empty key would set."""
    return _registers(murmur64a(ids))


def _registers(h: np.ndarray) -> np.ndarray:
    index = (h & np.uint64(_REGISTERS - 1)).astype(np.intp)
    # Redis counts the trailing zeros of the upper 50 bits with a sentinel bit above them.
    rest = (h >> np.uint64(_P)) | (_ONE << np.uint64(_Q))
    lowest = rest & (~rest + _ONE)
    runs = np.frexp(lowest.astype(np.float64))[1].astype(np.uint8)  # log2(lowest) + 1
    out = np.zeros(_REGISTERS, dtype=np.uint8)
    np.maximum.at(out, index, runs)
    return out


def dense(regs: np.ndarray) -> bytes:
    """Registers as a dense HyperLogLog string: a valid value for SET, PFMERGE, PFCOUNT."""
    r = regs.reshape(-1, 4).astype(np.uint32)
    packed = r[:, 0] | (r[:, 1] << 6) | (r[:, 2] << 12) | (r[:, 3] << 18)  # 4 registers, 3 bytes
    return _DENSE_HEADER + packed.astype("<u4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()


def dense_of_joined(joined: bytes, count: int) -> bytes:
    """The dense HyperLogLog of ``count`` newline-separated ids (ValueError if they are not
    ``count``)."""
    return dense(_registers(_murmur64a_joined(joined, count)))
