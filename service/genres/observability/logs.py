"""Logging: one JSON object a line (or plain lines for people), never secrets."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from genres.observability.repeats import RepeatLimiter

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Fields given with ``extra=`` become top-level keys (track_id, file_id, event ids)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


REDACTED = "[redacted]"


class RedactSecrets(logging.Filter):
    """Replaces each configured secret in a record's message, arguments, extra fields and
    exception text, whoever logged it (installed on the handler, so it sees every record)."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        super().__init__()
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self._secrets:
                value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, int | float | bool) or value is None:
            return value
        if isinstance(value, list | tuple | set | dict):
            try:
                text = json.dumps(value, default=str)
            except (TypeError, ValueError):
                text = str(value)
        else:
            text = str(value)
        return self._scrub(text) if any(s in text for s in self._secrets) else value

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        if record.args:
            if isinstance(record.args, dict):
                record.args = {k: self._scrub(v) for k, v in record.args.items()}
            else:
                record.args = tuple(self._scrub(arg) for arg in record.args)
        record.msg = self._scrub(record.msg)
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD and not key.startswith("_"):
                record.__dict__[key] = self._scrub(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = self._scrub(record.stack_info)
        return True


def configure(level: str = "INFO", fmt: str = "json", secrets: Iterable[str | None] = ()) -> None:
    """Log to stderr; every value in ``secrets`` is replaced by ``[redacted]`` wherever it
    appears (message, arguments, extra fields, tracebacks)."""
    root = _install(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"),
        secrets,
    )
    root.setLevel(level.upper())
    # Their INFO lines are per request or per rebalance step: noise at our INFO.
    for noisy in ("httpx", "aiokafka", "faststream"):
        logging.getLogger(noisy).setLevel(max(root.level, logging.WARNING))


def configure_for_people(
    level: str = "INFO", *, debug: bool = False, secrets: Iterable[str | None] = ()
) -> None:
    """Logging for one-shot commands, whose output is for people: warnings and errors only,
    as ``warning: message`` lines (every level at ``LOG_LEVEL`` with ``debug``). The libraries'
    INFO lines (Alembic's migration steps, the client's topics) say nothing a person needs."""
    root = _install(_PeopleFormatter(debug=debug), secrets)
    root.setLevel(level.upper() if debug else max(logging.WARNING, _level(level)))
    if not debug:
        # aiokafka logs each failed connection attempt; the command's one error line says it.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def _install(formatter: logging.Formatter, secrets: Iterable[str | None]) -> logging.Logger:
    """The root logger with one stderr handler: ``formatter``, secrets redacted, the Kafka
    client's repeated lines limited (``genres.observability.repeats``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactSecrets(secrets))
    # A failover's client errors: one line per cause per interval, at WARNING.
    RepeatLimiter().install(handler)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    return root


def _level(name: str) -> int:
    value = logging.getLevelName(name.upper())
    return value if isinstance(value, int) else logging.INFO


class _PeopleFormatter(logging.Formatter):
    def __init__(self, *, debug: bool) -> None:
        super().__init__()
        self._debug = debug

    def format(self, record: logging.LogRecord) -> str:
        line = f"{record.levelname.lower()}: {record.getMessage()}"
        if self._debug:
            line = f"{record.name} {line}"
            if record.exc_info:
                line += "\n" + (record.exc_text or self.formatException(record.exc_info))
        return line
