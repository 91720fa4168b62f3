"""The pages in a real browser: Debian's headless Chromium driven by Playwright, against real
emostream processes. Pages run under their own Content-Security-Policy, so the tests read the
page with ``evaluate`` and locators (never CSP-blocked string predicates).

Waits are on conditions with generous deadlines; what is asserted is seqs and counts, never
how long something took, so a loaded machine makes these slower, not flaky.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest
import redis
from playwright.sync_api import Browser, Page, sync_playwright
from redis.asyncio import Redis as AsyncRedis

from emostream import keys
from emostream.deliver.app import create_delivery_app
from emostream.deliver.hub import Hub
from emostream.deliver.pages import render_swarm_page
from emostream.rules import EmojiSwarmRule
from emostream.settings import Settings

from .conftest import ProcessFactory

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WAIT_S = 60.0
T = TypeVar("T")
# Top-N rows (emoji -> count text), visible icons (emoji -> frames seen), and whether any
# icon moved during its flight.
WITNESS = """() => {
  const witness = (window.witness = { top: {}, swarm: {}, moved: false });
  const placed = new Map();
  const sample = () => {
    for (const row of document.querySelectorAll("#top li[data-emoji]")) {
      witness.top[row.dataset.emoji] = row.querySelector(".count").textContent;
    }
    for (const icon of document.querySelectorAll("#swarm .icon.flying")) {
      const style = getComputedStyle(icon);
      if (Number(style.opacity) > 0.05) {
        witness.swarm[icon.dataset.emoji] = (witness.swarm[icon.dataset.emoji] || 0) + 1;
        const first = placed.get(icon.dataset.flight);
        if (first === undefined) placed.set(icon.dataset.flight, style.transform);
        else if (first !== style.transform) witness.moved = true;
      }
    }
    requestAnimationFrame(sample);
  };
  sample();
}"""


# -- the pages over HTTP (no browser) --------------------------------------------------------


def get_pages(*paths: str) -> list[httpx.Response]:
    """GET each path from a delivery app in process (serving pages never touches Redis)."""
    settings = Settings(redis_url="redis://127.0.0.1:1/0", allowed_emojis=("🔥", "🎉"))

    async def fetch() -> list[httpx.Response]:
        hub = Hub(AsyncRedis.from_url(settings.redis_url or ""), settings, EmojiSwarmRule())
        transport = httpx.ASGITransport(app=create_delivery_app(settings, hub))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            responses = [await client.get(path) for path in paths]
        await hub.redis.aclose()
        return responses

    return asyncio.run(fetch())


def test_pages_and_assets_are_served() -> None:
    home, event, bad_event, dashboard, module, missing = get_pages(
        "/",
        "/events/final-2",
        "/events/no%20spaces",
        "/dashboard",
        "/static/emostream.js",
        "/static/missing.js",
    )
    assert home.status_code == 200 and home.headers["content-type"].startswith("text/html")
    assert 'data-event-id="live"' in home.text
    assert "default-src 'self'" in home.headers["content-security-policy"]
    assert 'data-event-id="final-2"' in event.text
    assert "&quot;emoji&quot;: &quot;🎉&quot;" in event.text, "the allow-list is the pad"
    assert bad_event.status_code == 422
    assert dashboard.status_code == 200 and "/static/dashboard.js" in dashboard.text
    assert module.status_code == 200 and "javascript" in module.headers["content-type"]
    assert module.headers["access-control-allow-origin"] == "*", "embeddable cross-origin"
    assert "export function connect" in module.text
    assert missing.status_code == 404


def test_page_values_are_escaped() -> None:
    template = '<main data-event-id="{{event_id}}" data-pad="{{pad_json}}">'
    page = render_swarm_page(template, "a", Settings(allowed_emojis=('"><script>',)))
    assert "<script>" not in page and "&quot;&gt;&lt;script&gt;" in page


# -- in the browser --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; .ci/run installs it)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


class Viewer:
    """One browser tab on a swarm page, with what the page reports about itself."""

    def __init__(self, browser: Browser, url: str, reduced_motion: bool = False) -> None:
        self.context = browser.new_context(
            viewport={"width": 800, "height": 900},
            reduced_motion="reduce" if reduced_motion else "no-preference",
        )
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(url)

    def get(self, expression: str) -> Any:
        return self.page.evaluate(expression)

    @property
    def state(self) -> str:
        return str(self.page.locator("#state").get_attribute("data-state"))

    def seqs(self) -> list[int]:
        return list(self.get("window.emostreamPage.received.map((w) => w.seq)"))

    def windows(self) -> dict[int, Any]:
        return {w["seq"]: w for w in self.get("window.emostreamPage.received")}

    def wait(self, what: str, check: Callable[[], T | None], timeout_s: float = WAIT_S) -> T:
        """Poll ``check`` until it returns something truthy; fail with what was awaited."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"page never showed {what}; seqs={self.seqs()}")
            self.page.wait_for_timeout(100)

    def wait_state(self, state: str) -> None:
        self.wait(f"the {state} state", lambda: self.state == state)

    def watch(self) -> None:
        """Note every frame what the top-N and the swarm show, so a short-lived sight (the
        top-N changes every window) is not missed between two polls from here."""
        self.page.evaluate(WITNESS)

    def close(self) -> None:
        assert not self.errors, f"errors in the page: {self.errors}"
        self.context.close()


