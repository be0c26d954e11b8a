"""``CLASSIFIER_BACKEND=cascade`` against the fake Replicate and a real ledger (PostgreSQL).

The local side is a stand-in (``tests/support/cascade_standin.py``): a head trained here on
synthetic embeddings of six Discogs classes, behind the ``Classifier`` port as the local
backend with ``LOCAL_HEAD`` answers. The fake Replicate answers each test clip with its label,
so Replicate is the teacher and always right. The threshold is chosen on held-out clips for a
target agreement of 0.9 (``choose_threshold``), then the test clips go through the classifier
role's rule: the cascade must send to Replicate exactly the clips whose head is below the
threshold (fewer than it receives), and agree with the teacher on at least the target share.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest_asyncio

from genres.classifier.ledger import PostgresLedger
from genres.classifier.rule import OutcomeKind, handle_classification
from genres.classify.cascade import CascadeClassifier
from genres.classify.cascade_threshold import choose_threshold
from genres.classify.factory import build_replicate_classifier
from genres.classify.ranking import discogs_name
from genres.config import load_settings
from genres_contracts import ClassificationFailed, GenresClassified, TrackUploaded
from tests.support.cascade_standin import StandInHead, StandInLocal, collection, held_out
from tests.support.fake_replicate import FakeReplicate

TARGET = 0.9
CDN = "https://cdn.example/clips"


class Published:
    def __init__(self) -> None:
        self.events: list[GenresClassified | ClassificationFailed] = []

    async def classified(self, event: GenresClassified) -> None:
        self.events.append(event)

    async def failed(self, event: ClassificationFailed) -> None:
        self.events.append(event)


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


async def test_the_cascade_sends_only_the_unsure_share_and_agrees_with_the_teacher(
    database_url: str, fake_replicate: FakeReplicate, session: aiohttp.ClientSession
) -> None:
    head = StandInHead.fit(collection(60, seed=1, base=CDN))
    choice = choose_threshold(held_out(head, collection(80, seed=2, base=CDN)), TARGET)
    assert choice.reached
    clips = collection(30, seed=3, base=CDN)
    fake_replicate.configure(latency_ms=20, answers={clip.url: clip.label for clip in clips})
    settings = load_settings(
        replicate_api_token=fake_replicate.token,
        replicate_base_url=fake_replicate.base_url,
        replicate_max_predictions_per_minute=100_000,
        replicate_prefer_wait_seconds=1,
    )
    local = StandInLocal(head, clips)
    cascade = CascadeClassifier(
        local,
        build_replicate_classifier(settings, session),
        min_confidence=choice.threshold,
    )
    ledger = await PostgresLedger.connect(database_url, size=4)
    published = Published()
    uploads = [
        TrackUploaded(event_id=f"up-{i}", track_id=i, file_id="f1", audio_url=clip.url)
        for i, clip in enumerate(clips, start=1)
    ]
    gate = asyncio.Semaphore(16)

    async def handle(upload: TrackUploaded) -> OutcomeKind:
        async with gate:
            handled = await handle_classification(
                upload,
                source_event_id=upload.event_id or "",
                classifier=cascade,
                ledger=ledger,
                outcomes=published,
            )
            return handled.kind

    try:
        kinds = await asyncio.gather(*(handle(upload) for upload in uploads))
        first = list(published.events)
        # Every record delivered again (a crash before the commit): replayed, nothing paid.
        again = await asyncio.gather(*(handle(upload) for upload in uploads))
        replayed = published.events[len(first) :]
    finally:
        await ledger.close()

    assert kinds == [OutcomeKind.CLASSIFIED] * len(clips)
    events = {event.track_id: event for event in first}
    assert all(isinstance(event, GenresClassified) for event in events.values())
    classified = {i: e for i, e in events.items() if isinstance(e, GenresClassified)}
    assert len(classified) == len(clips)  # nothing lost

    unsure = {
        i
        for i, clip in enumerate(clips, start=1)
        if round(head.top(clip.embedding, 1)[0][1], 4) < choice.threshold
    }
    sent = {i for i, e in classified.items() if e.cascade and e.cascade.answered_by == "replicate"}
    assert sent == unsure
    assert 0 < len(sent) < len(clips)
    assert fake_replicate.stats.creations == len(sent)
    assert max(fake_replicate.stats.creations_per_url.values()) == 1
    for i, event in classified.items():
        assert event.cascade is not None
        assert event.model == (cascade.remote.model if i in sent else local.model)
        assert event.cascade.fallback is None

    agreeing = sum(
        event.predictions[0].name == discogs_name(clips[i - 1].label)
        for i, event in classified.items()
    )
    print(
        f"\ncascade: threshold {choice.threshold}, {len(sent)} of {len(clips)} sent to Replicate "
        f"(held-out share {choice.share_sent:.3f}), agreement {agreeing / len(clips):.3f}"
    )
    assert agreeing >= TARGET * len(clips)

    assert again == [OutcomeKind.REPUBLISHED] * len(clips)
    assert fake_replicate.stats.creations == len(sent)
    for event in replayed:
        assert isinstance(event, GenresClassified)
        original = classified[event.track_id]
        assert (event.event_id, event.model, event.cascade) == (
            original.event_id,
            original.model,
            original.cascade,
        )


async def test_replicate_down_keeps_the_local_answer_marked_and_loses_nothing(
    database_url: str, fake_replicate: FakeReplicate, session: aiohttp.ClientSession
) -> None:
    head = StandInHead.fit(collection(60, seed=1, base=CDN))
    clips = collection(5, seed=4, base=CDN)
    fake_replicate.configure(error_5xx_rate=1.0, latency_ms=20)
    settings = load_settings(
        replicate_api_token=fake_replicate.token,
        replicate_base_url=fake_replicate.base_url,
        replicate_max_predictions_per_minute=100_000,
        replicate_timeout_seconds=2,
        classifier_max_attempts=2,
    )
    # A threshold no head reaches: every clip is unsure and goes to a Replicate that is down.
    cascade = CascadeClassifier(
        StandInLocal(head, clips),
        build_replicate_classifier(settings, session),
        min_confidence=0.9999,
    )
    ledger = await PostgresLedger.connect(database_url, size=2)
    published = Published()
    try:
        for i, clip in enumerate(clips, start=1):
            upload = TrackUploaded(event_id=f"up-{i}", track_id=i, file_id="f1", audio_url=clip.url)
            await handle_classification(
                upload,
                source_event_id=f"up-{i}",
                classifier=cascade,
                ledger=ledger,
                outcomes=published,
            )
    finally:
        await ledger.close()
    assert len(published.events) == len(clips)
    for event in published.events:
        assert isinstance(event, GenresClassified)
        assert event.cascade is not None
        assert (event.cascade.answered_by, event.cascade.fallback) == ("local", "unavailable")
    assert fake_replicate.stats.creations == 0
