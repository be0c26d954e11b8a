"""The composition root: builds the kernel (settings, broker, producer, engine, metrics) and
asks each role the command runs to assemble itself from it (``<role>/assembly.py``).

Nothing here runs at import time; ``running`` builds everything and tears it down in reverse.
Each role's assembly is imported only when that role runs, so a command pays at start only
for what it runs (``migrate`` and ``backfill --dry-run`` load no classifier and no HTTP client).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import importlib
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine

from genres.backfill.rule import BackfillOptions, BackfillReport, Progress, no_progress
from genres.config import Backend, Settings
from genres.database.engine import create_engine, first_contact
from genres.errors import ClusterRefused, ConfigurationError
from genres.kafka.acls import topics_used
from genres.kafka.broker import ensure_topics
from genres.kafka.producer import Publisher
from genres.kafka.refusals import Echoes, Intercepted, Refusals, probe
from genres.kernel import STEP_SECONDS, Kernel, RoleHandle, within
from genres.observability.metrics import ServiceMetrics, prometheus_middleware
from genres.observability.progress import SubscriberErrors, watch_publisher
from genres.observability.repeats import adopt_orphans
from genres.observability.stalls import StallWatchdog
from genres.observability.tracing import configure_tracing, telemetry_middleware

if TYPE_CHECKING:
    from faststream.kafka import KafkaBroker

    from genres.classify.port import Classifier
    from genres.observability.health import HealthServer
    from genres_contracts import ModelRef

log = logging.getLogger(__name__)


class Role(StrEnum):
    CLASSIFIER = "classifier"
    PROJECTOR = "projector"
    RESPONDER = "responder"


ALL_ROLES = frozenset(Role)

Assemble = Callable[[Kernel], RoleHandle]
"""A role's ``assemble``: its adapters built from the kernel, returned as a handle."""

#: Where each role assembles itself; started in this order, stopped in reverse.
ASSEMBLIES = {
    Role.CLASSIFIER: "genres.classifier.assembly",
    Role.PROJECTOR: "genres.projector.assembly",
    Role.RESPONDER: "genres.responder.assembly",
}

SHUTDOWN_SECONDS = 20.0
"""How long stopping may take, whatever the cluster's state (Kubernetes waits 30 s by
default before it kills): past it, what is not done is left for redelivery."""
#: The kernel's pool: the projector's writes and the responder's reads share it (the
#: classifier's ledger has a pool of its own), as many connections as their two pools had.
ENGINE_POOL_SIZE = 20


@dataclass
class Service:
    """What a running process holds; tests and the demo look inside."""

    settings: Settings
    engine: AsyncEngine
    publisher: Publisher
    metrics: ServiceMetrics | None = None
    health: HealthServer | None = None
    refusals: Refusals = field(default_factory=Refusals)
    """The cluster's refusals: the first one stops the process (``serve``)."""
    roles: dict[str, RoleHandle] = field(default_factory=dict)
    """Each running role's handle, by name."""


@contextlib.asynccontextmanager
async def running(
    settings: Settings,
    roles: frozenset[Role],
    *,
    engine: AsyncEngine | None = None,
    publisher: Publisher | None = None,
    metrics: ServiceMetrics | None = None,
    make_broker: Callable[[], KafkaBroker] | None = None,
    assemblies: Mapping[Role, Assemble] | None = None,
) -> AsyncIterator[Service]:
    """Start ``roles``; on exit stop fetching, finish or hand back in-flight work, close all.

    The kernel's parts are built here unless given (a test's real adapters or fakes; given
    ones are started and closed by their giver); ``assemblies`` replaces roles' own.
    """
    async with AsyncExitStack() as stack:
        shutdown_tracing = configure_tracing()
        if shutdown_tracing is not None:
            stack.push_async_callback(shutdown_tracing)
        if metrics is None:
            metrics = ServiceMetrics(cost_per_second=settings.replicate_cost_per_second)
        watchdog = StallWatchdog(settings.kafka_stall_seconds)
        refusals = _refusals(watchdog, stack)
        metrics.watch_stalls(watchdog)
        # Answers from the start, saying what the process still waits for.
        health = await _start_health(settings, metrics, refusals, stack)
        stack.push(_noting(refusals))  # a refusal met while starting: its one ERROR line
        _waiting(health, "topics")
        if settings.kafka_security_protocol.upper() != "PLAINTEXT":
            await probe(settings)  # a refused login or handshake, named (the clients hide it)
        # Only the roles' own topics: a role is granted nothing on the others (kafka/acls.py).
        await ensure_topics(settings, topics_used(settings, sorted(roles)))
        _waiting(health, "database")
        engine = engine if engine is not None else await _engine(settings, stack)
        publisher = publisher if publisher is not None else await _publisher(settings, stack)
        kernel = Kernel(
            settings,
            engine,
            publisher,
            metrics,
            watchdog,
            make_broker=make_broker or _broker_maker(settings, metrics),
        )
        _watch_kernel(kernel, health, stack)
        _waiting(health, "roles")
        handles = await _start_roles(kernel, roles, assemblies or {}, stack)
        await _start_bus(kernel, handles, refusals, stack)
        # Stops first on the way out: a role draining is not a stall.
        await watchdog.start()
        stack.push_async_callback(within(STEP_SECONDS, "the stall watchdog", watchdog.stop))
        if health is not None:
            health.started = True
            # Runs first on the way out: not ready while stopping.
            stack.callback(setattr, health, "started", False)
        log.info("service started", extra={"roles": sorted(roles)})
        yield Service(settings, engine, publisher, metrics, health, refusals, handles)
        log.info("service stopping", extra={"roles": sorted(roles)})


