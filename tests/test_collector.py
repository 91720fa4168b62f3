"""The collection pacer: CPython's automatic full collections off, run between windows, each
freezing its survivors."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from emostream.deliver.collector import NEVER, CollectionPacer


@contextmanager
def installed(pacer: CollectionPacer) -> Iterator[CollectionPacer]:
    """``pacer`` installed for the block, uninstalled after it whatever happens."""
    pacer.install()
    try:
        yield pacer
    finally:
        pacer.uninstall()


@pytest.fixture(autouse=True)
def thawed_afterwards() -> Iterator[None]:
    """A due ``idle`` freezes this test process's heap: give it back to the collector."""
    yield
    gc.unfreeze()


@pytest.fixture
def full_collections() -> Iterator[list[int]]:
    seen: list[int] = []

    def hook(phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["generation"] == 2:
            seen.append(1)

    gc.callbacks.append(hook)
    try:
        yield seen
    finally:
        gc.callbacks.remove(hook)


def test_install_turns_automatic_full_collections_off_and_uninstall_restores() -> None:
    before = gc.get_threshold()
    with installed(CollectionPacer()):
        assert gc.get_threshold() == (before[0], before[1], NEVER)
    assert gc.get_threshold() == before


def test_idle_collects_only_when_due(full_collections: list[int]) -> None:
    with installed(CollectionPacer(min_interval_s=0.0, max_interval_s=3600.0)) as pacer:
        gc.collect()  # starts the middle-generation count from zero
        full_collections.clear()
        pacer.idle()
        assert full_collections == [], "no middle-generation collections yet: not due"
        for _ in range(11):  # more than CPython's 10 middle-generation collections
            gc.collect(1)
        assert gc.get_count()[2] >= 10
        pacer.idle()
        assert full_collections == [1]
        assert pacer.collections == 1
        assert gc.get_count()[2] == 0


def test_idle_waits_for_the_minimum_interval(full_collections: list[int]) -> None:
    with installed(CollectionPacer(min_interval_s=3600.0, max_interval_s=7200.0)) as pacer:
        for _ in range(11):
            gc.collect(1)
        full_collections.clear()
        pacer.idle()
        assert full_collections == []


def test_idle_collects_after_the_maximum_interval_regardless(full_collections: list[int]) -> None:
    with installed(CollectionPacer(min_interval_s=0.0, max_interval_s=0.0)) as pacer:
        gc.collect()
        full_collections.clear()
        pacer.idle()
        assert full_collections == [1]


def test_a_collection_freezes_its_survivors_so_the_next_walks_only_newcomers() -> None:
    with installed(
        CollectionPacer(min_interval_s=0.0, max_interval_s=3600.0, thaw_interval_s=3600.0)
    ) as pacer:
        gc.unfreeze()
        survivors = [[index] for index in range(1000)]
        for _ in range(11):
            gc.collect(1)  # promotes them to the oldest generation
        frozen_before = gc.get_freeze_count()
        pacer.idle()
        assert gc.get_freeze_count() >= frozen_before + len(survivors)
        assert not any(item is survivors for item in gc.get_objects(generation=2))
        # New garbage cycles are still found: they are not frozen yet.
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1


def test_a_thaw_unfreezes_before_collecting_so_the_whole_heap_is_walked() -> None:
    with installed(
        CollectionPacer(min_interval_s=0.0, max_interval_s=0.0, thaw_interval_s=0.0)
    ) as pacer:
        gc.freeze()
        cycle: list[object] = []
        cycle.append(cycle)
        gc.freeze()  # a cycle frozen while alive, then dropped: only a thaw finds it
        del cycle
        collected: list[int] = []

        def hook(phase: str, info: dict[str, int]) -> None:
            if phase == "stop" and info["generation"] == 2:
                collected.append(info["collected"])

        gc.callbacks.append(hook)
        try:
            pacer.idle()
        finally:
            gc.callbacks.remove(hook)
        assert pacer.thaws == 1
        assert collected and collected[0] >= 1
