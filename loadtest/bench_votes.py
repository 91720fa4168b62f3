"""Votes against reactions through one ingest process and one worker, in the same run.

Real processes on loopback: ``emostream ingest`` and ``emostream worker`` against a private
Redis. wrk posts reactions, then votes, then each again 100 to a POST, for the same time each,
every request from users never seen before (the bodies are made in wrk's Lua, one new user
id per response), so every vote is a ballot written, not a duplicate skipped. A phase's rate
is what was accepted divided by the time from its first request until the worker had counted
and acknowledged all of it (no lag, nothing pending): what one ingest process and one worker
carry together. The poll is a plain one-vote-per-user poll with results live. Run with the
per-user rate limit off (the pipeline itself: votes never pass it) and on (as deployed).

Issue 14's goal: votes/s at least half of reactions/s.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from typing import Any

import httpx
from redis.asyncio import Redis

from emostream import keys
from emostream.redis_server import PrivateRedis, free_port

from .procs import child, child_env

SHARDS = 4
ADMIN = "bench-admin"
EVENT, POLL = "bench", "mvp"
OPTIONS = ["A", "B", "C", "D"]
CONNECTIONS = 32
MARKER = "WRKJSON "
BEGIN, END = "<!-- votes:begin -->", "<!-- votes:end -->"

WRK_SCRIPT = """
local kind, per_post, counter = "%(kind)s", %(per_post)d, 0
local prefix
local emojis = {"\\240\\159\\148\\165", "\\240\\159\\152\\130", "\\240\\159\\145\\143"}
local options = {"A", "B", "C", "D"}
function init(args)
  math.randomseed(os.time())
  prefix = string.format("w%%d-", math.random(1, 1000000000))
end
function request()
  local items = {}
  for i = 1, per_post do
    counter = counter + 1
    if kind == "votes" then
      items[i] = string.format('{"user_id":"%%s%%d","option":"%%s"}', prefix, counter,
        options[counter %% 4 + 1])
    else
      items[i] = string.format('{"user_id":"%%s%%d","emoji":"%%s"}', prefix, counter,
        emojis[counter %% 3 + 1])
    end
  end
  local body = per_post == 1 and items[1] or ("[" .. table.concat(items, ",") .. "]")
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format('%(marker)s{"requests": %%d, "duration_us": %%d, "errors": %%d}\\n',
    summary.requests, summary.duration, errors))
