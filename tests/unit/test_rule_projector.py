"""The projector's rules (stale guard, batches, auto-tag), on an in-memory store.

``projector/rule.py`` decides everything (``plan``: the stale guard and last wins;
``auto_tags``: the whole auto-tag rule); ``FakeProjectionStore`` only loads and stores, as
``projector/store.py`` does on PostgreSQL. The tests here are the rule as one reads it in
docs/interface.md; tests/integration/test_projector.py checks the SQL store against the same
cases on PostgreSQL.
"""

from __future__ import annotations

import pytest

from genres.projector.rule import (
    AUTO_TAG_MAX_NEW,
    AUTO_TAG_MAX_TOTAL,
    Fate,
    TrackState,
    auto_tags,
    plan,
    project,
)
from genres_contracts import ModelRef, Prediction
from tests.support.messages import PREDICTIONS, SEVEN_FOR_FIVE_TAGS, classified
from tests.unit.fakes import FakeProjectionStore, FakeTrack


def stored(predictions: list[tuple[str, float]], file_id: str) -> dict[str, object]:
    return {
        "genre_predictions": [{"name": n, "confidence": c} for n, c in predictions],
        "genre_predictions_file_id": file_id,
    }


# -- the stale guard ---------------------------------------------------------------------------


async def test_predictions_for_the_current_file_are_stored_beside_other_keys() -> None:
    store = FakeProjectionStore({668: FakeTrack("b2c1e0", extra={"bpm": 120})})

    report = await project([classified(668, "b2c1e0")], store=store)

    assert (report.events, report.written, report.stale, report.missing) == (1, 1, 0, 0)
    assert store.tracks[668].extra == {"bpm": 120, **stored(PREDICTIONS, "b2c1e0")}


async def test_predictions_for_a_replaced_file_are_dropped_and_counted() -> None:
    old = stored([("jazz", 0.5)], "old")
    store = FakeProjectionStore({1: FakeTrack("new", extra=dict(old)), 2: FakeTrack("current")})

    report = await project([classified(1, "old"), classified(2, "current")], store=store)

    assert (report.written, report.stale, report.missing) == (1, 1, 0)
    assert store.tracks[1].extra == old
    assert store.tracks[2].extra == stored(PREDICTIONS, "current")


async def test_a_track_without_a_file_takes_no_predictions() -> None:
    store = FakeProjectionStore({1: FakeTrack(None)})

    report = await project([classified(1, "f")], store=store)

    assert (report.written, report.stale) == (0, 1)
    assert store.tracks[1].extra == {}


async def test_an_unknown_track_is_counted_missing_and_the_rest_is_written() -> None:
    store = FakeProjectionStore({7: FakeTrack("f")})

    report = await project([classified(999, "f"), classified(7, "f")], store=store)

    assert (report.written, report.missing) == (1, 1)


async def test_stale_predictions_never_tag_the_track() -> None:
    store = FakeProjectionStore({1: FakeTrack("new")})

    report = await project([classified(1, "old", [("rock", 0.9)], auto_tag=True)], store=store)

    assert (report.stale, report.tags_added) == (1, 0)
    assert store.tracks[1].tags == []


# -- batches -----------------------------------------------------------------------------------


async def test_a_batch_is_one_write_in_offset_order() -> None:
    store = FakeProjectionStore({1: FakeTrack("a"), 2: FakeTrack("b")})
    events = [classified(2, "b"), classified(1, "a"), classified(3, "x")]

    report = await project(events, store=store)

    assert [[w.track_id for w in batch] for batch in store.batches] == [[2, 1]]
    assert (report.events, report.written, report.missing) == (3, 2, 1)


async def test_an_empty_batch_writes_nothing() -> None:
    store = FakeProjectionStore()

    report = await project([], store=store)

    assert store.batches == []
    assert report.events == 0


async def test_the_last_event_for_the_current_file_wins_within_a_batch() -> None:
    store = FakeProjectionStore({5: FakeTrack("f")})

    report = await project(
        [
            classified(5, "f", [("rock", 0.9)]),
            classified(5, "f", [("jazz", 0.8)]),
            classified(5, "old", [("pop", 0.7)]),  # last, but for a replaced file
        ],
        store=store,
    )

    assert (report.written, report.superseded, report.stale) == (1, 1, 1)
    assert store.tracks[5].extra == stored([("jazz", 0.8)], "f")


