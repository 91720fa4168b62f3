"""Prometheus metrics: one registry per process, read at scrape time.

Every figure is a counter or a level the roles already keep for their own work (the
acceptor's tallies, the flusher's written count, the worker's counters, the hub's
connections); a collector reads them when Prometheus scrapes, so the hot paths pay nothing
beyond the integer they already add to. Ingest and delivery serve ``GET /metrics`` on their
HTTP port; a worker, which serves no HTTP, on ``EMOSTREAM_METRICS_PORT``. In `emostream up`
every role lives in one process and one registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .aggregate.worker import Worker
    from .deliver.collector import CollectionPacer
    from .deliver.hub import Hub
    from .ingest.accept import Acceptor
    from .ingest.buffer import ReactionBuffer
    from .ingest.flusher import Flusher

PREFIX = "emostream_"
Sample = tuple[tuple[str, ...], float]


@dataclass(frozen=True)
class Family:
    """One metric: its name without the prefix, help, kind and how to read its samples
    (label values, value) now. Labels name what the label values mean."""

    name: str
    help: str
    read: Callable[[], Iterable[Sample]]
    labels: tuple[str, ...] = ()
    counter: bool = False

    def collect(self) -> Metric:
        kind = CounterMetricFamily if self.counter else GaugeMetricFamily
        metric = kind(PREFIX + self.name, self.help, labels=list(self.labels))
        for label_values, value in self.read():
            metric.add_metric(list(label_values), value)
        return metric


def counter(name: str, help_text: str, read: Callable[[], float]) -> Family:
    """A family with one unlabelled sample that only grows."""
    return Family(name, help_text, lambda: [((), read())], counter=True)


def gauge(name: str, help_text: str, read: Callable[[], float]) -> Family:
    """A family with one unlabelled sample that goes up and down."""
    return Family(name, help_text, lambda: [((), read())])


@dataclass(eq=False)  # the registry keys its collectors by identity
class Metrics(Collector):
    """The process's registry and the families each running role added to it."""

    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry())
    families: list[Family] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.registry.register(self)

    def add(self, *families: Family) -> None:
        self.families.extend(families)

    def collect(self) -> Iterator[Metric]:
        for family in self.families:
            yield family.collect()

    @contextmanager
    def served(self, host: str, port: int) -> Iterator[None]:
        """Serve ``/metrics`` on ``port`` from a thread (prometheus-client's own server) for a
        role without an HTTP app of its own; port 0 serves nothing."""
        if not port:
            yield
            return
        server, thread = start_http_server(port, host, registry=self.registry)
        try:
            yield
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

    def exposition(self) -> tuple[bytes, str]:
        """The text format and its content type, for a ``/metrics`` response."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def ingest_families(acceptor: Acceptor, buffer: ReactionBuffer, flusher: Flusher) -> list[Family]:
    limiter = acceptor.limiter
    limits = [] if limiter is None else [c for c in (limiter.users, limiter.addresses) if c]
    return [
        counter(
            "reactions_accepted_total",
            "Reactions answered 2xx and buffered for the next flush.",
            lambda: acceptor.accepted,
        ),
        Family(
            "requests_rejected_total",
            "Reaction requests refused, by the error code of the answer.",
            lambda: [((code,), count) for code, count in acceptor.refused.items()],
            labels=("code",),
            counter=True,
        ),
        gauge(
            "events_known",
            "Events counted against EMOSTREAM_MAX_ACTIVE_EVENTS: the active events Redis "
            "showed at the last refresh, plus those admitted here since.",
            lambda: flusher.events.known,
        ),
        gauge(
            "buffer_held_reactions",
            "Accepted reactions not yet written to Redis (buffered or waiting for a retry).",
            lambda: buffer.held,
        ),
        gauge(
            "buffer_capacity_reactions",
            "Reactions the buffer holds before ingest answers 503.",
            lambda: buffer.capacity,
        ),
        counter("flushes_total", "Flushes of the buffer to Redis.", lambda: flusher.flushes),
        counter(
            "flush_seconds_total",
            "Seconds spent flushing, in all (divide by flushes_total for the mean).",
            lambda: flusher.flush_seconds,
        ),
        counter(
            "flushed_reactions_total",
            "Reactions written to the raw streams.",
            lambda: flusher.reactions_written,
        ),
        Family(
            "rate_limit_keys",
            "Keys counted by the rate limits in the current window, by kind.",
            lambda: [((c.kind,), len(c.counts)) for c in limits],
            labels=("kind",),
        ),
    ]


# (name, help, attribute of the worker holding the count)
WORKER_COUNTERS = (
    ("reactions_counted_total", "Reactions counted into windows.", "reactions"),
    ("batches_counted_total", "Raw batches counted (each once).", "batches"),
    ("reactions_late_total", "Reactions counted into a window after it closed.", "late"),
    ("reactions_lost_total", "Reactions later than the revision horizon: never counted.", "lost"),
    ("apply_failures_total", "Failed attempts to apply a raw entry.", "failed"),
    ("dead_lettered_total", "Raw entries moved to a dead-letter stream.", "dead"),
)


def worker_families(worker: Worker) -> list[Family]:
    closer = worker.closer

    def per_shard(figure: str) -> Callable[[], Iterable[Sample]]:
        return lambda: [
            ((str(shard),), figures[figure])
            for shard, figures in sorted(closer.backlog.items())
            if figures[figure] is not None
        ]

    return [
        *(
            counter(name, help_text, partial(getattr, worker, attribute))
            for name, help_text, attribute in WORKER_COUNTERS
        ),
        counter(
            "windows_closed_total",
            "Windows this worker closed and published.",
            lambda: closer.closed,
        ),
        counter(
            "windows_revised_total",
            "Closed windows this worker published again with late reactions.",
            lambda: closer.revised,
        ),
        Family(
            "raw_lag_entries",
            "Raw-stream entries not yet read by the aggregators group, per shard.",
            per_shard("lag"),
            labels=("shard",),
        ),
        Family(
            "raw_pending_entries",
            "Raw-stream entries read but not yet acknowledged, per shard.",
            per_shard("pending"),
            labels=("shard",),
        ),
    ]


def delivery_families(hub: Hub, pacer: CollectionPacer | None) -> list[Family]:
    families = [
        gauge("sse_clients", "Connected SSE clients.", lambda: hub.connections),
        counter(
            "windows_received_total",
            "Windows (and revisions) received on the subscription.",
            lambda: hub.windows_received,
        ),
        counter(
            "windows_filled_total",
            "Windows read from history to fill a gap.",
            lambda: hub.windows_filled,
        ),
        counter(
            "history_reads_total",
            "Reads of an event's history for joining clients (one shared by every join of "
            "the event waiting for it; none when the node holds the windows).",
            lambda: hub.history_reads,
        ),
        counter(
            "frames_dropped_total",
            "Frames slow clients never received: a newer window pushed them out.",
            lambda: hub.frames_dropped,
        ),
        counter(
            "pubsub_resubscribes_total",
            "Subscriptions made again after a fault or silence.",
            lambda: max(hub.subscriptions - 1, 0),
        ),
    ]
    if pacer is not None:
        families += [
            counter(
                "gc_full_collections_total",
                "Full collections run between windows.",
                lambda: pacer.collections,
            ),
            counter(
                "gc_pause_seconds_total",
                "Seconds delivery stood still in full collections, in all.",
                lambda: pacer.total_ms / 1000,
            ),
            gauge(
                "gc_pause_max_seconds",
                "The longest full collection so far.",
                lambda: pacer.longest_ms / 1000,
            ),
        ]
    return families
