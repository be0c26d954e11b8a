"""The commit rule: the committed offset never passes an unfinished record."""

from __future__ import annotations

import random

import pytest

from genres.classifier.window import OffsetWindow


def test_nothing_is_committable_until_the_first_record_finishes() -> None:
    window = OffsetWindow()
    for offset in range(10, 15):
        window.add("p0", offset)
    window.finish("p0", 12)
    window.finish("p0", 14)
    assert window.to_commit() == {}
    window.finish("p0", 10)
    assert window.to_commit() == {"p0": 11}


def test_committable_offset_is_one_past_the_contiguous_finished_prefix() -> None:
    window = OffsetWindow()
    for offset in range(5):
        window.add("p0", offset)
    for offset in (1, 0, 3):
        window.finish("p0", offset)
    assert window.to_commit() == {"p0": 2}
    window.finish("p0", 2)
    assert window.to_commit() == {"p0": 4}
    assert window.in_flight == 1


def test_partitions_advance_independently() -> None:
    window = OffsetWindow()
    window.add("p0", 0)
    window.add("p1", 7)
    window.finish("p1", 7)
    assert window.to_commit() == {"p1": 8}


def test_a_commit_is_not_offered_twice() -> None:
    window = OffsetWindow()
    window.add("p0", 0)
    window.finish("p0", 0)
    window.committed(window.to_commit())
    assert window.to_commit() == {}


def test_offsets_must_be_added_in_order() -> None:
    window = OffsetWindow()
    window.add("p0", 5)
    with pytest.raises(ValueError, match="after 5"):
        window.add("p0", 5)


def test_forgotten_partitions_release_their_in_flight_count() -> None:
    window = OffsetWindow()
    for offset in range(3):
        window.add("p0", offset)
    window.finish("p0", 2)
    window.forget(["p0"])
    assert window.in_flight == 0
    assert window.to_commit() == {}
    window.finish("p0", 0)  # a straggler after revocation is ignored
    assert window.in_flight == 0


@pytest.mark.parametrize("seed", range(20))
def test_out_of_order_completion_never_commits_past_an_unfinished_record(seed: int) -> None:
    rng = random.Random(seed)
    window = OffsetWindow()
    offsets = list(range(100, 300))
    for offset in offsets:
        window.add("p", offset)
    order = offsets[:]
    rng.shuffle(order)
    finished: set[int] = set()
    for offset in order:
        window.finish("p", offset)
        finished.add(offset)
        commit = window.to_commit().get("p")
        if commit is not None:
            window.committed({"p": commit})
            # Everything below the commit finished; the record at the commit did not.
            assert all(o in finished for o in range(100, commit))
            assert commit == 300 or commit not in finished
        unfinished = set(offsets) - finished
        if unfinished:
            assert commit is None or commit <= min(unfinished)
    assert window.to_commit() == {}
    assert window.in_flight == 0
