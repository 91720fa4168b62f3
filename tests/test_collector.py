"""The collection pacer: CPython's automatic full collections off, run between windows."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from emostream.deliver.collector import NEVER, CollectionPacer


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
    pacer = CollectionPacer()
    pacer.install()
    try:
        assert gc.get_threshold() == (before[0], before[1], NEVER)
    finally:
        pacer.uninstall()
    assert gc.get_threshold() == before


def test_idle_collects_only_when_due(full_collections: list[int]) -> None:
    pacer = CollectionPacer(min_interval_s=0.0, max_interval_s=3600.0)
    pacer.install()
    try:
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
    finally:
        pacer.uninstall()


def test_idle_waits_for_the_minimum_interval(full_collections: list[int]) -> None:
    pacer = CollectionPacer(min_interval_s=3600.0, max_interval_s=7200.0)
    pacer.install()
    try:
        for _ in range(11):
            gc.collect(1)
        full_collections.clear()
        pacer.idle()
        assert full_collections == []
    finally:
        pacer.uninstall()


def test_idle_collects_after_the_maximum_interval_regardless(full_collections: list[int]) -> None:
    pacer = CollectionPacer(min_interval_s=0.0, max_interval_s=0.0)
    pacer.install()
    try:
        gc.collect()
        full_collections.clear()
        pacer.idle()
        assert full_collections == [1]
    finally:
        pacer.uninstall()
