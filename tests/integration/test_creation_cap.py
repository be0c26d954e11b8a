"""Replicate's account cap holds: no window ever over it, from a cold start, across a restart,
and with several classifier processes on one account.

The fake enforces a strict sliding window scaled down from Replicate's 600 a minute to 20 in
2 seconds (the same 10 a second); the pacer is told the same window. Each "process" is a
classifier with its own pacer, database pool and HTTP session, as ``genres run classifier``
builds them (``classify.factory``); stopping one cancels its classifications mid-flight, as a
kill would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest

from genres.classify.factory import build_replicate_classifier, creation_pacer
from genres.classify.replicate import Backoff, ReplicateClassifier
from genres.config import Settings, load_settings
from tests.support.fake_replicate import FakeReplicate, FakeStats
from tests.support.waiting import eventually

pytestmark = [pytest.mark.timeout(120)]

TOKEN = "r8_fake_token"
CAP = 20
WINDOW = 2.0
MARGIN = 0.05
"""100 ms: the service's 1% of a minute is 600 ms for the jitter between a slot and its
arrival; 1% of this scaled-down window would be 20 ms, less than a busy loop's jitter."""
FAST = Backoff(initial=0.05, maximum=0.2, jitter=0.0, poll_initial=0.05, poll_maximum=0.1)


@pytest.fixture
def fake(fake_replicate: FakeReplicate) -> FakeReplicate:
    fake_replicate.configure(
        token=TOKEN,
        latency_ms=200,
        latency_jitter_ms=50,
        start_delay_ms=0,
        max_creations_per_minute=CAP,
        window_s=WINDOW,
        rate_limit_reset_s=1,
    )
    return fake_replicate


def settings_for(fake: FakeReplicate, database_url: str | None) -> Settings:
    return load_settings(
        replicate_enabled=True,
        replicate_api_token=TOKEN,
        replicate_base_url=fake.base_url,
        replicate_max_predictions_per_minute=CAP,
        replicate_prefer_wait_seconds=1,
        classifier_concurrency=64,
        database_url=database_url,
    )


@contextlib.asynccontextmanager
async def classifier_process(
    fake: FakeReplicate, database_url: str | None
) -> AsyncIterator[ReplicateClassifier]:
    """A classifier as one process has it; ``database_url=None``: a pace of its own."""
    settings = settings_for(fake, database_url)
    pacer = await creation_pacer(settings, window=WINDOW, margin=MARGIN)
    try:
        async with aiohttp.ClientSession() as session:
            classifier = build_replicate_classifier(settings, session, pacer=pacer)
            classifier._backoff = FAST
            yield classifier
    finally:
        await pacer.aclose()


def audio(name: str) -> str:
    return f"https://cdn.example/cap/{name}.mp3"


async def classify_all(classifier: ReplicateClassifier, names: list[str]) -> None:
    await asyncio.gather(*(classifier.classify(audio(name)) for name in names))


async def test_a_backlog_keeps_under_the_cap_from_a_cold_start_and_across_a_restart(
    fake: FakeReplicate, database_url: str
) -> None:
    names = [f"r{i}" for i in range(60)]
    async with classifier_process(fake, database_url) as first:
        # The whole backlog at once, from a cold start; killed after 25 creations.
        running = asyncio.ensure_future(classify_all(first, names))
        await eventually(lambda: fake.stats.creations >= 25, what="25 creations")
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    created_before = fake.stats.creations
    async with classifier_process(fake, database_url) as restarted:
        await classify_all(restarted, names[created_before:])

    stats = fake.stats
    assert stats.rate_limited_by_window == 0
    assert stats.rejected_429 == 0
    assert stats.max_creations_in_window <= CAP
    # The cap was used, not merely respected: a full window's worth, evenly spread.
    assert stats.max_creations_in_window >= CAP - 2
    times = fake.creation_times
    assert len(times) == stats.creations >= len(names)
    assert times[CAP] - times[0] >= WINDOW


async def two_processes_classify_25_each(
    fake: FakeReplicate, database_url: str | None
) -> FakeStats:
    """Two classifier processes on one account (``database_url=None``: each paced alone)."""
    async with (
        classifier_process(fake, database_url) as one,
        classifier_process(fake, database_url) as other,
    ):
        await asyncio.gather(
            classify_all(one, [f"a{i}" for i in range(25)]),
            classify_all(other, [f"b{i}" for i in range(25)]),
        )
    return fake.stats


async def test_processes_sharing_an_account_share_its_cap(
    fake: FakeReplicate, database_url: str
) -> None:
    stats = await two_processes_classify_25_each(fake, database_url)
    assert stats.creations == 50
    assert stats.rejected_429 == 0
    assert CAP - 2 <= stats.max_creations_in_window <= CAP


async def test_processes_each_pacing_alone_would_go_over_the_cap(fake: FakeReplicate) -> None:
    # Why the pace is booked in the database: two processes at the full cap each, without it,
    # get throttled (and honour the reset hint: everything is still classified).
    stats = await two_processes_classify_25_each(fake, None)
    assert stats.creations == 50
    assert stats.rate_limited_by_window > 0
