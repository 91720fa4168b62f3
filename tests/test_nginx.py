"""docker/nginx.conf in front of real ingest, worker and delivery processes, on Debian's nginx.

The config is rendered the way the nginx image renders it (only the placeholders it
documents are substituted) for local ports and a throwaway self-signed certificate, and
nginx runs as a foreground child with its own prefix, pid and error log in tmp_path.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

import httpx
import pytest

from emostream.deliver.frames import stream_swarm_windows
from emostream.redis_server import free_port
from emostream.settings import Settings

from .conftest import ProcessFactory
from .test_e2e import check_pipeline

ROOT = Path(__file__).resolve().parents[1]
NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
OPENSSL = shutil.which("openssl")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(NGINX is None, reason="needs nginx (apt-get install nginx; .ci/run does)"),
    pytest.mark.skipif(OPENSSL is None, reason="needs openssl for a throwaway certificate"),
]

# Around nginx.conf: what the official image's own nginx.conf gives it (http context,
# mime types), plus a prefix of our own: nothing is written outside tmp_path.
MAIN = """
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 1024; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/emostream.conf;
}}
"""


def render(ingest: str, delivery: str, http_port: int, https_port: int, tls: Path) -> str:
    """docker/nginx.conf with its placeholders filled, as envsubst fills only the variables
    that are set: every nginx $variable stays as it is."""
    template = (ROOT / "docker" / "nginx.conf").read_text()
    return Template(template).safe_substitute(
        INGEST_UPSTREAM=ingest,
        DELIVERY_UPSTREAM=delivery,
        LISTEN_HTTP=f"127.0.0.1:{http_port}",
        LISTEN_HTTPS=f"127.0.0.1:{https_port}",
        TLS_CERTIFICATE=str(tls / "cert.pem"),
        TLS_CERTIFICATE_KEY=str(tls / "key.pem"),
    )


@dataclass
class Edge:
    url: str
    https_url: str
    ingest_url: str
    delivery_url: str


@pytest.fixture
def edge(processes: ProcessFactory, tmp_path: Path) -> Iterator[Edge]:
    ingest, _worker, delivery = processes.start_many(
        [("ingest", {}), ("worker", {}), ("delivery", {})]
    )
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    assert OPENSSL is not None and NGINX is not None
    subprocess.run(
        [OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=localhost", "-keyout", str(prefix / "key.pem")]
        + ["-out", str(prefix / "cert.pem")],
        check=True,
        capture_output=True,
        timeout=60,
    )
    http_port, https_port = free_port(), free_port()
    (prefix / "emostream.conf").write_text(
        render(
            f"127.0.0.1:{ingest.port}", f"127.0.0.1:{delivery.port}", http_port, https_port, prefix
        )
    )
    (prefix / "nginx.conf").write_text(MAIN.format(prefix=prefix))
    error_log = prefix / "error.log"
    nginx = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(error_log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert nginx.poll() is None, f"nginx exited:\n{error_log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, error_log.read_text()[-3000:]
            time.sleep(0.05)
        yield Edge(url, f"https://127.0.0.1:{https_port}", ingest.url, delivery.url)
    finally:
        nginx.terminate()
        nginx.wait(timeout=20)


@pytest.mark.anyio
async def test_reactions_through_nginx_are_counted_exactly(edge: Edge) -> None:
    """POSTs and the SSE stream both through nginx: every window's counts add up to exactly
    what got 202, without seq gaps; Last-Event-ID resume and history too."""
    await check_pipeline(edge.url, edge.url, "through-nginx")


@pytest.mark.anyio
async def test_windows_pass_nginx_unbuffered(edge: Edge) -> None:
    """The same window reaches a client through nginx within 100 ms of a client connected to
    the delivery node directly: nginx passes each frame on, it does not buffer the stream."""
    event = "unbuffered"
    arrivals: dict[str, dict[int, float]] = {"direct": {}, "nginx": {}}
    wanted = 4

    async def watch(name: str, base_url: str) -> None:
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=30.0)) as client,
            client.stream("GET", f"{base_url}/v1/events/{event}/stream") as response,
        ):
            assert response.status_code == 200
            async for window in stream_swarm_windows(response.aiter_lines()):
                arrivals[name][window["seq"]] = time.monotonic()
                if len(arrivals[name]) > wanted:
                    return

    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{edge.ingest_url}/v1/events/{event}/reactions",
            json={"user_id": "u1", "emoji": "🔥"},
        )
        assert response.status_code == 202
        watchers = [
            asyncio.create_task(watch("direct", edge.delivery_url)),
            asyncio.create_task(watch("nginx", edge.url)),
        ]
        # Keep the event busy: every window carries a reaction.
        while not all(w.done() for w in watchers):
            await client.post(
                f"{edge.url}/v1/events/{event}/reactions", json={"user_id": "u2", "emoji": "😂"}
            )
            await asyncio.wait(watchers, timeout=0.5)
        await asyncio.gather(*watchers)

    # The first window each client got is its backlog (sent on connecting): compare the
    # live ones that both received.
    direct, nginx = arrivals["direct"], arrivals["nginx"]
    common = sorted(set(direct) & set(nginx))[1:]
    assert len(common) >= 3, arrivals
    lags = {seq: nginx[seq] - direct[seq] for seq in common}
    assert all(abs(lag) < 0.1 for lag in lags.values()), f"seconds behind direct: {lags}"


def test_a_body_over_the_ingest_cap_gets_the_json_413_from_nginx(edge: Edge) -> None:
    """4 MB is refused by nginx itself, in the project's error shape, readable by urllib
    (which sends the whole body first) and by curl (which waits for 100-continue)."""
    body = b"[" + b" " * (4 * 1024 * 1024) + b"]"
    assert len(body) > Settings().max_body_bytes
    expected_code = "too_large"
    for path in ("/v1/events/live/reactions", "/send_emoji"):
        request = urllib.request.Request(
            f"{edge.url}{path}",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=30)
        answer = caught.value
        assert answer.code == 413
        assert answer.headers["Content-Type"] == "application/json"
        error = json.loads(answer.read())
        assert error["error"]["code"] == expected_code
        assert set(error["error"]) == {"code", "message", "field"}
        assert error["error"]["field"] is None and error["error"]["message"]

    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is missing: urllib's answer was checked")
    body_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"emostream-413-{os.getpid()}.json"
    body_file.write_bytes(body)
    try:
        result = subprocess.run(
            [curl, "-sS", "-X", "POST", "-H", "Content-Type: application/json"]
            + ["--data-binary", f"@{body_file}", "-w", "\n%{http_code} %{content_type}"]
            + [f"{edge.url}/v1/events/live/reactions"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        body_file.unlink()
    assert result.returncode == 0, result.stderr
    text, status = result.stdout.rsplit("\n", 1)
    assert status == "413 application/json"
    curl_error: dict[str, Any] = json.loads(text)
    assert curl_error["error"]["code"] == expected_code


def test_the_edge_speaks_http2_over_tls_and_routes_by_path(edge: Edge) -> None:
    """The TLS listener negotiates HTTP/2; reaction POSTs reach ingest, the rest delivery."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("needs curl for HTTP/2")
    result = subprocess.run(
        [curl, "-sS", "-k", "--http2", "-o", "/dev/null", "-w", "%{http_version} %{http_code}"]
        + [f"{edge.https_url}/healthz"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.stdout == "2 200", result.stderr
    with httpx.Client(verify=False) as client:
        assert client.get(f"{edge.https_url}/healthz").json()["role"] == "delivery"
        posted = client.post(
            f"{edge.https_url}/v1/events/live/reactions", json={"user_id": "u", "emoji": "🔥"}
        )
        assert posted.status_code == 202 and posted.json() == {"accepted": 1}
        windows = client.get(f"{edge.https_url}/v1/events/live/windows?after=0")
        assert windows.status_code == 200 and isinstance(windows.json(), list)
