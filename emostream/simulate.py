"""`emostream simulate`: a reaction generator that posts to a running system.

It prints exactly what was accepted per emoji (only 202 answers count), so anyone can compare
the swarm's totals with what was sent.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

DEFAULT_MIX = "🔥:5,😂:3,👏:2,❤️:1,😮:1"
TICK_S = 0.1


def parse_mix(text: str) -> dict[str, float]:
    """``"🔥:5,😂:3"`` -> weights; a bare emoji weighs 1."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        emoji, _, weight = part.partition(":")
        mix[emoji.strip()] = float(weight) if weight else 1.0
    if not mix or any(w <= 0 for w in mix.values()):
        raise ValueError(f"bad emoji mix {text!r}: want emoji:weight pairs with weights > 0")
    return mix


@dataclass
class Report:
    sent: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    rejected: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    started_ms: int = 0
    finished_ms: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": dict(self.sent.most_common()),
            "total": sum(self.sent.values()),
            "requests": self.requests,
            "rejected": {str(k): v for k, v in self.rejected.items()},
            "errors": self.errors,
            "started_ms": self.started_ms,
            "finished_ms": self.finished_ms,
        }


async def simulate(
    url: str,
    event_id: str = "live",
    users: int = 50,
    rate: float = 200.0,
    duration_s: float = 10.0,
    batch: int = 1,
    mix: dict[str, float] | None = None,
    seed: int | None = None,
    concurrency: int = 32,
) -> Report:
    mix = mix or parse_mix(DEFAULT_MIX)
    rng = random.Random(seed)
    emojis, weights = list(mix), list(mix.values())
    endpoint = f"{url.rstrip('/')}/v1/events/{event_id}/reactions"
    report = Report(started_ms=int(time.time() * 1000))
    limit = asyncio.Semaphore(concurrency)
    pending: set[asyncio.Task[None]] = set()

    async def post(client: httpx.AsyncClient, reactions: list[dict[str, str]]) -> None:
        async with limit:
            try:
                response = await client.post(
                    endpoint, json=reactions if batch > 1 else reactions[0]
                )
            except httpx.HTTPError:
                report.errors += 1
                return
            report.requests += 1
            if response.status_code == 202:
                report.sent.update(r["emoji"] for r in reactions)
            else:
                report.rejected[response.status_code] += 1

    loop = asyncio.get_running_loop()
    start = loop.time()
    owed = 0.0
    async with httpx.AsyncClient(timeout=10.0) as client:
        while loop.time() - start < duration_s:
            owed += rate * TICK_S
            count, owed = int(owed), owed - int(owed)
            reactions = [
                {"user_id": f"user-{rng.randrange(users)}", "emoji": emoji}
                for emoji in rng.choices(emojis, weights, k=count)
            ]
            for i in range(0, len(reactions), batch):
                task = asyncio.create_task(post(client, reactions[i : i + batch]))
                pending.add(task)
                task.add_done_callback(pending.discard)
            await asyncio.sleep(TICK_S)
        await asyncio.gather(*pending)
    report.finished_ms = int(time.time() * 1000)
    return report


def print_report(report: Report) -> None:
    print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
