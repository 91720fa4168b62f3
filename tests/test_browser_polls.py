"""Polls in a real browser (Debian's Chromium via Playwright, as tests/test_browser.py): vote
on the event page, see the bars move, lock and reveal from the dashboard's admin console,
see the trivia answer and the leaderboard; and the mood line under the trend."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Browser

from .conftest import ProcessFactory
from .test_browser import Viewer, browser  # noqa: F401  (the module-scoped browser fixture)

ADMIN = "browser-admin-token"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
FAST = {
    "EMOSTREAM_ADMIN_TOKEN": ADMIN,
    "EMOSTREAM_FLUSH_INTERVAL_MS": "100",
    "EMOSTREAM_POLL_LOCK_GRACE_MS": "300",
    "EMOSTREAM_POLL_CACHE_MS": "100",
}


def option_votes(viewer: Viewer, option: str) -> str:
    return str(viewer.page.locator(f'#poll-options li[data-option="{option}"] .votes').inner_text())


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_vote_on_the_page_see_the_bars_move_reveal_and_see_the_leaderboard(
    browser: Browser,  # noqa: F811
    processes: ProcessFactory,
) -> None:
    up = processes.role("up", **FAST)
    event, poll = "quiz-1", "capital"
    base = f"{up.url}/v1/events/{event}/polls/{poll}"
    definition = {
        "question": "Capital of France?",
        "options": ["Paris", "Lima", "Oslo"],
        "kind": "trivia",
        "answer": "Paris",
        "results": "live",
    }
    assert httpx.put(base, json=definition, headers=AUTH).status_code == 201
    assert httpx.post(f"{base}/open", headers=AUTH).status_code == 200
    viewer = Viewer(browser, f"{up.url}/events/{event}")
    viewer.wait_state("live")
    viewer.wait("the open poll", lambda: viewer.page.locator("#poll[data-state=open]").count())
    me = viewer.get("localStorage.getItem('emostream.user_id')")
    viewer.page.get_by_role("button", name="Paris").click()
    viewer.wait("my vote recorded", lambda: "your vote: Paris" in viewer.page.inner_text("#poll"))
    viewer.wait("my vote in the bars", lambda: option_votes(viewer, "Paris") == "1")
    share_before = viewer.get(
        "getComputedStyle(document.querySelector('#poll-options li[data-option=Lima] .bar'))"
        ".getPropertyValue('--share')"
    )
    for user, option in [("crowd-1", "Lima"), ("crowd-2", "Lima"), ("crowd-3", "Paris")]:
        response = httpx.post(f"{base}/votes", json={"user_id": user, "option": option})
        assert response.status_code == 202
    viewer.wait("the crowd in the bars", lambda: option_votes(viewer, "Lima") == "2")
    viewer.wait("Paris at 2", lambda: option_votes(viewer, "Paris") == "2")
    share_after = viewer.get(
        "getComputedStyle(document.querySelector('#poll-options li[data-option=Lima] .bar'))"
        ".getPropertyValue('--share')"
    )
    assert float(share_before) == 0 and float(share_after) == 1, (share_before, share_after)

    # The operator locks and reveals from the dashboard, typing the token in once: the form
    # the locked stats show, whose token the polls console uses too.
    console = Viewer(browser, f"{up.url}/dashboard")
    assert ADMIN not in console.page.content(), "the token is never in the page"
    console.wait_state("locked")
    console.page.fill("#admin-token", ADMIN)
    console.page.get_by_role("button", name="Show stats").click()
    console.wait_state("live")
    console.page.fill("#admin-event", event)
    console.page.fill("#admin-poll", poll)
    for action, state in [("lock", "locked"), ("reveal", "revealed")]:
        console.page.click(f'.admin-actions button[data-action="{action}"]')
        status = console.page.locator(f"#admin-status[data-state={state}]")
        console.wait(f"the poll {state}", status.count)
    viewer.wait("the reveal", lambda: viewer.page.locator("#poll[data-state=revealed]").count())
    viewer.wait("the leaderboard", lambda: viewer.page.locator("#poll-board").is_visible())
    leaders = viewer.page.locator("#poll-leaders li").all_inner_texts()
    users = [
        viewer.page.locator("#poll-leaders li").nth(i).get_attribute("data-user")
        for i in range(len(leaders))
    ]
    assert set(users) == {me, "crowd-3"}, users  # the correct answers only
    board = httpx.get(f"{up.url}/v1/events/{event}/leaderboard").json()
    assert [e["user_id"] for e in board] == users
    viewer.wait("my rank", lambda: "you: #" in viewer.page.inner_text("#poll-rank"))
    assert viewer.page.locator('#poll-options li.answer[data-option="Paris"]').count() == 1
    states = [p["state"] for p in viewer.get("window.emostreamPage.polls")]
    assert "locked" in states and "revealed" in states, states

    # A tap gives the window a mood, drawn under the trend.
    viewer.page.get_by_role("button", name="fire (key 1)").click()
    viewer.wait("a mood", lambda: viewer.page.locator("#mood").get_attribute("data-latest"))
    mood = float(viewer.page.locator("#mood").get_attribute("data-latest") or "nan")
    assert -1 <= mood <= 1
    console.close()
    viewer.close()
