"""Apache Kafka for the tests: one KRaft node (broker and controller in one JVM) run with ``java``.

Maven resolves the broker's jars from ``tests/support/kafka/pom.xml`` once into
``~/.cache/genres-tests/kafka-<version>/lib`` (``$GENRES_TESTS_CACHE`` or ``$XDG_CACHE_HOME``
move it); later runs start from there at once. Each :class:`ApacheKafka` formats its own log
directory in a temporary folder (``kafka-storage format``), listens on free loopback ports and
is tuned for tests: no initial rebalance delay, session timeouts down to 500 ms, single-replica
internal topics, and **no automatic topic creation**, so that the service's own topic creation
is what the tests exercise.

No JVM outlives the test session, even a ``kill -9``-ed one: the JVM is asked to die with its
parent (``PR_SET_PDEATHSIG``, set between fork and exec, so it is tied to the thread that spawns
it: spawn from a thread that lives as long as the broker), ``atexit`` stops it otherwise, and
temporary folders left by a killed session are removed by the next one.

``GENRES_TESTS_KAFKA_VERSION=4.1.2`` runs another Apache Kafka release than the pom's (Maven
is given ``-Dkafka.version``; its jars are cached beside the others): to try the service on
the version a platform team runs. CI runs the pom's version only.

:class:`Jvm` (one node's folder, settings, storage and process) is what the secured cluster
(``tests.support.kafka_cluster``) runs its four nodes with. (Over 300 lines: resolving the
jars, running a node and sweeping its leftovers share the cache, the folders and the reaping;
split, each part would restate the others'.)
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import hashlib
import os
import re
import resource
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import weakref
from base64 import urlsafe_b64encode
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Protocol, Self
from xml.etree import ElementTree

from genres.embedded import api_versions_probe, free_port

POM = Path(__file__).with_name("kafka") / "pom.xml"
MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
#: The broker's tuning for tests (also given to the testcontainers image, as KAFKA_* variables).
TEST_SETTINGS = {
    # The service creates its topics itself: a test must fail when it does not.
    "auto.create.topics.enable": "false",
    "num.partitions": "3",
    "default.replication.factor": "1",
    # One node: every internal topic with a single replica, and few partitions.
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "5",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "5",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    # Fast group joins: the first member's join is not held back, and the tests' 1 s
    # sessions are allowed (the default floor is 6 s).
    "group.initial.rebalance.delay.ms": "0",
    "group.min.session.timeout.ms": "500",
    # Records up to 16 MiB, as a broker whose operator accepts big records (Tansu does by
    # default): the service's own size check (1 MiB, then the dead-letter topic) is what the
    # hostile-input tests exercise, not the broker's default refusal above ~1 MiB.
    "message.max.bytes": str(16 * 1024 * 1024),
    # The log cleaner's buffer (on the heap, taken at start) at 16 MiB, not 128: enough for
    # the tests' compacted topics, and ~110 MiB less resident per broker.
    "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
    # Fewer threads on small machines.
    "num.network.threads": "2",
    "num.io.threads": "4",
    "background.threads": "4",
}
_DIR_PREFIX = "genres-kafka-"
_OWNER_FILE = "owner.pid"


class KafkaStartError(RuntimeError):
    """Apache Kafka could not be resolved or did not become ready."""


# -- what is there -------------------------------------------------------------------------


def pom_version(pom: Path = POM) -> str:
    """The Kafka version the pom asks for (its ``kafka.version`` property)."""
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    found = ElementTree.parse(pom).getroot().find("m:properties/m:kafka.version", namespace)
    if found is None or not (found.text or "").strip():
        raise KafkaStartError(f"{pom} has no <kafka.version> property")
    return (found.text or "").strip()


VERSION_VARIABLE = "GENRES_TESTS_KAFKA_VERSION"


def kafka_version() -> str:
    """The Apache Kafka version the tests run: ``$GENRES_TESTS_KAFKA_VERSION``, else the pom's."""
    chosen = os.environ.get(VERSION_VARIABLE, "").strip()
    if chosen and not re.fullmatch(r"\d+\.\d+\.\d+", chosen):
        raise KafkaStartError(f"{VERSION_VARIABLE}={chosen!r} is not a release such as 4.1.2")
    return chosen or pom_version()


