"""Socket options for the delivery listener, inherited by every accepted client socket.

Linux autotunes a socket's send buffer up to megabytes (3.9 MB measured on loopback), so a
client that stops reading absorbed a thousand 1 KB windows before a send blocked and the send
timeout could end its stream. A fixed ``SO_SNDBUF`` (which also turns autotuning off) bounds
that to a few hundred KB: kernel buffer (doubled by Linux) plus the transport's 64 KB.

Not set, deliberately: ``TCP_USER_TIMEOUT``. It frees a peer that vanished without a FIN (or
stopped reading) at the kernel within the timeout, but hypercorn 0.18 does not catch the
resulting ``ETIMEDOUT`` when it closes the connection (``TCPServer._close`` catches resets
only), so every such client would end in an unhandled task exception.
"""

from __future__ import annotations

import socket

from ..settings import Settings


def tune_client_sockets(listener: socket.socket, settings: Settings) -> None:
    if listener.family in (socket.AF_INET, socket.AF_INET6):
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, settings.client_send_buffer_bytes)
