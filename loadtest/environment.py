"""The machine and the versions a benchmark ran on, for the header of docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata

from emostream.redis_server import find_redis_server

PACKAGES = (
    "quart",
    "hypercorn",
    "redis",
    "hiredis",
    "starlette",
    "uvicorn",
    "granian",
    "flask",
    "msgpack",
    "locust",
)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib() -> float:
    try:
        with open("/proc/meminfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return float("nan")


def redis_version() -> str:
    binary = find_redis_server()
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    for part in out.stdout.split():
        if part.startswith("v="):
            return part[2:]
    return out.stdout.strip()


def wrk_version() -> str:
    if not shutil.which("wrk"):
        return "not installed: the Python fallback generator was used"
    out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    first = (out.stdout or out.stderr).splitlines()
    return first[0].split(" [")[0] if first else "wrk"


def versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0], "redis-server": redis_version()}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "-"
    return found


def code_version(root: str) -> str:
    """The commit measured, and which tracked files differed from it (read-only git calls)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "diff", "--name-only", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    if not changed:
        return head
    return f"{head} with uncommitted changes to {', '.join(changed)}"


def machine() -> dict[str, str]:
    return {
        "cpus": str(os.cpu_count()),
        "memory": f"{memory_gib():.0f} GiB",
        "cpu": cpu_model(),
        "kernel": platform.release(),
        "load generator": wrk_version(),
    }
