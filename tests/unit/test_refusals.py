"""Permanent Kafka refusals: recognised in aiokafka's errors, named in one line, never transient."""

from __future__ import annotations

import asyncio
import logging
import ssl

import pytest
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NotLeaderForPartitionError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnknownTopicOrPartitionError,
    UnsupportedSaslMechanismError,
)
from pydantic import SecretStr

from genres.cli.failures import explain
from genres.config import Settings
from genres.errors import ClusterRefused, ConfigurationError, Refusal
from genres.kafka.refusals import Echoes, Refusals, refused
from genres.retry import is_transient, retrying

# Settings checks that the CA file can be read: any readable file will do for these rules.
CA_FILE = __file__

SASL = Settings(
    kafka_bootstrap_servers="h1:9093",
    kafka_security_protocol="SASL_SSL",
    kafka_sasl_mechanism="SCRAM-SHA-512",
    kafka_sasl_username="genres",
    kafka_sasl_password=SecretStr("hunter2-secret"),
    kafka_ssl_cafile=CA_FILE,
)


def one_line(error: ClusterRefused | None) -> str:
    assert error is not None
    text = str(error)
    assert "\n" not in text
    return text


def test_a_topic_denial_names_the_operation_and_the_topic() -> None:
    error = refused(TopicAuthorizationFailedError("track.genres_failed"), operation="READ")
    assert error is not None
    assert error.refusal is Refusal.AUTHORIZATION
    text = one_line(error)
    assert "READ on topic track.genres_failed" in text
    assert "TOPIC_AUTHORIZATION_FAILED" in text


def test_a_commit_denial_names_every_topic_aiokafka_collected() -> None:
    # aiokafka's OffsetCommit raises the set of unauthorized topics.
    error = refused(TopicAuthorizationFailedError({"b.topic", "a.topic"}))
    assert "access to topic a.topic, b.topic" in one_line(error)


def test_a_group_denial_names_the_group_and_read() -> None:
    text = one_line(refused(GroupAuthorizationFailedError("genres-projector")))
    assert "READ on group genres-projector" in text
    assert "GROUP_AUTHORIZATION_FAILED" in text


def test_cluster_and_transactional_id_denials() -> None:
    cluster = refused(ClusterAuthorizationFailedError(), operation="WRITE")
    assert "IDEMPOTENT_WRITE on the cluster" in one_line(cluster)
    txn = refused(TransactionalIdAuthorizationFailed("genres-tx"))
    assert "WRITE on transactional id genres-tx" in one_line(txn)


def test_a_refused_login_names_mechanism_and_user_never_the_password() -> None:
    broker_says = (
        "Authentication failed during authentication due to invalid credentials with SASL"
        " mechanism SCRAM-SHA-512"
    )
    error = refused(SaslAuthenticationFailed(broker_says), settings=SASL)
    assert error is not None
    assert error.refusal is Refusal.AUTHENTICATION
    text = one_line(error)
    assert "SASL SCRAM-SHA-512 as user genres" in text
    assert "invalid credentials" in text
    assert "hunter2" not in text


def test_an_unoffered_mechanism_is_an_authentication_refusal() -> None:
    error = refused(
        UnsupportedSaslMechanismError(
            "Kafka broker does not support SCRAM-SHA-512 sasl mechanism. Enabled mechanisms"
            " are: ['PLAIN']"
        ),
        settings=SASL,
    )
    assert error is not None
    assert error.refusal is Refusal.AUTHENTICATION
    assert "Enabled mechanisms are: ['PLAIN']" in one_line(error)


def test_an_untrusted_broker_certificate_names_the_problem_and_the_ca_setting() -> None:
    cause = ssl.SSLCertVerificationError(
        1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed (_ssl.c:1006)"
    )
    cause.verify_message = "unable to get local issuer certificate"
    # As aiokafka keeps it: the connection error caused by the handshake's.
    wrapped = KafkaConnectionError("Connection at h1:9093 closed")
    wrapped.__cause__ = cause
    error = refused(wrapped, settings=SASL)
    assert error is not None
    assert error.refusal is Refusal.TLS
    text = one_line(error)
    assert "certificate verify failed: unable to get local issuer certificate" in text
    assert f"KAFKA_SSL_CAFILE={CA_FILE}" in text


def test_a_refused_client_certificate_names_the_certificate_settings() -> None:
    cause = ssl.SSLError(
        1,
        "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required (_ssl.c:2580)",
    )
    wrapped = KafkaConnectionError("Connection at h1:9093 closed")
    wrapped.__cause__ = cause
    text = one_line(refused(wrapped))
    assert "tlsv13 alert certificate required" in text
    assert "KAFKA_SSL_CERTFILE" in text
    assert "_ssl.c" not in text


def test_an_unknown_topic_is_missing_only_where_it_must_exist() -> None:
    # While a topic is being created or moved, the same error is transient.
    assert refused(UnknownTopicOrPartitionError()) is None
    assert refused(UnknownTopicOrPartitionError(), topics=["t.a"]) is None
    error = refused(UnknownTopicOrPartitionError(), topics=["t.b", "t.a"], missing=True)
    assert error is not None
    assert error.refusal is Refusal.MISSING_TOPIC
    assert "t.a, t.b" in one_line(error)


