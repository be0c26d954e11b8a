"""The classifier role: one upload or request in, one outcome event out, paid for once."""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

from genres.classify.port import Checkpoint, Classifier
from genres.errors import ClassificationError
from genres_contracts import (
    CascadeRoute,
    ClassificationFailed,
    ClassificationRequested,
    ErrorInfo,
    FailureKind,
    GenresClassified,
    ModelRef,
    Prediction,
    TrackUploaded,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Claimed:
    """The classification is ours to run; ``resume`` is a job an interrupted attempt began."""

    resume: str | None = None


@dataclass(frozen=True, slots=True)
class Recorded:
    """An outcome already in the ledger."""

    status: str
    event_id: str
    predictions: tuple[Prediction, ...]
    error: ErrorInfo | None
    retryable: bool
    attempts: int
    classified_at: datetime
    answered_by: ModelRef | None = None
    """The model that made the predictions, when not the key's (the cascade's answers)."""
    cascade: CascadeRoute | None = None


_NEVER = datetime.min.replace(tzinfo=UTC)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """A (track, file, model)'s row in the ledger, as loaded before a claim."""

    status: str
    """``pending`` (claimed, no outcome yet), ``succeeded`` or ``failed``."""
    job_id: str | None = None
    event_id: str | None = None
    predictions: tuple[Prediction, ...] = ()
    error: ErrorInfo | None = None
    retryable: bool = True
    """Of a failure: a failure recorded without the flag counts as retryable."""
    attempts: int = 0
    updated_at: datetime = _NEVER
    answered_by: ModelRef | None = None
    """Of a success: the model that made the predictions when not the key's (the cascade)."""
    cascade: CascadeRoute | None = None
    """Of a cascade's success: its route, replayed on the event."""


def decide_claim(entry: LedgerEntry | None, *, force: bool) -> Claimed | Recorded:
    """Whether a request may run the classification, or must replay the outcome on record.

    * nothing on record: a new classification;
    * ``force``: a new classification whatever is on record (an interrupted job is not
      resumed: a forced run pays anew);
    * ``pending``: an attempt was interrupted (a crash, a SIGTERM, a rebalance); run again,
      resuming its job when one was started;
    * ``failed`` and retryable: try again;
    * otherwise (succeeded, or failed for good): replay the recorded outcome, paying nothing.
    """
    if entry is None or force:
        return Claimed()
    if entry.status == "pending":
        return Claimed(resume=entry.job_id)
    if entry.status == "failed" and entry.retryable:
        return Claimed()
    return Recorded(
        status=entry.status,
        event_id=entry.event_id or "",
        predictions=entry.predictions,
        error=entry.error,
        retryable=entry.retryable if entry.status == "failed" else False,
        attempts=max(1, entry.attempts),
        classified_at=entry.updated_at,
        answered_by=entry.answered_by,
        cascade=entry.cascade,
    )


class Ledger(Protocol):
    """Where claims and outcomes are kept; ``claim`` applies ``decide_claim`` to the row it
    loads, atomically with respect to other claims of the same key."""

    async def claim(
        self, track_id: int, file_id: str, model: ModelRef, *, source_event_id: str, force: bool
    ) -> Claimed | Recorded: ...

    async def started(self, track_id: int, file_id: str, model: ModelRef, job_id: str) -> None: ...

    async def succeeded(
        self, model: ModelRef, event: GenresClassified, *, attempts: int
    ) -> None: ...

    async def failed(self, model: ModelRef, event: ClassificationFailed) -> None: ...


class Outcomes(Protocol):
    """Where outcome events go; returns once the broker has them."""

    async def classified(self, event: GenresClassified) -> None: ...

    async def failed(self, event: ClassificationFailed) -> None: ...


class OutcomeKind(StrEnum):
    """How a request was handled (the ``outcome`` label of the classifier's metrics)."""

    CLASSIFIED = "classified"
    FAILED = "failed"
    REPUBLISHED = "republished"
    """A duplicate: the outcome on record was published again; nothing was paid."""


@dataclass(frozen=True, slots=True)
class Handled:
    """A handled request: how, and the outcome event published for it."""

    kind: OutcomeKind
    event: GenresClassified | ClassificationFailed


async def handle_classification(
    request: TrackUploaded | ClassificationRequested,
    *,
    source_event_id: str,
    classifier: Classifier,
    ledger: Ledger,
    outcomes: Outcomes,
    clock: Callable[[], datetime] = _utcnow,
) -> Handled:
    """Classify ``request``'s audio unless this (track, file, model) already was.

    The outcome is recorded before it is published, so a crash in between re-publishes the
    recorded outcome on redelivery instead of paying again. Infrastructure errors (database,
    broker) propagate: the caller retries the record and does not commit it. ``clock`` gives
    the outcome's ``classified_at``.
    """
    force = isinstance(request, ClassificationRequested) and request.force
    model = classifier.model
    claim = await ledger.claim(
        request.track_id, request.file_id, model, source_event_id=source_event_id, force=force
    )
    if isinstance(claim, Recorded):
        event = _replay(claim, request, source_event_id, model)
        await _publish(outcomes, event)
        log.info(
            "duplicate request: republished the recorded outcome",
            extra={"track_id": request.track_id, "file_id": request.file_id},
        )
        return Handled(OutcomeKind.REPUBLISHED, event)

    try:
        # The job's id goes on record as soon as it exists: if this process dies, the
        # redelivered record resumes the job instead of paying for another.
        checkpoint = Checkpoint(
            resume=claim.resume,
            record=functools.partial(ledger.started, request.track_id, request.file_id, model),
        )
        classification = await classifier.classify(str(request.audio_url), checkpoint)
    except ClassificationError as exc:
        failed = ClassificationFailed(
            source_event_id=source_event_id,
            track_id=request.track_id,
            file_id=request.file_id,
            error=ErrorInfo(kind=exc.kind, message=exc.message[:2000]),
            attempts=exc.attempts,
            retryable=exc.retryable,
        )
        await ledger.failed(model, failed)
        await outcomes.failed(failed)
        log.warning(
            "classification failed: %s",
            exc.kind,
            extra={"track_id": request.track_id, "file_id": request.file_id, "kind": exc.kind},
        )
        return Handled(OutcomeKind.FAILED, failed)

    classified = GenresClassified(
        source_event_id=source_event_id,
        track_id=request.track_id,
        file_id=request.file_id,
        predictions=list(classification.predictions),
        model=classification.model,
        classified_at=clock(),
        auto_tag=request.auto_tag,
        cascade=classification.cascade,
    )
    await ledger.succeeded(model, classified, attempts=classification.attempts)
    await outcomes.classified(classified)
    return Handled(OutcomeKind.CLASSIFIED, classified)


def _replay(
    recorded: Recorded,
    request: TrackUploaded | ClassificationRequested,
    source_event_id: str,
    model: ModelRef,
) -> GenresClassified | ClassificationFailed:
    event_id = recorded.event_id or str(uuid.uuid4())
    if recorded.status == "succeeded":
        return GenresClassified(
            event_id=event_id,
            source_event_id=source_event_id,
            track_id=request.track_id,
            file_id=request.file_id,
            predictions=list(recorded.predictions),
            model=recorded.answered_by or model,
            classified_at=recorded.classified_at,
            auto_tag=request.auto_tag,
            cascade=recorded.cascade,
        )
    return ClassificationFailed(
        event_id=event_id,
        source_event_id=source_event_id,
        track_id=request.track_id,
        file_id=request.file_id,
        error=recorded.error
        or ErrorInfo(kind=FailureKind.INTERNAL, message="failed earlier; no detail recorded"),
        attempts=recorded.attempts,
        retryable=recorded.retryable,
    )


async def _publish(outcomes: Outcomes, event: GenresClassified | ClassificationFailed) -> None:
    if isinstance(event, GenresClassified):
        await outcomes.classified(event)
    else:
        await outcomes.failed(event)