def cache_root() -> Path:
    explicit = os.environ.get("GENRES_TESTS_CACHE", "").strip()
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg) if xdg else Path.home() / ".cache") / "genres-tests"


def lib_dir(version: str) -> Path:
    return cache_root() / f"kafka-{version}" / "lib"


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def resolved(version: str) -> bool:
    """True when the jars for this pom are in the cache already (no Maven needed)."""
    marker = lib_dir(version) / ".complete"
    return marker.is_file() and marker.read_text().strip() == _pom_digest()


@cache
def java_version() -> str | None:
    """``java -version``'s version string (``"17.0.15"``), or None without a working java."""
    java = shutil.which("java")
    if java is None:
        return None
    try:
        probe = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "([^"]+)"', probe.stderr + probe.stdout)
    return match.group(1) if probe.returncode == 0 and match else None


def java_major(version: str) -> int:
    head = version.split(".")
    return int(head[1]) if head[0] == "1" else int(re.sub(r"\D.*", "", head[0]) or 0)


def available() -> bool:
    """Java 17+ is there, and Maven too unless the jars are cached already."""
    version = java_version()
    if version is None or java_major(version) < 17:
        return False
    return shutil.which("mvn") is not None or resolved(kafka_version())


# -- resolving the jars --------------------------------------------------------------------


