"""The classifier, assembled: its classifier (bounded, observed), its ledger and its consumer,
built from the settings and the shared kernel (``genres.kernel``)."""

from __future__ import annotations

import functools
from contextlib import AsyncExitStack

from genres.classifier.bounded import BoundedClassifier
from genres.classifier.consumer import ConcurrentConsumer
from genres.classifier.entry import create_classifier_consumer
from genres.classifier.ledger import PostgresLedger
from genres.classifier.observed import ObservedClassifier
from genres.classify.factory import open_classifier
from genres.kernel import STEP_SECONDS, Kernel, RoleHandle, within
from genres.observability.progress import LocalProgress

__all__ = ["CLASSIFIER_GRACE_SECONDS", "ClassifierHandle", "assemble"]

ROLE = "classifier"
#: What finishing the records in flight may take when stopping (within the root's bound).
CLASSIFIER_GRACE_SECONDS = 8.0


class ClassifierHandle(RoleHandle):
    def __init__(self, kernel: Kernel) -> None:
        super().__init__(ROLE)
        self.kernel = kernel
        self.consumer: ConcurrentConsumer | None = None
        """Its consumer once started (tests look at its commit window)."""

    async def _start(self, stack: AsyncExitStack) -> None:
        settings, metrics = self.kernel.settings, self.kernel.metrics
        watchdog = self.kernel.watchdog
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
            limit=settings.classifications_in_flight,
        )
        # A pool of its own (asyncpg's, no SQLAlchemy): the ledger batches its statements
        # and is the hot path's only database user; the kernel's engine serves the others.
        ledger = await PostgresLedger.connect(
            settings.required_database_url, size=max(4, settings.records_in_flight // 8)
        )
        stack.push_async_callback(ledger.close)
        consumer = create_classifier_consumer(
            settings,
            classifier=classifier,
            ledger=ledger,
            publisher=self.kernel.publisher,
            on_outcome=functools.partial(metrics.observe_outcome, backend),
        )
        await consumer.start()
        stack.push_async_callback(
            within(
                CLASSIFIER_GRACE_SECONDS + 2 * STEP_SECONDS,
                "the classifier",
                functools.partial(consumer.stop, grace=CLASSIFIER_GRACE_SECONDS),
            )
        )
        self.consumer = consumer
        metrics.watch_window(consumer)
        metrics.watch_classifications(classifier)
        metrics.watch_lag(ROLE, consumer.kafka_consumer)
        consumer.on_error = watchdog.reporter(ROLE)
        kafka_consumer = consumer.kafka_consumer
        watchdog.watch(
            ROLE,
            LocalProgress(lambda: kafka_consumer, consumer.progress),
            # A record may take its classification's whole deadline without any error.
            patience=settings.replicate_timeout_seconds + settings.kafka_stall_seconds,
        )


def assemble(kernel: Kernel) -> ClassifierHandle:
    """The classifier's handle; its parts are built when it starts (the classifier's model
    and HTTP clients, the ledger's pool), since each opening is awaited."""
    return ClassifierHandle(kernel)
