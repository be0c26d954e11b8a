"""The Replicate adapter against the fake Replicate: a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from genres.classify.ranking import discogs_name
from genres.classify.replicate import Backoff, ReplicateClassifier
from genres.errors import (
    ClassificationTimeout,
    MalformedOutput,
    PredictionFailed,
    RateLimited,
    RequestRejected,
    ServiceUnavailable,
)
from genres_contracts import FailureKind
from tests.support.fake_replicate import FakeConfig, FakeReplicate, load_labels, scores_for

VERSION = "1532dd069fb4f0e27c6833e28815f6b8c194dfec76fd9cd73460540fd720ffe1"
TOKEN = "r8_fake_token"
FAST = Backoff(initial=0.02, maximum=0.1, jitter=0.0, poll_initial=0.05, poll_maximum=0.2)


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeReplicate]:
    async with FakeReplicate(FakeConfig(token=TOKEN, latency_ms=100)) as server:
        yield server


@dataclass
class Sent:
    """A request as the adapter sent it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytearray = field(default_factory=bytearray)


@pytest_asyncio.fixture
async def sent() -> AsyncIterator[list[Sent]]:
    yield []


@pytest_asyncio.fixture
async def client(sent: list[Sent]) -> AsyncIterator[aiohttp.ClientSession]:
    async def started(_: Any, __: SimpleNamespace, params: Any) -> None:
        sent.append(Sent(params.method, params.url.path, dict(params.headers)))

    async def chunk(_: Any, __: SimpleNamespace, params: Any) -> None:
        sent[-1].body += params.chunk

    tracing = aiohttp.TraceConfig()
    tracing.on_request_start.append(started)
    tracing.on_request_chunk_sent.append(chunk)
    async with aiohttp.ClientSession(trace_configs=[tracing]) as http:
        yield http


def adapter(
    fake: FakeReplicate,
    client: aiohttp.ClientSession,
    *,
    timeout: float = 10.0,
    token: str = TOKEN,
    top_n: int = 10,
) -> ReplicateClassifier:
    return ReplicateClassifier(
        session=client,
        token=token,
        base_url=fake.base_url,
        version=VERSION,
        top_n=top_n,
        timeout_seconds=timeout,
        max_attempts=5,
        backoff=FAST,
    )


async def test_returns_top_n_ranked_renamed_and_rounded(
    fake: FakeReplicate, client: aiohttp.ClientSession
) -> None:
    url = "https://cdn.test/audio/668.mp3"
    result = await adapter(fake, client, top_n=7).classify(url)

    expected = sorted(
        ((discogs_name(label), score) for label, score in scores_for(url, load_labels()).items()),
        key=lambda item: (-item[1], item[0]),
    )[:7]
    assert [(p.name, p.confidence) for p in result.predictions] == [
        (name, round(score, 4)) for name, score in expected
    ]
    assert result.model.name == "mtg/effnet-discogs"
    assert result.model.version == VERSION
    assert result.attempts == 1
    assert fake.stats.creations_per_url == {url: 1}


async def test_creation_asks_to_wait_within_the_deadline_and_sets_cancel_after(
    fake: FakeReplicate, client: aiohttp.ClientSession, sent: list[Sent]
) -> None:
    await adapter(fake, client, timeout=30).classify("https://cdn.test/a.mp3")

    create = next(r for r in sent if r.method == "POST" and r.path.endswith("/predictions"))
    assert create.headers["Prefer"] in {"wait=29", "wait=30"}
    assert create.headers["Cancel-After"] == "35s"  # our deadline plus a margin
    assert create.headers["Authorization"] == f"Bearer {TOKEN}"
    body = json.loads(create.body)
    assert body == {
        "version": VERSION,
        "input": {"audio": "https://cdn.test/a.mp3", "output_format": "JSON"},
    }


async def test_polls_past_the_wait_window_until_final(
    fake: FakeReplicate, client: aiohttp.ClientSession
) -> None:
    fake.configure(max_wait_s=1.0, slow_ms=2500)
    result = await adapter(fake, client).classify("https://cdn.test/slow.mp3?fake=slow")

    assert len(result.predictions) == 10
    stats = fake.stats
    assert stats.wait_timeouts >= 1
    assert stats.gets >= 1
    assert stats.creations == 1


async def test_polling_errors_do_not_create_a_second_prediction(
    fake: FakeReplicate, client: aiohttp.ClientSession
) -> None:
    fake.configure(max_wait_s=1.0, slow_ms=2000, get_5xx_rate=0.5, seed=3)
    await adapter(fake, client).classify("https://cdn.test/flaky.mp3?fake=slow")

    assert fake.stats.get_5xx >= 1
    assert fake.stats.creations == 1


async def test_cancels_the_prediction_when_the_deadline_passes(
    fake: FakeReplicate, client: aiohttp.ClientSession
) -> None:
    started = time.monotonic()
    with pytest.raises(ClassificationTimeout) as caught:
        await adapter(fake, client, timeout=2).classify("https://cdn.test/hang.mp3?fake=hang")

    assert time.monotonic() - started < 5
    assert caught.value.retryable
    assert caught.value.kind is FailureKind.TIMEOUT
    stats = fake.stats
    assert stats.cancels == 1
    assert stats.cancels_effective == 1
    assert stats.running == 0