@pytest.mark.parametrize(
    "error",
    [
        KafkaConnectionError("Unable to bootstrap from [('h1', 9092)]"),
        KafkaTimeoutError(),
        NotLeaderForPartitionError(),
        ConnectionResetError(104, "Connection reset by peer"),
        ValueError("a bug"),
    ],
)
def test_what_retrying_may_fix_is_no_refusal(error: BaseException) -> None:
    assert refused(error) is None


def test_the_retry_policy_never_retries_a_refusal() -> None:
    assert is_transient(KafkaConnectionError())
    assert not is_transient(TopicAuthorizationFailedError("t"))
    assert not is_transient(GroupAuthorizationFailedError("g"))


async def test_retrying_raises_a_refusal_at_once_even_when_told_to_retry_everything() -> None:
    attempts = 0
    seen: list[BaseException] = []

    async def fetch() -> None:
        nonlocal attempts
        attempts += 1
        raise TopicAuthorizationFailedError("track.genres_failed")

    with pytest.raises(ClusterRefused, match=r"READ on topic track\.genres_failed") as raised:
        await retrying(fetch, what="reading", on=Exception, on_error=seen.append, operation="READ")
    assert attempts == 1
    assert isinstance(raised.value.__cause__, TopicAuthorizationFailedError)
    # The watchdog and the process's refusals are told the refusal, its operation named.
    assert seen == [raised.value]


def test_a_command_ending_on_a_refusal_exits_2_with_its_line() -> None:
    wrapped = RuntimeError("subscriber died")
    wrapped.__cause__ = GroupAuthorizationFailedError("genres-classifier")
    line, code = explain(wrapped, SASL)
    assert code == 2
    assert "READ on group genres-classifier" in line


def test_a_refused_login_no_longer_reads_as_unreachable() -> None:
    wrapped = KafkaConnectionError("Connection at h1:9093 closed")
    wrapped.__cause__ = SaslAuthenticationFailed("invalid credentials")
    line, code = explain(wrapped, SASL)
    assert code == 2
    assert line.startswith("Kafka authentication failed: SASL SCRAM-SHA-512 as user genres")


async def test_the_first_refusal_is_logged_once_and_ends_the_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    refusals = Refusals()
    waiting = asyncio.create_task(refusals.wait())
    await refusals.check()  # ready while nothing is refused
    assert refusals.note(KafkaConnectionError(), role="projector") is None
    assert refusals.note("a stall, as text", role="projector") is None
    assert not waiting.done()
    with caplog.at_level(logging.ERROR, logger="genres.kafka.refusals"):
        for _ in range(3):
            refusals.note(TopicAuthorizationFailedError("t"), role="projector")
        refusals.note(GroupAuthorizationFailedError("g"), role="classifier")
    first = await asyncio.wait_for(waiting, 1)
    assert isinstance(first, ConfigurationError)
    assert "access to topic t" in str(first)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [str(first)]
    assert getattr(errors[0], "refusal", None) == "authorization"
    with pytest.raises(ClusterRefused):
        await refusals.check()


def test_a_denial_aiokafka_flattened_to_a_plain_kafka_error_is_still_one() -> None:
    # An OffsetFetch denied for a topic: aiokafka raises KafkaError(repr(original)).
    flattened = KafkaError(repr(TopicAuthorizationFailedError()))
    error = refused(flattened, operation="READ", topics=["t.classified"])
    assert error is not None
    assert "READ on topic t.classified" in one_line(error)
    assert refused(KafkaError("something else")) is None


def test_a_refused_handshake_names_the_mechanism_it_asked_for() -> None:
    # aiokafka raises the handshake's error with the connection as its only argument.
    error = refused(UnsupportedSaslMechanismError(object()), settings=SASL)
    assert "does not offer SCRAM-SHA-512 on this listener" in one_line(error)
    assert "object at" not in one_line(error)


def test_another_clients_tls_failure_is_not_kafkas() -> None:
    # PostgreSQL's or Replicate's handshake: the Kafka client is not in it.
    cause = ssl.SSLCertVerificationError(1, "certificate verify failed")
    cause.verify_message = "self-signed certificate"
    wrapped = ConnectionError("cannot connect to the database")
    wrapped.__cause__ = cause
    assert refused(cause) is None
    assert refused(wrapped) is None


def _record(name: str, level: int) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, "Failed to commit", (), None)


def test_the_clients_error_lines_after_a_refusal_are_warnings() -> None:
    refusals = Refusals()
    echoes = Echoes(refusals)
    before = _record("aiokafka.consumer.group_coordinator", logging.ERROR)
    assert echoes.filter(before)
    assert before.levelno == logging.ERROR  # nothing refused yet: the client's line stands

    refusals.note(GroupAuthorizationFailedError("g"))
    client = _record("aiokafka.consumer.group_coordinator", logging.ERROR)
    faststream = _record("genres.faststream", logging.ERROR)
    ours = _record("genres.projector.entry", logging.ERROR)
    for record in (client, faststream, ours):
        assert echoes.filter(record)  # kept, only lowered
    assert (client.levelname, faststream.levelname) == ("WARNING", "WARNING")
    assert ours.levelno == logging.ERROR  # the service's own lines are not echoes
