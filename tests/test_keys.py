"""Redis names: the shard hash tags and what they promise on Redis Cluster."""

from __future__ import annotations

from redis.crc import key_slot

from emostream import keys

SLOTS = 16384


def test_each_chosen_tag_hashes_to_its_slot() -> None:
    assert len(keys.SHARD_TAGS) == len(keys.SHARD_SLOTS)
    for shard, slot in enumerate(keys.SHARD_SLOTS):
        assert key_slot(keys.raw_stream(shard).encode()) == slot
        assert key_slot(keys.windows_channel(shard).encode()) == slot


def test_any_shard_count_up_to_twelve_puts_its_shards_in_distinct_ranges() -> None:
    for count in range(1, len(keys.SHARD_SLOTS) + 1):
        ranges = {
            key_slot(keys.raw_stream(shard).encode()) * count // SLOTS for shard in range(count)
        }
        assert ranges == set(range(count)), count


def test_three_equal_primaries_take_six_shards_two_each() -> None:
    owners = [slot * 3 // SLOTS for slot in keys.SHARD_SLOTS[:6]]
    assert sorted(owners) == [0, 0, 1, 1, 2, 2]


def test_shards_beyond_the_table_still_have_a_tag_of_their_own() -> None:
    tags = {keys.shard_tag(shard) for shard in range(40)}
    assert len(tags) == 40
    assert keys.raw_stream(30).startswith("emostream:{s30}")
