"""The TLS context of the service's Kafka clients: the CA bundle, and for mutual TLS the client
certificate and key; a file that cannot be loaded is a ``ConfigurationError`` naming the
variable to fix."""

from __future__ import annotations

import ssl

from genres.config import Settings
from genres.errors import ConfigurationError

__all__ = ["ssl_context"]


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """A verifying TLS context: the CA bundle (else the system's) and, for mutual TLS, the
    client certificate and key. A file that cannot be loaded is a ``ConfigurationError``
    naming its variable."""
    cafile = settings.kafka_ssl_cafile
    try:
        context = ssl.create_default_context(cafile=cafile)
    except OSError as exc:  # ssl.SSLError included: not a PEM bundle
        raise ConfigurationError(
            f"KAFKA_SSL_CAFILE: cannot load {cafile}: {_reason(exc)}"
        ) from None
    certfile = settings.kafka_ssl_certfile
    if certfile is None:
        return context
    secret = settings.kafka_ssl_key_password
    asked = []

    def no_password() -> str:
        # Without it OpenSSL would prompt on the terminal for an encrypted key's password.
        asked.append(True)
        return ""

    try:
        context.load_cert_chain(
            certfile,
            settings.kafka_ssl_keyfile,
            password=secret.get_secret_value() if secret else no_password,
        )
    except OSError as exc:
        raise ConfigurationError(_certificate_problem(settings, exc, asked=bool(asked))) from None
    return context


def _certificate_problem(settings: Settings, exc: OSError, *, asked: bool) -> str:
    """Which variable to fix: OpenSSL says little more than "PEM lib" for most of them."""
    key = "KAFKA_SSL_KEYFILE" if settings.kafka_ssl_keyfile else "KAFKA_SSL_CERTFILE"
    if asked:
        return f"{key}: the private key is encrypted and KAFKA_SSL_KEY_PASSWORD is not set"
    if getattr(exc, "reason", None) == "KEY_VALUES_MISMATCH":
        return f"{key}: the private key is not the key of the certificate in KAFKA_SSL_CERTFILE"
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(settings.kafka_ssl_certfile)
    except OSError:
        return "KAFKA_SSL_CERTFILE: no PEM certificate in it"
    if settings.kafka_ssl_key_password is not None:
        return f"{key}: KAFKA_SSL_KEY_PASSWORD does not decrypt its private key, or it has none"
    return f"{key}: no PEM private key in it"


def _reason(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc).lower().replace("_", " ")
    return (exc.strerror or type(exc).__name__).lower()
