"""A write started by hand and made to wait is finished, or cancelled, by another task."""

from __future__ import annotations

import asyncio

import pytest

from emostream.deliver.stream import _Resumed

pytestmark = pytest.mark.anyio


async def test_a_suspended_write_is_finished_by_the_awaiting_task() -> None:
    gate = asyncio.get_running_loop().create_future()
    steps: list[str] = []

    async def write() -> None:
        steps.append("began")
        steps.append(f"got {await gate}")
        await asyncio.sleep(0)  # a bare yield on the way is fine too
        steps.append("finished")

    coroutine = write()
    waiting_on = coroutine.send(None)
    assert waiting_on is gate and steps == ["began"]
    task = asyncio.create_task(_wait(_Resumed(coroutine, waiting_on)))
    await asyncio.sleep(0.01)
    assert not task.done(), "the task must sleep until the future is done"
    gate.set_result("room")
    await asyncio.wait_for(task, 1)
    assert steps == ["began", "got room", "finished"]


async def test_cancelling_the_awaiting_task_cancels_the_write() -> None:
    gate = asyncio.get_running_loop().create_future()
    seen: list[str] = []

    async def write() -> None:
        try:
            await gate
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    coroutine = write()
    task = asyncio.create_task(_wait(_Resumed(coroutine, coroutine.send(None))))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["cancelled"]
    assert gate.cancelled()


async def _wait(resumed: _Resumed) -> None:
    await resumed
