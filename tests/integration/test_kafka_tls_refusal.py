"""A failed TLS handshake with the broker is named at start (not "cannot reach the broker").

aiokafka's bootstrap logs the handshake's error and raises a bare connection error, so the
service probes each bootstrap server once (``genres.kafka.refusals.probe``). Here the "broker"
is a TLS listener with a certificate made by ``openssl``: the handshake is all that is tested.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from genres.config import load_settings
from genres.embedded import free_port
from genres.errors import ClusterRefused, Refusal
from genres.kafka.refusals import probe

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
async def listener(certificate: tuple[Path, Path]) -> AsyncIterator[int]:
    """A TLS listener that closes each connection after its handshake."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)

    async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(close, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
def requiring_client_certificates(certificate: tuple[Path, Path]) -> Iterator[int]:
    """A listener refusing clients without a certificate, with the TLS alert a broker sends
    (openssl's server; asyncio's closes without one)."""
    cert, key = certificate
    port = free_port()
    server = subprocess.Popen(
        [
            "openssl",
            "s_server",
            "-Verify",
            "1",
            "-verify_return_error",
            "-quiet",
            "-naccept",
            "1",
            "-accept",
            f"127.0.0.1:{port}",
            "-cert",
            str(cert),
            "-key",
            str(key),
            "-CAfile",
            str(cert),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield port
    finally:
        server.kill()
        server.wait()


async def test_an_untrusted_broker_certificate_is_a_tls_refusal(listener: int) -> None:
    settings = load_settings(
        kafka_bootstrap_servers=f"127.0.0.1:{listener}", kafka_security_protocol="SSL"
    )
    with pytest.raises(ClusterRefused) as raised:
        await probe(settings, timeout_ms=5000)
    assert raised.value.refusal is Refusal.TLS
    line = str(raised.value)
    assert "certificate verify failed: self" in line  # "self-signed" / "self signed"
    assert "KAFKA_SSL_CAFILE" in line


async def test_a_trusted_broker_is_no_refusal(
    listener: int, certificate: tuple[Path, Path]
) -> None:
    settings = load_settings(
        kafka_bootstrap_servers=f"127.0.0.1:{listener}",
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=str(certificate[0]),
    )
    # The handshake succeeds; the listener then closes, which is the clients' business.
    await probe(settings, timeout_ms=5000)


async def test_a_refused_client_certificate_is_a_tls_refusal(
    requiring_client_certificates: int, certificate: tuple[Path, Path]
) -> None:
    settings = load_settings(
        kafka_bootstrap_servers=f"127.0.0.1:{requiring_client_certificates}",
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=str(certificate[0]),
    )
    for _ in range(50):  # until openssl listens
        try:
            await probe(settings, timeout_ms=5000)
        except ClusterRefused as exc:
            refusal = exc
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("no refusal")
    assert refusal.refusal is Refusal.TLS
    assert "certificate required" in str(refusal)
    assert "KAFKA_SSL_CERTFILE" in str(refusal)