async def test_a_store_error_propagates_and_nothing_is_written() -> None:
    store = FakeProjectionStore({1: FakeTrack("f")})
    store.failures["write"] = ConnectionError("database down")

    with pytest.raises(ConnectionError):
        await project([classified(1, "f", auto_tag=True)], store=store)

    assert store.tracks[1].extra == {}
    assert store.tracks[1].tags == []


async def test_replaying_a_batch_in_any_order_leaves_the_same_state() -> None:
    def world() -> FakeProjectionStore:
        store = FakeProjectionStore(
            {1: FakeTrack("a", extra={"keep": 1}), 2: FakeTrack("b", tags=["Rock"])}
        )
        store.markers |= {(1, "a"), (2, "x")}
        return store

    events = [
        classified(1, "a", auto_tag=True),
        classified(2, "b", [("rock", 0.5), ("pop", 0.4), ("punk", 0.3)], auto_tag=True),
        classified(2, "stale"),
        classified(3, "missing"),
    ]
    once = world()
    await project(events, store=once)
    replayed = world()
    for batch in (events, events, events[::-1], events[1:], events[:1]):
        await project(batch, store=replayed)

    assert replayed.tracks == once.tracks
    assert replayed.tag_names == once.tag_names
    # the written track's on-demand marker is gone; the marker of another file stays
    assert once.markers == replayed.markers == {(2, "x")}


# -- auto-tag (docs/interface.md): >= half the top score, at most 5, skip present, at most 10 ------


async def test_without_auto_tag_no_tags_are_added() -> None:
    store = FakeProjectionStore({1: FakeTrack("f")})

    report = await project([classified(1, "f", [("rock", 0.9)])], store=store)

    assert (report.written, report.tags_added) == (1, 0)
    assert store.tracks[1].tags == []


async def test_auto_tag_takes_tags_scoring_at_least_half_the_top_score() -> None:
    store = FakeProjectionStore({1: FakeTrack("f")})
    predictions = [("rock", 0.6), ("pop", 0.3), ("jazz", 0.2999)]

    report = await project([classified(1, "f", predictions, auto_tag=True)], store=store)

    assert store.tracks[1].tags == ["rock", "pop"]  # 0.3 is exactly half: in
    assert report.tags_added == 2


async def test_auto_tag_adds_at_most_five_best_first_skipping_present_tags() -> None:
    store = FakeProjectionStore({1: FakeTrack("f", tags=["ROCK"])})
    report = await project([classified(1, "f", SEVEN_FOR_FIVE_TAGS, auto_tag=True)], store=store)

    # the best five are rock..soul; the track has "ROCK" already, so four are new
    assert store.tracks[1].tags == ["ROCK", "pop", "punk", "jazz", "soul"]
    assert report.tags_added == 4
    assert AUTO_TAG_MAX_NEW == 5


async def test_auto_tag_never_takes_a_track_past_ten_tags() -> None:
    store = FakeProjectionStore(
        {
            1: FakeTrack("f", tags=[f"tag{i}" for i in range(8)]),
            2: FakeTrack("f", tags=[f"tag{i}" for i in range(10)]),
        }
    )
    predictions = [("rock", 0.9), ("pop", 0.8), ("punk", 0.7), ("jazz", 0.6)]

    report = await project(
        [
            classified(1, "f", predictions, auto_tag=True),
            classified(2, "f", predictions, auto_tag=True),
        ],
        store=store,
    )

    assert store.tracks[1].tags[8:] == ["rock", "pop"]  # the best two fill the room left
    assert len(store.tracks[2].tags) == AUTO_TAG_MAX_TOTAL == 10
    assert report.tags_added == 2


async def test_auto_tag_reuses_a_tag_spelled_differently_only_in_case() -> None:
    store = FakeProjectionStore({1: FakeTrack("f"), 2: FakeTrack("f", tags=["Rock"])})
    store.tag_names.append("Rock")

    await project([classified(1, "f", [("rock", 0.9)], auto_tag=True)], store=store)

    assert store.tracks[1].tags == ["Rock"]
    assert store.tag_names == ["Rock"]


