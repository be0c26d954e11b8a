"""Choosing the cascade's ``CASCADE_MIN_CONFIDENCE`` from held-out tracks (pure, no I/O).

Each held-out track is its head's top probability and whether the head's top label agrees
with the teacher's (Replicate, or the labels of a folder). A threshold ``t`` keeps (answers
locally) the tracks whose top probability is at least ``t`` and sends the others to the
teacher; its agreement is the share of kept tracks that agree.

Only the observed probabilities matter as thresholds: any ``t`` between two of them keeps the
same tracks as the next one up. Tracks with the same probability are kept or sent together
(a threshold cannot split a tie), so the candidates are the distinct probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["ThresholdChoice", "agreement_table", "choose_threshold"]


@dataclass(frozen=True, slots=True)
class ThresholdChoice:
    """What a threshold does on the held-out tracks."""

    threshold: float
    share_sent: float
    """Share of the tracks whose top probability is below the threshold (sent to the teacher)."""
    agreement: float | None
    """Share of the kept tracks whose top label agrees with the teacher's; None: none kept."""
    reached: bool = True
    """False when no threshold reaches the target (``choose_threshold``): the choice is then
    1.0, which sends every track below certainty to the teacher."""


def choose_threshold(
    held_out: Sequence[tuple[float, bool]], target_agreement: float
) -> ThresholdChoice:
    """The lowest threshold whose kept tracks agree with the teacher at least
    ``target_agreement`` of the time (so the fewest tracks go to the teacher).

    When even the most confident tracks fall short, the choice is threshold 1.0 with
    ``reached=False``. Raises ``ValueError`` on an empty ``held_out``, a probability outside
    0..1 and a target outside (0, 1].
    """
    pairs = _checked(held_out)
    if not 0.0 < target_agreement <= 1.0 or math.isnan(target_agreement):
        raise ValueError(f"the target agreement must lie in (0, 1], not {target_agreement}")
    total = len(pairs)
    kept = agreeing = 0
    best: ThresholdChoice | None = None
    # Lowering the threshold from the top adds one group of tied probabilities at a time;
    # the last group that keeps the agreement at the target is the lowest threshold.
    for probability, group in _groups_descending(pairs):
        kept += len(group)
        agreeing += sum(group)
        if agreeing >= target_agreement * kept:
            best = ThresholdChoice(probability, (total - kept) / total, agreeing / kept)
    if best is not None:
        return best
    certain = [agrees for probability, agrees in pairs if probability >= 1.0]
    return ThresholdChoice(
        1.0,
        (total - len(certain)) / total,
        sum(certain) / len(certain) if certain else None,
        reached=False,
    )


def agreement_table(
    held_out: Sequence[tuple[float, bool]], thresholds: Iterable[float]
) -> list[ThresholdChoice]:
    """What each of ``thresholds`` would do on ``held_out``, in the order given."""
    pairs = _checked(held_out)
    table = []
    for threshold in thresholds:
        kept = [agrees for probability, agrees in pairs if probability >= threshold]
        table.append(
            ThresholdChoice(
                threshold,
                (len(pairs) - len(kept)) / len(pairs),
                sum(kept) / len(kept) if kept else None,
            )
        )
    return table


def _checked(held_out: Sequence[tuple[float, bool]]) -> list[tuple[float, bool]]:
    if not held_out:
        raise ValueError("no held-out tracks: a threshold cannot be chosen from nothing")
    pairs = [(float(probability), bool(agrees)) for probability, agrees in held_out]
    for probability, _ in pairs:
        if not 0.0 <= probability <= 1.0:  # NaN fails this too
            raise ValueError(f"a top probability must lie in 0..1, not {probability}")
    return pairs


def _groups_descending(
    pairs: Sequence[tuple[float, bool]],
) -> Iterable[tuple[float, list[bool]]]:
    ordered = sorted(pairs, key=lambda pair: pair[0], reverse=True)
    start = 0
    while start < len(ordered):
        probability = ordered[start][0]
        end = start
        while end < len(ordered) and ordered[end][0] == probability:
            end += 1
        yield probability, [agrees for _, agrees in ordered[start:end]]
        start = end