def _watch_kernel(kernel: Kernel, health: HealthServer | None, stack: AsyncExitStack) -> None:
    """The publisher's writes and dead letters watched; the broker, the database and the
    partitions' leaders part of readiness."""
    watchdog, publisher = kernel.watchdog, kernel.publisher
    publisher.on_dead_letter = kernel.metrics.observe_dead_letter
    stack.callback(watch_publisher(watchdog, publisher))
    if health is not None:
        from genres.observability.health import broker_check, database_check

        health.add_check("broker", broker_check(publisher.producer.client))
        health.add_check("database", database_check(kernel.engine))
        health.add_check("partitions", watchdog.check)


def _refusals(watchdog: StallWatchdog, stack: AsyncExitStack) -> Refusals:
    """Every error a role meets reaches the watchdog; a refusal among them (or in any log
    line) stops the process."""
    refusals = Refusals()
    watchdog.listeners.append(lambda role, error: refusals.note(error, role=role))
    for handler in logging.getLogger().handlers:
        echoes = Echoes(refusals)
        handler.addFilter(echoes)
        stack.callback(handler.removeFilter, echoes)
    return refusals


async def _engine(settings: Settings, stack: AsyncExitStack) -> AsyncEngine:
    engine = create_engine(
        settings.required_database_url,
        pool_size=ENGINE_POOL_SIZE,
        # Overflow connections are closed when returned: under load that is a connection
        # (and a TLS handshake) per query. Statements are short; waiting for one is cheaper.
        max_overflow=0,
        # Every caller retries on a dropped connection; a ping per checkout costs more.
        pre_ping=False,
    )
    stack.push_async_callback(engine.dispose)
    await first_contact(engine)
    return engine


async def _publisher(settings: Settings, stack: AsyncExitStack) -> Publisher:
    publisher = Publisher.create(settings)
    await publisher.start()
    stack.push_async_callback(within(STEP_SECONDS, "the publisher", publisher.stop))
    return publisher


def _broker_maker(settings: Settings, metrics: ServiceMetrics) -> Callable[[], KafkaBroker]:
    def make() -> KafkaBroker:
        from genres.kafka.entry import create_broker

        middlewares = [*telemetry_middleware(), *prometheus_middleware(metrics)]
        return create_broker(settings, middlewares=middlewares)

    return make


async def _start_roles(
    kernel: Kernel,
    roles: frozenset[Role],
    assemblies: Mapping[Role, Assemble],
    stack: AsyncExitStack,
) -> dict[str, RoleHandle]:
    """Each role assembled and started in ``ASSEMBLIES``' order; its stop pushed first, so
    that a start failing half-way still undoes what it did."""
    handles: dict[str, RoleHandle] = {}
    for role in ASSEMBLIES:
        if role not in roles:
            continue
        assemble = assemblies.get(role) or importlib.import_module(ASSEMBLIES[role]).assemble
        handle = assemble(kernel)
        stack.push_async_callback(handle.stop)
        await handle.start()
        handles[role.value] = handle
    return handles


async def _start_bus(
    kernel: Kernel,
    handles: Mapping[str, RoleHandle],
    refusals: Refusals,
    stack: AsyncExitStack,
) -> None:
    """Start the broker the roles subscribed on, once they are all registered and started."""
    broker = kernel.subscribed_broker
    if broker is None:
        return
    subscribed = {name: h.subscribed for name, h in handles.items() if h.subscribed is not None}
    # FastStream retries its fetch errors itself and only logs them: the reasons.
    errors = SubscriberErrors(kernel.watchdog, subscribed)
    faststream_log = logging.getLogger("genres.faststream")
    faststream_log.addHandler(errors)
    stack.callback(faststream_log.removeHandler, errors)
    # A refusal among them (a denied READ) is not retried every 5 s: it stops us.
    intercepted = Intercepted(refusals, operation="READ")
    faststream_log.addFilter(intercepted)
    stack.callback(faststream_log.removeFilter, intercepted)
    # Stopped even when starting fails (a refused group join): its clients are closed.
    stack.push_async_callback(within(STEP_SECONDS, "the subscribers", broker.stop))
    await broker.start()
    kernel.metrics.watch_subscribers("faststream", [s.consumer for s in subscribed.values()])


