"""What every command shares: its settings, checked first; its one ``error:`` line; its loop.

Imports at the top are the standard library's only (see ``genres.cli``). Every failure a user
can cause ends as one ``error:`` line on stderr and a non-zero exit (``genres.cli.failures`` words
infrastructure errors); ``--debug`` (or ``GENRES_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

if TYPE_CHECKING:
    from rich.console import Console

    from genres.config import Settings

T = TypeVar("T")

KAFKA = "KAFKA_BOOTSTRAP_SERVERS"
DATABASE = "DATABASE_URL"


def debugging() -> bool:
    return os.environ.get("GENRES_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr, then exit with ``code``."""
    label = "\x1b[1;31merror:\x1b[0m" if sys.stderr.isatty() else "error:"
    print(f"{label} {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def is_set(name: str) -> bool:
    # Settings reads variable names in any case (config.Settings._from_environment), and
    # DATABASE_URL from the file DATABASE_URL_FILE names (config.FROM_FILE).
    names = (name, f"{name}_FILE") if name == DATABASE else (name,)
    return any(key.upper() in names and value for key, value in os.environ.items())


def settings_for(*required: str, service: bool = False, **overrides: Any) -> Settings:
    """The settings, after checking that ``required`` variables are set (before importing
    pydantic). Logs are JSON lines for the roles (``service``), else lines for people."""
    missing = [name for name in required if not is_set(name)]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        fail(f"{' and '.join(missing)} {verb} not set", code=2)
    from genres.config import load_settings
    from genres.errors import ConfigurationError
    from genres.observability import logs

    try:
        settings = load_settings(**overrides)
    except ConfigurationError as exc:
        fail(str(exc), code=2)
    sasl, key = settings.kafka_sasl_password, settings.kafka_ssl_key_password
    secrets = [settings.replicate_token, *(s.get_secret_value() for s in (sasl, key) if s)]
    if service:
        logs.configure(settings.log_level, settings.log_format, secrets=secrets)
    else:
        logs.configure_for_people(settings.log_level, debug=debugging(), secrets=secrets)
    return settings


def run_async(coro: Coroutine[Any, Any, T], settings: Settings | None = None) -> T:
    """Run ``coro``; a failure becomes one line (``genres.cli.failures`` says which and why)."""
    try:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
            import asyncio

            return asyncio.run(coro)
        return uvloop.run(coro)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        if debugging():
            raise
        from genres.cli.failures import explain

        message, code = explain(exc, settings)
        fail(message, code)


def console(*, stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr)


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``1 track``, ``2 tracks``: the count with the noun it agrees with."""
    return f"{count} {noun if count == 1 else many or noun + 's'}"
