"""Outcome events as the projector reads them: one builder for the unit and integration tests."""

from __future__ import annotations

from datetime import UTC, datetime

from genres_contracts import GenresClassified

PREDICTIONS = [("ambient electronic", 0.1999), ("downtempo electronic", 0.12), ("house", 0.01)]

# Auto-tagging takes the best five at or over half the top score: rock..soul.
SEVEN_FOR_FIVE_TAGS = [
    ("rock", 0.8),
    ("pop", 0.7),
    ("punk", 0.6),
    ("jazz", 0.5),
    ("soul", 0.45),
    ("funk", 0.41),  # sixth at or over half the top: cut by the limit of five
    ("house", 0.39),  # under half the top score
]


def classified(
    track_id: int,
    file_id: str,
    predictions: list[tuple[str, float]] = PREDICTIONS,
    *,
    auto_tag: bool = False,
    model_version: str = "1",
) -> GenresClassified:
    return GenresClassified.model_validate(
        {
            "source_event_id": f"src-{track_id}-{file_id}",
            "track_id": track_id,
            "file_id": file_id,
            "predictions": [{"name": n, "confidence": c} for n, c in predictions],
            "model": {"name": "musicnn/msd", "version": model_version},
            "classified_at": datetime(2026, 11, 25, 19, 0, 2, tzinfo=UTC),
            "auto_tag": auto_tag,
        }
    )
