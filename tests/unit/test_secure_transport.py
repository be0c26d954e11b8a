"""Kafka SASL/TLS and PostgreSQL TLS settings reach the clients that need them."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from genres.config import load_settings
from genres.errors import ConfigurationError
from genres.kafka.broker import security_options
from genres.kafka.entry import faststream_security


def test_plaintext_is_the_default_and_sends_no_credentials() -> None:
    settings = load_settings(kafka_bootstrap_servers="k:9092")
    assert security_options(settings) == {"security_protocol": "PLAINTEXT"}
    assert faststream_security(settings) is None


def test_sasl_ssl_with_scram_gives_credentials_and_a_verifying_tls_context() -> None:
    settings = load_settings(
        kafka_bootstrap_servers="k:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="genres",
        kafka_sasl_password="s3cret",
    )
    options = security_options(settings)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "genres"
    assert options["sasl_plain_password"] == "s3cret"
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    security = faststream_security(settings)
    assert isinstance(security, SASLScram512)
    assert security.use_ssl


@pytest.mark.parametrize(
    ("protocol", "security_type", "tls"),
    [("SASL_PLAINTEXT", SASLPlaintext, False), ("SSL", BaseSecurity, True)],
)
def test_sasl_plaintext_is_plain_without_tls_and_ssl_is_a_tls_context_only(
    protocol: str, security_type: type[BaseSecurity], tls: bool
) -> None:
    settings = load_settings(
        kafka_bootstrap_servers="k:9092",
        kafka_security_protocol=protocol,
        kafka_sasl_username="u",
        kafka_sasl_password="p",
    )
    security = faststream_security(settings)
    assert type(security) is security_type
    assert security.use_ssl is tls
    assert ("ssl_context" in security_options(settings)) is tls


@pytest.mark.parametrize(
    ("variable", "value"),
    [("KAFKA_SASL_MECHANISM", "GSSAPI-ISH"), ("KAFKA_SECURITY_PROTOCOL", "TLS")],
)
def test_an_unknown_protocol_or_mechanism_is_one_line_naming_it(variable: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(kafka_bootstrap_servers="k:9092", **{variable.lower(): value})
    message = str(caught.value)
    assert message.startswith(f"invalid configuration: {variable}: ")
    assert "\n" not in message


@pytest.mark.parametrize("missing", ["kafka_sasl_username", "kafka_sasl_password"])
def test_sasl_without_a_user_or_password_is_one_line_naming_it(missing: str) -> None:
    credentials = {"kafka_sasl_username": "u", "kafka_sasl_password": "p"}
    with pytest.raises(ConfigurationError) as caught:
        load_settings(kafka_security_protocol="SASL_PLAINTEXT", **(credentials | {missing: None}))
    assert str(caught.value) == (
        f"invalid configuration: KAFKA_SECURITY_PROTOCOL is SASL_PLAINTEXT but "
        f"{missing.upper()} is not set"
    )


def test_protocol_and_mechanism_are_read_in_any_case() -> None:
    settings = load_settings(
        kafka_security_protocol="sasl_ssl ",
        kafka_sasl_mechanism="scram-sha-256",
        kafka_sasl_username="u",
        kafka_sasl_password="p",
    )
    assert settings.kafka_security_protocol == "SASL_SSL"
    assert isinstance(faststream_security(settings), SASLScram256)


def test_the_sasl_password_is_not_shown_in_the_settings_repr() -> None:
    settings = load_settings(kafka_sasl_password="s3cret")
    assert "s3cret" not in repr(settings)


# -- mutual TLS ------------------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private CA, a server certificate for 127.0.0.1 and a client certificate (with its
    key plain, encrypted with ``pw``, and a key of another certificate), made by openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("pki")
    curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *curve, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=genres test CA", cwd=folder)  # fmt: skip
    for name, extra in (("server", ["-addext", "subjectAltName=IP:127.0.0.1"]), ("client", [])):
        _openssl("req", *curve, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN=genres-{name}", *extra, cwd=folder)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-copy_extensions", "copy", "-days", "2",
                 "-out", f"{name}.pem", cwd=folder)  # fmt: skip
    _openssl("pkey", "-in", "client.key", "-aes256", "-passout", "pass:pw",
             "-out", "client-encrypted.key", cwd=folder)  # fmt: skip
    (folder / "junk.pem").write_text("not a certificate\n")
    return folder


async def _handshake(client: ssl.SSLContext, pki: Path) -> str:
    """Connect with ``client`` to a TLS server that demands a client certificate from the CA;
    returns the client's common name as the server saw it."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=pki / "ca.pem")
    server.load_cert_chain(pki / "server.pem", pki / "server.key")
    server.verify_mode = ssl.CERT_REQUIRED
    seen: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert")
        subject = dict(item[0] for item in peer["subject"])
        seen.set_result(subject["commonName"])
        writer.close()

    listener = await asyncio.start_server(accept, "127.0.0.1", 0, ssl=server)
    port = listener.sockets[0].getsockname()[1]
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
        name = await asyncio.wait_for(seen, 5)
        writer.close()
        return name
    finally:
        listener.close()
        await listener.wait_closed()


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
async def test_mutual_tls_presents_the_client_certificate(pki: Path, protocol: str) -> None:
    settings = load_settings(
        kafka_bootstrap_servers="k:9093",
        kafka_security_protocol=protocol,
        kafka_sasl_username="genres",
        kafka_sasl_password="p",
        kafka_ssl_cafile=str(pki / "ca.pem"),
        kafka_ssl_certfile=str(pki / "client.pem"),
        kafka_ssl_keyfile=str(pki / "client-encrypted.key"),
        kafka_ssl_key_password="pw",
    )
    security = faststream_security(settings)
    assert security is not None
    assert security.ssl_context is not None
    for context in (security_options(settings)["ssl_context"], security.ssl_context):
        assert await _handshake(context, pki) == "genres-client"


