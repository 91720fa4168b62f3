"""The Lua scripts of lua/, each registered once per client (EVALSHA, reloaded on NOSCRIPT)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from redis.asyncio import Redis
from redis.commands.core import AsyncScript


def lua_source(name: str) -> str:
    return resources.files("emostream.lua").joinpath(f"{name}.lua").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Scripts:
    flush_batch: AsyncScript
    apply_batch: AsyncScript
    close_window: AsyncScript

    @classmethod
    def register(cls, redis: Redis) -> Scripts:
        return cls(
            flush_batch=redis.register_script(lua_source("flush_batch")),
            apply_batch=redis.register_script(lua_source("apply_batch")),
            close_window=redis.register_script(lua_source("close_window")),
        )
