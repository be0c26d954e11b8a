"""Message models and topic names of the genres service.

Depends on pydantic alone, so producers and consumers can install it by itself.
"""

from genres_contracts import topics
from genres_contracts._base import ModelRef, Prediction
from genres_contracts.events import (
    CascadeRoute,
    ClassificationFailed,
    ClassificationReason,
    ClassificationRequested,
    ErrorInfo,
    FailureKind,
    GenresClassified,
    TrackUploaded,
    derived_event_id,
)
from genres_contracts.requests import (
    RecommendedTag,
    RecommendedTags,
    RecommendedTagsRequest,
    ReplyError,
)

__all__ = [
    "CascadeRoute",
    "ClassificationFailed",
    "ClassificationReason",
    "ClassificationRequested",
    "ErrorInfo",
    "FailureKind",
    "GenresClassified",
    "ModelRef",
    "Prediction",
    "RecommendedTag",
    "RecommendedTags",
    "RecommendedTagsRequest",
    "ReplyError",
    "TrackUploaded",
    "derived_event_id",
    "topics",
]
