"""Redis over TLS (rediss://): every role as a real process talking to a private redis-server
through its TLS port only, with the server's CA and a client certificate given as redis-py URL
query arguments, counting exactly end to end; and a client that cannot prove either side is
refused. The certificates are made per test run by trustme, in the test's directory."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
import redis
import trustme

from emostream.redis_server import PrivateRedis, free_port

from .conftest import ProcessFactory
from .test_e2e import check_pipeline


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


@dataclass
class TlsRedis:
    server: PrivateRedis
    tls_port: int
    files: TlsFiles

    def url(self, *, client_cert: bool = True, ca: bool = True) -> str:
        query = {}
        if ca:
            query["ssl_ca_certs"] = str(self.files.ca)
        if client_cert:
            query["ssl_certfile"] = str(self.files.client_cert)
            query["ssl_keyfile"] = str(self.files.client_key)
        return f"rediss://127.0.0.1:{self.tls_port}/0?{urlencode(query)}"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("emostream-role@example.org")
    files = TlsFiles(
        *(directory / name for name in ("ca", "server", "server-key", "client", "client-key"))
    )
    ca.cert_pem.write_to_path(str(files.ca))
    server.cert_chain_pems[0].write_to_path(str(files.server_cert))
    server.private_key_pem.write_to_path(str(files.server_key))
    client.cert_chain_pems[0].write_to_path(str(files.client_cert))
    client.private_key_pem.write_to_path(str(files.client_key))
    return files


@pytest.fixture(scope="module")
def tls_redis(tls_files: TlsFiles) -> Iterator[TlsRedis]:
    """A redis-server with a TLS port that wants client certificates (mutual TLS). Its plain
    port, on loopback, is only how the fixture sees it start and the operator's view."""
    tls_port = free_port()
    args = [
        "--tls-port", str(tls_port),
        "--tls-cert-file", str(tls_files.server_cert),
        "--tls-key-file", str(tls_files.server_key),
        "--tls-ca-cert-file", str(tls_files.ca),
        "--tls-auth-clients", "yes",
    ]  # fmt: skip
    with PrivateRedis(extra_args=args) as server:
        yield TlsRedis(server, tls_port, tls_files)


@pytest.mark.anyio
@pytest.mark.e2e
async def test_every_role_counts_exactly_over_tls(tls_redis: TlsRedis, tmp_path: Path) -> None:
    factory = ProcessFactory(tls_redis.url(), str(tmp_path))
    try:
        ingest = factory.role("ingest")
        factory.role("worker")
        delivery = factory.role("delivery")
        await check_pipeline(ingest.url, delivery.url, "tls-1")
    finally:
        factory.stop_all()


def test_a_client_that_cannot_prove_either_side_is_refused(tls_redis: TlsRedis) -> None:
    trusted = redis.Redis.from_url(tls_redis.url())
    assert trusted.ping()
    trusted.close()
    # The server's certificate is not trusted without the CA.
    stranger = redis.Redis.from_url(tls_redis.url(ca=False), socket_timeout=5)
    with pytest.raises(redis.exceptions.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        stranger.ping()
    stranger.close()
    # The server wants a client certificate.
    anonymous = redis.Redis.from_url(tls_redis.url(client_cert=False), socket_timeout=5)
    with pytest.raises(redis.exceptions.ConnectionError):
        anonymous.ping()
    anonymous.close()
    # Plain text to the TLS port is not Redis to it.
    plain = redis.Redis(port=tls_redis.tls_port, socket_timeout=5)
    with pytest.raises(redis.exceptions.ConnectionError):
        plain.ping()
    plain.close()
