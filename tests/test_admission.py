"""Which events ingest admits: the allow-list and the cap on active events, as pure logic
(the HTTP answers and the view refreshed from Redis: tests/test_bounded_events.py)."""

from __future__ import annotations

import pytest

from emostream.errors import ConfigError, TooManyEvents, UnknownEvent
from emostream.ingest.admission import SHARE_RETRY_AFTER_S, EventAdmission
from emostream.settings import Settings


def let_in(events: EventAdmission, event_id: str, now_ms: int) -> None:
    """What ingest does with a request's event (ingest/accept.py)."""
    if events.check(event_id):
        events.admit(event_id, now_ms)


def test_only_listed_events_are_allowed_when_a_list_is_set() -> None:
    events = EventAdmission(10, ("final", "semi"), idle_s=60)
    assert events.check("final")  # new, and listed
    with pytest.raises(UnknownEvent) as refused:
        events.check("invented")
    assert refused.value.status == 404
    assert refused.value.body()["error"]["code"] == "unknown_event"
    assert refused.value.body()["error"]["field"] == "event_id"
    assert EventAdmission(10, (), idle_s=60).check("anything")


def test_a_new_event_past_the_cap_is_refused_and_known_ones_still_flow() -> None:
    events = EventAdmission(3, (), idle_s=60)
    for event_id in ("a", "b", "c"):
        let_in(events, event_id, 0)
    with pytest.raises(TooManyEvents) as refused:
        let_in(events, "d", 0)
    error = refused.value
    assert (error.status, error.code, error.field) == (429, "too_many_events", "event_id")
    assert error.headers() == {"Retry-After": "60"}  # room frees up as events go idle
    let_in(events, "a", 1)  # an admitted event keeps taking reactions


def test_the_view_from_redis_counts_with_what_was_admitted_since() -> None:
    events = EventAdmission(4, (), idle_s=60)
    let_in(events, "mine", 0)  # not counted by a worker yet
    events.update(["x", "y"], producers=1, now_ms=100)
    assert events.known == 3
    let_in(events, "x", 100)  # active in Redis: always let in
    let_in(events, "new", 100)
    with pytest.raises(TooManyEvents):
        let_in(events, "one-too-many", 100)
    # Once the view shows "mine", it is counted once; once "y" goes idle, room frees up.
    events.update(["x", "mine", "new"], producers=1, now_ms=200)
    assert events.known == 3
    let_in(events, "fits-again", 200)


def test_each_producer_admits_its_share_of_the_room_per_refresh() -> None:
    events = EventAdmission(10, (), idle_s=60)
    events.update([], producers=4, now_ms=0)  # room 10 over 4 ingest processes: 3 each
    for event_id in ("a", "b", "c"):
        let_in(events, event_id, 0)
    with pytest.raises(TooManyEvents) as refused:
        let_in(events, "d", 0)
    assert refused.value.headers() == {"Retry-After": str(SHARE_RETRY_AFTER_S)}
    events.update(["a", "b", "c"], producers=4, now_ms=1000)  # room 7: 2 each
    let_in(events, "d", 1000)
    let_in(events, "e", 1000)
    with pytest.raises(TooManyEvents):
        let_in(events, "f", 1000)


def test_an_admitted_event_redis_never_showed_is_forgotten_once_it_could_be_idle() -> None:
    events = EventAdmission(1, (), idle_s=1)
    let_in(events, "lost", 0)
    events.update([], producers=1, now_ms=500)
    with pytest.raises(TooManyEvents):
        let_in(events, "other", 500)
    events.update([], producers=1, now_ms=1500)
    let_in(events, "other", 1500)


def test_the_allow_list_and_the_cap_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {"EMOSTREAM_EVENTS": "final, semi-1,", "EMOSTREAM_MAX_ACTIVE_EVENTS": "50"}
    )
    assert (settings.events, settings.max_active_events) == (("final", "semi-1"), 50)
    assert Settings.from_env({}).max_active_events == 10_000
    with pytest.raises(ConfigError, match="EMOSTREAM_EVENTS"):
        Settings.from_env({"EMOSTREAM_EVENTS": "final,not an id"})
    with pytest.raises(ConfigError, match="EMOSTREAM_MAX_ACTIVE_EVENTS"):
        Settings.from_env({"EMOSTREAM_MAX_ACTIVE_EVENTS": "0"})