def resolve(version: str | None = None, *, timeout: float = 600.0) -> list[Path]:
    """The broker's classpath, resolving it with Maven first when it is not cached.

    Safe against concurrent test sessions (a file lock; the jars land in a scratch folder that
    is renamed into place only once complete).
    """
    version = version or kafka_version()
    lib = lib_dir(version)
    lib.parent.mkdir(parents=True, exist_ok=True)
    with open(lib.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not resolved(version):
            mvn = shutil.which("mvn")
            if mvn is None:
                raise KafkaStartError("Maven (mvn) is needed once to fetch Apache Kafka's jars")
            scratch = Path(tempfile.mkdtemp(prefix="lib-", dir=lib.parent))
            try:
                result = subprocess.run(
                    [
                        mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(POM),
                        "dependency:copy-dependencies", f"-DoutputDirectory={scratch}",
                        f"-Dkafka.version={version}",
                    ],
                    capture_output=True, text=True, timeout=timeout, check=False,
                    cwd=POM.parent,
                )  # fmt: skip
                if result.returncode != 0 or not any(scratch.glob("kafka_2.13-*.jar")):
                    raise KafkaStartError(
                        f"mvn could not resolve {POM} (exit {result.returncode}):\n"
                        + (result.stdout + result.stderr)[-3000:]
                    )
                (scratch / ".complete").write_text(_pom_digest() + "\n")
                shutil.rmtree(lib, ignore_errors=True)
                scratch.rename(lib)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
    return sorted(lib.glob("*.jar"))


# -- the broker ----------------------------------------------------------------------------


def _die_with_parent(parent: int) -> None:  # pragma: no cover - runs between fork and exec
    """``preexec_fn``: the kernel SIGKILLs the child when the spawning thread dies.

    Also lifts the open-files limit to its hard maximum: the broker keeps a few files open per
    partition, and a whole test session creates thousands of partitions (~1,700 descriptors
    two thirds into tests/integration), past a soft limit of 1,024."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
    with contextlib.suppress(Exception):
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        soft = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_dirs() -> None:
    """Remove the temporary folders of sessions that died without cleaning up (``kill -9``)."""
    for folder in Path(tempfile.gettempdir()).glob(_DIR_PREFIX + "*"):
        owner = folder / _OWNER_FILE
        try:
            pid = int(owner.read_text().strip())
        except (OSError, ValueError):
            continue
        if not _pid_alive(pid):
            shutil.rmtree(folder, ignore_errors=True)


class _Closeable(Protocol):
    def close(self) -> None: ...


_live: weakref.WeakSet[_Closeable] = weakref.WeakSet()
_live_lock = threading.Lock()


def track(owner: _Closeable) -> None:
    """Close ``owner`` (a node or a cluster) at exit if it is still running then."""
    with _live_lock:
        _live.add(owner)


def untrack(owner: _Closeable) -> None:
    with _live_lock:
        _live.discard(owner)


@atexit.register
def _stop_all() -> None:
    with _live_lock:
        owners = list(_live)
    for owner in owners:
        with contextlib.suppress(Exception):
            owner.close()


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID, base64url without padding (22 characters).

    Never one starting with ``-``, which the storage tool would take for an option (Kafka's own
    ``Uuid.randomUuid`` skips those too)."""
    while True:
        cluster_id = urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def new_folder() -> Path:
    """A temporary folder owned by this process: :func:`sweep_stale_dirs` removes it once the
    process is gone."""
    folder = Path(tempfile.mkdtemp(prefix=_DIR_PREFIX))
    (folder / _OWNER_FILE).write_text(f"{os.getpid()}\n")
    return folder


def jvm_options(heap: str) -> tuple[str, ...]:
    """Small heap, one GC thread, C1 only: starts faster and stays small; ample for tests."""
    return (
        "-Xms64m",
        f"-Xmx{heap}",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-Djava.awt.headless=true",
    )


def _log4j(path: Path) -> str:
    return (
        "appender.file.type = File\n"
        "appender.file.name = file\n"
        f"appender.file.fileName = {path}\n"
        "appender.file.layout.type = PatternLayout\n"
        "appender.file.layout.pattern = [%d] %p %m (%c)%n\n"
        "rootLogger.level = WARN\n"
        "rootLogger.appenderRef.file.ref = file\n"
        # start-up and group membership: what a failing test's reader wants to see
        "logger.server.name = kafka.server.KafkaRaftServer\n"
        "logger.server.level = INFO\n"
        "logger.groups.name = org.apache.kafka.coordinator.group\n"
        "logger.groups.level = INFO\n"
    )


class Jvm:
    """One Kafka JVM (broker, controller or both) in ``folder``: its settings, its storage and
    its process, which dies with the thread that spawns it (``PR_SET_PDEATHSIG``): spawn it
    from a thread that lives as long as the node. A respawn keeps the folder (and the data)."""

    def __init__(self, folder: Path, *, heap: str = "512m") -> None:
        self.folder = folder
        self.heap = heap
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        process = self.process
        return process.pid if process is not None and process.poll() is None else None

    def configure(self, settings: Mapping[str, str]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        properties = "".join(f"{key}={value}\n" for key, value in settings.items())
        (self.folder / "server.properties").write_text(properties)
        (self.folder / "log4j2.properties").write_text(_log4j(self.folder / "server.log"))

    def command(self, classpath: list[Path], *args: str) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise KafkaStartError("java is not on PATH")
        return [
            java,
            *jvm_options(self.heap),
            f"-Dlog4j2.configurationFile={self.folder / 'log4j2.properties'}",
            "-cp",
            os.pathsep.join(str(jar) for jar in classpath),
            *args,
        ]

    def format(self, classpath: list[Path], cluster_id: str, *options: str) -> None:
        """``kafka-storage format`` of the log directory, with the storage tool's ``options``
        (``--add-scram ...``)."""
        argv = self.command(
            classpath,
            STORAGE_TOOL,
            "format",
            "--cluster-id",
            cluster_id,
            "--config",
            str(self.folder / "server.properties"),
            *options,
        )
        with open(self.folder / "format.log", "wb") as log:
            result = subprocess.run(
                argv, stdout=log, stderr=subprocess.STDOUT, timeout=120, check=False
            )
        if result.returncode != 0:
            raise KafkaStartError(f"kafka-storage format failed:\n{self.log_text()}")

    def spawn(self, classpath: list[Path]) -> None:
        argv = self.command(classpath, MAIN_CLASS, str(self.folder / "server.properties"))
        parent = os.getpid()
        linux = sys.platform.startswith("linux")
        with open(self.folder / "stdout.log", "ab") as log:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the terminal reaches pytest, not the JVM
                preexec_fn=(lambda: _die_with_parent(parent)) if linux else None,
                cwd=self.folder,
            )

    def wait_answering(
        self, host: str, port: int, deadline: float, *, tls: ssl.SSLContext | None = None
    ) -> None:
        """Until ``host:port`` answers ApiVersions (over TLS with ``tls``); a KRaft broker opens
        its listeners only once the controller has unfenced it."""
        process = self.process
        assert process is not None
        while not api_versions_probe(host, port, timeout=1.0, tls=tls):
            if process.poll() is not None:
                raise KafkaStartError(
                    f"Apache Kafka exited with {process.returncode}:\n{self.log_text()}"
                )
            if time.monotonic() > deadline:
                raise KafkaStartError(
                    f"Apache Kafka did not answer on {host}:{port} in time:\n{self.log_text()}"
                )
            time.sleep(0.05)

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the JVM (``SIGSTOP`` freezes it, ``SIGCONT`` thaws it)."""
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)

    def kill(self) -> None:
        """SIGKILL, as a crash: no controlled shutdown, nothing flushed."""
        process = self.process
        if process is not None and process.poll() is None:
            self.signal(signal.SIGKILL)
            process.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (a controlled shutdown), SIGKILL after ``timeout`` seconds. Idempotent."""
        process = self.process
        if process is not None and process.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_text(self, chars: int = 4000) -> str:
        parts = []
        for name in ("format.log", "stdout.log", "server.log"):
            path = self.folder / name
            if path.exists():
                parts.append(f"--- {name}\n" + path.read_text(errors="replace")[-chars:])
        return "\n".join(parts)


class ApacheKafka:
    """One Apache Kafka node on ``127.0.0.1:<free port>``; ``with`` starts and stops it."""

    def __init__(self, *, host: str = "127.0.0.1", startup_timeout: float = 90.0) -> None:
        self.host = host
        self.startup_timeout = startup_timeout
        self.version = kafka_version()
        self.port: int | None = None
        self.controller_port: int | None = None
        self.dir: Path | None = None
        self.startup_seconds: float | None = None
        self._jvm: Jvm | None = None

    @property
    def bootstrap_servers(self) -> str:
        if self.port is None:
            raise RuntimeError("Apache Kafka has not been started")
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._jvm.pid if self._jvm is not None else None

    def log_text(self, chars: int = 4000) -> str:
        return self._jvm.log_text(chars) if self._jvm is not None else ""

    def _properties(self) -> dict[str, str]:
        assert self.dir is not None
        host, port, cport = self.host, self.port, self.controller_port
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{host}:{cport}",
            "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}",
            "advertised.listeners": f"PLAINTEXT://{host}:{port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.dir / "data"),
            **TEST_SETTINGS,
        }

    def start(self) -> Self:
        """Resolve (once), format and start the node, and wait until it answers."""
        started = time.monotonic()
        sweep_stale_dirs()
        classpath = resolve(self.version)
        for attempt in range(3):
            jvm = self._prepare()
            jvm.format(classpath, new_cluster_id())
            jvm.spawn(classpath)
            track(self)
            assert self.port is not None
            try:
                jvm.wait_answering(self.host, self.port, time.monotonic() + self.startup_timeout)
            except KafkaStartError:
                text = self.log_text()
                self.close()
                # a free port may have been taken in between: try other ones
                if attempt == 2 or "Address already in use" not in text:
                    raise
                continue
            self.startup_seconds = time.monotonic() - started
            return self
        raise AssertionError("unreachable")

    def _prepare(self) -> Jvm:
        self.dir = new_folder()
        self.port = free_port(self.host)
        self.controller_port = free_port(self.host)
        while self.controller_port == self.port:
            self.controller_port = free_port(self.host)
        self._jvm = Jvm(self.dir)
        self._jvm.configure(self._properties())
        return self._jvm

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (a controlled shutdown), SIGKILL after ``timeout`` seconds. Idempotent."""
        if self._jvm is not None:
            self._jvm.stop(timeout)
        untrack(self)

    def close(self) -> None:
        """Stop the node and delete its log directory."""
        self.stop()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __repr__(self) -> str:
        return f"ApacheKafka({self.version}, {self.host}:{self.port}, pid={self.pid})"


def main(argv: list[str]) -> int:
    """``python -m tests.support.apache_kafka resolve``: fetch the jars (CI does it before the
    tests, so that no test's timeout pays for the download); ``run``: a broker until Ctrl-C."""
    command = argv[1] if len(argv) > 1 else "resolve"
    if command == "resolve":
        jars = resolve()
        print(f"Apache Kafka {kafka_version()}: {len(jars)} jars in {lib_dir(kafka_version())}")
        return 0
    if command == "run":
        with contextlib.closing(ApacheKafka().start()) as node:
            print(f"{node!r} ready in {node.startup_seconds:.2f} s; Ctrl-C stops it", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
        return 0
    print("usage: python -m tests.support.apache_kafka [resolve|run]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