async def test_auto_tag_follows_the_written_event_not_a_superseded_one() -> None:
    store = FakeProjectionStore({1: FakeTrack("f")})

    report = await project(
        [classified(1, "f", [("rock", 0.9)], auto_tag=True), classified(1, "f", [("pop", 0.9)])],
        store=store,
    )

    assert (report.written, report.superseded, report.tags_added) == (1, 1, 0)
    assert store.tracks[1].tags == []


async def test_a_replay_of_an_auto_tag_event_adds_nothing_more() -> None:
    # candidates are cut at five before present tags are skipped: once the first five
    # are on the track, a replay must not reach further down the list
    store = FakeProjectionStore({1: FakeTrack("f")})
    event = classified(1, "f", [(f"g{i}", 0.9 - i * 0.01) for i in range(8)], auto_tag=True)

    first = await project([event], store=store)
    again = await project([event], store=store)

    assert (first.tags_added, again.tags_added) == (5, 0)
    assert store.tracks[1].tags == ["g0", "g1", "g2", "g3", "g4"]


async def test_a_name_predicted_twice_in_different_case_takes_one_of_the_five_places() -> None:
    store = FakeProjectionStore({1: FakeTrack("f")})
    predictions = [("Rock", 0.9), ("rock", 0.85), ("a", 0.8), ("b", 0.7), ("c", 0.6), ("d", 0.5)]

    report = await project([classified(1, "f", predictions, auto_tag=True)], store=store)

    assert store.tracks[1].tags == ["Rock", "a", "b", "c", "d"]
    assert report.tags_added == 5


# -- the decisions on their own (no store at all) ----------------------------------------------


def test_plan_gives_every_event_its_fate_and_writes_one_event_per_track() -> None:
    tracks = {1: TrackState("a"), 2: TrackState("b")}
    events = [
        classified(1, "a"),
        classified(2, "old"),
        classified(1, "a"),
        classified(9, "x"),
        classified(2, "b"),
    ]

    decided = plan(events, tracks)

    assert decided.fates == (
        Fate.SUPERSEDED,
        Fate.STALE,
        Fate.WRITTEN,
        Fate.MISSING,
        Fate.WRITTEN,
    )
    assert decided.chosen == (2, 4)


def test_plan_writes_nothing_for_a_track_without_a_file() -> None:
    decided = plan([classified(1, "a")], {1: TrackState(None)})

    assert (decided.fates, decided.chosen) == ((Fate.STALE,), ())


def test_auto_tags_skips_owned_tags_whatever_their_case() -> None:
    chosen = auto_tags(
        [Prediction(name="Rock", confidence=0.9), Prediction(name="pop", confidence=0.8)],
        ["ROCK"],
    )

    assert chosen == ["pop"]


def test_auto_tags_never_takes_a_track_past_ten() -> None:
    have = [f"t{i}" for i in range(9)]
    predictions = [Prediction(name=n, confidence=0.9) for n in ("a", "b", "c")]

    assert auto_tags(predictions, have) == ["a"]
    assert auto_tags(predictions, [*have, "t9"]) == []
    assert auto_tags(predictions, [*have, "t9", "t10"]) == []  # already past: adds none


def test_auto_tags_cuts_at_five_before_skipping_owned_tags() -> None:
    predictions = [Prediction(name=f"g{i}", confidence=0.9 - i * 0.01) for i in range(7)]

    assert auto_tags(predictions, ["g0"]) == ["g1", "g2", "g3", "g4"]


async def test_the_model_of_the_stored_predictions_is_recorded_with_them() -> None:
    store = FakeProjectionStore({1: FakeTrack("f"), 2: FakeTrack("g")})

    await project([classified(1, "f"), classified(2, "stale")], store=store)

    assert store.models == {1: ("f", ModelRef(name="musicnn/msd", version="1"))}


async def test_two_tracks_given_one_name_in_two_cases_share_one_tag() -> None:
    store = FakeProjectionStore({1: FakeTrack("f"), 2: FakeTrack("f")})

    await project(
        [
            classified(1, "f", [("Rock", 0.9)], auto_tag=True),
            classified(2, "f", [("rock", 0.9)], auto_tag=True),
        ],
        store=store,
    )

    assert len(store.tag_names) == 1
    assert store.tracks[1].tags == store.tracks[2].tags