def contiguous(seqs: list[int]) -> bool:
    return seqs == list(range(seqs[0], seqs[0] + len(seqs)))


class Crowd:
    """Background reactions from outside the browser, so windows keep closing with counts."""

    def __init__(self, url: str, event_id: str) -> None:
        self.url = f"{url}/v1/events/{event_id}/reactions"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10.0) as client:
            while not self.stop.is_set():
                body = [{"user_id": f"crowd-{i}", "emoji": "👏"} for i in range(5)]
                try:
                    client.post(self.url, json=body)
                except httpx.HTTPError:
                    pass
                self.stop.wait(0.1)

    def __enter__(self) -> Crowd:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=15)


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_a_tap_shows_in_the_swarm_and_the_top(browser: Browser, processes: ProcessFactory) -> None:
    up = processes.role("up")
    viewer = Viewer(browser, f"{up.url}/events/tap-1")
    calm = Viewer(browser, f"{up.url}/events/tap-1", reduced_motion=True)
    for watcher in (viewer, calm):
        watcher.wait_state("live")
        watcher.watch()
    viewer.page.get_by_role("button", name="fire (key 1)").click()
    # The pad is keyboard usable: key 2 taps the second button.
    viewer.page.keyboard.press("2")
    tap_seen = viewer.wait(
        "the 🔥 tap in a window",
        lambda: [w for w in viewer.windows().values() if any(i["emoji"] == "🔥" for i in w["top"])],
    )
    # A fresh event: its first window holds the taps, or the second if their POST straddled a
    # window boundary. Either is within one window (plus the flush) of the tap.
    assert tap_seen[0]["seq"] <= 2, tap_seen

    def witnessed(watcher: Viewer) -> dict[str, Any] | None:
        sights: dict[str, Any] = watcher.get("window.witness")
        return sights if "🔥" in sights["swarm"] and {"🔥", "😂"} <= set(sights["top"]) else None

    seen = viewer.wait("🔥 and 😂 in the top-N and 🔥 in the swarm", lambda: witnessed(viewer))
    assert seen["top"] == {"🔥": "1", "😂": "1"}
    # An icon has to be sampled in two animation frames before it can be seen moving.
    assert viewer.wait("an icon rising", lambda: viewer.get("window.witness")["moved"] or None)
    # prefers-reduced-motion: the same swarm, but icons fade where they are.
    seen = calm.wait("🔥 in the reduced-motion swarm", lambda: witnessed(calm))
    assert seen["top"] == {"🔥": "1", "😂": "1"}
    assert not seen["moved"], "with reduced motion no icon travels"
    assert viewer.get("window.emostreamPage.sent") == 2
    assert viewer.get("window.emostreamPage.failed") == 0
    viewer.close()
    calm.close()


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_two_pages_see_the_same_windows(browser: Browser, processes: ProcessFactory) -> None:
    up = processes.role("up")
    first = Viewer(browser, f"{up.url}/events/pair-1")
    second = Viewer(browser, f"{up.url}/events/pair-1")
    with Crowd(up.url, "pair-1"):
        first.page.get_by_role("button", name="fire (key 1)").click()
        second.page.keyboard.press("3")
        start = first.wait("a first window", lambda: first.seqs())[-1]
        # Both pages until three windows after the first page's first one.
        target = start + 3
        first.wait(f"seq {target}", lambda: max(first.seqs()) >= target)
        second.wait(f"seq {target}", lambda: max(second.seqs()) >= target)
    for viewer in (first, second):
        assert contiguous(viewer.seqs()), viewer.seqs()
        assert viewer.state == "live"
    a, b = first.windows(), second.windows()
    common = sorted(set(a) & set(b))
    assert len(common) >= 3, (sorted(a), sorted(b))
    assert [a[seq] for seq in common] == [b[seq] for seq in common]
    assert sum(item["count"] for seq in common for item in a[seq]["top"]) > 0
    first.close()
    second.close()


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_delivery_restart_shows_reconnecting_then_resumes_without_gaps(
    browser: Browser, processes: ProcessFactory
) -> None:
    event_id = "resume-1"
    ingest = processes.role("ingest")
    processes.role("worker")
    delivery = processes.role("delivery")
    store = redis.Redis.from_url(processes.redis_url)
    state_key = keys.event_state(keys.shard_of(event_id, 2), event_id)

    def closed_seq() -> int:
        seq: Any = store.hget(state_key, keys.EVENT_SEQ)
        return int(seq or 0)

    viewer = Viewer(browser, f"{delivery.url}/events/{event_id}")
    try:
        with Crowd(ingest.url, event_id):
            viewer.wait("two windows", lambda: len(viewer.seqs()) >= 2)
            assert viewer.state == "live"
            delivery.kill()
            viewer.wait_state("reconnecting")
            last_before = viewer.seqs()[-1]
            # Windows keep closing while no delivery node is up: the page must get them later.
            viewer.wait(
                "two windows closed during the outage",
                lambda: closed_seq() >= last_before + 2,
            )
            assert viewer.seqs()[-1] == last_before
            delivery.start(processes.tmp_path)
            resume_to = closed_seq() + 1
            viewer.wait_state("caught-up")
            viewer.wait(f"seq {resume_to}", lambda: max(viewer.seqs()) >= resume_to)
        seqs = viewer.seqs()
        assert contiguous(seqs), f"missing or repeated seqs: {seqs}"
        assert last_before + 1 in seqs and last_before + 2 in seqs
        states = viewer.get("window.emostreamPage.states")
        assert states[: states.index("reconnecting") + 1] == ["connecting", "live", "reconnecting"]
        assert states[-2:] == ["live", "caught-up"], states
        print(
            "windows filled from history by the client:",
            viewer.get("window.emostreamPage.connection.filled"),
        )
        viewer.close()
    finally:
        store.close()


