"""A private CA and the certificates of the secured test cluster, made with ``openssl``.

* the CA (``ca.pem``), which the brokers trust for client certificates and clients trust for
  the brokers';
* the brokers' certificate (``subjectAltName`` ``IP:127.0.0.1`` and ``DNS:localhost``) in a
  PKCS12 keystore;
* one client key (EC P-256, encrypted with ``key_password``) with three certificates for
  ``CN=<client>``: a good one, one that expired in 2020, and one from another CA
  (``foreign_ca.pem``, also what a client given the wrong CA trusts).
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

_CURVE = ("-pkeyopt", "ec_paramgen_curve:P-256")
#: ``openssl ca`` is the one openssl 3.0 tool that signs with dates in the past.
_CA_CONFIG = """\
[ca]
default_ca = test
[test]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = any
unique_subject = no
copy_extensions = copy
[any]
commonName = supplied
"""


class TlsError(RuntimeError):
    """openssl is missing or refused a step."""


@dataclass(frozen=True)
class Tls:
    """The files, all under one folder."""

    ca_file: Path
    keystore: Path
    keystore_password: str
    client_cert_file: Path
    client_key_file: Path
    key_password: str
    expired_cert_file: Path
    foreign_ca_file: Path
    foreign_cert_file: Path


def available() -> bool:
    return shutil.which("openssl") is not None


def _openssl(folder: Path, *args: str) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise TlsError("openssl is needed to make the test cluster's certificates")
    result = subprocess.run(
        [openssl, *args], cwd=folder, capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise TlsError(f"openssl {args[0]} failed: {result.stderr.strip()[-2000:]}")


def _ca(folder: Path, name: str) -> None:
    _openssl(
        folder, "req", "-x509", "-newkey", "ec", *_CURVE, "-nodes", "-days", "30",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN=genres tests {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip


def _sign(folder: Path, ca: str, request: str, out: str, extensions: str) -> None:
    (folder / f"{out}.ext").write_text(extensions)
    _openssl(
        folder, "x509", "-req", "-in", request, "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-days", "30", "-sha256", "-extfile", f"{out}.ext", "-out", out,
    )  # fmt: skip


def make(folder: Path, *, client: str) -> Tls:
    """Make every file in ``folder`` (created); the client certificates say ``CN=<client>``."""
    folder.mkdir(parents=True, exist_ok=True)
    store_password = secrets.token_urlsafe(12)
    key_password = secrets.token_urlsafe(12)
    _ca(folder, "ca")
    _ca(folder, "foreign_ca")

    # the brokers: one certificate for all three, all on 127.0.0.1
    _openssl(
        folder, "req", "-new", "-newkey", "ec", *_CURVE, "-nodes", "-keyout", "broker.key",
        "-subj", "/CN=localhost", "-out", "broker.csr",
    )  # fmt: skip
    _sign(
        folder, "ca", "broker.csr", "broker.pem",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
    )  # fmt: skip
    _openssl(
        folder, "pkcs12", "-export", "-in", "broker.pem", "-inkey", "broker.key",
        "-certfile", "ca.pem", "-name", "broker", "-out", "broker.p12",
        "-passout", f"pass:{store_password}",
    )  # fmt: skip

    # the client: one key, three certificates
    _openssl(
        folder, "genpkey", "-algorithm", "EC", *_CURVE, "-aes-256-cbc",
        "-pass", f"pass:{key_password}", "-out", "client.key",
    )  # fmt: skip
    _openssl(
        folder, "req", "-new", "-key", "client.key", "-passin", f"pass:{key_password}",
        "-subj", f"/CN={client}", "-out", "client.csr",
    )  # fmt: skip
    client_extensions = "extendedKeyUsage=clientAuth\n"
    _sign(folder, "ca", "client.csr", "client.pem", client_extensions)
    _sign(folder, "foreign_ca", "client.csr", "foreign_client.pem", client_extensions)
    (folder / "ca.cnf").write_text(_CA_CONFIG)
    (folder / "index.txt").write_text("")
    (folder / "serial").write_text("1000\n")
    _openssl(
        folder, "ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key",
        "-in", "client.csr", "-startdate", "20200101000000Z", "-enddate", "20200102000000Z",
        "-notext", "-out", "expired_client.pem",
    )  # fmt: skip
    return Tls(
        ca_file=folder / "ca.pem",
        keystore=folder / "broker.p12",
        keystore_password=store_password,
        client_cert_file=folder / "client.pem",
        client_key_file=folder / "client.key",
        key_password=key_password,
        expired_cert_file=folder / "expired_client.pem",
        foreign_ca_file=folder / "foreign_ca.pem",
        foreign_cert_file=folder / "foreign_client.pem",
    )
