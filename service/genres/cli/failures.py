"""What a command that died tells its user: one line naming what failed, where and why.

Infrastructure errors propagate unchanged through the service (its roles retry or stop on
them); only the entry maps them, here, when a command ends on one. The broker and the
database are told apart by the exception's type and, for plain socket errors, by the library
whose frames raised it. A place is named by host and port only: never a user or a password.
"""

from __future__ import annotations

import ssl
import traceback
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from genres.errors import ConfigurationError, GenresError, causes

if TYPE_CHECKING:
    from genres.config import Settings

UNREACHABLE = 3
"""The exit code of a command whose broker or database did not answer (as ``recommend``)."""


def explain(exc: BaseException, settings: Settings | None) -> tuple[str, int]:
    """One line and an exit code for ``exc``."""
    chain = [error for error, _ in causes(exc)]
    refusal = _refusal(exc, settings)
    if refusal is not None:
        # A refusal wrapped in a connection error says what to fix, not "cannot reach".
        return _one_line(str(refusal)), 2
    for error in chain:
        if isinstance(error, ConfigurationError):
            return _one_line(str(error)), 2
    for error in chain:
        if isinstance(error, GenresError):
            return _one_line(str(error)), 1
    for error in chain:
        line = _database_tls(error, settings)
        if line is not None:  # DATABASE_URL's CA, host or TLS files are wrong: a setting
            return _one_line(line), 2
    for error in chain:
        line = _broker(error, settings) or _database(error, settings)
        if line is not None:
            return _one_line(line), UNREACHABLE
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return _one_line(f"{detail} (--debug shows the traceback)"), 1


def database_place(url: str | None) -> str:
    """``host:port`` of a PostgreSQL URL (or its socket folder), without credentials."""
    if not url:
        return "DATABASE_URL"
    parts = urlsplit(url)
    try:
        port = parts.port or 5432
    except ValueError:
        port = 5432
    if parts.hostname:
        return f"{parts.hostname}:{port}"
    socket_dir = parse_qs(parts.query).get("host")
    return f"the socket in {socket_dir[0]}" if socket_dir else f"localhost:{port}"


def _refusal(error: BaseException, settings: Settings | None) -> BaseException | None:
    try:
        from genres.kafka.refusals import refused
    except ImportError:  # pragma: no cover - aiokafka is a dependency
        return None
    return refused(error, settings=settings)


def _broker(error: BaseException, settings: Settings | None) -> str | None:
    try:
        from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
    except ImportError:  # pragma: no cover - aiokafka is a dependency
        return None
    servers = settings.kafka_bootstrap_servers if settings is not None else None
    where = ",".join(servers) if servers else "KAFKA_BOOTSTRAP_SERVERS"
    if isinstance(error, KafkaConnectionError):
        return f"cannot reach the Kafka broker at {where}"
    if isinstance(error, KafkaTimeoutError):
        return f"the Kafka broker at {where} did not answer in time"
    if isinstance(error, KafkaError):
        return f"the Kafka broker at {where} failed: {type(error).__name__}: {error}"
    if isinstance(error, OSError | TimeoutError) and _raised_in(error, "aiokafka"):
        return f"cannot reach the Kafka broker at {where} ({_reason(error)})"
    return None


def _database(error: BaseException, settings: Settings | None) -> str | None:
    where = database_place(settings.database_url if settings is not None else None)
    try:
        from asyncpg import PostgresError
        from asyncpg.exceptions import UndefinedTableError
    except ImportError:  # pragma: no cover - asyncpg is a dependency
        return None
    if isinstance(error, UndefinedTableError):
        return f"PostgreSQL at {where}: {error} (run `genres migrate` first)"
    if isinstance(error, PostgresError):
        return f"PostgreSQL at {where} refused: {error}"
    if isinstance(error, OSError | TimeoutError) and _raised_in(error, "asyncpg", "sqlalchemy"):
        if isinstance(error, TimeoutError):
            return f"PostgreSQL at {where} did not answer in time"
        return f"cannot reach PostgreSQL at {where} ({_reason(error)})"
    return None


def _database_tls(error: BaseException, settings: Settings | None) -> str | None:
    where = database_place(settings.database_url if settings is not None else None)
    try:
        from asyncpg.exceptions import ClientConfigurationError
    except ImportError:  # pragma: no cover - asyncpg is a dependency
        return None
    if isinstance(error, ClientConfigurationError):  # e.g. no sslrootcert and no default
        return f"DATABASE_URL: {error}"
    if isinstance(error, FileNotFoundError) and _raised_in(error, "asyncpg"):
        # ssl's loaders do not say which file: the URL does.
        missing = _missing_tls_files(settings.database_url if settings is not None else None)
        if missing:
            return f"DATABASE_URL: {', '.join(missing)}: no such file"
    if not isinstance(error, ssl.SSLError) or not _raised_in(error, "asyncpg", "sqlalchemy"):
        return None
    if isinstance(error, ssl.SSLCertVerificationError):
        return (
            f"PostgreSQL at {where}: its TLS certificate failed verification "
            f"({error.verify_message}): check DATABASE_URL's sslrootcert and host"
        )
    return f"PostgreSQL at {where}: TLS failed ({error.reason or error})"


def _missing_tls_files(url: str | None) -> list[str]:
    query = parse_qs(urlsplit(url).query) if url else {}
    return [
        f"{name} {path}"
        for name in ("sslrootcert", "sslcert", "sslkey", "sslcrl")
        for path in query.get(name, [])[-1:]
        if not Path(path).expanduser().exists()
    ]


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return str(error) or type(error).__name__


def _raised_in(error: BaseException, *packages: str) -> bool:
    frames = traceback.extract_tb(error.__traceback__) if error.__traceback__ else []
    return any(f"/{package}/" in frame.filename for frame in frames for package in packages)


def _one_line(text: str) -> str:
    return " ".join(text.split())


__all__ = ["UNREACHABLE", "database_place", "explain"]