@contextlib.contextmanager
def page_served(html: str) -> Iterator[str]:
    """``html`` served at the URL yielded, by a server of its own on another port: a page of
    another origin (and, being loopback too, one Chromium lets reach loopback servers)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_a_page_on_another_origin_can_send_and_watch(
    browser: Browser, processes: ProcessFactory
) -> None:
    """emostream.js embedded on another site: its send() is a cross-origin POST with a JSON
    body, which the browser only makes after a CORS preflight the ingest answers."""
    up = processes.role("up")
    page_html = f"""<!doctype html><title>embedder</title><script type="module">
      import {{ connect, send }} from "{up.url}/static/emostream.js";
      window.seen = {{ windows: [] }};
      connect("embed-1", {{ onSwarm: (w) => window.seen.windows.push(w) }});
      send("embed-1", "🔥").then(
        (n) => (window.seen.accepted = n),
        (e) => (window.seen.error = String(e)),
      );
    </script>"""
    context = browser.new_context()
    with page_served(page_html) as embedder:
        assert not embedder.startswith(up.url)
        page = context.new_page()
        problems: list[str] = []
        page.on("console", lambda message: problems.append(message.text))
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.goto(embedder)
        deadline = time.monotonic() + 60
        counted: list[Any] = []
        while not counted:
            seen = page.evaluate("window.seen")
            assert seen is None or "error" not in seen, (seen, problems)
            if seen and seen.get("accepted") == 1:
                counted = [
                    item
                    for window in seen["windows"]
                    for item in window["top"]
                    if item["emoji"] == "🔥" and item["count"] == 1
                ]
            assert time.monotonic() < deadline, f"page saw {seen}; console: {problems}"
            page.wait_for_timeout(100)
        context.close()


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_the_dashboard_asks_for_the_admin_token(
    browser: Browser, processes: ProcessFactory
) -> None:
    """With EMOSTREAM_ADMIN_TOKEN set, the dashboard shows a token form instead of stats; the
    token the operator types is kept in the tab's sessionStorage and sent, never served."""
    token = "dashboard-secret-51c7"
    up = processes.role("up", EMOSTREAM_ADMIN_TOKEN=token)
    assert token not in httpx.get(f"{up.url}/dashboard").text
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{up.url}/dashboard")
    field = page.locator("#admin-token")
    field.wait_for(state="visible", timeout=WAIT_S * 1000)
    assert page.locator("#state").get_attribute("data-state") == "locked"

    field.fill("not-the-token")
    page.get_by_role("button", name="Show stats").click()
    page.wait_for_function(
        "() => document.querySelector('#token-note').textContent.includes('refused')",
        timeout=WAIT_S * 1000,
    )
    assert page.evaluate("sessionStorage.getItem('emostream.adminToken')") is None

    field.fill(token)
    page.get_by_role("button", name="Show stats").click()
    page.wait_for_function(
        "() => document.querySelector('#state').dataset.state === 'live'", timeout=WAIT_S * 1000
    )
    assert page.locator("#token-form").is_hidden()
    assert page.evaluate("sessionStorage.getItem('emostream.adminToken')") == token
    # The up process runs a worker: the stats it was let in to read show it.
    page.wait_for_function(
        "() => document.querySelector('#workers-count').textContent === '1'",
        timeout=WAIT_S * 1000,
    )
    assert token not in page.content()
    assert not errors, errors
    context.close()
