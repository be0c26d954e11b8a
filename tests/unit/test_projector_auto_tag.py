"""Which predictions an auto-tag upload may turn into tags (before looking at the track)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from genres.projector.rule import AUTO_TAG_MAX_NEW, auto_tag_candidates
from genres_contracts import Prediction


def predictions(*pairs: tuple[str, float]) -> list[Prediction]:
    return [Prediction(name=name, confidence=confidence) for name, confidence in pairs]


def test_keeps_those_scoring_at_least_half_the_top_score() -> None:
    chosen = auto_tag_candidates(predictions(("rock", 0.6), ("pop", 0.3), ("jazz", 0.2999)))
    assert chosen == ["rock", "pop"]


def test_keeps_at_most_five_best_first() -> None:
    names = [f"g{i}" for i in range(8)]
    chosen = auto_tag_candidates(predictions(*[(n, 0.9 - i * 0.01) for i, n in enumerate(names)]))
    assert chosen == names[:5]


def test_ties_are_broken_by_name() -> None:
    chosen = auto_tag_candidates(predictions(("b", 0.5), ("a", 0.5)), limit=1)
    assert chosen == ["a"]


def test_nothing_from_no_predictions() -> None:
    assert auto_tag_candidates([]) == []


def test_a_name_twice_in_different_case_counts_once() -> None:
    assert auto_tag_candidates(predictions(("Rock", 0.5), ("rock", 0.4))) == ["Rock"]


@given(
    st.lists(
        st.tuples(
            st.sampled_from("abcdefghij"),
            st.floats(min_value=0, max_value=1, allow_subnormal=False),
        ),
        max_size=20,
    )
)
def test_never_more_than_five_and_all_over_half_the_top(pairs: list[tuple[str, float]]) -> None:
    given_predictions = predictions(*pairs)
    chosen = auto_tag_candidates(given_predictions)
    assert len(chosen) <= AUTO_TAG_MAX_NEW
    if given_predictions:
        top = max(p.confidence for p in given_predictions)
        best = {p.name: p.confidence for p in sorted(given_predictions, key=lambda p: p.confidence)}
        assert all(best[name] >= top / 2 for name in chosen)
