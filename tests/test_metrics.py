"""Every role's /metrics read before and after a known load: the counters move by exactly
what was sent and refused."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from emostream.redis_server import free_port

from .conftest import ProcessFactory
from .helpers import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    response = httpx.get(url, timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((f"emostream_{name}", tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def roles(processes: ProcessFactory) -> Iterator[tuple[str, str, str]]:
    worker_port = free_port()
    ingest, _worker, delivery = processes.start_many(
        [
            ("ingest", {}),
            ("worker", {"EMOSTREAM_METRICS_PORT": str(worker_port)}),
            ("delivery", {}),
        ]
    )
    yield (
        f"{ingest.url}/metrics",
        f"http://127.0.0.1:{worker_port}/metrics",
        f"{delivery.url}/metrics",
    )


async def test_counters_move_by_what_was_sent_and_refused(
    roles: tuple[str, str, str], processes: ProcessFactory
) -> None:
    ingest_metrics, worker_metrics, delivery_metrics = roles
    ingest_url = ingest_metrics.removesuffix("/metrics")
    delivery_url = delivery_metrics.removesuffix("/metrics")
    await eventually(lambda: _answers(worker_metrics), timeout_s=30)
    before = [scrape(url) for url in roles]

    async with httpx.AsyncClient(timeout=10) as client:
        stream = asyncio.create_task(_hold_stream(client, delivery_url))
        reactions = f"{ingest_url}/v1/events/metered/reactions"
        sent = 0
        for size in (1, 5, 20):
            body = [{"user_id": f"u{i}", "emoji": "🔥"} for i in range(size)]
            assert (await client.post(reactions, json=body)).status_code == 202
            sent += size
        for bad in ({"user_id": "u1"}, {"user_id": "has space", "emoji": "🔥"}):
            assert (await client.post(reactions, json=bad)).status_code == 422
        refused_type = await client.post(reactions, content=b"{}", headers={"Content-Type": "a/b"})
        assert refused_type.status_code == 415

        def moved(index: int, name: str, by: float) -> bool:
            after = scrape(roles[index])
            return value(after, name) - value(before[index], name) == by

        await eventually(lambda: moved(0, "flushed_reactions_total", sent), timeout_s=10)
        await eventually(lambda: moved(1, "reactions_counted_total", sent), timeout_s=20)
        await eventually(lambda: value(scrape(delivery_metrics), "sse_clients") == 1, 10)
        await eventually(
            lambda: (
                value(scrape(delivery_metrics), "windows_received_total")
                > value(before[2], "windows_received_total")
            ),
            timeout_s=20,
        )
        stream.cancel()

    after = scrape(ingest_metrics)
    assert (
        value(after, "reactions_accepted_total") - value(before[0], "reactions_accepted_total")
        == sent
    )
    for code, count in (("missing_field", 1), ("invalid_field", 1), ("unsupported_media_type", 1)):
        moved_by = value(after, "requests_rejected_total", code=code) - value(
            before[0], "requests_rejected_total", code=code
        )
        assert moved_by == count, code
    assert value(after, "buffer_capacity_reactions") > 0
    assert value(scrape(worker_metrics), "dead_lettered_total") == 0


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


async def _hold_stream(client: httpx.AsyncClient, delivery_url: str) -> None:
    async with client.stream("GET", f"{delivery_url}/v1/events/metered/stream") as response:
        async for _line in response.aiter_lines():
            pass
