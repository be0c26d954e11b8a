"""From raw model scores to stored predictions."""

from __future__ import annotations

from genres.classify.ranking import discogs_name, is_confidence, rank


def test_discogs_labels_become_style_then_genre_lowercase() -> None:
    assert discogs_name("Electronic---Ambient") == "ambient electronic"
    assert discogs_name("Non-Music---Audiobook") == "audiobook non-music"
    assert discogs_name("Folk, World, & Country---Bluegrass") == "bluegrass folk, world, & country"
    assert discogs_name("Plain") == "plain"


def test_rank_orders_best_first_and_keeps_top_n() -> None:
    ranked = rank({"a": 0.1, "b": 0.7, "c": 0.3, "d": 0.5}, 3)
    assert [p.name for p in ranked] == ["b", "d", "c"]


def test_ties_are_broken_by_name() -> None:
    assert [p.name for p in rank({"zeta": 0.5, "alpha": 0.5, "mid": 0.5}, 3)] == [
        "alpha",
        "mid",
        "zeta",
    ]


def test_ranking_uses_full_scores_before_rounding() -> None:
    # Both round to 0.1235, but "b" scored higher: it must stay first despite its name.
    ranked = rank({"a": 0.12345, "b": 0.12349}, 2)
    assert [(p.name, p.confidence) for p in ranked] == [("b", 0.1235), ("a", 0.1235)]


def test_the_cut_happens_on_full_scores() -> None:
    ranked = rank({"a": 0.100004, "b": 0.100001, "c": 0.100003}, 2)
    assert [p.name for p in ranked] == ["a", "c"]


def test_is_confidence_accepts_only_finite_numbers_in_range() -> None:
    assert is_confidence(0)
    assert is_confidence(1.0)
    assert is_confidence(0.5)
    for bad in (-0.1, 1.1, float("nan"), float("inf"), True, "0.5", None):
        assert not is_confidence(bad)
