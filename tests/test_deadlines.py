"""Deadlines checked in one sweep a tick, and the fast path's timed body read built on them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from emostream.bodies import TimedBodies, drain, read_body
from emostream.deadlines import Deadlines
from emostream.errors import BodyTooLarge, RequestTimeout
from emostream.lifecycle import running


def test_only_the_late_expire_once() -> None:
    deadlines = Deadlines()
    expired: list[str] = []
    for key, due in (("early", 1.0), ("late", 5.0), ("met", 2.0)):
        deadlines.add(key, due, expired.append)
    deadlines.discard("met")  # done in time
    assert deadlines.expire_due(0.5) == 0
    assert deadlines.expire_due(3.0) == 1 and expired == ["early"]
    assert deadlines.expire_due(3.0) == 0, "expired once"
    assert deadlines.expire_due(9.0) == 1 and expired == ["early", "late"]
    assert len(deadlines) == 0


def body_messages(*chunks: bytes) -> Any:
    messages = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()  # a client that sends nothing more
        raise AssertionError("unreachable")

    return receive


@pytest.mark.anyio
async def test_a_body_is_capped_while_read_and_drained() -> None:
    assert await read_body(body_messages(b"ab", b"cd"), 4) == b"abcd"
    with pytest.raises(BodyTooLarge):
        await read_body(body_messages(b"ab", b"cde", b"never read"), 4)
    assert await drain(body_messages(b"x" * 10, b"y" * 10), 100) is True
    assert await drain(body_messages(b"x" * 10, b"y" * 10, b"z"), 5) is False, "bounded"


@pytest.mark.anyio
async def test_a_stalled_body_read_ends_in_408_and_a_prompt_one_is_untouched() -> None:
    deadlines = Deadlines(tick_s=0.01)
    bodies = TimedBodies(deadlines, timeout_s=0.05)
    async with running("deadlines", deadlines.run):
        assert await bodies.read(body_messages(b"ok"), 100) == b"ok"
        with pytest.raises(RequestTimeout):
            await bodies.read(stalling_after(b"half"), 100)
        assert len(deadlines) == 0
        # The task that timed out was uncancelled: it goes on, and can still answer.
        await asyncio.sleep(0)


def stalling_after(chunk: bytes) -> Any:
    """A body that stops arriving after its first chunk."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": chunk, "more_body": True}
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    return receive
