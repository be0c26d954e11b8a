"""Prometheus metrics in a registry of the service's own (tests build several side by side).

Events are counted where they happen through small hooks (``observe_*`` methods handed to the
adapters by the composition root); state that the consumers already keep (records in flight,
handler retries, consumer lag) is read when the registry is scraped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from genres.observability.groups import StalledGroups
from genres.observability.stalls import StalledPartitions, StallWatchdog
from genres_contracts import CascadeRoute

log = logging.getLogger(__name__)

# Replicate's create->output latency: ~2 s of model time plus queueing and polling.
LATENCY_BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0, 120.0, 300.0)
PREDICT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 30.0, 60.0)
LAG_TIMEOUT_SECONDS = 1.0


class WindowedConsumer(Protocol):
    """What the metrics read from ``genres.classifier.consumer.ConcurrentConsumer``."""

    @property
    def in_flight(self) -> int: ...

    handled: int
    retried: int


class Slots(Protocol):
    """What the metrics read from ``genres.classifier.bounded.BoundedClassifier``."""

    @property
    def running(self) -> int: ...


class KafkaPositions(Protocol):
    """The part of aiokafka's consumer that lag is computed from."""

    def assignment(self) -> Any: ...

    def highwater(self, partition: Any) -> int | None: ...

    async def position(self, partition: Any) -> int: ...


@dataclass
class _LagSource:
    name: str
    consumer: KafkaPositions


class ServiceMetrics:
    """Every metric of one process, in ``self.registry``."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        cost_per_second: float = 0.000095,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.cost_per_second = cost_per_second
        counter = functools.partial(Counter, registry=self.registry)
        self.classifications = counter(
            "genres_classifications",
            "Classification requests handled, by backend and outcome "
            "(classified, failed, republished).",
            ["backend", "outcome"],
        )
        self.replicate_latency = Histogram(
            "genres_replicate_latency_seconds",
            "Replicate classifications from prediction creation to ranked output.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predict_time = Histogram(
            "genres_model_predict_seconds",
            "Time the model itself ran (Replicate metrics.predict_time, or local inference).",
            ["backend"],
            buckets=PREDICT_BUCKETS,
            registry=self.registry,
        )
        self.cost = counter(
            "genres_replicate_estimated_cost_usd",
            "Estimated Replicate spend: predict_time seconds x REPLICATE_COST_PER_SECOND.",
        )
        self.replicate_retries = counter(
            "genres_replicate_retries",
            "Replicate HTTP calls retried, by step (create, poll, output).",
            ["step"],
        )
        self.replicate_throttled = counter(
            "genres_replicate_throttled",
            "Replicate answers 429 (rate limited), by step (create, poll, output).",
            ["step"],
        )
        self.ready = Gauge(
            "genres_ready",
            "1 when /readyz would answer 200 (roles started, broker and database answer, no "
            "partition or group stalled), else 0; evaluated at scrape time.",
            registry=self.registry,
        )
        self.dead_letters = counter(
            "genres_dead_letters",
            "Records sent to a dead-letter topic, by original topic.",
            ["topic"],
        )
        self.projections_stale = counter(
            "genres_projections_stale",
            "Classifications dropped by the projector because the track's file changed.",
        )
        self.projections_written = counter(
            "genres_projections_written", "Classifications stored by the projector."
        )
        self.cascade_answers = counter(
            "genres_cascade_answers",
            "CLASSIFIER_BACKEND=cascade: tracks answered, by the backend that answered (local, "
            "replicate) and why (confident: the head's top probability reached "
            "CASCADE_MIN_CONFIDENCE; unsure: it did not; local_failed: the local model could "
            "not read the audio; fallback: Replicate failed and the local answer was kept).",
            ["answered_by", "reason"],
        )
        self.cascade_creations_avoided = counter(
            "genres_cascade_creations_avoided",
            "CLASSIFIER_BACKEND=cascade: tracks the head answered confidently, so no Replicate "
            "prediction was created (each saves a run's cost and a slot of the account's cap).",
        )
        self.consumer_lag = Gauge(
            "genres_consumer_lag",
            "Records behind the partition's high watermark, sampled at scrape time.",
            ["consumer", "topic", "partition"],
            registry=self.registry,
        )
        self._window: WindowedConsumer | None = None
        self._slots: Slots | None = None
        self._lag_sources: list[_LagSource] = []
        self.registry.register(_WindowCollector(self))

    # -- hooks: events -------------------------------------------------------------------

    def observe_outcome(self, backend: str, outcome: str) -> None:
        self.classifications.labels(backend=backend, outcome=outcome).inc()

    def observe_prediction(self, backend: str, *, predict: float | None, total: float) -> None:
        """One finished classification; ``predict`` is the model's own time when known."""
        if backend == "replicate":
            self.replicate_latency.observe(total)
        if predict is not None and predict >= 0:
            self.predict_time.labels(backend=backend).observe(predict)
            if backend == "replicate":
                self.cost.inc(predict * self.cost_per_second)

    def observe_cascade(self, route: CascadeRoute) -> None:
        """One track the cascade answered, as its outcome event's ``cascade`` says."""
        reason = cascade_reason(route)
        self.cascade_answers.labels(answered_by=route.answered_by, reason=reason).inc()
        if reason == "confident":
            self.cascade_creations_avoided.inc()

    def observe_replicate_retry(self, step: str) -> None:
        self.replicate_retries.labels(step=step).inc()

    def observe_replicate_throttled(self, step: str) -> None:
        self.replicate_throttled.labels(step=step).inc()

    def observe_dead_letter(self, topic: str) -> None:
        self.dead_letters.labels(topic=topic).inc()

    def observe_projection(self, *, written: int, stale: int) -> None:
        if written:
            self.projections_written.inc(written)
        if stale:
            self.projections_stale.inc(stale)

    # -- state read at scrape time -------------------------------------------------------

    def watch_window(self, consumer: WindowedConsumer) -> None:
        """Report the classifier's records in flight, records handled and handler retries."""
        self._window = consumer

    def watch_classifications(self, slots: Slots) -> None:
        """Report the classifications running now (at most CLASSIFIER_CONCURRENCY)."""
        self._slots = slots

    def watch_lag(self, name: str, consumer: KafkaPositions) -> None:
        """Report ``consumer``'s lag per assigned partition under the label ``consumer=name``."""
        self._lag_sources.append(_LagSource(name, consumer))

    def watch_stalls(self, watchdog: StallWatchdog) -> None:
        """Report ``genres_partition_stalled`` per partition the watchdog watches and
        ``genres_group_stalled`` per group."""
        self.registry.register(StalledPartitions(watchdog))
        self.registry.register(StalledGroups(watchdog.groups))

    def watch_subscribers(self, name: str, consumers: Iterable[Callable[[], Any]]) -> None:
        """Consumers that exist only while running (a FastStream subscriber's, read through
        its bus entry): each callable returns the current one, or None."""
        for consumer in consumers:
            self._lag_sources.append(_LagSource(name, _LateConsumer(consumer)))

    async def refresh(self) -> None:
        """Sample what needs awaiting (consumer positions); called before each scrape."""
        self.consumer_lag.clear()
        for source in self._lag_sources:
            try:
                await asyncio.wait_for(self._sample_lag(source), LAG_TIMEOUT_SECONDS)
            except Exception as exc:  # a rebalance or a stopped consumer: skip this scrape
                log.debug("lag not sampled for %s: %s", source.name, exc)

    async def _sample_lag(self, source: _LagSource) -> None:
        consumer = source.consumer
        for partition in sorted(consumer.assignment() or (), key=_partition_order):
            highwater = consumer.highwater(partition)
            if highwater is None:
                continue
            position = await consumer.position(partition)
            self.consumer_lag.labels(
                consumer=source.name, topic=partition.topic, partition=str(partition.partition)
            ).set(max(0, highwater - position))

    def _window_metrics(self) -> Iterator[Metric]:
        if self._slots is not None:
            running = GaugeMetricFamily(
                "genres_classifications_in_flight",
                "Classifications (paid predictions) running now; at most CLASSIFIER_CONCURRENCY.",
            )
            running.add_metric([], self._slots.running)
            yield running
        window = self._window
        if window is None:
            return
        in_flight = GaugeMetricFamily(
            "genres_classifier_records_in_flight",
            "Records admitted to the classifier's commit window and not finished yet.",
        )
        in_flight.add_metric([], window.in_flight)
        yield in_flight
        handled = CounterMetricFamily(
            "genres_classifier_records_handled",
            "Records the classifier finished (any outcome).",
        )
        handled.add_metric([], window.handled)
        yield handled
        retried = CounterMetricFamily(
            "genres_classifier_handler_retries",
            "Classifier handler runs that raised (database, broker) and were retried in place.",
        )
        retried.add_metric([], window.retried)
        yield retried


