"""The composition root: builds settings, broker, producer, HTTP clients, engine and roles.

Nothing here runs at import time; ``running`` builds everything and tears it down in reverse.
Each role's parts are imported in the branch that builds it, so a command pays at start only
for what it runs (``migrate`` and ``backfill --dry-run`` load no classifier and no HTTP client).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import gc
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine

from genres.backfill.entry import run_backfill
from genres.backfill.rule import BackfillOptions, BackfillReport, Progress, no_progress
from genres.config import Backend, Settings
from genres.database.engine import create_engine, first_contact
from genres.errors import ClusterRefused, ConfigurationError
from genres.kafka.acls import topics_used
from genres.kafka.broker import ensure_topics
from genres.kafka.producer import Publisher
from genres.kafka.refusals import Echoes, Intercepted, Refusals, probe
from genres.observability.metrics import ServiceMetrics, prometheus_middleware
from genres.observability.progress import (
    CommittedProgress,
    LocalProgress,
    PositionProgress,
    SubscriberErrors,
    subscriber_consumer,
    watch_publisher,
)
from genres.observability.repeats import adopt_orphans
from genres.observability.stalls import StallWatchdog
from genres.observability.tracing import configure_tracing, telemetry_middleware

if TYPE_CHECKING:
    from genres.classifier.consumer import ConcurrentConsumer
    from genres.classify.port import Classifier
    from genres.observability.health import HealthServer
    from genres_contracts import ModelRef

log = logging.getLogger(__name__)


class Role(StrEnum):
    CLASSIFIER = "classifier"
    PROJECTOR = "projector"
    RESPONDER = "responder"


ALL_ROLES = frozenset(Role)

SHUTDOWN_SECONDS = 20.0
"""How long stopping may take, whatever the cluster's state (Kubernetes waits 30 s by
default before it kills): past it, what is not done is left for redelivery."""
#: What each stop may take within that (a broker that does not answer holds each one).
CLASSIFIER_GRACE_SECONDS = 8.0
STEP_SECONDS = 4.0


@dataclass
class Service:
    """What a running process holds; tests and the demo look inside."""

    settings: Settings
    engine: AsyncEngine
    publisher: Publisher
    classifier_consumer: ConcurrentConsumer | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    metrics: ServiceMetrics | None = None
    health: HealthServer | None = None
    refusals: Refusals = field(default_factory=Refusals)
    """The cluster's refusals: the first one stops the process (``serve``)."""


