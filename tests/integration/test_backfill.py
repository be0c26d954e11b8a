"""Backfill against a real PostgreSQL and a real broker."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from genres.backfill.assembly import run_backfill
from genres.backfill.outcomes import OutcomeListener
from genres.backfill.rule import BackfillOptions, BackfillReport
from genres.config import Settings
from genres.kafka.producer import Publisher, track_key
from genres_contracts import (
    ClassificationFailed,
    ClassificationRequested,
    GenresClassified,
    ModelRef,
    topics,
)
from tests.support.bus import read_topic
from tests.support.database import insert_tracks

PREDICTIONS = [{"name": "ambient electronic", "confidence": 0.2}]

# (id, file_id, audio_url, extra): which rows a backfill must pick
ROWS: list[tuple[int, str | None, str | None, dict[str, Any]]] = [
    (1, "a", "https://cdn.example/1.mp3", {}),  # never classified
    (
        2,
        "b",
        "https://cdn.example/2.mp3",
        {"genre_predictions": PREDICTIONS, "genre_predictions_file_id": "b"},
    ),  # current
    (
        3,
        "c2",
        "https://cdn.example/3.mp3",
        {"genre_predictions": PREDICTIONS, "genre_predictions_file_id": "c1"},
    ),  # stale
    (4, "d", None, {}),  # no audio
    (5, "e", "https://cdn.example/5.mp3", {"genre_predictions": PREDICTIONS}),  # no file id
    (6, "f", "https://cdn.example/6.mp3", {"other": 1}),
]
ELIGIBLE = [1, 3, 5, 6]


async def backfill(
    settings: Settings, engine: AsyncEngine, publisher: Publisher, **options: Any
) -> BackfillReport:
    """``run_backfill`` with this module's defaults: every eligible track, four at a time,
    published without waiting, a 1 s timeout; ``options`` override them."""
    run = {"wait": False, "timeout": 1} | {
        name: options.pop(name) for name in ("wait", "timeout", "progress") if name in options
    }
    selected = BackfillOptions(**({"concurrency": 4} | options))
    return await run_backfill(settings, engine, publisher, selected, **run)


@pytest_asyncio.fixture
async def tracks(engine: AsyncEngine) -> None:
    await insert_tracks(engine, ROWS)


async def requests_on_the_bus(settings: Settings, count: int) -> list[ClassificationRequested]:
    # anything more than expected would arrive within a few more fetches
    records = await read_topic(
        settings.kafka_bootstrap_servers,
        settings.topic(topics.CLASSIFICATION_REQUESTED),
        count=count,
        linger_ms=300,
    )
    for record in records:
        assert record.key == track_key(
            ClassificationRequested.model_validate_json(record.value).track_id
        )
    return [ClassificationRequested.model_validate_json(r.value) for r in records]


@pytest.mark.usefixtures("tracks")
async def test_a_dry_run_lists_exactly_the_eligible_tracks(
    settings: Settings, engine: AsyncEngine, publisher: Publisher
) -> None:
    seen: list[tuple[int, int]] = []

    report = await backfill(
        settings,
        engine,
        publisher,
        dry_run=True,
        progress=lambda done, total: seen.append((done, total)),
    )

    assert [t.track_id for t in report.tracks] == ELIGIBLE
    assert (report.eligible, report.published) == (4, 0)
    assert seen[-1] == (4, 4)

    limited = await backfill(settings, engine, publisher, limit=2, dry_run=True)
    assert [t.track_id for t in limited.tracks] == ELIGIBLE[:2]


@pytest.mark.usefixtures("tracks")
async def test_other_model_also_selects_predictions_another_model_or_version_made(
    settings: Settings, engine: AsyncEngine, publisher: Publisher
) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO projected_models (track_id, file_id, model_name, model_version) "
                "VALUES (2, 'b', 'musicnn/msd', '1')"
            )
        )

    async def selected(model: ModelRef | None) -> list[int]:
        report = await backfill(settings, engine, publisher, dry_run=True, model=model)
        return [t.track_id for t in report.tracks]

    assert await selected(None) == ELIGIBLE
    assert await selected(ModelRef(name="musicnn/msd", version="1")) == ELIGIBLE
    assert await selected(ModelRef(name="musicnn/msd", version="2")) == sorted([2, *ELIGIBLE])
    assert await selected(ModelRef(name="mtg/effnet-discogs", version="1")) == sorted(
        [2, *ELIGIBLE]
    )

    published = await backfill(
        settings, engine, publisher, concurrency=2, model=ModelRef(name="musicnn/msd", version="2")
    )
    sent = await requests_on_the_bus(settings, 5)
    assert published.published == 5
    assert (2, "b") in {(r.track_id, r.file_id) for r in sent}


@pytest.mark.usefixtures("tracks")
async def test_publishing_sends_one_backfill_request_per_eligible_track_and_twice_is_safe(
    settings: Settings, engine: AsyncEngine, publisher: Publisher
) -> None:
    first = await backfill(settings, engine, publisher, concurrency=2)
    sent = await requests_on_the_bus(settings, 4)

    assert first.published == 4
    assert sorted(r.track_id for r in sent) == ELIGIBLE
    assert {r.reason for r in sent} == {"backfill"}
    assert {r.event_id for r in sent} == set(first.event_ids)
    assert {(r.track_id, r.file_id) for r in sent} == {(1, "a"), (3, "c2"), (5, "e"), (6, "f")}

    second = await backfill(settings, engine, publisher, concurrency=2)
    both = await requests_on_the_bus(settings, 8)
    assert second.published == 4
    assert sorted(r.track_id for r in both) == sorted(ELIGIBLE * 2)
    assert not set(first.event_ids) & set(second.event_ids)


@pytest.mark.usefixtures("tracks")
async def test_waiting_counts_the_outcomes_a_classifier_publishes(
    settings: Settings, engine: AsyncEngine, publisher: Publisher
) -> None:
    answered = asyncio.Event()

    async def classifier() -> None:
        # Stands in for the classifier: answers every request, failing track 5.
        requests = await requests_on_the_bus(settings, 4)
        # an outcome of someone else's request does not count
        await publisher.publish(topics.GENRES_FAILED, failure(requests[0], "not-ours"), key=None)
        for request in requests:
            if request.track_id == 5:
                await publisher.publish(topics.GENRES_FAILED, failure(request), key=None)
            elif request.track_id != 6:  # track 6 never gets an answer: it times out
                await publisher.publish(topics.GENRES_CLASSIFIED, success(request), key=None)
        answered.set()

    task = asyncio.create_task(classifier())
    report = await backfill(settings, engine, publisher, wait=True, timeout=4)
    await task

    assert answered.is_set()
    assert (report.published, report.classified, report.failed, report.timed_out) == (4, 2, 1, 1)


async def test_the_listener_ignores_outcomes_from_before_it_started(
    settings: Settings, publisher: Publisher
) -> None:
    request = ClassificationRequested.model_validate(
        {"event_id": "e1", "track_id": 1, "file_id": "a", "audio_url": "https://x.example/a"}
    )
    await publisher.publish(topics.GENRES_CLASSIFIED, success(request), key=None)
    async with OutcomeListener(settings) as listener:
        listener.expect(["e1"])
        counts = await listener.wait(0.5)
        assert (counts.classified, counts.timed_out) == (0, 1)
        await publisher.publish(topics.GENRES_CLASSIFIED, success(request), key=None)
        counts = await listener.wait(10)
        assert (counts.classified, counts.timed_out) == (1, 0)


def success(request: ClassificationRequested) -> GenresClassified:
    return GenresClassified.model_validate(
        {
            "source_event_id": request.event_id,
            "track_id": request.track_id,
            "file_id": request.file_id,
            "predictions": PREDICTIONS,
            "model": {"name": "musicnn/msd", "version": "1"},
            "classified_at": datetime.now(UTC),
        }
    )


def failure(request: ClassificationRequested, source: str | None = None) -> ClassificationFailed:
    return ClassificationFailed.model_validate(
        {
            "source_event_id": source or request.event_id,
            "track_id": request.track_id,
            "file_id": request.file_id,
            "error": {"kind": "audio_unreadable", "message": "no"},
            "attempts": 1,
            "retryable": False,
        }
    )
