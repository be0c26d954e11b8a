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

_FIGURES = pytest.StashKey[dict[str, float]]()
#: Lines a test module adds to the end of the run (what its scenarios cost).
REPORTS = pytest.StashKey[list[str]]()


@pytest.fixture(scope="package")
def secured_cluster(pytestconfig: pytest.Config) -> Iterator[SecuredCluster]:
    """The cluster itself; tests take :func:`cluster`, which puts back what they changed."""
    if not kafka_cluster.available():
        missing("the secured cluster needs Java 17+, Maven (or the cached jars) and openssl")
    with SecuredCluster() as cluster:
        assert cluster.startup_seconds is not None
        pytestconfig.stash[_FIGURES] = {
            "startup_s": cluster.startup_seconds,
            "rss_mib": cluster.rss_bytes() / 2**20,
        }
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


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    figures = config.stash.get(_FIGURES, None)
    if figures is not None:
        terminalreporter.write_line(
            f"secured cluster: ready in {figures['startup_s']:.1f} s, "
            f"{figures['rss_mib']:.0f} MiB resident (controller and 3 brokers)"
        )
    for line in config.stash.get(REPORTS, []):
        terminalreporter.write_line(line)
