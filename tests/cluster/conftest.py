"""The secured cluster tier: one :class:`~tests.support.kafka_cluster.SecuredCluster` (a KRaft
controller, three brokers, SASL_SSL, mTLS, deny-by-default ACLs) for the whole folder, started
on first use and stopped once its last test is done (package scope: its four JVMs and ~620 MiB
are not left idling under the tiers that follow); its start-up time and memory are printed at
the end of the run."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support import kafka_cluster
from tests.support.ci import missing
from tests.support.kafka_cluster import ADMIN, USERS, SecuredCluster
from tests.support.parallel import add_summary_line

SECTION = "secured cluster"
"""The end-of-run section of the tier's figures (``tests.support.parallel.add_summary_line``):
the cluster's start-up and memory, and what a module's scenarios cost."""


@pytest.fixture(scope="package")
def secured_cluster(pytestconfig: pytest.Config) -> Iterator[SecuredCluster]:
    """The cluster itself; tests take :func:`cluster`, which puts back what they changed."""
    if not kafka_cluster.available():
        missing("the secured cluster needs Java 17+, Maven (or the cached jars) and openssl")
    with SecuredCluster() as cluster:
        assert cluster.startup_seconds is not None
        add_summary_line(
            pytestconfig,
            SECTION,
            f"secured cluster: ready in {cluster.startup_seconds:.1f} s, "
            f"{cluster.rss_bytes() / 2**20:.0f} MiB resident (controller and 3 brokers)",
        )
        yield cluster


@pytest.fixture
def cluster(secured_cluster: SecuredCluster) -> Iterator[SecuredCluster]:
    """The folder's cluster, given back as found: every broker running, no user's ACLs."""
    yield secured_cluster
    secured_cluster.restore()
    for user in USERS:
        if user != ADMIN:
            secured_cluster.clear_acls(f"User:{user}")


@pytest.fixture
def topic(secured_cluster: SecuredCluster) -> str:
    """A fresh topic of 3 partitions with the cluster's default replication (3)."""
    name = f"t{uuid.uuid4().hex[:8]}.smoke"
    secured_cluster.create_topic(name)
    return name
