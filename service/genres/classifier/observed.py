"""A ``Classifier`` decorator that traces and measures each classification."""

from __future__ import annotations

import time

from opentelemetry.trace import Status, StatusCode

from genres.classify.port import Checkpoint, Classification, Classifier
from genres.errors import ClassificationError
from genres.observability.metrics import ServiceMetrics
from genres.observability.tracing import client_span
from genres_contracts import ModelRef


class ObservedClassifier:
    """Wraps any backend: a client span per call, latency, predict time and cost recorded."""

    def __init__(
        self, inner: Classifier, *, backend: str, metrics: ServiceMetrics | None = None
    ) -> None:
        self._inner = inner
        self._backend = backend
        self._metrics = metrics

    @property
    def model(self) -> ModelRef:
        return self._inner.model

    @property
    def inner(self) -> Classifier:
        return self._inner

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def classify(self, audio: str, checkpoint: Checkpoint | None = None) -> Classification:
        model = self._inner.model
        started = time.monotonic()
        with client_span(
            f"classify {self._backend}",
            **{
                "genres.backend": self._backend,
                "genres.model.name": model.name,
                "genres.model.version": model.version,
            },
        ) as span:
            try:
                result = await self._inner.classify(audio, checkpoint)
            except ClassificationError as exc:
                span.set_status(Status(StatusCode.ERROR, str(exc.kind)))
                span.set_attribute("genres.error.kind", str(exc.kind))
                span.set_attribute("genres.attempts", exc.attempts)
                raise
            span.set_attribute("genres.attempts", result.attempts)
            if result.timings.predict is not None:
                span.set_attribute("genres.predict_seconds", result.timings.predict)
            if result.cascade is not None:
                span.set_attribute("genres.cascade.answered_by", result.cascade.answered_by)
                if result.cascade.fallback is not None:
                    span.set_attribute("genres.cascade.fallback", result.cascade.fallback)
            prediction_id = result.extra.get("prediction_id")
            if isinstance(prediction_id, str):
                span.set_attribute("replicate.prediction_id", prediction_id)
        if self._metrics is not None:
            total = result.timings.total if result.timings.total else time.monotonic() - started
            # A cascade's answer is measured as the backend that made it (Replicate's latency
            # and cost only for Replicate's answers).
            backend = self._backend
            if result.cascade is not None:
                backend = result.cascade.answered_by
                self._metrics.observe_cascade(result.cascade)
            self._metrics.observe_prediction(backend, predict=result.timings.predict, total=total)
        return result
