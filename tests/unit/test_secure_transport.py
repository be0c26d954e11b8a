"""Kafka SASL/TLS and PostgreSQL TLS settings reach the clients that need them."""

from __future__ import annotations

import ssl

import pytest
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram512

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


def test_an_unknown_sasl_mechanism_is_a_configuration_error() -> None:
    settings = load_settings(
        kafka_bootstrap_servers="k:9092",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="GSSAPI-ISH",
    )
    with pytest.raises(ConfigurationError, match="KAFKA_SASL_MECHANISM"):
        faststream_security(settings)


def test_the_sasl_password_is_not_shown_in_the_settings_repr() -> None:
    settings = load_settings(kafka_sasl_password="s3cret")
    assert "s3cret" not in repr(settings)
