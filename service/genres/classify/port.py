"""The classifier port: what the roles need from any genre model."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from genres_contracts import CascadeRoute, ModelRef, Prediction


@dataclass(frozen=True, slots=True)
class Timings:
    """Where a classification's time went, in seconds."""

    total: float
    predict: float | None = None
    """Time the model itself ran (Replicate's `metrics.predict_time`, or local inference)."""
    queued: float | None = None
    """Time spent waiting before the model ran: the local backend's audio download and wait
    for a worker (Replicate reports none: its queue is inside ``total``)."""


@dataclass(frozen=True, slots=True)
class Classification:
    """The outcome of classifying one audio file."""

    predictions: tuple[Prediction, ...]
    """Best first, at most top N, confidences rounded to 4 places."""
    model: ModelRef
    timings: Timings
    attempts: int = 1
    extra: dict[str, object] = field(default_factory=dict)
    """Backend details worth logging (e.g. Replicate's prediction id)."""
    cascade: CascadeRoute | None = None
    """Set by the cascade: which of its backends answered, and why (goes on the event)."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Lets a backend with remote jobs (Replicate predictions) survive a crash of ours.

    ``record`` is called with the job's id as soon as the job exists, and awaited before the
    classification returns unless the job had already finished when created (its outcome is
    recorded moments later in any case); a later attempt at the same classification gets that
    id as ``resume`` and polls the job instead of paying for a new one. Backends that run
    in-process ignore it.
    """

    resume: str | None
    record: Callable[[str], Awaitable[None]]


class Classifier(Protocol):
    """Classifies audio into genres. Raises ``genres.errors.ClassificationError`` subclasses."""

    @property
    def model(self) -> ModelRef:
        """The model this classifier uses; part of the key that prevents paying twice."""
        ...

    async def classify(self, audio: str, checkpoint: Checkpoint | None = None) -> Classification:
        """Classify the audio at ``audio`` (an http(s) URL; the local backend also takes a path)."""
        ...

    async def aclose(self) -> None:
        """Release connections and sessions."""
        ...
