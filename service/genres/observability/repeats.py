"""Repeated Kafka client lines, one per cause per interval.

While a broker fails over, the Kafka client (aiokafka's loggers, FastStream's ``Kafka error
occurred``) logs the same failure many times a second, at ERROR: hundreds of lines for a pause
the service rides out without losing anything. :class:`RepeatLimiter`, a filter on the log
handler, passes the first line of a cause (logger, message template, exception type), drops its
repeats for ``interval`` seconds and counts them; the next line of that cause (or, when the
cause went quiet, a line of its own at the next record logged) ends with ``(repeated N times
in 10 s)``.

A failover is routine: the client's ERROR lines become WARNING lines without a traceback (the
exception in one line), unless the failure is one no retry cures (authorization,
authentication, TLS, a codec missing). What must be loud is said by the service itself: a
partition that makes no progress (``genres.observability.stalls``).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

Clock = Callable[[], float]
Cause = tuple[str, str, str | None]

INTERVAL_SECONDS = 10.0
TLS_LOGGER = "genres.tls"
CLIENT_LOGGERS = ("aiokafka", "kafka", "faststream", "genres.faststream", TLS_LOGGER)
"""The Kafka client's loggers (``genres.faststream`` is FastStream's, as the broker names it),
and the line of a TLS connection that ended under its peer's last bytes (:func:`adopt_orphans`)."""

_SUMMARY = "_genres_repeats"
_PERMANENT_WORDS = ("authoriz", "authenticat")


@dataclass
class _Window:
    opened: float
    repeats: int = 0
    last: logging.LogRecord | None = None


def adopt_orphans(loop: asyncio.AbstractEventLoop) -> None:
    """The Kafka client's errors that reach ``loop``'s exception handler become the client's
    lines (logger ``aiokafka``, so limited as above). aiokafka shields a commit from its
    caller's cancellation: when a stop gives up on a broker that does not answer, the commit
    fails later with nobody waiting, and asyncio's default handler would log ``Task exception
    was never retrieved`` at ERROR with a traceback.

    So does uvloop's ``Fatal error on SSL protocol`` when its TLS layer writes to a socket that
    is already closed: a client closed its TLS connection (aiokafka at a stop) and the peer's
    last bytes (its ``close_notify``) arrived before the socket was gone; uvloop answers them
    through the closed socket and reports the ``RuntimeError`` at ERROR with a traceback.
    Nothing is lost (the connection was ending) and the service cannot order it otherwise: a
    client line (WARNING, one per interval), logger ``genres.tls``."""
    from aiokafka.errors import KafkaError  # here: logging's set-up loads no Kafka client

    previous = loop.get_exception_handler()

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        error = context.get("exception")
        if isinstance(error, KafkaError):
            logging.getLogger("aiokafka").error(
                "a Kafka client task failed with nobody waiting for it", exc_info=error
            )
        elif isinstance(error, RuntimeError) and _written_after_close(context):
            logging.getLogger(TLS_LOGGER).error(
                "a TLS connection got its peer's last bytes after its socket closed",
                exc_info=error,
            )
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)


def _written_after_close(context: dict[str, object]) -> bool:
    """uvloop's (and asyncio's) TLS layer failing to write to a socket it had closed."""
    error = context.get("exception")
    return (
        str(context.get("message", "")).startswith("Fatal error on SSL")
        and isinstance(error, RuntimeError)
        and "the handler is closed" in str(error)
    )