@pytest.mark.parametrize(
    ("files", "password", "complaint"),
    [
        pytest.param(
            ("client.pem", "client-encrypted.key"),
            None,
            "KAFKA_SSL_KEYFILE: the private key is encrypted and KAFKA_SSL_KEY_PASSWORD is not set",
            id="encrypted key, no password",
        ),
        pytest.param(
            ("client.pem", "client-encrypted.key"),
            "wrong",
            "KAFKA_SSL_KEYFILE: KAFKA_SSL_KEY_PASSWORD does not decrypt its private key",
            id="wrong password",
        ),
        pytest.param(
            ("client.pem", "server.key"),
            None,
            "KAFKA_SSL_KEYFILE: the private key is not the key of the certificate",
            id="another certificate's key",
        ),
        pytest.param(
            ("junk.pem", "client.key"),
            None,
            "KAFKA_SSL_CERTFILE: no PEM certificate in it",
            id="not a certificate",
        ),
        pytest.param(
            ("client.pem", None),
            None,
            "KAFKA_SSL_CERTFILE: no PEM private key in it",
            id="no key",
        ),
    ],
)
def test_a_client_certificate_that_cannot_be_loaded_names_the_variable(
    pki: Path, files: tuple[str, str | None], password: str | None, complaint: str
) -> None:
    certfile, keyfile = files
    settings = load_settings(
        kafka_security_protocol="SSL",
        kafka_ssl_certfile=str(pki / certfile),
        kafka_ssl_keyfile=str(pki / keyfile) if keyfile else None,
        kafka_ssl_key_password=password,
    )
    with pytest.raises(ConfigurationError) as caught:
        security_options(settings)
    assert str(caught.value).startswith(complaint)
    assert "\n" not in str(caught.value)
    assert "wrong" not in str(caught.value)


@pytest.mark.parametrize(
    "variable", ["KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE"]
)
def test_a_file_that_does_not_exist_or_cannot_be_read_names_its_variable(
    pki: Path, variable: str
) -> None:
    files = {"kafka_ssl_certfile": str(pki / "client.pem")}
    for unreadable, reason in ((pki / "absent.pem", "no such file"), (pki, "is a directory")):
        with pytest.raises(ConfigurationError) as caught:
            load_settings(**(files | {variable.lower(): str(unreadable)}))
        assert f"{variable}: cannot read {unreadable}: {reason}" in str(caught.value)


def test_a_ca_file_without_certificates_names_the_variable(pki: Path) -> None:
    settings = load_settings(kafka_security_protocol="SSL", kafka_ssl_cafile=str(pki / "junk.pem"))
    with pytest.raises(ConfigurationError, match=r"^KAFKA_SSL_CAFILE: cannot load .*junk\.pem: "):
        security_options(settings)


def test_a_key_without_its_certificate_is_refused(pki: Path) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(kafka_ssl_keyfile=str(pki / "client.key"))
    assert "KAFKA_SSL_KEYFILE is set but KAFKA_SSL_CERTFILE is not" in str(caught.value)
