"""The raw entry format's version 3 (dictionary-coded emojis) and version 2, still read."""

from __future__ import annotations

from collections import Counter

import msgpack
import pytest

from emostream.batch import Batch, EventColumns, pack_batch, tally_batch, unpack_batch
from emostream.errors import BatchError
from emostream.rules import AggregationRule, EmojiSwarmRule


class CountAll(EmojiSwarmRule):
    """Keeps every emoji's count (the swarm rule keeps the top ones)."""

    def tally(self, counts: Counter[str]) -> Counter[str]:
        return counts


def one_event(users: list[str], emojis: list[str]) -> Batch:
    n = len(users)
    return Batch("b", "p", 9, {"live": EventColumns(users, emojis, [100] * n, [None] * n)})


@pytest.mark.parametrize("distinct", [1, 256, 257, 600])
def test_codes_round_trip_and_count(distinct: int) -> None:
    emojis = [chr(0x1F300 + i % distinct) for i in range(3 * distinct + 5)]
    batch = one_event([f"u{i % 7}" for i in range(len(emojis))], emojis)
    payload = pack_batch(batch, 2000)
    assert unpack_batch(payload) == batch
    rule: AggregationRule = CountAll()
    [tally] = tally_batch(payload, rule).windows
    assert (tally.total, tally.counts) == (len(emojis), Counter(emojis))


def test_version_2_entries_are_still_counted() -> None:
    group = ["live", 0, msgpack.packb(["u1", "u2", "u1"]), ["🔥", "😂", "🔥"], [[5, 3]], [None] * 3]
    payload = msgpack.packb({"v": 2, "id": "b", "p": "p", "wm": 9, "groups": [group]})
    [tally] = tally_batch(payload, EmojiSwarmRule()).windows
    assert (tally.total, tally.counts) == (3, Counter({"🔥": 2, "😂": 1}))
    assert unpack_batch(payload).events["live"].emojis == ["🔥", "😂", "🔥"]


@pytest.mark.parametrize(
    "distinct, codes",
    [(["🔥"], b"\x00\x01"), (["🔥"], [0, 0]), ("🔥", b"\x00")],
)
def test_malformed_codes_are_batch_errors(distinct: object, codes: object) -> None:
    group = ["live", 0, msgpack.packb(["u1", "u2"]), distinct, codes, [[5, 2]], [None] * 2]
    payload = msgpack.packb({"v": 3, "id": "b", "p": "p", "wm": 9, "groups": [group]})
    with pytest.raises(BatchError):
        tally_batch(payload, EmojiSwarmRule())
    with pytest.raises(BatchError):
        unpack_batch(payload)


def test_a_large_group_carries_its_users_hyperloglog() -> None:
    users = [f"u{i}" for i in range(1500)]
    [tally] = tally_batch(pack_batch(one_event(users, ["🔥"] * 1500), 2000), CountAll()).windows
    assert tally.users_hll is not None and tally.users_hll.startswith(b"HYLL")


def test_ids_with_a_newline_still_count() -> None:
    """Never from a validated request, but the format holds them (as a msgpack array)."""
    users = [f"u{i}\nx" for i in range(1500)]
    batch = one_event(users, ["🔥"] * 1500)
    payload = pack_batch(batch, 2000)
    assert unpack_batch(payload) == batch
    [tally] = tally_batch(payload, CountAll()).windows
    assert tally.users_hll is None and msgpack.unpackb(tally.users_packed) == users
