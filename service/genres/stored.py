"""What a track holds of the service's predictions, and when they count as current.

One definition, read by every role that asks (the responder before answering, the backfill
before requesting): predictions count only when they are for the track's current file.
Rows written before the service tracked file ids (predictions without
``genre_predictions_file_id``) count as current only on a track without a file id either: a
track with a file cannot prove the predictions are for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from genres_contracts import ModelRef

__all__ = ["Configured", "StoredPredictions", "is_current", "needs_classification"]


@dataclass(frozen=True, slots=True)
class StoredPredictions:
    """A track's row as far as predictions go."""

    file_id: str | None
    """The track's current file."""
    present: bool
    """``extra`` holds ``genre_predictions``."""
    predictions_file_id: str | None
    """``extra->>'genre_predictions_file_id'``: the file they were made from."""
    model: ModelRef | None = None
    """The model that made them (``projected_models``); None when unknown (stored before
    the service recorded it, or by another writer)."""


def is_current(stored: StoredPredictions) -> bool:
    """The stored predictions are for the track's current file."""
    return stored.present and stored.predictions_file_id == stored.file_id


Configured = ModelRef | frozenset[ModelRef]
"""The model a classifier answers with; a cascade's: each model that may answer for it."""


def needs_classification(stored: StoredPredictions, *, model: Configured | None = None) -> bool:
    """No current predictions, or, when ``model`` is given, current ones that another model or
    version made (unknown counts as another: nothing says it was this one)."""
    if not is_current(stored):
        return True
    if model is None:
        return False
    return stored.model not in (model if isinstance(model, frozenset) else {model})