end
"""


def wrk(url: str, kind: str, per_post: int, seconds: float) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise RuntimeError("the votes benchmark needs wrk (apt-get install wrk)")
    script_text = WRK_SCRIPT % {"kind": kind, "per_post": per_post, "marker": MARKER}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(script_text)
    try:
        completed = subprocess.run(
            ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{round(seconds)}s", "--timeout", "5s"]
            + ["-s", script.name, url],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=False,
        )
    finally:
        os.unlink(script.name)
    for line in completed.stdout.splitlines():
        if line.startswith(MARKER):
            data: dict[str, Any] = json.loads(line[len(MARKER) :])
            return data
    raise RuntimeError(f"wrk gave no result: {completed.stdout}\n{completed.stderr}")


async def drained(redis: Redis) -> bool:
    """Every raw entry appended so far is counted and acknowledged."""
    for shard in range(SHARDS):
        groups: Any = await redis.xinfo_groups(keys.raw_stream(shard))
        for group in groups:
            if group["name"] == keys.AGGREGATORS_GROUP.encode() and (
                group["pending"] or group.get("lag")
            ):
                return False
    return True


async def phase(
    redis_url: str, url: str, kind: str, per_post: int, seconds: float
) -> dict[str, Any]:
    redis = Redis.from_url(redis_url)
    started = time.monotonic()
    load = await asyncio.to_thread(wrk, url, kind, per_post, seconds)
    while not await drained(redis):
        await asyncio.sleep(0.02)
        if time.monotonic() - started > seconds + 120:
            raise RuntimeError("the worker never caught up")
    # The flush interval (500 ms) ends every phase: the last batch waits for it.
    through_s = time.monotonic() - started
    await redis.aclose()
    accepted = (load["requests"] - load["errors"]) * per_post
    return {
        "kind": kind,
        "per_post": per_post,
        "accepted": accepted,
        "errors": load["errors"],
        "accepted_per_s": accepted / (load["duration_us"] / 1e6),
        "through_per_s": accepted / through_s,
    }


async def poll_total(base: str) -> int:
    async with httpx.AsyncClient() as client:
        response = await client.get(
            f"{base}/v1/events/{EVENT}/polls/{POLL}", headers={"Authorization": f"Bearer {ADMIN}"}
        )
    return int(response.json()["total"])


# (name, EMOSTREAM_USER_RATE, responses per POST): the pipeline alone, then as deployed. The
# per-user rate limit (ingest/limits.py) applies to reactions only, and with every user new
# it keeps a bucket and a shared counter per user: its cost is shown apart.
CONFIGS = (("rate limit off", "0", (1, 100)), ("rate limit on", "1e9", (100,)))


def _one_config(
    limit: str, shapes: tuple[int, ...], seconds: float, repeats: int
) -> tuple[list[dict[str, Any]], int]:
    runs: list[dict[str, Any]] = []
    with PrivateRedis() as redis:
        env = child_env(
            redis.url,
            EMOSTREAM_SHARDS=str(SHARDS),
            EMOSTREAM_ADMIN_TOKEN=ADMIN,
            EMOSTREAM_USER_RATE=limit,
        )
        port, delivery_port = free_port(), free_port()
        base = f"http://127.0.0.1:{port}"
        reads = f"http://127.0.0.1:{delivery_port}"
        with (
            child(["-m", "emostream", "ingest", "--port", str(port)], env, base),
            child(["-m", "emostream", "worker"], env),
            child(["-m", "emostream", "delivery", "--port", str(delivery_port)], env, reads),
        ):
            auth = {"Authorization": f"Bearer {ADMIN}"}
            poll_url = f"{base}/v1/events/{EVENT}/polls/{POLL}"
            httpx.put(poll_url, json={"question": "?", "options": OPTIONS}, headers=auth)
            httpx.post(f"{poll_url}/open", headers=auth).raise_for_status()
            time.sleep(0.5)
            urls = {
                "reactions": f"{base}/v1/events/{EVENT}/reactions",
                "votes": f"{poll_url}/votes",
            }
            for _ in range(repeats):
                for per_post in shapes:
                    for kind in ("reactions", "votes"):
                        result = asyncio.run(phase(redis.url, urls[kind], kind, per_post, seconds))
                        runs.append(result)
                        accepted, through = result["accepted_per_s"], result["through_per_s"]
                        print(
                            f"  {kind:9} x{per_post:<3}: accepted {accepted:>9,.0f}/s, "
                            f"through ingest+worker {through:>9,.0f}/s",
                            flush=True,
                        )
            counted = asyncio.run(poll_total(reads))
    return runs, counted


def run(quick: bool) -> dict[str, Any]:
    seconds = 8.0 if quick else 15.0
    repeats = 1 if quick else 3
    table = []
    voted = counted = 0
    for name, limit, shapes in CONFIGS:
        print(f"  {name}:", flush=True)
        runs, poll_counted = _one_config(limit, shapes, seconds, repeats)
        counted += poll_counted
        voted += sum(r["accepted"] for r in runs if r["kind"] == "votes")
        for per_post in shapes:
            row: dict[str, Any] = {"config": name, "per_post": per_post}
            for kind in ("reactions", "votes"):
                picked = [r for r in runs if r["kind"] == kind and r["per_post"] == per_post]
                row[kind] = statistics.median(r["through_per_s"] for r in picked)
                row[f"{kind}_accepted"] = statistics.median(r["accepted_per_s"] for r in picked)
            row["ratio"] = row["votes"] / row["reactions"]
            table.append(row)
    return {
        "seconds": seconds,
        "repeats": repeats,
        "connections": CONNECTIONS,
        "table": table,
        "votes_sent": voted,
        "votes_counted": counted,
    }


def render(results: dict[str, Any], date: str, command: str) -> str:
    lines = [
        "",
        "## Votes against reactions",
        "",
        f"`{command}`, {date}: one `emostream ingest` process and one `emostream worker`, "
        f"{results['connections']} wrk connections, {results['seconds']:.0f} s per phase, "
        f"median of {results['repeats']}. Every response from a user never seen before (every "
        "vote writes a ballot). A rate is what was accepted over the time until the worker had "
        "counted all of it. Issue 14's goal: votes/s at least half of reactions/s. "
        f"Load average at the end: {os.getloadavg()[0]:.1f} (other work shares the machine).",
        "",
        "| ingest | per POST | reactions/s | votes/s | votes / reactions "
        "| accepted by ingest: reactions/s, votes/s |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for row in results["table"]:
        lines.append(
            f"| {row['config']} | {row['per_post']} | {row['reactions']:,.0f} | "
            f"{row['votes']:,.0f} | {row['ratio']:.2f} | "
            f"{row['reactions_accepted']:,.0f}, {row['votes_accepted']:,.0f} |"
        )
    lines += [
        "",
        "The per-user rate limit (ingest/limits.py) checks reactions only: with every user new "
        "it keeps a bucket and a shared Redis counter per user, which the last row prices. "
        f"Votes accepted over all phases: {results['votes_sent']:,}; counted in the polls: "
        f"{results['votes_counted']:,} (one per user, every user new; the count is the higher "
        "by the requests still in flight when wrk stopped, which it does not count).",
        "",
    ]
    return "\n".join(lines)


def section(report_text: str, block: str | None) -> str:
    """The votes block between its markers: ``block`` when given, else what the report had."""
    kept = ""
    if BEGIN in report_text and END in report_text:
        kept = report_text.split(BEGIN, 1)[1].split(END, 1)[0]
    return f"\n{BEGIN}{block if block is not None else kept}{END}\n"
