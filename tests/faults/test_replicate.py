"""Scenarios 4 and 7: Replicate misbehaves, and the token never leaks.

Scenario 4 runs 400 uploads against the fake with 20% 5xx and 10% 429 (reset hint 1 s) on
creation, 5% slow predictions (2.5 s, past a 1 s ``Prefer: wait`` window, so they are
polled), 2% failed predictions and 4 that hang until the 30 s deadline. Every track ends
classified or failed with the kind its fault calls for; creation attempts per track are
bounded by ``CLASSIFIER_MAX_ATTEMPTS``; no prediction is created twice or left running.

Scenario 7 runs a smaller pipeline with a distinctive token that the fake echoes back in
its error texts (5xx and 429 bodies, failed predictions' errors), DEBUG logs, poison records
and bad requests, then looks for the token in everything the service produced: every
process's output, every record (key, value, headers) of every topic, DLQ headers included,
and the one line of a configuration error.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine
from tests.faults.harness import (
    Scenario,
    list_topics,
    make_tracks,
    publish,
    settled_tracks,
)
from tests.support.broker import KafkaTestBed
from tests.support.bus import read_topic
from tests.support.fake_replicate import FakeConfig, FakeReplicate, _detail, _Prediction
from tests.support.process import run_genres
from tests.support.service import service_settings
from tests.support.waiting import holds_within

from genres.kafka.client import genres_client
from genres_contracts import topics
from genres_contracts.kafka import RequestTimedOut

pytestmark = [pytest.mark.timeout(240)]

MAX_ATTEMPTS = 5
TRANSIENT = {"unavailable", "rate_limited", "timeout"}


def _directives(count: int) -> dict[int, str]:
    found: dict[int, str] = {}
    for track_id in range(1, count + 1):
        if track_id % 20 == 3:
            found[track_id] = "slow"
        elif track_id % 50 == 7:
            found[track_id] = "fail"
    for track_id in (11, 111, 211, 311):
        found[track_id] = "hang"
    return found


# Both scenarios' weather: a fifth of creations answered 5xx, a tenth throttled with a 1 s
# reset hint, and a 1 s wait window on creation, so that slower predictions are polled.
TRANSIENT_FAULTS: dict[str, Any] = {
    "error_5xx_rate": 0.2,
    "rate_limit_rate": 0.1,
    "rate_limit_reset_s": 1,
    "max_wait_s": 1,
}


async def _settle(engine: AsyncEngine, count: int, timeout: float = 120) -> bool:
    async def done() -> bool:
        return await settled_tracks(engine) >= count

    return await holds_within(done, within=timeout, interval=0.25)


async def test_replicate_faults_end_in_a_classification_or_the_right_failure(
    kafka: KafkaTestBed,
    fake_replicate: FakeReplicate,
    scenario: Scenario,
) -> None:
    count = 400
    fake_replicate.configure(latency_ms=150, slow_ms=2500, seed=4, **TRANSIENT_FAULTS)
    directives = _directives(count)
    tracks = make_tracks(count, directives=directives)
    roles = await scenario.begin(
        kafka.bootstrap_servers,
        kafka.prefix,
        fake_replicate,
        tracks,
        concurrency=64,
        # A 429 stops every creation for its hint, and the paced schedule does not burst to
        # make up for it afterwards: 10% of creations refused leaves ~10 creations a second,
        # and the deadline covers the wait of 64 classifications queued for their slots.
        timeout_s=30,
        CLASSIFIER_MAX_ATTEMPTS=str(MAX_ATTEMPTS),
    )
    try:
        await roles.start_each("projector", "classifier")
        events = await scenario.upload(tracks)
        settled = await _settle(scenario.engine, count)

        async def nothing_running() -> bool:
            return fake_replicate.stats.running == 0

        none_running = await holds_within(nothing_running, within=30)
    finally:
        codes = await roles.stop_all()

    stats = fake_replicate.stats
    verdict = await scenario.check(tracks)
    wrong_kind: list[str] = []
    transient = 0
    for track in tracks:
        failure = verdict.failures.get((track.id, track.file_id))
        directive = directives.get(track.id)
        if failure is None:
            if directive in ("fail", "hang"):
                wrong_kind.append(f"track {track.id} ({directive}) was not failed")
            continue
        kind = failure["error"]["kind"]
        if failure["attempts"] > MAX_ATTEMPTS:
            wrong_kind.append(f"track {track.id}: {failure['attempts']} attempts")
        if directive == "fail" and kind == "prediction_failed":
            assert failure["retryable"] is False
        elif directive == "hang" and kind in ("timeout", "prediction_canceled"):
            pass
        elif kind in TRANSIENT and failure["retryable"] is True:
            transient += 1  # creation refused MAX_ATTEMPTS times, or out of time
        else:
            wrong_kind.append(f"track {track.id} ({directive}): {kind}")
    over_attempted = {u: n for u, n in stats.attempts_per_url.items() if n > MAX_ATTEMPTS}
    created_twice = {u: n for u, n in stats.creations_per_url.items() if n > 1}
    injected = {
        "5xx": stats.rejected_5xx,
        "429": stats.rejected_429,
        "slow": sum(1 for d in directives.values() if d == "slow"),
        "failed": sum(1 for d in directives.values() if d == "fail"),
        "hang": sum(1 for d in directives.values() if d == "hang"),
    }
    scenario.report(
        verdict.figures(
            events=events,
            faults_injected=sum(injected.values()),
            started=scenario.started,
            wrong=len(wrong_kind),
            injected=injected,
            transient_failures=transient,
            creation_attempts=stats.creation_attempts,
            creations=stats.creations,
            wait_timeouts_polled=stats.wait_timeouts,
            cancels=stats.cancels,
            cancel_after_expiries=stats.cancel_after_expiries,
            running_at_end=stats.running,
            max_attempts_per_track=max(stats.attempts_per_url.values()),
        )
    )
    verdict.assert_clean()
    assert settled, roles.tail("classifier")
    assert not wrong_kind, wrong_kind
    assert not over_attempted, over_attempted
    assert not created_twice, created_twice
    assert none_running, stats
    # Hanging predictions were stopped, by our cancel or by the Cancel-After deadline. Only
    # those created count: a hanging track whose creation was refused every time (28% of
    # creations are) fails before it has a prediction to stop.
    hangs_created = sum(
        1
        for track in tracks
        if directives.get(track.id) == "hang" and stats.creations_per_url.get(track.audio_url)
    )
    assert hangs_created >= 1, stats
    assert stats.cancels + stats.cancel_after_expiries >= hangs_created
    # Slow predictions outlived the 1 s wait window and were polled to the end.
    assert stats.wait_timeouts >= injected["slow"]
    # 28% of creations refused: all five attempts refused is ~0.2% of tracks.
    assert transient <= count // 50, transient
    assert codes == {"projector": 0, "classifier": 0}, roles.tail("classifier")


# -- scenario 7 -------------------------------------------------------------------------------

SECRET = f"r8_FaultsSecret_{uuid.uuid4().hex}"


class LeakyFake(FakeReplicate):
    """The fake, with server texts that quote the caller's token back (worst case)."""

    def _server_error(self, status: int) -> web.Response:
        self._stats.rejected_5xx += 1
        return _detail(status, f"upstream rejected 'Authorization: Bearer {self.config.token}'")

    def _throttled(self, reset_s: int, *, window: bool = False) -> web.Response:
        self._stats.rejected_429 += 1
        return _detail(
            429,
            f"Request was throttled for token {self.config.token}. "
            f"Your rate limit resets in ~{reset_s}s.",
        )

    def _new_prediction(self, *args: Any, **kwargs: Any) -> _Prediction:
        prediction = super()._new_prediction(*args, **kwargs)
        if prediction.error:
            prediction.error += f" (while running for {self.config.token})"
        return prediction


