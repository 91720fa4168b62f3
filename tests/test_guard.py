"""bodies.guarded driven by hand over ASGI: what the framework apps' routes get, and what the
client gets back, for bodies read, refused and left unread."""

from __future__ import annotations

from typing import Any

import pytest

from emostream.bodies import BodyLimits, guarded, read_body

LIMITS = BodyLimits(max_body_bytes=10, body_timeout_s=5.0, drain_max_bytes=1000)


class Exchange:
    """One request: its body in chunks, and every message the app (through the guard) sent."""

    def __init__(self, *chunks: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.scope = {
            "type": "http",
            "http_version": "1.1",
            "method": "POST",
            "path": "/",
            "headers": headers if headers is not None else [(b"transfer-encoding", b"chunked")],
        }
        self.pending = [
            {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
            for index, chunk in enumerate(chunks)
        ]
        self.read = 0
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        self.read += 1
        return self.pending.pop(0) if self.pending else {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    async def run(self, app: Any) -> None:
        await guarded(app, LIMITS)(self.scope, self.receive, self.send)

    def status(self) -> int:
        return int(self.sent[0]["status"])

    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])

    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent[1:])


async def reads_everything(scope: Any, receive: Any, send: Any) -> None:
    """Like Quart: reads the body, and lets an error raised while reading end the request."""
    body = await read_body(receive, 10**9)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def reads_nothing(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 405, "headers": []})
    await send({"type": "http.response.body", "body": b"no"})


@pytest.mark.anyio
async def test_a_body_within_the_cap_reaches_the_route_untouched() -> None:
    exchange = Exchange(b"12345", b"67890")
    await exchange.run(reads_everything)
    assert exchange.status() == 200 and exchange.body() == b"1234567890"
    assert b"connection" not in exchange.headers()


@pytest.mark.anyio
async def test_a_body_over_the_cap_is_refused_while_read_then_drained() -> None:
    exchange = Exchange(b"123456", b"789012", *[b"x" * 100] * 5)
    await exchange.run(reads_everything)
    assert exchange.status() == 413 and b'"too_large"' in exchange.body()
    assert exchange.headers()[b"connection"] == b"close"
    assert not exchange.pending, "the rest was drained before the close"
    assert exchange.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


@pytest.mark.anyio
async def test_an_unread_body_is_drained_after_the_answer() -> None:
    exchange = Exchange(*[b"y" * 100] * 5)
    await exchange.run(reads_nothing)
    assert exchange.status() == 405 and exchange.body() == b"no"
    assert exchange.headers()[b"connection"] == b"close"
    assert not exchange.pending
    # Past the drain bound the rest is left to the close.
    big = Exchange(*[b"z" * 400] * 10)
    await big.run(reads_nothing)
    assert 0 < len(big.pending) < 10


@pytest.mark.anyio
async def test_a_request_without_a_body_passes_straight_through() -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.extend([receive, send])

    exchange = Exchange(headers=[(b"content-length", b"0")])
    await exchange.run(app)
    assert seen == [exchange.receive, exchange.send]
