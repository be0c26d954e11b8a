"""The responder, assembled: its runtime (outcome listener, request tasks, reads on the
kernel's engine) and its subscriber on the kernel's broker (``genres.kernel``)."""

from __future__ import annotations

import functools
from contextlib import AsyncExitStack

from faststream.kafka import KafkaBroker
from sqlalchemy.ext.asyncio import AsyncEngine

from genres.config import Settings
from genres.kafka.producer import Publisher
from genres.kernel import STEP_SECONDS, Kernel, RoleHandle, within
from genres.observability.progress import PositionProgress
from genres.observability.stalls import StallWatchdog
from genres.responder.entry import subscribe_responder
from genres.responder.outcomes import RESPONDER_FETCH_MAX_WAIT_MS, OutcomeListener
from genres.responder.runtime import DEFAULT_MAX_IN_FLIGHT, ResponderRuntime

__all__ = ["ResponderHandle", "assemble", "register_responder"]

ROLE = "responder"


def register_responder(
    broker: KafkaBroker,
    *,
    settings: Settings,
    engine: AsyncEngine,
    publisher: Publisher,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    stale_after: float | None = None,
    read_engine: AsyncEngine | None = None,
    watchdog: StallWatchdog | None = None,
) -> ResponderRuntime:
    """The responder's runtime, subscribed to ``track.recommended_tags`` on ``broker``.

    ``stale_after`` (seconds) is when an on-demand marker may be reclaimed; by default twice
    ``REPLICATE_TIMEOUT_SECONDS``. Track reads go through ``read_engine``, by default
    ``engine`` itself: the process's one pool (``track_view`` runs each read in autocommit,
    one round trip per cached answer, and the root's engine pings no connection at checkout,
    so a second engine would only split the pool). ``engine`` serves the on-demand claims.
    Start the returned runtime before the broker. ``watchdog`` watches the outcome
    listener's partitions.
    """
    runtime = ResponderRuntime(
        read_engine=read_engine,
        settings=settings,
        engine=engine,
        publisher=publisher,
        outcomes=OutcomeListener(
            settings,
            fetch_max_wait_ms=min(settings.kafka_fetch_max_wait_ms, RESPONDER_FETCH_MAX_WAIT_MS),
            watchdog=watchdog,
        ),
        max_in_flight=max_in_flight,
        stale_after=2 * settings.replicate_timeout_seconds if stale_after is None else stale_after,
        on_refused=watchdog.reporter(ROLE) if watchdog is not None else None,
    )
    subscribe_responder(broker, settings=settings, runtime=runtime)
    return runtime


class ResponderHandle(RoleHandle):
    def __init__(self, runtime: ResponderRuntime) -> None:
        super().__init__(ROLE)
        self.runtime = runtime
        self.subscribed = runtime.subscribed

    async def _start(self, stack: AsyncExitStack) -> None:
        # The outcome listener must be positioned before requests are taken (the root starts
        # the broker after every role).
        await self.runtime.start()
        stack.push_async_callback(
            within(
                STEP_SECONDS,
                "the responder",
                functools.partial(self.runtime.stop, grace=STEP_SECONDS / 2),
            )
        )


def assemble(kernel: Kernel) -> ResponderHandle:
    runtime = register_responder(
        kernel.broker(),
        settings=kernel.settings,
        engine=kernel.engine,
        publisher=kernel.publisher,
        watchdog=kernel.watchdog,
    )
    assert runtime.subscribed is not None
    # ACK_FIRST: a request is done once handed to its task.
    kernel.watchdog.watch(ROLE, PositionProgress(runtime.subscribed.consumer))
    return ResponderHandle(runtime)
