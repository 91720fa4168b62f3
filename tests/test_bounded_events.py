"""Safe in public: invented event ids cannot grow Redis or the closer's work without bound.

Through a real ingest process: the allow-list and the cap on active events answer in the one
JSON error shape.
"""

from __future__ import annotations

import httpx
import pytest

from .conftest import ProcessFactory

pytestmark = pytest.mark.e2e

ONE = {"user_id": "u-1", "emoji": "🔥"}


def test_only_listed_events_take_reactions(processes: ProcessFactory) -> None:
    ingest = processes.role("ingest", EMOSTREAM_EVENTS="final,semi")
    with httpx.Client(base_url=ingest.url) as client:
        assert client.post("/v1/events/final/reactions", json=ONE).status_code == 202
        refused = client.post("/v1/events/invented/reactions", json=ONE)
        assert refused.status_code == 404
        assert refused.json()["error"]["code"] == "unknown_event"
        assert refused.json()["error"]["field"] == "event_id"
        # The seed alias counts under the default event, which is not listed here.
        seed = {"user_id": "u-1", "emoji_type": "🔥"}
        assert client.post("/send_emoji", json=seed).status_code == 404
        assert client.post("/send_emoji", json={**seed, "event_id": "semi"}).status_code == 200


def test_a_new_event_past_the_cap_gets_429_and_active_ones_still_flow(
    processes: ProcessFactory,
) -> None:
    ingest = processes.role("ingest", EMOSTREAM_MAX_ACTIVE_EVENTS="3")
    with httpx.Client(base_url=ingest.url) as client:
        for event_id in ("a", "b", "c"):
            assert client.post(f"/v1/events/{event_id}/reactions", json=ONE).status_code == 202
        refused = client.post("/v1/events/d/reactions", json=[ONE, ONE])
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "60"
        error = refused.json()["error"]
        assert (error["code"], error["field"]) == ("too_many_events", "event_id")
        assert "'d'" in error["message"]
        assert client.post("/v1/events/a/reactions", json=ONE).status_code == 202
        assert client.get("/healthz").json()["events_known"] == 3
        metrics = client.get("/metrics").text
        assert 'emostream_requests_rejected_total{code="too_many_events"} 1.0' in metrics
        assert "emostream_events_known 3.0" in metrics
