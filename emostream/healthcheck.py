"""The container health check: ``python -m emostream.healthcheck`` exits 0 when the emostream
role running beside it is serving, 1 otherwise (docker/Dockerfile's HEALTHCHECK, compose).

It is Python because slim images have no curl. The role is read from the running process's
command line, so one HEALTHCHECK fits every role of the image: ``up``, ``ingest`` and
``delivery`` must answer ``GET /healthz`` on their port; a ``worker`` serves no HTTP, so it is
healthy while its heartbeat key (set with a TTL by the worker itself) exists in Redis.
"""

from __future__ import annotations

import os
import socket
import ssl
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from . import keys
from .settings import Settings

ROLES = ("up", "ingest", "worker", "delivery")
TIMEOUT_S = 3.0
ANY_ADDRESS = ("", "0.0.0.0", "::", "[::]")


def running_role(proc: Path = Path("/proc")) -> tuple[int, list[str]] | None:
    """(pid, arguments after the role's name) of the emostream role running beside this
    check, or None when there is none.

    Only processes with this check's root directory count: in a container without a PID
    namespace of its own (``buildah run --isolation chroot``) /proc lists the host's
    processes too, and an emostream of the host is not this container's."""
    root = os.stat("/")
    for cmdline in proc.glob("[0-9]*/cmdline"):
        try:
            if not os.path.samestat(os.stat(cmdline.parent / "root"), root):
                continue
            argv = [arg.decode(errors="replace") for arg in cmdline.read_bytes().split(b"\0")]
        except OSError:
            continue  # the process ended meanwhile, or is not ours to look at
        for index, arg in enumerate(argv[:-1]):
            if Path(arg).name == "emostream" and argv[index + 1] in ROLES:
                return int(cmdline.parent.name), argv[index + 1 :]
    return None


def flag(args: Sequence[str], name: str) -> str | None:
    """The value of ``--name value`` or ``--name=value`` in a role's arguments."""
    for index, arg in enumerate(args):
        if arg == name and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def check_http(settings: Settings) -> str:
    host = "127.0.0.1" if settings.host in ANY_ADDRESS else settings.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    scheme = "https" if settings.tls_certfile else "http"
    # The certificate names the public host, not the loopback this check dials.
    context = ssl._create_unverified_context() if settings.tls_certfile else None
    url = f"{scheme}://{host}:{settings.port}/healthz"
    with urllib.request.urlopen(url, timeout=TIMEOUT_S, context=context) as response:
        return f"{url}: {response.status}"


def check_worker(settings: Settings, pid: int) -> str:
    if settings.redis_url is None:
        return "worker with a private Redis: running"
    from .connection import sync_client

    client = sync_client(settings.redis_url)
    try:
        # Worker ids are "<hostname>-<pid>-<random>" (lifecycle.instance_id); the live-workers
        # index names them, on a single Redis and on a cluster (no keyspace scan).
        pattern = f"{socket.gethostname()}-{pid}-*"
        for member, _at_ms in client.zscan_iter(keys.LIVE_WORKERS, match=pattern, count=1000):
            worker = member.decode()
            if client.exists(keys.worker_heartbeat(worker)):
                return f"heartbeat {keys.worker_heartbeat(worker)}"
    finally:
        client.close()
    raise RuntimeError(f"no live worker heartbeat for {pattern}")


def main() -> int:
    found = running_role()
    if found is None:
        print("unhealthy: no emostream role is running", file=sys.stderr)
        return 1
    pid, (role, *args) = found
    try:
        settings = Settings.from_env(
            redis_url=flag(args, "--redis-url"),
            host=flag(args, "--host"),
            port=int(port) if (port := flag(args, "--port")) else None,
        )
        if role == "worker":
            print(check_worker(settings, pid))
        else:
            print(check_http(settings))
    except Exception as exc:  # any failure is the answer "unhealthy", said plainly
        print(f"unhealthy: {role}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
