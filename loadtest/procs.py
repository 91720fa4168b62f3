"""Child processes of the benchmarks: servers under test and emostream roles, on loopback.

Every child is started with a deadline to become healthy and is always stopped (SIGTERM, then
SIGKILL) by the context manager that started it, so a failed run leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# The load generators repeat a few bodies from a bounded audience far faster than any person
# taps: a per-user limit that still runs its check on every request but never refuses, so
# the figures include its cost and measure accepted reactions, not 429s.
UNLIMITED_USER_RATE = "1e9"


def child_env(redis_url: str | None, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMOSTREAM_")}
    # BENCH_USER_RATE=0 turns the check off, to measure its cost (EMOSTREAM_* are not passed).
    env["EMOSTREAM_USER_RATE"] = os.environ.get("BENCH_USER_RATE", UNLIMITED_USER_RATE)
    env["EMOSTREAM_USER_BURST"] = UNLIMITED_USER_RATE
    if redis_url is not None:
        env["EMOSTREAM_REDIS_URL"] = redis_url
    env.update(overrides)
    return env


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1.0) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{process.args!r} not healthy within {timeout_s} s")


@contextlib.contextmanager
def child(
    args: list[str], env: dict[str, str], health_url: str | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            if health_url is not None:
                wait_healthy(health_url, process)
            yield process
        except BaseException:
            log.seek(0)
            sys.stderr.write(log.read()[-3000:].decode(errors="replace"))
            raise
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
