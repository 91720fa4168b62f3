"""The `emostream` command: up | ingest | worker | delivery | simulate | watch | recount."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence

from . import roles, serving
from .errors import EmostreamError
from .settings import Settings
from .simulate import DEFAULT_MIX, parse_mix, print_report, simulate
from .watch import DEFAULT_URL, run_watch

Runner = Callable[[Settings, asyncio.Event], Awaitable[None]]
RUNNERS: dict[str, Runner] = {
    "up": roles.run_up,
    "ingest": roles.run_ingest,
    "worker": roles.run_worker,
    "delivery": roles.run_delivery,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emostream", description="Live audience reactions over Redis Streams."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    descriptions = {
        "up": "ingest, worker and delivery on one port (a private Redis if no EMOSTREAM_REDIS_URL)",
        "ingest": "the ingest role: POST reactions, buffered and flushed to Redis",
        "worker": "the worker role: windowed counts, closes and publishes windows",
        "delivery": "the delivery role: SSE swarm stream and window history",
    }
    for name, text in descriptions.items():
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument("--redis-url", help="overrides EMOSTREAM_REDIS_URL")
        if name != "worker":
            command.add_argument("--host", help="bind address (default 127.0.0.1)")
            command.add_argument("--port", type=int, help="port (default 8000)")
        if name == "up":
            keep = command.add_mutually_exclusive_group()
            keep.add_argument(
                "--data-dir",
                help="where the private Redis persists its data (overrides EMOSTREAM_DATA_DIR; "
                "default $XDG_DATA_HOME/emostream or ~/.local/share/emostream)",
            )
            keep.add_argument(
                "--ephemeral",
                action="store_true",
                help="keep the private Redis's data in a temporary directory, removed at exit",
            )
    recount = commands.add_parser(
        "recount",
        help="recompute a frozen poll from its votes; exit 0 only if it equals the frozen one",
    )
    recount.add_argument("event_id")
    recount.add_argument("poll_id")
    recount.add_argument("--redis-url", help="overrides EMOSTREAM_REDIS_URL")
    sim = commands.add_parser("simulate", help="post generated reactions to a running system")
    sim.add_argument("--url", default="http://127.0.0.1:8000")
    sim.add_argument("--event", default="live")
    sim.add_argument("--users", type=int, default=50)
    sim.add_argument("--rate", type=float, default=200.0, help="reactions per second")
    sim.add_argument("--duration", type=float, default=10.0, help="seconds")
    sim.add_argument("--batch", type=int, default=1, help="reactions per POST")
    sim.add_argument("--emojis", default=DEFAULT_MIX, help="emoji:weight,... (the mix)")
    sim.add_argument("--seed", type=int)
    watch = commands.add_parser(
        "watch",
        help="print an event's swarm windows as they close",
        description="Print an event's swarm windows as they close, one line each; resumes "
        "after a drop with Last-Event-ID.",
    )
    watch.add_argument("event", help="the event id, e.g. live")
    watch.add_argument("--url", default=DEFAULT_URL, help="a delivery node or `emostream up`")
    watch.add_argument("--json", action="store_true", help="each window object as a JSON line")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "watch":  # its output is the windows: no request log in between
        return run_watch(args.url, args.event, args.json)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "simulate":
        report = asyncio.run(
            simulate(
                args.url,
                args.event,
                args.users,
                args.rate,
                args.duration,
                args.batch,
                parse_mix(args.emojis),
                args.seed,
            )
        )
        print_report(report)
        return 0
    if args.command == "recount":
        return _recount(args.event_id, args.poll_id, args.redis_url)
    try:
        overrides = {k: getattr(args, k, None) for k in ("redis_url", "host", "port", "data_dir")}
        if getattr(args, "ephemeral", False):
            overrides["data_dir"] = ""
        settings = Settings.from_env(**overrides)
        logging.getLogger("emostream").info("%s: %s", args.command, settings.describe())
        serving.run_on_fastest_loop(_run(RUNNERS[args.command], settings))
    except EmostreamError as exc:
        print(f"emostream: {exc}", file=sys.stderr)
        return 2
    return 0


def _recount(event_id: str, poll_id: str, redis_url: str | None) -> int:
    from .connection import connect_for
    from .polls.recount import recount, report

    try:
        settings = Settings.from_env(redis_url=redis_url)
        if settings.redis_url is None:
            raise EmostreamError("recount needs EMOSTREAM_REDIS_URL (or --redis-url)")

        async def run() -> int:
            redis = await connect_for(settings)
            try:
                result = await recount(redis, settings, event_id, poll_id)
            finally:
                await redis.aclose()
            print(report(result))
            return 0 if result.agrees else 1

        return asyncio.run(run())
    except (EmostreamError, LookupError) as exc:
        print(f"emostream: {exc}", file=sys.stderr)
        return 2


async def _run(runner: Runner, settings: Settings) -> None:
    stop = asyncio.Event()
    serving.stop_on_signals(stop)
    # Everything allocated at start-up is long-lived: keep it out of the collector's full
    # passes, which paused delivery ~1.5 s with 10k connections in our measurements.
    gc.collect()
    gc.freeze()
    await runner(settings, stop)


if __name__ == "__main__":
    sys.exit(main())
