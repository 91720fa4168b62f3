"""Small mechanisms every role uses, written once: who this process is, a pause that a stop
cuts short, and a long-lived background loop tied to a ``with`` block."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Protocol, TypeVar


def instance_id() -> str:
    """A name for one producer, worker or delivery node: host and pid for a reader, plus a
    random part so two instances in one process (tests, `emostream up`) never collide."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


async def sleep_unless(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` or until ``stop`` is set, whichever is first; True if stopped."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=max(seconds, 0))
    except TimeoutError:
        return False
    return True


@contextlib.asynccontextmanager
async def running(
    name: str, run: Callable[[asyncio.Event], Coroutine[Any, Any, None]]
) -> AsyncIterator[None]:
    """``run(stop)`` as a task for the block's duration; on leaving, ``stop`` is set and the
    task awaited, so its own shutdown (a last flush, a deregistration) completes and its
    exception, if any, is raised here instead of being lost."""
    stop = asyncio.Event()
    task = asyncio.create_task(run(stop), name=name)
    try:
        yield
    finally:
        stop.set()
        await task


class Service(Protocol):
    """A long-lived piece that runs until its ``stop`` is set."""

    async def run(self, stop: asyncio.Event) -> None: ...


S = TypeVar("S", bound=Service)


@contextlib.asynccontextmanager
async def serving(name: str, service: S) -> AsyncIterator[S]:
    """``running(name, service.run)``, handing the block ``service``."""
    async with running(name, service.run):
        yield service


async def all_or_first_failure(*steps: Coroutine[Any, Any, None]) -> None:
    """Run ``steps`` as tasks until all are done, or until one raises: then the others are
    cancelled and awaited, and its exception is raised here."""
    tasks = [asyncio.create_task(step) for step in steps]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
