from __future__ import annotations

import json

import pytest

from emostream.deliver.frames import (
    HEARTBEAT,
    parse_last_event_id,
    retry_frame,
    swarm_windows,
    window_frame,
)


def test_window_frame_is_one_sse_event_with_the_seq_as_id() -> None:
    window = {"seq": 42, "event_id": "live", "top": [{"emoji": "🔥", "count": 1}]}
    frame = window_frame(window).decode()
    lines = frame.split("\n")
    assert lines[:2] == ["id: 42", "event: swarm"]
    assert lines[2].startswith("data: ")
    assert json.loads(lines[2][len("data: ") :]) == window
    assert frame.endswith("\n\n") and frame.count("\n") == 4


def test_frames_are_the_bytes_clients_have_always_been_sent() -> None:
    """sse-starlette encodes them; its default line end is "\\r\\n", ours stays "\\n"."""
    window = {"seq": 42, "event_id": "live", "top": [{"emoji": "🔥", "count": 1}]}
    data = '{"seq":42,"event_id":"live","top":[{"emoji":"🔥","count":1}]}'
    assert window_frame(window) == f"id: 42\nevent: swarm\ndata: {data}\n\n".encode()
    revision = {"seq": 42, "revision": 1, "top": []}
    assert window_frame(revision) == b'event: swarm\ndata: {"seq":42,"revision":1,"top":[]}\n\n'
    assert HEARTBEAT == b": heartbeat\n\n"


def test_retry_frame() -> None:
    assert retry_frame(1500) == b"retry: 1500\n\n"


@pytest.mark.parametrize(("raw", "seq"), [(None, None), ("", None), ("7", 7), (" 12 ", 12)])
def test_last_event_id(raw: str | None, seq: int | None) -> None:
    assert parse_last_event_id(raw) == seq


@pytest.mark.parametrize("raw", ["x", "-1", "1.5"])
def test_bad_last_event_id(raw: str) -> None:
    with pytest.raises(ValueError):
        parse_last_event_id(raw)


def test_swarm_windows_read_back_what_window_frame_wrote() -> None:
    windows = [{"seq": 1, "top": []}, {"seq": 2, "revision": 1, "top": []}]
    text = retry_frame(1000) + b": heartbeat\n\n" + b"".join(window_frame(w) for w in windows)
    assert swarm_windows(text.decode().split("\n")) == windows
