"""The one retry policy: stamina's exponential backoff with jitter, never blocking the loop.

Every wait for infrastructure trouble (the classifier's handler and fetch loop, the projector's
writes and dead letters, the group-less topic readers) goes through :func:`retrying`, so
``stamina.set_testing`` switches all of them off at once in tests. ``is_transient`` says which
failures a later attempt may not meet. A permanent refusal from the Kafka cluster (an ACL, the
credentials, TLS: ``genres.kafka.refusals``) is never retried, whatever ``on`` says: it is
raised at once as ``ClusterRefused``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeVar

import stamina
from aiokafka.errors import KafkaError
from sqlalchemy.exc import DBAPIError, OperationalError

from genres.kafka.refusals import refused

log = logging.getLogger(__name__)

T = TypeVar("T")
ErrorHook = Callable[[BaseException], None]
"""Told each failure met (the stall watchdog gives the last one as a stall's reason)."""

# SQLSTATE classes and codes worth waiting out: connection exceptions, insufficient
# resources, operator intervention (restart, admin shutdown), serialization failures and
# deadlocks, lock timeouts.
RETRYABLE_SQLSTATE_CLASSES = ("08", "53", "57")
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", "55P03"})


def is_transient(exc: BaseException) -> bool:
    """True for failures that a later attempt may not meet: lost connections, restarts, locks."""
    if refused(exc) is not None:
        return False
    if isinstance(exc, OperationalError | OSError | ConnectionError | TimeoutError | KafkaError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        code = _sqlstate(exc)
        if code is not None:
            return code in RETRYABLE_SQLSTATES or code[:2] in RETRYABLE_SQLSTATE_CLASSES
    return False


def _sqlstate(exc: DBAPIError) -> str | None:
    original: Any = exc.orig
    for candidate in (original, getattr(original, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


async def retrying(
    action: Callable[[], Awaitable[T]],
    *,
    what: str,
    on: type[Exception] | Callable[[Exception], bool] = is_transient,
    wait_initial: float = 0.1,
    wait_max: float = 5.0,
    on_error: ErrorHook | None = None,
    context: dict[str, Any] | None = None,
    operation: str | None = None,
    topics: Collection[str] = (),
) -> T:
    """Run ``action`` until it succeeds; failures ``on`` rejects propagate at once, and a
    refusal from the cluster propagates at once as ``ClusterRefused``.

    No attempt or time limit: the record stays uncommitted meanwhile, and the stall watchdog
    (given each failure through ``on_error``) is what makes a long wait loud. ``operation``:
    the ACL operation ``action`` needs (``READ``) and ``topics`` the topics it is on, named by
    a refusal whose error does not.
    """

    def retried(exc: Exception) -> bool:
        if refused(exc) is not None:
            return False
        return isinstance(exc, on) if isinstance(on, type) else on(exc)

    async def noted() -> T:
        try:
            return await action()
        except Exception as exc:
            refusal = refused(exc, operation=operation, topics=topics)
            if on_error is not None:
                on_error(refusal or exc)
            if refusal is not None and refusal is not exc:
                raise refusal from exc
            if retried(exc):
                log.warning(
                    "retrying after a transient failure",
                    extra={"what": what, "error": repr(exc), **(context or {})},
                )
            raise

    # ``async for``: the backoff must not block the event loop (heartbeats, /readyz, stalls).
    async for attempt in stamina.retry_context(
        on=retried, attempts=None, timeout=None, wait_initial=wait_initial, wait_max=wait_max
    ):
        with attempt:
            return await noted()
    raise AssertionError("unreachable: stamina retries without a limit")  # pragma: no cover
