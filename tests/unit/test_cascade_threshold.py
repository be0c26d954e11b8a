"""The cascade's threshold rule (``genres.classify.cascade_threshold``) on small held-out sets."""

from __future__ import annotations

import random

import pytest

from genres.classify.cascade_threshold import ThresholdChoice, agreement_table, choose_threshold


def _brute_force(held_out: list[tuple[float, bool]], target: float) -> float | None:
    """The lowest observed probability whose kept tracks reach the target, by enumeration."""
    reaching = []
    for threshold in {p for p, _ in held_out}:
        kept = [agrees for p, agrees in held_out if p >= threshold]
        if sum(kept) >= target * len(kept):
            reaching.append(threshold)
    return min(reaching) if reaching else None


def test_the_lowest_threshold_reaching_the_target_is_chosen() -> None:
    held_out = [(0.95, True), (0.9, True), (0.8, True), (0.7, False), (0.6, True), (0.3, False)]
    choice = choose_threshold(held_out, 0.8)
    # 0.6 keeps 5 tracks, 4 agreeing (0.8); 0.3 keeps all 6, 4 agreeing (0.67).
    assert choice == ThresholdChoice(threshold=0.6, share_sent=1 / 6, agreement=0.8)
    assert choice.reached


def test_a_dip_above_the_chosen_threshold_does_not_stop_the_search() -> None:
    # Kept at 0.9: one track, disagreeing (0.0); at 0.5 the whole set agrees 3 of 4.
    held_out = [(0.9, False), (0.8, True), (0.7, True), (0.5, True)]
    assert choose_threshold(held_out, 0.75).threshold == 0.5


def test_everything_kept_when_the_head_always_agrees() -> None:
    held_out = [(0.4, True), (0.2, True), (0.9, True)]
    choice = choose_threshold(held_out, 1.0)
    assert (choice.threshold, choice.share_sent, choice.agreement) == (0.2, 0.0, 1.0)


def test_no_threshold_reaching_the_target_says_so_and_sends_everything() -> None:
    held_out = [(0.9, False), (0.5, True), (0.2, False)]
    choice = choose_threshold(held_out, 0.9)
    assert not choice.reached
    assert choice.threshold == 1.0
    assert choice.share_sent == 1.0
    assert choice.agreement is None


def test_ties_are_kept_or_sent_together() -> None:
    # 0.7 keeps three tracks at once, 2 of 3 agreeing: a threshold cannot keep only the two.
    held_out = [(0.7, True), (0.7, False), (0.7, True), (0.2, True)]
    assert choose_threshold(held_out, 0.8).reached is False
    assert choose_threshold(held_out, 0.7).threshold == 0.2
    [row] = agreement_table(held_out, [0.7])
    assert (row.share_sent, row.agreement) == (0.25, pytest.approx(2 / 3))
    choice = choose_threshold(held_out, 0.6)
    assert (choice.threshold, choice.share_sent) == (0.2, 0.0)
    assert choice.agreement == pytest.approx(0.75)


@pytest.mark.parametrize("held_out", [[], ()])
def test_empty_input_is_refused(held_out: list[tuple[float, bool]]) -> None:
    with pytest.raises(ValueError, match="no held-out tracks"):
        choose_threshold(held_out, 0.9)
    with pytest.raises(ValueError, match="no held-out tracks"):
        agreement_table(held_out, [0.5])


@pytest.mark.parametrize("probability", [-0.1, 1.5, float("nan")])
def test_probabilities_outside_0_to_1_are_refused(probability: float) -> None:
    with pytest.raises(ValueError, match=r"0\.\.1"):
        choose_threshold([(probability, True)], 0.9)


@pytest.mark.parametrize("target", [0.0, -1.0, 1.01, float("nan")])
def test_targets_outside_0_to_1_are_refused(target: float) -> None:
    with pytest.raises(ValueError, match="target agreement"):
        choose_threshold([(0.5, True)], target)


def test_the_choice_matches_enumeration_on_random_sets() -> None:
    generator = random.Random(21)
    for _ in range(300):
        size = generator.randint(1, 30)
        # Few distinct values: ties are common.
        held_out = [
            (generator.choice([0.1, 0.3, 0.5, 0.55, 0.8, 0.99, 1.0]), generator.random() < 0.7)
            for _ in range(size)
        ]
        target = generator.choice([0.5, 0.7, 0.9, 1.0])
        expected = _brute_force(held_out, target)
        choice = choose_threshold(held_out, target)
        if expected is None:
            assert not choice.reached
        else:
            assert choice.reached
            assert choice.threshold == expected
            [row] = agreement_table(held_out, [expected])
            assert row.agreement is not None
            assert row.agreement >= target
            assert (row.share_sent, row.agreement) == (choice.share_sent, choice.agreement)


def test_the_table_shows_each_threshold_in_the_order_given() -> None:
    held_out = [(0.9, True), (0.6, True), (0.4, False), (0.1, False)]
    table = agreement_table(held_out, [0.0, 0.5, 0.95])
    assert [(row.threshold, row.share_sent, row.agreement) for row in table] == [
        (0.0, 0.0, 0.5),
        (0.5, 0.5, 1.0),
        (0.95, 1.0, None),
    ]
