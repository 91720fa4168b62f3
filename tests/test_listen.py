"""The listening socket the roles serve on (made by us so it can be tuned first)."""

from __future__ import annotations

import socket

import pytest

from emostream.serving import _listen


def test_a_host_name_listens_on_ipv4_as_uvicorn_would() -> None:
    # Where /etc/hosts lists ::1 first, the first address of "localhost" is IPv6: IPv4
    # clients of 127.0.0.1 must still reach a role started with --host localhost.
    with _listen("localhost", 0, None) as listener:
        assert listener.family == socket.AF_INET
        with socket.create_connection(("127.0.0.1", listener.getsockname()[1]), timeout=2):
            pass


def test_an_ipv6_address_listens_on_ipv6() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    try:
        listener = _listen("::1", 0, None)
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    with listener:
        assert listener.family == socket.AF_INET6