@pytest.mark.parametrize(
    ("directive", "rejected", "waits_s"),
    [
        # a 429 is retried after its reset hint
        ("throttle-once", "rejected_429", 0.9),
        ("5xx-once", "rejected_5xx", 0.0),
    ],
)
async def test_a_creation_throttled_or_failing_once_is_retried_and_succeeds(
    fake: FakeReplicate,
    client: aiohttp.ClientSession,
    directive: str,
    rejected: str,
    waits_s: float,
) -> None:
    fake.configure(rate_limit_reset_s=1)
    started = time.monotonic()
    result = await adapter(fake, client).classify(f"https://cdn.test/t.mp3?fake={directive}")

    assert time.monotonic() - started >= waits_s
    assert result.attempts == 2
    assert getattr(fake.stats, rejected) == 1
    assert fake.stats.creations == 1


async def test_throttling_beyond_the_deadline_gives_up_at_once_as_rate_limited(
    fake: FakeReplicate, client: aiohttp.ClientSession
) -> None:
    fake.configure(rate_limit_rate=1.0, rate_limit_reset_s=30, retry_after_header=True)
    started = time.monotonic()
    with pytest.raises(RateLimited) as caught:
        await adapter(fake, client, timeout=5).classify("https://cdn.test/busy.mp3")

    assert time.monotonic() - started < 2
    assert caught.value.retry_after == 30
    assert caught.value.retryable
    assert fake.stats.creations == 0


async def test_accepts_output_present_while_still_processing(
    fake: FakeReplicate, client: aiohttp.ClientSession
) -> None:
    # The output shows at 1 s; the prediction turns `succeeded` only at 4 s.
    fake.configure(latency_ms=1000, early_output_ms=3000, max_wait_s=0.5)
    started = time.monotonic()
    result = await adapter(fake, client).classify("https://cdn.test/early.mp3?fake=early")

    assert time.monotonic() - started < 3.0
    assert len(result.predictions) == 10
    # The adapter took the output without waiting for `succeeded`; nothing left to cancel.
    assert fake.stats.final_statuses.get("canceled", 0) == 0


@pytest.mark.parametrize("directive", ["malformed", "bad-json", "missing-output"])
async def test_malformed_output_is_a_permanent_error_and_not_retried(
    fake: FakeReplicate, client: aiohttp.ClientSession, directive: str
) -> None:
    url = f"https://cdn.test/m.mp3?fake={directive}"
    with pytest.raises(MalformedOutput) as caught:
        await adapter(fake, client).classify(url)

    assert not caught.value.retryable
    assert caught.value.kind is FailureKind.MALFORMED_OUTPUT
    assert fake.stats.creations_per_url == {url: 1}


async def test_failed_prediction_is_permanent_and_carries_its_error_text(
    fake: FakeReplicate, client: aiohttp.ClientSession
) -> None:
    url = "https://cdn.test/f.mp3?fake=fail"
    with pytest.raises(PredictionFailed) as caught:
        await adapter(fake, client).classify(url)

    assert not caught.value.retryable
    assert caught.value.kind is FailureKind.PREDICTION_FAILED
    error_text = fake.prediction(next(iter(fake._predictions)))  # type: ignore[attr-defined]
    assert error_text is not None
    assert error_text["error"]
    assert error_text["error"] in str(caught.value)
    assert fake.stats.creations_per_url == {url: 1}


async def test_canceled_prediction_is_reported_as_canceled(
    fake: FakeReplicate, client: aiohttp.ClientSession
) -> None:
    with pytest.raises(PredictionFailed) as caught:
        await adapter(fake, client).classify("https://cdn.test/c.mp3?fake=cancel")

    assert caught.value.kind is FailureKind.PREDICTION_CANCELED


async def test_a_refused_token_is_permanent_and_never_echoed(
    fake: FakeReplicate, client: aiohttp.ClientSession
) -> None:
    secret = "r8_wrong_secret_value"
    with pytest.raises(RequestRejected) as caught:
        await adapter(fake, client, token=secret).classify("https://cdn.test/x.mp3")

    assert "401" in str(caught.value)
    assert secret not in str(caught.value)
    assert fake.stats.rejected_401 == 1


async def test_the_token_never_appears_in_logs_or_errors(
    fake: FakeReplicate, client: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.configure(max_wait_s=1.0, slow_ms=1500, rate_limit_reset_s=0)
    classifier = adapter(fake, client, timeout=3)
    directives = ("slow", "throttle-once", "5xx-once", "fail", "malformed", "hang")
    # Side by side: the hang's deadline is the test's time.
    results = await asyncio.gather(
        *(
            classifier.classify(f"https://cdn.test/{directive}.mp3?fake={directive}")
            for directive in directives
        ),
        return_exceptions=True,
    )
    messages = [f"{exc!r} {exc}" for exc in results if isinstance(exc, Exception)]

    assert len(messages) == 3  # fail, malformed, hang
    logged = [record.getMessage() + repr(record.__dict__) for record in caplog.records]
    assert logged, "expected the run to log something"
    assert all(TOKEN not in line for line in logged + messages)


async def test_a_give_up_reports_how_many_attempts_were_made(
    fake: FakeReplicate, client: aiohttp.ClientSession
) -> None:
    fake.configure(error_5xx_rate=1.0)
    with pytest.raises(ServiceUnavailable) as caught:
        await adapter(fake, client).classify("https://cdn.test/down.mp3")

    assert caught.value.attempts == 5
    assert fake.stats.rejected_5xx == 5
    assert fake.stats.creations == 0
