"""Fan-out benchmark: emostream's delivery process against nginx + nchan, same client, one run.

For each server, in turn: start it (one process / one nginx worker) on loopback, note its RSS,
connect ``--clients`` SSE streams from ``--client-procs`` client processes
(``loadtest.fanout_client``), publish ``--publishes`` windows ``--interval-s`` apart and record
when every client received each one. Figures, per server:

- memory per connection: server RSS delta (before connecting -> after the publishes) / clients;
- CPU per delivered message: server utime+stime delta over the publishes / (windows x clients);
- publish -> last client received: p50 / p99 over the windows, and the largest gap between
  consecutive receipts (a stall of the server shows up there).

emostream is sent real window records: the msgpack array of ``lua/close_window.lua``, XADDed
to the event's history and PUBLISHed on ``emostream:windows`` of a private Redis, as the
closer does. nchan is POSTed the same JSON object its clients then receive.

Our delivery runs as ``emostream delivery`` (its CLI ``main``; uvicorn unless
``EMOSTREAM_SERVER`` says hypercorn) inside a thin
wrapper that logs every full garbage collection and obeys SIGUSR1 (run ``gc.collect()`` now),
SIGUSR2 (``gc.freeze()`` now) and SIGHUP (count the tracked objects), for the GC phase: a
series of windows during which a full collection is forced with the clients connected, before
and after freezing them.

    python -m loadtest.bench_fanout [--quick] [--clients N] [--no-write] [--profile FILE]

``--profile FILE`` runs py-spy on the delivery process over the measured windows
(``fanout_profile``: collapsed stacks in FILE, a summary on stderr).

This module runs the benchmark; the pieces live beside it: ``fanout_servers`` (the two
servers, the windows, /proc), ``fanout_client`` (one client process), ``fanout_measure``
(clients, publishing, what the receipts show) and ``fanout_report`` (the doc and its figure).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from emostream.redis_server import PrivateRedis
from emostream.settings import Settings

from .fanout_measure import measure
from .fanout_profile import summary
from .fanout_report import NOTES_MARKER, brief, machine, markdown, plot, versions
from .fanout_servers import (
    NCHAN_MODULE,
    ROOT,
    Delivery,
    Nchan,
    loadavg,
    raise_nofile,
    serve_delivery,
    window_json,
)

DOC = ROOT / "docs" / "benchmarks-delivery.md"
LOAD_LIMIT = 3.0


# -- the report ------------------------------------------------------------------------------


def wait_for_quiet(limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while float(loadavg().split()[0]) > LOAD_LIMIT and time.monotonic() < deadline:
        print(f"load {loadavg()} above {LOAD_LIMIT}; waiting", file=sys.stderr, flush=True)
        time.sleep(min(30.0, max(0.0, deadline - time.monotonic())))


def run(args: argparse.Namespace) -> dict[str, Any]:
    raise_nofile()
    wait_for_quiet(args.wait_load_s)
    report: dict[str, Any] = {"command": args.command_line, "machine": machine()}
    report["load_before"] = loadavg()
    rounds: dict[str, list[dict[str, Any]]] = {"nchan": [], "ours": []}
    for index in range(args.rounds):
        # Alternate which server goes first, so a machine getting busier (or quieter) over
        # the run weighs on both alike; the GC phase runs once, in the last round.
        order = ("nchan", "ours") if index % 2 == 0 else ("ours", "nchan")
        last = index == args.rounds - 1
        for name in order:
            with PrivateRedis() as redis_server:
                settings = Settings.from_env({"EMOSTREAM_REDIS_URL": redis_server.url})
                if name == "nchan":
                    nchan = Nchan(settings)
                    report.setdefault("versions", versions(nchan))
                    rounds[name].append(_measured(nchan, args, gc_phase=False))
                else:
                    delivery = Delivery(settings, redis_server.url)
                    rounds[name].append(_measured(delivery, args, gc_phase=args.gc_phase and last))
    report["nchan"] = median_result(rounds["nchan"])
    report["ours"] = median_result(rounds["ours"])
    report["round_results"] = [
        {"nchan": brief(theirs), "ours": brief(ours)}
        for theirs, ours in zip(rounds["nchan"], rounds["ours"], strict=True)
    ]
    if args.profile is not None and args.profile.exists():
        print(summary(args.profile.read_text()), file=sys.stderr, flush=True)
    report["load_after"] = loadavg()
    return report


def _measured(server: Nchan | Delivery, args: argparse.Namespace, gc_phase: bool) -> dict[str, Any]:
    try:
        server.start()
        result = measure(server, argparse.Namespace(**{**vars(args), "gc_phase": gc_phase}))
    except BaseException:
        if isinstance(server, Delivery):
            sys.stderr.write(server.tail())
        raise
    finally:
        server.stop()
    print(json.dumps(brief(result)), file=sys.stderr, flush=True)
    return result


def median_result(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One server's rounds as one result: every figure the median of its rounds' (each
    round's own p99, not a p99 over all windows), the per-window lists concatenated, and
    what only one round has (the GC phase) from that round."""
    merged: dict[str, Any] = {}
    for result in results:
        for key, value in result.items():
            if isinstance(value, list):
                merged.setdefault(key, []).extend(value)
            elif isinstance(value, bool) or not isinstance(value, int | float):
                merged.setdefault(key, value)
                if isinstance(value, dict):
                    merged[key] = value
            else:
                values = [r[key] for r in results if isinstance(r.get(key), int | float)]
                merged[key] = statistics.median(values)
    merged["rounds"] = len(results)
    return merged


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="SSE fan-out: emostream delivery vs nchan.")
    parser.add_argument("--quick", action="store_true", help="1,000 clients, a short run")
    parser.add_argument("--clients", type=int)
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--publishes", type=int)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--interval-s", type=float, help="between windows (full: 2, quick: 0.5)")
    parser.add_argument(
        "--settle-s", type=float, default=60.0, help="longest wait for late windows"
    )
    parser.add_argument("--gc-interval-s", type=float, default=0.1)
    parser.add_argument("--gc-windows", type=int, default=12)
    parser.add_argument("--no-gc-phase", dest="gc_phase", action="store_false")
    parser.add_argument(
        "--rounds",
        type=int,
        help="measure each server this many times, alternating; figures are the medians "
        "(full: 3, quick: 1)",
    )
    parser.add_argument("--wait-load-s", type=float, help="wait this long for load < 3")
    parser.add_argument("--no-write", action="store_true", help="print, do not write the doc")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy the delivery process over the measured windows; raw stacks written here",
    )
    args = parser.parse_args(argv)
    if args.clients is None:
        args.clients = 1000 if args.quick else 10_000
    if args.publishes is None:
        args.publishes = 10 if args.quick else 30
    if args.interval_s is None:
        args.interval_s = 0.5 if args.quick else 2.0
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.wait_load_s is None:
        args.wait_load_s = 0.0 if args.quick else 600.0
    if args.quick:
        args.settle_s = min(args.settle_s, 15.0)
    return args


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["serve-delivery"]:
        serve = argparse.ArgumentParser()
        serve.add_argument("--port", type=int, required=True)
        serve.add_argument("--gc-log", required=True)
        options = serve.parse_args(arguments[1:])
        return serve_delivery(options.port, options.gc_log)
    if not Path(NCHAN_MODULE).exists():
        print("nchan is missing: apt-get install -y nginx libnginx-mod-nchan", file=sys.stderr)
        return 2
    args = parse_args(arguments)
    args.command_line = "python -m loadtest.bench_fanout " + " ".join(arguments)
    report = run(args)
    settings = Settings()
    report.update(
        clients=args.clients,
        client_procs=args.client_procs,
        rounds=args.rounds,
        warmup=args.warmup,
        publishes=args.publishes,
        interval_s=args.interval_s,
        gc_interval_s=args.gc_interval_s,
        gc_windows=args.gc_windows,
        payload_bytes=len(window_json(settings, 1)),
    )
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1))
    text = markdown(report)
    if args.no_write:
        print(text)
    else:
        kept = ""
        if DOC.exists() and NOTES_MARKER in DOC.read_text():
            kept = DOC.read_text().split(NOTES_MARKER, 1)[1].lstrip("\n")
        figure = DOC.parent / "bench-fanout-latency.png"
        if plot(report, figure):
            text = text.replace(
                NOTES_MARKER,
                f"![publish to last client per window]({figure.name})\n\n" + NOTES_MARKER,
            )
        DOC.write_text(text + kept)
        print(f"wrote {DOC.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
