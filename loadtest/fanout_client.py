"""One process of the fan-out benchmark's SSE client: thousands of raw sockets, one epoll loop.

Each connection sends a plain HTTP/1.1 ``GET`` and then only records, for every window it
receives, the window's ``seq`` (read from the JSON ``"seq":`` field, so the same parser serves
emostream's frames and nchan's) and when its bytes arrived. No SSE library and no asyncio: a
bare ``epoll`` loop costs a few microseconds per read, so two processes keep up with 10,000
streams on a 2-core machine.

The arrival time is the kernel's receive timestamp of the data (``SO_TIMESTAMPNS``, wall
clock), not the moment this process got round to reading it: on a loaded machine a client
process may be descheduled for hundreds of milliseconds, and that delay belongs to the
instrument, not to the server under test. On loopback the stamp is taken when the server's
write is handed to the receiving socket.

Driven over stdin/stdout by ``loadtest.bench_fanout``: it prints ``ready <open> <failed>``
once every connection answered, then obeys ``dump <path>`` (write the receive times gathered
so far as JSON and forget them) and ``quit``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import select
import socket
import struct
import sys
import time

SEQ = re.compile(rb'"seq":(\d+)')
# Linux x86-64/arm64: SO_TIMESTAMPNS (also the control message type), a struct timespec.
SO_TIMESTAMPNS = 35
TIMESPEC = struct.Struct("@qq")
CONNECT_BATCH = 100
CONNECT_ATTEMPTS = 5
ANSWER_TIMEOUT_S = 30.0
READ_BYTES = 65536
POLL_S = 0.05


def stamp(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= TIMESPEC.size:
            seconds, nanoseconds = TIMESPEC.unpack_from(data)
            return float(seconds + nanoseconds / 1e9)
    return None


def open_batch(host: str, port: int, request: bytes, count: int) -> list[socket.socket]:
    """Connect ``count`` sockets, send every request, then wait for every response head; a
    batch keeps the server's accept queue short while still overlapping the round trips."""
    pending: list[socket.socket] = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(ANSWER_TIMEOUT_S)
        try:
            sock.connect((host, port))
            sock.sendall(request)
        except OSError:
            sock.close()
            continue
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        pending.append(sock)
    answered = []
    for sock in pending:
        head = b""
        try:
            while b"\r\n\r\n" not in head and len(head) < READ_BYTES:
                chunk = sock.recv(READ_BYTES)
                if not chunk:
                    break
                head += chunk
        except OSError:
            pass
        if head.startswith(b"HTTP/1.1 200"):
            sock.setblocking(False)
            answered.append(sock)
        else:
            sock.close()
    return answered


def connect_all(host: str, port: int, path: str, clients: int) -> list[socket.socket]:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n"
        "Cache-Control: no-cache\r\n\r\n"
    ).encode()
    sockets: list[socket.socket] = []
    for _attempt in range(CONNECT_ATTEMPTS):
        while len(sockets) < clients:
            batch = open_batch(host, port, request, min(CONNECT_BATCH, clients - len(sockets)))
            if not batch:
                break
            sockets += batch
        if len(sockets) >= clients:
            break
        time.sleep(0.5)
    return sockets


def serve(sockets: list[socket.socket]) -> None:
    times: dict[int, list[float]] = {}
    unstamped = [0]  # reads without a kernel timestamp (then: the time of the read)
    buffers: dict[int, bytes] = {}
    by_fd = {sock.fileno(): sock for sock in sockets}
    stdin = sys.stdin.fileno()
    poller = select.epoll()
    for fd in by_fd:
        poller.register(fd, select.EPOLLIN)
        buffers[fd] = b""
    poller.register(stdin, select.EPOLLIN)
    ancillary_size = socket.CMSG_SPACE(TIMESPEC.size)
    command = b""
    while True:
        for fd, _events in poller.poll(POLL_S):
            if fd == stdin:
                command += os.read(stdin, 4096) or b"quit\n"  # end of input: stop
                while b"\n" in command:
                    line, command = command.split(b"\n", 1)
                    if not obey(line.decode().strip(), times, by_fd, unstamped):
                        return
                continue
            sock = by_fd[fd]
            try:
                data, ancillary, _flags, _address = sock.recvmsg(READ_BYTES, ancillary_size)
            except BlockingIOError:
                continue
            except OSError:
                data, ancillary = b"", []
            if not data:
                poller.unregister(fd)
                del by_fd[fd]
                sock.close()
                continue
            buffer = buffers[fd] + data
            # Only whole events are parsed, so a seq split over two reads is seen once, whole.
            cut = buffer.rfind(b"\n\n")
            if cut >= 0:
                at = stamp(ancillary)
                if at is None:
                    unstamped[0] += 1
                    at = time.time()
                for match in SEQ.finditer(buffer, 0, cut):
                    times.setdefault(int(match.group(1)), []).append(at)
                buffer = buffer[cut + 2 :]
            buffers[fd] = buffer


def obey(
    line: str, times: dict[int, list[float]], by_fd: dict[int, socket.socket], unstamped: list[int]
) -> bool:
    """Run one command from the driver; False to stop."""
    command, _, argument = line.partition(" ")
    if command == "dump":
        snapshot = {str(seq): sorted(at) for seq, at in times.items()}
        times.clear()
        with open(argument, "w") as out:
            json.dump({"times": snapshot, "open": len(by_fd), "unstamped": unstamped[0]}, out)
        print("dumped", flush=True)
        return True
    return command != "quit"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--clients", type=int, required=True)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sockets = connect_all(args.host, args.port, args.path, args.clients)
    # Frames sent on connect (a retry hint, a backlog) are left unread or ignored: the
    # driver measures only windows it publishes after every client is ready.
    print(f"ready {len(sockets)} {args.clients - len(sockets)}", flush=True)
    try:
        serve(sockets)
    finally:
        for sock in sockets:
            sock.close()


if __name__ == "__main__":
    main()
