"""A secured, replicated Apache Kafka for the tests: the shape a platform team runs.

One KRaft controller (``process.roles=controller``: losing brokers never loses the metadata
quorum) and three brokers (node ids 0, 1, 2, the indexes of :meth:`SecuredCluster.kill` and
friends), each listening on loopback on

* ``CLIENT``: SASL_SSL, mechanisms SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN
  (:attr:`SecuredCluster.bootstrap_servers`);
* ``MTLS``: SSL with ``ssl.client.auth=required``; a certificate's ``CN`` is its principal's
  name (``CN=genres`` is ``User:genres``) (:attr:`SecuredCluster.mtls_bootstrap_servers`);
* ``INTERNAL``: PLAINTEXT, between brokers (and to the controller), as ``User:ANONYMOUS``.

Replication factor 3 by default and for the internal topics, ``min.insync.replicas=2``, no
automatic topic creation, and the standard authorizer denying whatever no ACL allows;
``User:ANONYMOUS`` (the nodes) and ``User:admin`` are super users. Every user of
:data:`USERS` has a random password for the three mechanisms (SCRAM credentials are written
at format time, PLAIN ones are the listener's JAAS users). The certificates come from
``tests.support.kafka_tls``; the JVMs, the jars and the leftovers' sweeping from
``tests.support.apache_kafka``.

The four JVMs start side by side (ready in 7-15 s on 2 busy cores, ~620 MiB resident); they
die with the thread that spawned them, so one thread of the cluster's own spawns them all,
restarts included: tests may call :meth:`SecuredCluster.start` from any thread. ACLs are set
and cleared through ``tests.support.cluster_admin``, which waits until every broker applies
them.

(Over 300 lines: the nodes' settings, the clients' settings and the life cycle all follow
from the same ports, users and certificates; apart, each would hand the others its state.)
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
import ssl
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self

from aiokafka.protocol.metadata import MetadataRequest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from genres.embedded import free_port
from tests.support import apache_kafka, cluster_admin, freezing, kafka_tls
from tests.support.apache_kafka import Jvm, KafkaStartError
from tests.support.cluster_admin import AclLike, acl_binding

BROKERS = 3
CONTROLLER_ID = 100
ADMIN = "admin"
#: The super user (the bed's own admin actions), the service's user, one with no ACL at all.
USERS = (ADMIN, "genres", "guest")
MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")
#: The certificate's common name, the mTLS principal's name (``User:genres``).
CERTIFICATE_USER = "genres"
#: What differs from the single node's tuning: replicated, with quorum writes.
REPLICATED = {
    "default.replication.factor": "3",
    "min.insync.replicas": "2",
    "offsets.topic.replication.factor": "3",
    "transaction.state.log.replication.factor": "3",
    "transaction.state.log.min.isr": "2",
    "share.coordinator.state.topic.replication.factor": "3",
    "share.coordinator.state.topic.min.isr": "2",
}
#: A crashed broker is fenced (and its partitions led elsewhere) after 4.5 s without a
#: heartbeat, not 9 s: the failover scenarios pay for it in time.
_LIVENESS = {"broker.session.timeout.ms": "4500", "broker.heartbeat.interval.ms": "1000"}
_SECURED = {
    "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "allow.everyone.if.no.acl.found": "false",
    "super.users": f"User:ANONYMOUS;User:{ADMIN}",
}


class SecuredCluster:
    """A controller and three brokers; ``with`` starts and closes them."""

    def __init__(
        self, *, heap: str = "320m", controller_heap: str = "160m", timeout: float = 120.0
    ) -> None:
        self.host = "127.0.0.1"
        self.heap = heap
        self.controller_heap = controller_heap
        self.timeout = timeout
        self.users = {name: secrets.token_urlsafe(12) for name in USERS}
        self.startup_seconds: float | None = None
        self.folder: Path | None = None
        self.tls: kafka_tls.Tls | None = None
        self._controller: Jvm | None = None
        self._brokers: list[Jvm] = []
        self._ports: list[dict[str, int]] = []
        self._controller_port = 0
        self._classpath: list[Path] = []
        self._admin: AdminClient | None = None
        self._paused: set[int] = set()
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="kafka-cluster-spawner")

    # -- addresses and credentials ----------------------------------------------------------

    def _list(self, listener: str) -> str:
        return ",".join(f"{self.host}:{ports[listener]}" for ports in self._ports)

    @property
    def bootstrap_servers(self) -> str:
        """The SASL_SSL listeners, ``127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3``."""
        return self._list("CLIENT")

    @property
    def mtls_bootstrap_servers(self) -> str:
        return self._list("MTLS")

    @property
    def internal_bootstrap_servers(self) -> str:
        """PLAINTEXT, super user: for the bed's looks that must not depend on security."""
        return self._list("INTERNAL")

    def _tls(self) -> kafka_tls.Tls:
        if self.tls is None:
            raise RuntimeError("the cluster has not been started")
        return self.tls

    @property
    def ca_file(self) -> Path:
        return self._tls().ca_file

    @property
    def client_cert_file(self) -> Path:
        return self._tls().client_cert_file

    @property
    def client_key_file(self) -> Path:
        return self._tls().client_key_file

    @property
    def client_key_password(self) -> str:
        return self._tls().key_password

    def client_config(self, user: str = ADMIN, mechanism: str = "SCRAM-SHA-512") -> dict[str, Any]:
        """confluent-kafka settings for ``user``: SASL_SSL with ``mechanism``, or with
        ``mechanism="mTLS"`` the client certificate (whose user is :data:`CERTIFICATE_USER`)."""
        if mechanism == "mTLS":
            tls = self._tls()
            return {
                "bootstrap.servers": self.mtls_bootstrap_servers,
                "security.protocol": "SSL",
                "ssl.ca.location": str(tls.ca_file),
                "ssl.certificate.location": str(tls.client_cert_file),
                "ssl.key.location": str(tls.client_key_file),
                "ssl.key.password": tls.key_password,
            }
        if mechanism not in MECHANISMS:
            raise ValueError(f"unknown mechanism {mechanism!r}")
        return {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": mechanism,
            "sasl.username": user,
            "sasl.password": self.users[user],
            "ssl.ca.location": str(self.ca_file),
        }

    def admin_config(self) -> dict[str, Any]:
        """confluent-kafka settings for the super user."""
        return self.client_config(ADMIN)

    def settings_env(
        self, user: str = "genres", mechanism: str = "SCRAM-SHA-512"
    ) -> dict[str, str]:
        """The service's environment for ``user`` (``docs/interface.md``'s names); with
        ``mechanism="mTLS"`` the client certificate, whose user is :data:`CERTIFICATE_USER`."""
        tls = self._tls()
        common = {"KAFKA_SSL_CAFILE": str(tls.ca_file), "KAFKA_ENABLE_IDEMPOTENCE": "true"}
        if mechanism == "mTLS":
            if user != CERTIFICATE_USER:
                raise ValueError(f"the client certificate is {CERTIFICATE_USER}'s, not {user}'s")
            return common | {
                "KAFKA_BOOTSTRAP_SERVERS": self.mtls_bootstrap_servers,
                "KAFKA_SECURITY_PROTOCOL": "SSL",
                "KAFKA_SSL_CERTFILE": str(tls.client_cert_file),
                "KAFKA_SSL_KEYFILE": str(tls.client_key_file),
                "KAFKA_SSL_KEY_PASSWORD": tls.key_password,
            }
        if mechanism not in MECHANISMS:
            raise ValueError(f"unknown mechanism {mechanism!r}")
        return common | {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": mechanism,
            "KAFKA_SASL_USERNAME": user,
            "KAFKA_SASL_PASSWORD": self.users[user],
        }

    # -- the nodes' settings -----------------------------------------------------------------

    def _controller_settings(self, folder: Path) -> dict[str, str]:
        return {
            "process.roles": "controller",
            "node.id": str(CONTROLLER_ID),
            "controller.quorum.voters": f"{CONTROLLER_ID}@{self.host}:{self._controller_port}",
            "listeners": f"CONTROLLER://{self.host}:{self._controller_port}",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "log.dirs": str(folder / "data"),
            # KRaft's controller applies the defaults of a topic created without them (KIP-464)
            "num.partitions": apache_kafka.TEST_SETTINGS["num.partitions"],
            **REPLICATED,
            **_LIVENESS,
            **_SECURED,
        }

    def _broker_settings(self, node: int, folder: Path) -> dict[str, str]:
        tls = self._tls()
        listeners = ",".join(
            f"{name}://{self.host}:{port}" for name, port in self._ports[node].items()
        )
        plain_users = " ".join(f'user_{name}="{password}"' for name, password in self.users.items())
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        return {
            "process.roles": "broker",
            "node.id": str(node),
            "controller.quorum.voters": f"{CONTROLLER_ID}@{self.host}:{self._controller_port}",
            "controller.listener.names": "CONTROLLER",
            "listeners": listeners,
            "advertised.listeners": listeners,
            "listener.security.protocol.map": (
                "CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,CLIENT:SASL_SSL,MTLS:SSL"
            ),
            "inter.broker.listener.name": "INTERNAL",
            "sasl.enabled.mechanisms": ",".join(MECHANISMS),
            "listener.name.client.plain.sasl.jaas.config": (
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};"
            ),
            "listener.name.client.scram-sha-256.sasl.jaas.config": scram,
            "listener.name.client.scram-sha-512.sasl.jaas.config": scram,
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(tls.keystore),
            "ssl.keystore.password": tls.keystore_password,
            "ssl.key.password": tls.keystore_password,
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(tls.ca_file),
            "listener.name.mtls.ssl.client.auth": "required",
            # CN=genres -> User:genres, the same principal as the SASL user genres
            "ssl.principal.mapping.rules": "RULE:^CN=([^,]+)(,.*)?$/$1/,DEFAULT",
            "log.dirs": str(folder / "data"),
            **apache_kafka.TEST_SETTINGS,
            **REPLICATED,
            **_LIVENESS,
            **_SECURED,
        }

    # -- life cycle ---------------------------------------------------------------------------

    def start(self, *brokers: int) -> Self:
        """Start the cluster, or restart ``brokers`` (side by side, each with its log
        directory) and wait until they answer and the controller counts them again."""
        if brokers:
            deadline = time.monotonic() + self.timeout
            for broker in brokers:
                self._spawner.submit(self._brokers[broker].spawn, self._classpath).result()
            for broker in brokers:
                self._wait_broker(broker, deadline)
            self._wait_brokers(deadline, set(brokers))
            return self
        started = time.monotonic()
        apache_kafka.sweep_stale_dirs()
        self._classpath = apache_kafka.resolve()
        for attempt in range(3):
            self._prepare()
            try:
                self._launch()
            except KafkaStartError:
                text = self.log_text()
                self.close()
                if attempt == 2 or "Address already in use" not in text:
                    raise
                continue
            self.startup_seconds = time.monotonic() - started
            return self
        raise AssertionError("unreachable")

    def _prepare(self) -> None:
        self.folder = apache_kafka.new_folder()
        self.tls = kafka_tls.make(self.folder / "tls", client=CERTIFICATE_USER)
        ports: set[int] = set()
        while len(ports) < 1 + 3 * BROKERS:
            ports.add(free_port(self.host))
        self._controller_port, *rest = ports
        names = ("INTERNAL", "CLIENT", "MTLS")
        self._ports = [
            dict(zip(names, rest[3 * i : 3 * i + 3], strict=True)) for i in range(BROKERS)
        ]
        self._controller = Jvm(self.folder / "controller", heap=self.controller_heap)
        self._controller.configure(self._controller_settings(self._controller.folder))
        self._brokers = []
        for node in range(BROKERS):
            jvm = Jvm(self.folder / f"broker-{node}", heap=self.heap)
            jvm.configure(self._broker_settings(node, jvm.folder))
            self._brokers.append(jvm)

    def _launch(self) -> None:
        assert self._controller is not None
        deadline = time.monotonic() + self.timeout
        cluster_id = apache_kafka.new_cluster_id()
        scram = [
            option
            for name, password in self.users.items()
            for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512")
            for option in ("--add-scram", f"{mechanism}=[name={name},password={password}]")
        ]
        nodes = [self._controller, *self._brokers]
        with ThreadPoolExecutor(len(nodes)) as pool:
            formats = [pool.submit(self._controller.format, self._classpath, cluster_id, *scram)]
            formats += [
                pool.submit(jvm.format, self._classpath, cluster_id) for jvm in self._brokers
            ]
            for done in formats:
                done.result()
        apache_kafka.track(self)
        for jvm in nodes:
            self._spawner.submit(jvm.spawn, self._classpath).result()
        for node in range(BROKERS):
            self._wait_broker(node, deadline)
        self._wait_brokers(deadline, set(range(BROKERS)))

    def _wait_broker(self, node: int, deadline: float) -> None:
        """Each of the broker's listeners answers ApiVersions (TLS verified on the TLS ones)."""
        tls = self._tls()
        server = ssl.create_default_context(cafile=str(tls.ca_file))
        mutual = ssl.create_default_context(cafile=str(tls.ca_file))
        mutual.load_cert_chain(tls.client_cert_file, tls.client_key_file, tls.key_password)
        jvm, ports = self._brokers[node], self._ports[node]
        jvm.wait_answering(self.host, ports["INTERNAL"], deadline)
        jvm.wait_answering(self.host, ports["CLIENT"], deadline, tls=server)
        jvm.wait_answering(self.host, ports["MTLS"], deadline, tls=mutual)

    def _wait_brokers(self, deadline: float, expected: set[int]) -> None:
        """Until the metadata (asked over SASL_SSL as the admin) lists ``expected``."""
        seen: set[int] = set()
        while time.monotonic() < deadline:
            with contextlib.suppress(KafkaException):
                seen = set(self.admin().list_topics(timeout=5).brokers)
                if expected <= seen:
                    return
            time.sleep(0.1)
        raise KafkaStartError(f"brokers {sorted(expected - seen)} missing from the metadata")

    def kill(self, *brokers: int) -> None:
        """SIGKILL these brokers (a crash: nothing flushed, no controlled shutdown)."""
        for broker in brokers:
            self._brokers[broker].signal(signal.SIGCONT)  # a frozen JVM dies once it runs
            self._brokers[broker].kill()
            self._paused.discard(broker)

    def pause(self, *brokers: int) -> None:
        """SIGSTOP: the broker hangs with its connections open (a frozen machine); the
        controller fences it after ``broker.session.timeout.ms``."""
        for broker in brokers:
            pid = self._brokers[broker].pid
            self._paused.add(broker)
            if pid is not None:
                freezing.freeze(pid)  # returns once no thread of the JVM runs

    def resume(self, *brokers: int) -> None:
        for broker in brokers:
            self._brokers[broker].signal(signal.SIGCONT)
            self._paused.discard(broker)

    def running(self, broker: int) -> bool:
        """Alive and not paused."""
        return self._brokers[broker].pid is not None and broker not in self._paused

    def restore(self) -> None:
        """Every broker running again (resumed or restarted), as a test found them."""
        self.resume(*self._paused)
        down = [broker for broker in range(BROKERS) if not self.running(broker)]
        if down:  # (none: ``start()`` would be a whole new cluster)
            self.start(*down)
        self._wait_brokers(time.monotonic() + self.timeout, set(range(BROKERS)))

    def pids(self) -> list[int]:
        """The running JVMs' process ids, controller first."""
        nodes = [self._controller, *self._brokers] if self._controller else []
        return [jvm.pid for jvm in nodes if jvm.pid is not None]

    def stop(self) -> None:
        """SIGKILL every node (their data is the tests', not worth a controlled shutdown)."""
        self._admin = None  # first: it would report each node's loss
        self.kill(*range(len(self._brokers)))
        if self._controller is not None:
            self._controller.kill()
        apache_kafka.untrack(self)

    def close(self) -> None:
        """Stop every node and delete the folder."""
        self.stop()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()

    def log_text(self, chars: int = 3000) -> str:
        nodes = [self._controller, *self._brokers] if self._controller else []
        return "\n".join(f"=== {jvm.folder.name}\n{jvm.log_text(chars)}" for jvm in nodes)

    # -- the admin's actions ------------------------------------------------------------------

    def admin(self) -> AdminClient:
        """The super user's admin client, kept: its answers' futures die with it."""
        if self._admin is None:
            self._admin = AdminClient(self.admin_config())
        return self._admin

    def create_topic(self, name: str, partitions: int = 3, replication_factor: int = -1) -> None:
        """Create ``name`` as the admin (``-1``: the cluster's default, 3)."""
        futures = self.admin().create_topics(
            [NewTopic(name, partitions, replication_factor)], operation_timeout=30
        )
        futures[name].result(timeout=60)
        self.wait_known(name)

    def wait_known(self, *topics: str, timeout: float = 30.0) -> None:
        """Until every running broker's metadata has each of ``topics`` with a leader per
        partition (one request per broker and round, however many topics)."""
        deadline = time.monotonic() + timeout
        while True:
            answers = cluster_admin.ask_each(self._running(), MetadataRequest(list(topics)))
            views = [response.to_object()["topics"] for response in answers.values()]
            if all(
                len(view) == len(topics)
                and all(
                    topic["error_code"] == 0
                    and topic["partitions"]
                    and all(p["leader"] >= 0 for p in topic["partitions"])
                    for topic in view
                )
                for view in views
            ):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topics} unknown to some broker: {views}")
            time.sleep(0.05)

    def partitions(self, topic: str) -> dict[int, tuple[int, list[int]]]:
        """Each partition's leader (``-1``: none) and in-sync replicas, by partition."""
        found = self.admin().list_topics(topic, timeout=10).topics[topic]
        if found.error is not None:
            raise KafkaException(found.error)
        return {p.id: (p.leader, sorted(p.isrs)) for p in found.partitions.values()}

    def leader(self, topic: str, partition: int = 0) -> int:
        """The broker leading ``partition`` of ``topic`` (``-1``: none)."""
        return self.partitions(topic)[partition][0]

    def wait_in_sync(self, topic: str, timeout: float = 60.0) -> None:
        """Until every partition of ``topic`` has all three brokers in sync (a restarted broker
        has caught up)."""
        deadline = time.monotonic() + timeout
        while (state := self.partitions(topic)) and any(
            len(isr) < BROKERS for _leader, isr in state.values()
        ):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic} not fully in sync: {state}")
            time.sleep(0.2)

    def set_acls(self, principal: str, acls: Iterable[AclLike]) -> None:
        """Make ``acls`` (``genres.kafka.acls.Acl``-shaped: ALLOW, any host) the principal's
        only ACLs, in force on every running broker when this returns."""
        cluster_admin.set_acls(self.admin(), self._running(), principal, acls)

    def clear_acls(self, principal: str) -> None:
        """Delete every ACL of ``principal``, gone from every running broker on return."""
        cluster_admin.clear_acls(self.admin(), self._running(), principal)

    def _running(self) -> dict[int, str]:
        """The running brokers' internal (super user) listeners, by node id."""
        return {
            node: f"{self.host}:{self._ports[node]['INTERNAL']}"
            for node in range(BROKERS)
            if self.running(node)
        }

    def rss_bytes(self) -> int:
        """The resident memory of the running JVMs together (``/proc``, Linux)."""
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        return total


def available() -> bool:
    """What the cluster needs: Java 17+ (and Maven or the cached jars) and openssl."""
    return apache_kafka.available() and kafka_tls.available()


__all__ = ["BROKERS", "USERS", "SecuredCluster", "acl_binding", "available"]
