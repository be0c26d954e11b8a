"""The one percentile every bench reports (nearest rank), so that README latencies from
different benches are computed the same way."""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(values: Iterable[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (``q`` in 0..100) of a non-empty sample: the
    smallest value with at least ``q`` % of the sample at or below it."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not in 0..100")
    # round(): 99.9 * 1000 / 100 is 999.0000000000001 in floats, whose ceiling is one rank off.
    rank = math.ceil(round(q * len(ordered) / 100, 9))
    return ordered[max(rank, 1) - 1]