class _WindowCollector(Collector):
    def __init__(self, owner: ServiceMetrics) -> None:
        self._owner = owner

    def collect(self) -> Iterable[Metric]:
        return list(self._owner._window_metrics())

    def describe(self) -> Iterable[Metric]:
        return []


class _LateConsumer:
    """A consumer that exists only while running, looked up when sampled."""

    def __init__(self, consumer: Callable[[], Any]) -> None:
        self._consumer = consumer

    def assignment(self) -> Any:
        consumer = self._consumer()
        if consumer is None:
            return ()
        with contextlib.suppress(Exception):
            return consumer.assignment()
        return ()

    def highwater(self, partition: Any) -> int | None:
        consumer = self._consumer()
        return None if consumer is None else consumer.highwater(partition)

    async def position(self, partition: Any) -> int:
        consumer = self._consumer()
        if consumer is None:
            raise LookupError("subscriber stopped")
        position: int = await consumer.position(partition)
        return position


def cascade_reason(route: CascadeRoute) -> str:
    """Why the cascade's answer came from where it did (the ``reason`` label)."""
    if route.fallback is not None:
        return "fallback"
    if route.answered_by == "local":
        return "confident"
    return "local_failed" if route.local_confidence is None else "unsure"


def _partition_order(partition: Any) -> tuple[str, int]:
    return (str(partition.topic), int(partition.partition))


def prometheus_middleware(metrics: ServiceMetrics, app_name: str = "genres") -> Sequence[Any]:
    """FastStream's own per-subscriber metrics (``faststream_*``) in the same registry."""
    try:
        from faststream.kafka.prometheus import KafkaPrometheusMiddleware
    except ImportError:  # pragma: no cover - faststream[prometheus] is a dependency
        return []
    return [KafkaPrometheusMiddleware(registry=metrics.registry, app_name=app_name)]