class RepeatLimiter(logging.Filter):
    """Passes a cause's line at most once per ``interval`` seconds (``clock`` injected)."""

    def __init__(
        self,
        loggers: Iterable[str] = CLIENT_LOGGERS,
        *,
        interval: float = INTERVAL_SECONDS,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__()
        self.interval = interval
        self._loggers = tuple(loggers)
        self._clock = clock
        self._windows: dict[Cause, _Window] = {}
        self._lock = threading.Lock()
        self._handler: logging.Handler | None = None

    def install(self, handler: logging.Handler) -> None:
        """Filter ``handler``'s records (first, so that a dropped line costs nothing more);
        the counts of causes gone quiet are written through it."""
        handler.filters.insert(0, self)
        self._handler = handler

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _SUMMARY, False):
            return True
        watched = record.levelno >= logging.WARNING and self._watches(record.name)
        cause = _cause(record) if watched else None
        now = self._clock()
        with self._lock:
            quiet = self._expire(now, keep=cause)
            passed, repeats = True, 0
            if cause is not None:
                window = self._windows.get(cause)
                if window is not None and now - window.opened < self.interval:
                    window.repeats += 1
                    window.last = record
                    passed = False
                else:
                    repeats = window.repeats if window is not None else 0
                    self._windows[cause] = _Window(opened=now)
        for summary in quiet:
            self._write(summary)
        if passed and cause is not None:
            _quieten(record, repeats, self.interval)
        return passed

    def _watches(self, name: str) -> bool:
        return any(name == each or name.startswith(each + ".") for each in self._loggers)

    def _expire(self, now: float, *, keep: Cause | None) -> list[logging.LogRecord]:
        """Forget the windows past their interval; the lines saying how often a cause that
        went quiet was repeated (``keep``'s count goes on its own next line instead)."""
        summaries = []
        for cause, window in list(self._windows.items()):
            if cause == keep or now - window.opened < self.interval:
                continue
            del self._windows[cause]
            if window.repeats and window.last is not None:
                summaries.append(_summary(window.last, window.repeats, self.interval))
        return summaries

    def _write(self, record: logging.LogRecord) -> None:
        if self._handler is not None:
            self._handler.handle(record)


def _cause(record: logging.LogRecord) -> Cause:
    error = record.exc_info[1] if record.exc_info else None
    return (record.name, str(record.msg), type(error).__name__ if error is not None else None)


def _error_types(record: logging.LogRecord) -> list[type[BaseException]]:
    """The exceptions a line carries: its ``exc_info``, and those among its arguments
    (aiokafka passes an error, or an error's class, as a ``%s`` argument)."""
    found: list[type[BaseException]] = []
    if record.exc_info and record.exc_info[1] is not None:
        found.append(type(record.exc_info[1]))
    for arg in record.args if isinstance(record.args, tuple) else ():
        if isinstance(arg, BaseException):
            found.append(type(arg))
        elif isinstance(arg, type) and issubclass(arg, BaseException):
            found.append(arg)
    return found


def permanent(record: logging.LogRecord) -> bool:
    """Whether the line tells a failure no retry cures (it stays an ERROR)."""
    for kind in _error_types(record):
        if issubclass(kind, ssl.SSLError):
            return True
        # By name: logging is configured before a command imports the Kafka client (``genres
        # --help`` and a bad setting never load it), and these lines come only from it.
        if kind.__name__ == "UnsupportedCodecError":
            return True
        if "Authorization" in kind.__name__ or "Authentication" in kind.__name__:
            return True
    text = str(record.msg).lower()
    return any(word in text for word in _PERMANENT_WORDS)


def _quieten(record: logging.LogRecord, repeats: int, interval: float) -> None:
    """A transient client error at WARNING, its exception in one line; the count appended."""
    message = None
    if record.levelno > logging.WARNING and not permanent(record):
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        if record.exc_info and record.exc_info[1] is not None:
            message = record.getMessage()
            error = _one_line(record.exc_info[1])
            if error not in message:
                message = f"{message}: {error}"
            record.exc_info, record.exc_text = None, None
    if repeats:
        message = f"{message or record.getMessage()} {_repeated(repeats, interval)}"
    if message is not None:
        record.msg, record.args = message, None


def _summary(last: logging.LogRecord, repeats: int, interval: float) -> logging.LogRecord:
    record = logging.makeLogRecord(dict(last.__dict__))
    record.created = time.time()
    setattr(record, _SUMMARY, True)
    _quieten(record, 0, interval)
    record.msg = f"{record.getMessage()} {_repeated(repeats, interval)}"
    record.args, record.exc_info, record.exc_text = None, None, None
    return record


def _repeated(repeats: int, interval: float) -> str:
    times = "once" if repeats == 1 else f"{repeats} times"
    return f"(repeated {times} in {interval:g} s)"


def _one_line(error: BaseException) -> str:
    name = type(error).__name__
    text = " ".join(str(error).split())[:300]
    if not text:
        return name
    return text if text.startswith(name) else f"{name}: {text}"
