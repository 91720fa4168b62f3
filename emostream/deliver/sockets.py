"""Socket options for the delivery listener, inherited by every accepted client socket.

Linux autotunes a socket's send buffer up to megabytes (3.9 MB measured on loopback), so a
client that stops reading absorbed a thousand 1 KB windows before a send blocked and the send
timeout could end its stream. A fixed ``SO_SNDBUF`` (which also turns autotuning off) bounds
that to a few hundred KB: kernel buffer (doubled by Linux) plus the transport's 64 KB.

A peer that vanished without a FIN (unplugged, its NAT entry gone) never fills that buffer
with a window every 2 s: its unacknowledged data just sits there while TCP retransmits for
~15 minutes. ``TCP_USER_TIMEOUT`` makes the kernel drop such a connection once data has gone
unacknowledged for the send timeout; the server sees the error, the stream sees the client
leave. Set on uvicorn only: hypercorn 0.18 does not catch the resulting ``ETIMEDOUT`` when it
closes the connection (``TCPServer._close`` catches resets only), so every such client would
end in an unhandled task exception there.
"""

from __future__ import annotations

import socket

from ..settings import Settings


def tune_client_sockets(listener: socket.socket, settings: Settings) -> None:
    if listener.family in (socket.AF_INET, socket.AF_INET6):
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, settings.client_send_buffer_bytes)
        if settings.server == "uvicorn" and hasattr(socket, "TCP_USER_TIMEOUT"):
            timeout_ms = int(settings.send_timeout_s * 1000)
            listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, timeout_ms)