@contextlib.asynccontextmanager
async def running(settings: Settings, roles: frozenset[Role]) -> AsyncIterator[Service]:
    """Start ``roles``; on exit stop fetching, finish or hand back in-flight work, close all."""
    async with AsyncExitStack() as stack:
        shutdown_tracing = configure_tracing()
        if shutdown_tracing is not None:
            stack.push_async_callback(shutdown_tracing)
        metrics = ServiceMetrics(cost_per_second=settings.replicate_cost_per_second)
        watchdog = StallWatchdog(settings.kafka_stall_seconds)
        metrics.watch_stalls(watchdog)
        # Every error a role meets reaches the watchdog; a refusal among them stops the process.
        refusals = Refusals()
        watchdog.listeners.append(lambda role, error: refusals.note(error, role=role))
        for handler in logging.getLogger().handlers:
            echoes = Echoes(refusals)
            handler.addFilter(echoes)
            stack.callback(handler.removeFilter, echoes)
        # Answers from the start, saying what the process still waits for.
        health = await _start_health(settings, metrics, refusals, stack)
        stack.push(_noting(refusals))  # a refusal met while starting: its one ERROR line
        _waiting(health, "topics")
        if settings.kafka_security_protocol.upper() != "PLAINTEXT":
            await probe(settings)  # a refused login or handshake, named (the clients hide it)
        # Only the roles' own topics: a role is granted nothing on the others (kafka/acls.py).
        await ensure_topics(settings, topics_used(settings, sorted(roles)))
        _waiting(health, "database")
        engine = create_engine(
            settings.required_database_url,
            # The classifier's ledger has a pool of its own; this one serves the projector and
            # the responder.
            pool_size=10,
            # Overflow connections are closed when returned: under load that is a connection
            # (and a TLS handshake) per query. Statements are short; waiting for one is cheaper.
            max_overflow=0,
            # Every caller retries on a dropped connection; a ping per checkout costs more.
            pre_ping=False,
        )
        stack.push_async_callback(engine.dispose)
        await first_contact(engine)
        publisher = Publisher.create(settings)
        await publisher.start()
        stack.push_async_callback(_within(STEP_SECONDS, "the publisher", publisher.stop))
        publisher.on_dead_letter = metrics.observe_dead_letter
        stack.callback(watch_publisher(watchdog, publisher))
        service = Service(
            settings=settings,
            engine=engine,
            publisher=publisher,
            metrics=metrics,
            health=health,
            refusals=refusals,
        )
        if health is not None:
            from genres.observability.health import broker_check, database_check

            health.add_check("broker", broker_check(publisher.producer.client))
            health.add_check("database", database_check(engine))
            health.add_check("partitions", watchdog.check)
        _waiting(health, "roles")

        if Role.CLASSIFIER in roles:
            from genres.classifier.bounded import BoundedClassifier
            from genres.classifier.entry import create_classifier_consumer
            from genres.classifier.ledger import PostgresLedger
            from genres.classifier.observed import ObservedClassifier
            from genres.classify.factory import open_classifier

            backend = settings.backend.value
            classifier = BoundedClassifier(
                ObservedClassifier(
                    await stack.enter_async_context(
                        open_classifier(
                            settings,
                            on_retry=metrics.observe_replicate_retry,
                            on_throttled=metrics.observe_replicate_throttled,
                        )
                    ),
                    backend=backend,
                    metrics=metrics,
                ),
                limit=settings.classifier_concurrency,
            )
            ledger = await PostgresLedger.connect(
                settings.required_database_url, size=max(4, settings.records_in_flight // 8)
            )
            stack.push_async_callback(ledger.close)
            consumer = create_classifier_consumer(
                settings,
                classifier=classifier,
                ledger=ledger,
                publisher=publisher,
                on_outcome=lambda outcome: metrics.observe_outcome(backend, outcome),
            )
            await consumer.start()
            stack.push_async_callback(
                _within(
                    CLASSIFIER_GRACE_SECONDS + 2 * STEP_SECONDS,
                    "the classifier",
                    functools.partial(consumer.stop, grace=CLASSIFIER_GRACE_SECONDS),
                )
            )
            service.classifier_consumer = consumer
            metrics.watch_window(consumer)
            metrics.watch_classifications(classifier)
            metrics.watch_lag("classifier", consumer.kafka_consumer)
            consumer.on_error = watchdog.reporter(Role.CLASSIFIER.value)
            kafka_consumer = consumer.kafka_consumer
            watchdog.watch(
                Role.CLASSIFIER.value,
                LocalProgress(lambda: kafka_consumer, consumer.progress),
                # A record may take its classification's whole deadline without any error.
                patience=settings.replicate_timeout_seconds + settings.kafka_stall_seconds,
            )

        if roles & {Role.PROJECTOR, Role.RESPONDER}:
            from genres.kafka.entry import create_broker

            broker = create_broker(
                settings, middlewares=[*telemetry_middleware(), *prometheus_middleware(metrics)]
            )
            subscribers: dict[str, Any] = {}
            if Role.PROJECTOR in roles:
                from genres.projector.entry import register_projector

                subscribers[Role.PROJECTOR.value] = register_projector(
                    broker,
                    settings=settings,
                    engine=engine,
                    publisher=publisher,
                    on_projected=lambda report: metrics.observe_projection(
                        written=report.written, stale=report.stale
                    ),
                    on_error=watchdog.reporter(Role.PROJECTOR.value),
                )
                # It commits after storing: its position runs ahead of the work.
                watchdog.watch(
                    Role.PROJECTOR.value,
                    CommittedProgress(subscriber_consumer(subscribers[Role.PROJECTOR.value])),
                )
            if Role.RESPONDER in roles:
                from genres.responder.entry import register_responder

                responder = register_responder(
                    broker,
                    settings=settings,
                    engine=engine,
                    publisher=publisher,
                    watchdog=watchdog,
                )
                subscribers[Role.RESPONDER.value] = responder.subscriber
                # ACK_FIRST: a request is done once handed to its task.
                watchdog.watch(
                    Role.RESPONDER.value,
                    PositionProgress(subscriber_consumer(responder.subscriber)),
                )
                # The outcome listener must be positioned before requests are taken.
                await responder.start()
                stack.push_async_callback(
                    _within(
                        STEP_SECONDS,
                        "the responder",
                        functools.partial(responder.stop, grace=STEP_SECONDS / 2),
                    )
                )
                service.extras["responder"] = responder
            # FastStream retries its fetch errors itself and only logs them: the reasons.
            errors = SubscriberErrors(watchdog, subscribers)
            faststream_log = logging.getLogger("genres.faststream")
            faststream_log.addHandler(errors)
            stack.callback(faststream_log.removeHandler, errors)
            # A refusal among them (a denied READ) is not retried every 5 s: it stops us.
            intercepted = Intercepted(refusals, operation="READ")
            faststream_log.addFilter(intercepted)
            stack.callback(faststream_log.removeFilter, intercepted)
            # Stopped even when starting fails (a refused group join): its clients are closed.
            stack.push_async_callback(_within(STEP_SECONDS, "the subscribers", broker.stop))
            await broker.start()
            metrics.watch_subscribers("faststream", broker.subscribers)
        # Stops first on the way out: a role draining is not a stall.
        await watchdog.start()
        stack.push_async_callback(_within(STEP_SECONDS, "the stall watchdog", watchdog.stop))
        service.extras["watchdog"] = watchdog
        if service.health is not None:
            service.health.started = True
            # Runs first on the way out: not ready while stopping.
            stack.callback(setattr, service.health, "started", False)
        log.info("service started", extra={"roles": sorted(roles)})
        yield service
        log.info("service stopping", extra={"roles": sorted(roles)})


def _within(
    seconds: float, what: str, stop: Callable[[], Awaitable[object]]
) -> Callable[[], Awaitable[None]]:
    """``stop``, given up after ``seconds`` with a WARNING: a broker that does not answer
    must not hold the exit (what was not committed is redelivered)."""

    async def bounded() -> None:
        try:
            async with asyncio.timeout(seconds):
                await stop()
        except TimeoutError:
            log.warning("%s did not stop within %gs: left unfinished", what, seconds)

    return bounded


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
