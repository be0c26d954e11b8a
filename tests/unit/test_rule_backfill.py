"""The backfill's rules: which tracks (``eligible``, ``genres.stored``), pages, limit,
concurrency, dry run, report.

``FakeBackfillStore`` only pages the tracks it is given; tests/integration/test_backfill.py
runs the same selection on what ``backfill/store.py`` reads from PostgreSQL.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from genres.backfill.rule import (
    BackfillOptions,
    BackfillReport,
    BackfillTrack,
    TrackRow,
    backfill,
    eligible,
)
from genres.stored import StoredPredictions
from genres_contracts import ClassificationReason, ModelRef
from tests.unit.fakes import FakeBackfillStore, FakePublish, settle


def tracks(*ids: int) -> list[BackfillTrack]:
    return [BackfillTrack(i, f"file-{i}", f"https://cdn.example/{i}.mp3") for i in ids]


class Progress:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, done: int, total: int) -> None:
        self.calls.append((done, total))


async def run(
    store: FakeBackfillStore,
    publish: FakePublish,
    *,
    progress: Progress | None = None,
    **options: Any,
) -> BackfillReport:
    """The rule with four publishes in flight unless ``options`` (``BackfillOptions``) say."""
    return await backfill(
        tracks=store,
        publish=publish,
        options=BackfillOptions(**({"concurrency": 4} | options)),
        progress=progress or Progress(),
    )


async def test_one_backfill_request_per_eligible_track_in_id_order() -> None:
    store, publish = FakeBackfillStore(tracks(3, 1, 2), page_size=2), FakePublish()

    report = await run(store, publish, concurrency=1)

    assert [(r.track_id, r.file_id, str(r.audio_url)) for r in publish.published] == [
        (i, f"file-{i}", f"https://cdn.example/{i}.mp3") for i in (1, 2, 3)
    ]
    assert all(r.reason is ClassificationReason.BACKFILL for r in publish.published)
    assert all(not r.force and not r.auto_tag for r in publish.published)
    assert (report.eligible, report.published, report.skipped, report.dry_run) == (3, 3, 0, False)
    assert report.tracks == []


async def test_every_request_has_its_own_event_id_in_the_report() -> None:
    store, publish = FakeBackfillStore(tracks(*range(1, 8)), page_size=3), FakePublish()

    report = await run(store, publish)

    ids = [r.event_id for r in publish.published]
    assert len(set(ids)) == 7
    assert sorted(report.event_ids) == sorted(i for i in ids if i is not None)


async def test_the_limit_stops_reading_the_store_early() -> None:
    store, publish = FakeBackfillStore(tracks(*range(1, 11)), page_size=3), FakePublish()

    report = await run(store, publish, limit=4)

    assert store.pages_read == 4  # two pages to count four, two to publish them
    assert [r.track_id for r in publish.published] == [1, 2, 3, 4]
    assert (report.eligible, report.published) == (4, 4)


async def test_at_most_concurrency_publishes_are_in_flight() -> None:
    store, publish = FakeBackfillStore(tracks(*range(1, 11)), page_size=4), FakePublish()
    publish.gate.clear()

    running = asyncio.create_task(run(store, publish, concurrency=3))
    await settle()
    assert (publish.in_flight, publish.published) == (3, [])  # the rest wait for a slot
    publish.gate.set()
    report = await running

    assert publish.most_in_flight == 3
    assert report.published == 10


async def test_concurrency_must_be_positive() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        await run(FakeBackfillStore(tracks(1)), FakePublish(), concurrency=0)


async def test_a_dry_run_lists_the_tracks_and_publishes_nothing() -> None:
    store, publish = FakeBackfillStore(tracks(*range(1, 6)), page_size=2), FakePublish()
    progress = Progress()

    report = await run(store, publish, dry_run=True, limit=4, progress=progress)

    assert publish.calls == 0
    assert report.dry_run
    assert report.tracks == tracks(1, 2, 3, 4)
    assert (report.eligible, report.published, report.event_ids) == (4, 0, [])
    assert progress.calls == [(0, 4), (2, 4), (4, 4)]  # after each page


async def test_progress_counts_every_track_handled_up_to_the_total() -> None:
    store, publish = FakeBackfillStore(tracks(*range(1, 6)), page_size=2), FakePublish()
    progress = Progress()

    await run(store, publish, concurrency=2, progress=progress)

    assert progress.calls[0] == (0, 5)
    assert [done for done, _ in progress.calls] == [0, 1, 2, 3, 4, 5]
    assert {total for _, total in progress.calls} == {5}


async def test_a_row_that_cannot_make_a_request_is_skipped_and_counted() -> None:
    rows = [*tracks(1), BackfillTrack(2, "f", "ftp://cdn.example/2.mp3"), *tracks(3)]
    store, publish, progress = FakeBackfillStore(rows), FakePublish(), Progress()

    report = await run(store, publish, progress=progress)

    assert [r.track_id for r in publish.published] == [1, 3]
    assert (report.eligible, report.published, report.skipped) == (3, 2, 1)
    assert len(report.event_ids) == 2
    assert progress.calls[-1] == (3, 3)


async def test_nothing_eligible_publishes_nothing() -> None:
    store, publish, progress = FakeBackfillStore([]), FakePublish(), Progress()

    report = await run(store, publish, progress=progress)

    assert (report.eligible, report.published, publish.calls) == (0, 0, 0)
    assert progress.calls == [(0, 0)]


async def test_the_first_publish_error_stops_the_run() -> None:
    store, publish = FakeBackfillStore(tracks(*range(1, 6))), FakePublish()
    publish.fail_at = 2

    with pytest.raises(ConnectionError, match="broker down"):
        await run(store, publish, concurrency=1)

    assert publish.calls == 2  # nothing was attempted after the failure
    assert [r.track_id for r in publish.published] == [1]


async def test_a_store_error_propagates_before_anything_is_published() -> None:
    store, publish = FakeBackfillStore(tracks(1, 2)), FakePublish()
    store.failures["tracks"] = ConnectionError("database down")

    with pytest.raises(ConnectionError):
        await run(store, publish)

    assert publish.calls == 0


# -- which tracks ------------------------------------------------------------------------------

MSD = ModelRef(name="musicnn/msd", version="1")


def row(
    track_id: int,
    file_id: str | None = "f",
    *,
    audio_url: str | None = "https://cdn.example/a.mp3",
    present: bool = True,
    predictions_file_id: str | None = "f",
    model: ModelRef | None = MSD,
) -> TrackRow:
    return TrackRow(
        track_id,
        file_id,
        audio_url,
        StoredPredictions(file_id, present, predictions_file_id, model),
    )


@pytest.mark.parametrize(
    ("track", "expected"),
    [
        (row(1, present=False, predictions_file_id=None, model=None), True),  # never classified
        (row(2), False),  # current
        (row(3, "f2"), True),  # predictions for a replaced file
        (row(4, predictions_file_id=None), True),  # legacy row on a track with a file
        (row(5, audio_url=None, present=False), False),  # nothing to fetch
        (row(6, audio_url=""), False),
        (row(7, None, predictions_file_id=None), False),  # no file: nothing to classify
    ],
)
def test_eligible_means_no_current_predictions_and_something_to_fetch(
    track: TrackRow, expected: bool
) -> None:
    assert eligible(track) is expected


@pytest.mark.parametrize(
    ("track", "expected"),
    [
        (row(1), False),  # current, and made by the configured model
        (row(2, model=ModelRef(name="musicnn/msd", version="0")), True),  # another version
        (row(3, model=ModelRef(name="mtg/effnet-discogs", version="1")), True),  # another model
        (row(4, model=None), True),  # made by a model nobody recorded
        (row(5, "f2", model=MSD), True),  # stale, whoever made it
    ],
)
def test_with_a_model_predictions_from_another_model_are_eligible_too(
    track: TrackRow, expected: bool
) -> None:
    assert eligible(track, model=MSD) is expected


async def test_a_run_requests_only_the_eligible_tracks_in_id_order() -> None:
    other = ModelRef(name="musicnn/msd", version="0")
    store = FakeBackfillStore(
        [row(4, "f2"), row(1), row(3, model=other), row(2, present=False)], page_size=2
    )

    plain = await run(store, FakePublish(), dry_run=True)
    switched = await run(store, FakePublish(), dry_run=True, model=MSD)

    assert [t.track_id for t in plain.tracks] == [2, 4]
    assert [t.track_id for t in switched.tracks] == [2, 3, 4]
    assert switched.eligible == 3
