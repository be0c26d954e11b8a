"""Events: facts that happened, named in the past tense like their topics."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field, field_validator

from genres_contracts._base import (
    AudioUrl,
    Confidence,
    FileId,
    Message,
    ModelRef,
    Prediction,
    TrackId,
)

# Namespace for event ids derived from a record's coordinates, so that a redelivery of a
# record without an `event_id` gets the same id again.
EVENT_ID_NAMESPACE = uuid.UUID("5b0f6b7e-4d1c-4c63-9a55-2f1f0c1b6e11")


def derived_event_id(topic: str, partition: int, offset: int) -> str:
    """A stable event id for a record that carried none: same record, same id."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{topic}/{partition}/{offset}"))


class TrackUploaded(Message):
    """`track.uploaded`: the platform stored a new audio file for a track."""

    event_id: str | None = Field(
        default=None,
        max_length=200,
        description=(
            "Unique id of this event. Optional: when absent the service derives one from the "
            "record's topic, partition and offset, which a redelivery keeps."
        ),
    )
    track_id: TrackId
    file_id: FileId
    audio_url: AudioUrl
    occurred_at: datetime | None = Field(
        default=None, description="When the upload happened (RFC 3339). Optional."
    )
    auto_tag: bool = Field(
        default=False,
        description="Ask the projector to add tags to the track from the predictions it stores.",
    )


class ClassificationReason(StrEnum):
    """Why a classification was requested."""

    BACKFILL = "backfill"
    ON_DEMAND = "on_demand"
    RECLASSIFY = "reclassify"


class ClassificationRequested(TrackUploaded):
    """`track.classification_requested`: someone asks for a track's audio to be classified."""

    reason: ClassificationReason = Field(
        default=ClassificationReason.ON_DEMAND,
        description="`backfill`, `on_demand` (asked by the responder) or `reclassify`.",
    )
    force: bool = Field(
        default=False,
        description="Classify even when this (track, file, model) was classified before.",
    )


class _Outcome(Message):
    """What every outcome of a classification carries: its id, its cause, the file it is about."""

    event_id: str = Field(
        default_factory=lambda: str(uuid.uuid4()),
        max_length=200,
        description="Unique id of this event.",
    )
    source_event_id: str = Field(
        max_length=200, description="`event_id` of the upload or request that caused it."
    )
    track_id: TrackId
    file_id: FileId


class CascadeRoute(Message):
    """How `CLASSIFIER_BACKEND=cascade` answered: which backend, and why that one."""

    answered_by: Literal["local", "replicate"] = Field(
        description=(
            "`local`: the embedded model with its trained head made the predictions; "
            "`replicate`: Replicate did."
        )
    )
    local_confidence: Confidence | None = Field(
        default=None,
        description=(
            "The head's top probability, compared with `min_confidence`; null when the local "
            "model could not classify the audio (the track then went to Replicate)."
        ),
    )
    min_confidence: float = Field(
        ge=0.0,
        le=1.0,
        description="`CASCADE_MIN_CONFIDENCE`: below it, the track goes to Replicate.",
    )
    fallback: str | None = Field(
        default=None,
        max_length=100,
        description=(
            "Set when the local answer was kept although below `min_confidence` because "
            "Replicate could not answer: the kind of Replicate's failure (`unavailable`, "
            "`timeout`, `rate_limited`, ...; see `FailureKind`)."
        ),
    )


class GenresClassified(_Outcome):
    """`track.genres_classified`: a track's audio file was classified."""

    predictions: list[Prediction] = Field(
        max_length=400, description="Genres, best first (confidence descending), at most top N."
    )
    model: ModelRef = Field(description="The model that made the predictions.")
    classified_at: datetime = Field(description="When the classification finished (UTC).")
    auto_tag: bool = Field(default=False, description="Carried over from the request.")
    cascade: CascadeRoute | None = Field(
        default=None,
        description=(
            "Set when `CLASSIFIER_BACKEND=cascade` answered: which backend made the predictions "
            "(also named by `model`) and why; absent for the other backends."
        ),
    )

    @field_validator("predictions")
    @classmethod
    def _best_first(cls, predictions: list[Prediction]) -> list[Prediction]:
        confidences = [p.confidence for p in predictions]
        if confidences != sorted(confidences, reverse=True):
            raise ValueError("predictions must be ordered best first (confidence descending)")
        return predictions


class FailureKind(StrEnum):
    """Why a classification failed; the set may grow, consumers should accept unknown kinds."""

    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    TIMEOUT = "timeout"
    REJECTED = "rejected"
    PREDICTION_FAILED = "prediction_failed"
    PREDICTION_CANCELED = "prediction_canceled"
    MALFORMED_OUTPUT = "malformed_output"
    AUDIO_UNREADABLE = "audio_unreadable"
    AUDIO_FETCH_FAILED = "audio_fetch_failed"
    AUDIO_URL_REFUSED = "audio_url_refused"
    AUDIO_TOO_LARGE = "audio_too_large"
    AUDIO_TOO_SHORT = "audio_too_short"
    """Less audio than the model can judge (`AUDIO_MIN_SECONDS`)."""
    AUDIO_TRUNCATED = "audio_truncated"
    """Decodable for much less than the file states: a partial file (a cut-short download)."""
    NOT_CONFIGURED = "not_configured"
    INTERNAL = "internal"


class ErrorInfo(Message):
    """A failure's kind and human-readable message."""

    kind: str = Field(
        min_length=1, max_length=100, description="Machine-readable kind (see `FailureKind`)."
    )
    message: str = Field(max_length=2000, description="What went wrong, for people. No secrets.")


class ClassificationFailed(_Outcome):
    """`track.genres_failed`: a classification ended without predictions."""

    error: ErrorInfo = Field(description="Why it failed.")
    attempts: int = Field(ge=1, description="How many attempts were made.")
    retryable: bool = Field(
        description="True when a later attempt may succeed (the error was transient)."
    )