@pytest_asyncio.fixture
async def leaky_fake() -> AsyncIterator[LeakyFake]:
    config = FakeConfig(token=SECRET, latency_ms=100, seed=7, **TRANSIENT_FAULTS)
    async with LeakyFake(config) as fake:
        yield fake


def _hits(text: str) -> list[str]:
    found = []
    start = 0
    while (index := text.find(SECRET, start)) >= 0:
        found.append(text[max(0, index - 150) : index + len(SECRET) + 50])
        start = index + 1
    return found


async def test_the_replicate_token_appears_in_no_log_event_error_or_dead_letter(
    kafka: KafkaTestBed,
    leaky_fake: LeakyFake,
    scenario: Scenario,
) -> None:
    count = 100
    directives = {t: "fail" for t in range(5, count + 1, 10)} | {50: "hang"}
    tracks = make_tracks(count, directives=directives)
    roles = await scenario.begin(
        kafka.bootstrap_servers,
        kafka.prefix,
        leaky_fake,
        tracks,
        token=SECRET,
        concurrency=32,
        timeout_s=6,
        LOG_LEVEL="DEBUG",
    )
    settings = service_settings(kafka, scenario.database_url)
    replies: list[str] = []
    try:
        await roles.start_each("projector", "classifier", "responder")
        events = await scenario.upload(tracks)
        # Poison records for the dead-letter topics.
        events += await publish(
            kafka.bootstrap_servers,
            kafka.topic(topics.TRACK_UPLOADED),
            [("1", b"{not json"), ("2", {"track_id": -1, "file_id": "x"}), (None, b"\xff")],
        )
        events += await publish(
            kafka.bootstrap_servers,
            kafka.topic(topics.RECOMMENDED_TAGS),
            [("3", {"track_id": 3, "limit": 5})],  # no reply_to: dead-lettered
        )
        settled = await _settle(scenario.engine, count, timeout=90)
        async with genres_client(settings) as client:
            payloads = (b'{"track_id": 1000000}', b"not json", b'{"track_id": 5, "wait_ms": 100}')
            for payload in payloads:
                try:
                    raw = await client.request(
                        topics.RECOMMENDED_TAGS, payload, key=b"5", timeout=10.0
                    )
                except RequestTimedOut:
                    continue
                replies.append(raw.decode(errors="replace"))
                events += 1

        async def dead_letters() -> bool:
            dlq = kafka.topic(topics.TRACK_UPLOADED) + ".dlq"
            return len(await read_topic(kafka.bootstrap_servers, dlq)) >= 3

        await holds_within(dead_letters, within=30)
    finally:
        codes = await roles.stop_all()

    # A configuration error prints one line; the token is set but must not be in it.
    bad_config = run_genres(
        "run",
        "classifier",
        env=roles.env | {"CLASSIFIER_CONCURRENCY": "lots", "REPLICATE_BASE_URL": "not a url"},
    )

    captured: dict[str, str] = {
        "logs": roles.logs(),
        "bad_config": bad_config.stdout + bad_config.stderr,
        "replies": "\n".join(replies),
    }
    records = 0
    dlq_headers = 0
    for topic in await list_topics(kafka.bootstrap_servers, kafka.prefix):
        parts = []
        for record in await read_topic(kafka.bootstrap_servers, topic):
            records += 1
            parts.append(repr(record.key) + repr(record.value) + repr(record.headers))
            if topic.endswith(".dlq"):
                dlq_headers += len(record.headers)
        captured[topic] = "\n".join(parts)
    leaks = {where: _hits(text) for where, text in captured.items() if SECRET in text}
    stats = leaky_fake.stats
    failures_text = captured.get(kafka.topic(topics.GENRES_FAILED), "")
    verdict = await scenario.conclude(
        tracks,
        events=events,
        faults_injected=stats.rejected_5xx + stats.rejected_429 + len(directives),
        leaks=sum(len(v) for v in leaks.values()),
        log_bytes=len(captured["logs"]),
        records_scanned=records,
        dlq_headers_scanned=dlq_headers,
        redacted_in_failures=failures_text.count("[redacted]"),
    )
    assert not leaks, leaks
    # The token was in use and the fake did quote it back: the scrubbing was exercised.
    assert stats.rejected_401 == 0
    assert stats.creations > 0
    assert stats.rejected_5xx + stats.rejected_429 > 0
    assert "[redacted]" in failures_text
    assert dlq_headers > 0
    assert bad_config.returncode == 2, bad_config.stderr
    assert settled, roles.tail("classifier")
    verdict.assert_clean()
    assert codes == {"projector": 0, "classifier": 0, "responder": 0}, roles.logs()[-3000:]