async def serve(settings: Settings, roles: frozenset[Role]) -> None:
    """Run until SIGTERM or SIGINT, then stop cleanly within ``SHUTDOWN_SECONDS``."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    adopt_orphans(loop)
    stack = AsyncExitStack()
    try:
        service = await stack.enter_async_context(running(settings, roles))
        _freeze_startup_heap()
        refused = await _until_stopped(stop, service.refusals)
    finally:
        try:
            await _stopped_within(stack.aclose(), SHUTDOWN_SECONDS)
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
    if refused is not None:
        # After a clean stop: the command ends on it (exit 2, its line).
        raise refused


async def _until_stopped(stop: asyncio.Event, refusals: Refusals) -> ClusterRefused | None:
    """Wait for a signal or the cluster's first refusal; returns the refusal, if that was it."""
    signalled = asyncio.ensure_future(stop.wait())
    refused = asyncio.ensure_future(refusals.wait())
    try:
        await asyncio.wait({signalled, refused}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        signalled.cancel()
        refused.cancel()
    return refusals.first if not stop.is_set() else None


async def _start_health(
    settings: Settings, metrics: ServiceMetrics, refusals: Refusals, stack: AsyncExitStack
) -> HealthServer | None:
    """The health server, listening before anything else starts (none when the port is 0)."""
    if not settings.health_port:
        return None
    from genres.observability.health import HealthServer

    health = HealthServer(
        host=settings.health_host,
        port=settings.health_port,
        metrics=metrics,
        checks={"kafka": refusals.check},
    )
    await health.start()
    stack.push_async_callback(health.stop)
    return health


def _waiting(health: HealthServer | None, what: str) -> None:
    if health is not None:
        health.starting = what


def _noting(refusals: Refusals) -> Callable[..., bool]:
    """An exit callback: notes the refusal a failed start ended on (it still propagates)."""

    def exit_(kind: object, error: BaseException | None, trace: object) -> bool:
        if error is not None:
            refusals.note(error)
        return False

    return exit_


async def _stopped_within(teardown: Awaitable[None], seconds: float) -> None:
    """Await ``teardown``; past ``seconds`` (a stop that ignored its own bound), end the process
    at once with 0: what was not committed is redelivered, and waiting longer only earns a
    SIGKILL. (A thread's timer: it fires even if the loop is blocked, and the teardown stays in
    the task that started the roles.)"""
    timer = threading.Timer(seconds, _give_up, args=(seconds,))
    timer.daemon = True
    timer.start()
    try:
        await teardown
    finally:
        timer.cancel()


def _give_up(seconds: float) -> None:
    log.warning("stopping took longer than %gs: exiting with work left unfinished", seconds)
    logging.shutdown()
    os._exit(0)


def _freeze_startup_heap() -> None:
    """Keep what startup built (modules, clients, settings) out of the cyclic collector's scans.

    Measured in the classifier under load: a full collection scanned that heap in ~140 ms
    every ~3 s, stalling every record in flight; frozen, it scans only what the work made.
    """
    gc.collect()
    gc.freeze()


async def backfill(
    settings: Settings,
    options: BackfillOptions,
    *,
    wait: bool,
    timeout: float,
    progress: Progress = no_progress,
    other_model: bool = False,
) -> BackfillReport:
    """``genres backfill``: its engine and publisher (none for a dry run, which only reads).

    ``other_model``: also request the tracks whose predictions another model or version than
    the configured one made (the configured classifier is opened once to name its model).
    """
    if other_model:
        if settings.backend is Backend.NONE:
            raise ConfigurationError("--other-model needs CLASSIFIER_BACKEND set: which model?")
        from genres.classify.factory import open_classifier

        async with open_classifier(settings) as classifier:
            options = dataclasses.replace(options, model=_answering_models(classifier))
    from genres.backfill.assembly import run_backfill

    engine = create_engine(settings.required_database_url, pool_size=2)
    publisher = None if options.dry_run else Publisher.create(settings)
    try:
        if publisher is not None:
            await publisher.start()
        return await run_backfill(
            settings, engine, publisher, options, wait=wait, timeout=timeout, progress=progress
        )
    finally:
        if publisher is not None:
            await publisher.stop()
        await engine.dispose()


def _answering_models(classifier: Classifier) -> ModelRef | frozenset[ModelRef]:
    """The models whose stored predictions are the configured classifier's: a cascade's
    answers are its head's or Replicate's (its own model is only the ledger's key), so
    ``--other-model`` leaves both alone and reselects what an older head answered."""
    from genres.classify.cascade import CascadeClassifier

    if isinstance(classifier, CascadeClassifier):
        return frozenset({classifier.local.model, classifier.remote.model})
    return classifier.model
