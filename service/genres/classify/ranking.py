"""From a model's raw scores to the stored predictions: rank, keep top N, round."""

from __future__ import annotations

import functools
import heapq
import math
from collections.abc import Callable, Mapping

from genres_contracts import Prediction

CONFIDENCE_DECIMALS = 4


@functools.lru_cache(maxsize=4096)
def discogs_name(label: str) -> str:
    """``Electronic---Ambient`` becomes ``ambient electronic`` (the specification's form)."""
    genre, sep, style = label.partition("---")
    name = f"{style} {genre}" if sep else label
    return " ".join(name.split()).lower()


def rank(
    scores: Mapping[str, float], top_n: int, name: Callable[[str], str] = str
) -> tuple[Prediction, ...]:
    """Best first on the full scores (ties by name), top ``top_n``, then rounded.

    ``name`` maps a model label to its stored name; only the kept labels are renamed.
    Rounding comes last so that two labels that differ only past the 4th decimal keep the
    model's order.
    """
    if top_n <= 0 or not scores:
        return ()
    # Classifier hot path: the N-th best score from a C-level heap over the bare values, then
    # only the labels at or above it (ties included) are sorted by score and name.
    cut = heapq.nlargest(top_n, scores.values())[-1]
    tied = [item for item in scores.items() if item[1] >= cut]
    best = sorted(tied, key=lambda item: (-item[1], name(item[0])))[:top_n]
    return tuple(
        Prediction(name=name(label), confidence=round(score, CONFIDENCE_DECIMALS))
        for label, score in best
    )


def is_confidence(value: object) -> bool:
    """A real number in 0..1 (bools are not numbers here)."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0.0 <= value <= 1.0
    )
