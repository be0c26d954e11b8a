"""Wrong credentials and certificates stop ``genres run all`` at start: exit 2 within a bound,
one ERROR line naming the mechanism and user or the certificate problem, no password printed.

The five runs go side by side (one fixture for the module): each ends on the first broker's
answer, so together they cost what the slowest does."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from tests.support.cluster_service import Run, genres, new_settings, service_env
from tests.support.kafka_cluster import SecuredCluster

#: Nothing here reaches the database: the refusal comes first.
UNREACHABLE_DATABASE = "postgresql+asyncpg://genres@127.0.0.1:9/genres"
#: From start to exit, on 2 busy cores (start-up is most of it).
BOUND_SECONDS = 40.0


@dataclass(frozen=True)
class Case:
    mechanism: str
    overrides: tuple[tuple[str, str], ...]
    says: tuple[str, ...]
    """What the one line says (besides its kind)."""
    refusal: str


def cases(cluster: SecuredCluster) -> dict[str, Case]:
    assert cluster.tls is not None
    tls = cluster.tls
    wrong = (("KAFKA_SASL_PASSWORD", "not-the-password"),)
    return {
        "scram-password": Case(
            "SCRAM-SHA-512",
            wrong,
            ("Kafka authentication failed: SASL SCRAM-SHA-512 as user genres",),
            "authentication",
        ),
        "plain-password": Case(
            "PLAIN",
            wrong,
            (
                "Kafka authentication failed: SASL PLAIN as user genres",
                "Invalid username or password",
            ),
            "authentication",
        ),
        "ca": Case(
            "SCRAM-SHA-512",
            (("KAFKA_SSL_CAFILE", str(tls.foreign_ca_file)),),
            (
                "Kafka TLS handshake failed: certificate verify failed",
                f"KAFKA_SSL_CAFILE={tls.foreign_ca_file}",
            ),
            "tls",
        ),
        "expired-certificate": Case(
            "mTLS",
            (("KAFKA_SSL_CERTFILE", str(tls.expired_cert_file)),),
            ("Kafka TLS handshake failed", "the broker refuses the client certificate"),
            "tls",
        ),
        "foreign-certificate": Case(
            "mTLS",
            (("KAFKA_SSL_CERTFILE", str(tls.foreign_cert_file)),),
            ("Kafka TLS handshake failed", "the broker refuses the client certificate"),
            "tls",
        ),
    }


@pytest.fixture(scope="module")
def runs(secured_cluster: SecuredCluster) -> dict[str, tuple[Case, Run, list[str]]]:
    """Each case's ``genres run all``, all side by side; with the secrets it must not print."""
    settings = new_settings()
    chosen = cases(secured_cluster)

    async def one(case: Case) -> Run:
        env = service_env(
            secured_cluster, settings, UNREACHABLE_DATABASE, mechanism=case.mechanism
        ) | dict(case.overrides)
        return await genres("run", "all", env=env, timeout=BOUND_SECONDS + 30)

    async def every() -> list[Run]:
        return list(await asyncio.gather(*(one(case) for case in chosen.values())))

    done = asyncio.run(every())
    secrets = [
        *secured_cluster.users.values(),
        "not-the-password",
        secured_cluster.client_key_password,
    ]
    return {
        name: (case, run, secrets) for (name, case), run in zip(chosen.items(), done, strict=True)
    }


@pytest.mark.parametrize(
    "name",
    ["scram-password", "plain-password", "ca", "expired-certificate", "foreign-certificate"],
)
def test_a_refused_login_or_handshake_ends_the_run_with_its_one_line(
    runs: dict[str, tuple[Case, Run, list[str]]], name: str
) -> None:
    case, run, secrets = runs[name]
    assert run.returncode == 2, run.output()
    assert run.seconds < BOUND_SECONDS, run.output()
    [error] = run.errors()
    assert error["refusal"] == case.refusal, error
    for part in case.says:
        assert part in error["message"], error
    assert run.last_line() == f"error: {error['message']}", run.output()
    everything = run.stdout + run.stderr
    assert "Traceback" not in everything
    for secret in secrets:
        assert secret not in everything
