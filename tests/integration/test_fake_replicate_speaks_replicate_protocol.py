"""The fake Replicate speaks the protocol: checked with the official client and raw httpx.

The official ``replicate`` client (1.0.x) is the reference: if it can create, wait for, poll,
cancel and read predictions from the fake, our adapter is tested against something real-shaped.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from replicate.client import Client
from replicate.exceptions import ReplicateError
from replicate.prediction import Prediction

from tests.support.fake_replicate import (
    FAIL_MESSAGES,
    FakeReplicate,
    FakeReplicateThread,
    load_labels,
    parse_cancel_after,
)

pytest_plugins = ["tests.support.fake_replicate_fixtures"]

VERSION = "1532dd069fb4f0e27c6833e28815f6b8c194dfec76fd9cd73460540fd720ffe1"
TOKEN = "r8_fake_token"


def audio(name: str, directive: str | None = None) -> str:
    url = f"https://cdn.example/audio/{name}.mp3"
    return f"{url}?fake={directive}" if directive else url


def json_input(url: str) -> dict[str, Any]:
    return {"audio": url, "output_format": "JSON"}


@pytest.fixture
def transport() -> Iterator[httpx.HTTPTransport]:
    # The official client has no close(); handing it our transport lets the test close it.
    sync_transport = httpx.HTTPTransport()
    yield sync_transport
    sync_transport.close()


def official_client(
    base_url: str, transport: httpx.BaseTransport | httpx.AsyncBaseTransport, token: str = TOKEN
) -> Client:
    official = Client(api_token=token, base_url=base_url, transport=transport)
    official.poll_interval = 0.02
    return official


@pytest.fixture
def client(fake_replicate_thread: FakeReplicateThread, transport: httpx.HTTPTransport) -> Client:
    # The official client wants the server root: it puts "/v1/..." in every path itself.
    return official_client(fake_replicate_thread.root_url, transport)


def status(prediction: Prediction) -> str:
    """The status as a plain string (mypy keeps a narrowed Literal across ``wait()``)."""
    return str(prediction.status)


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


async def create(
    http: httpx.AsyncClient,
    fake: FakeReplicate,
    url: str,
    headers: dict[str, str] | None = None,
    version: str = VERSION,
) -> httpx.Response:
    return await http.post(
        f"{fake.base_url}/predictions",
        json={"version": version, "input": json_input(url)},
        headers={**auth(), **(headers or {})},
    )


# -- the official client ------------------------------------------------------------------


def test_official_client_create_with_wait_returns_succeeded_prediction_with_urls(
    client: Client, fake_replicate_thread: FakeReplicateThread
) -> None:
    prediction = client.predictions.create(
        version=VERSION, input=json_input(audio("waited")), wait=5
    )

    assert status(prediction) == "succeeded"
    assert prediction.version == VERSION
    assert prediction.model == "mtg/effnet-discogs"
    assert prediction.input == json_input(audio("waited"))
    assert len(prediction.id) == 20
    assert prediction.id.isalnum()
    assert prediction.id == prediction.id.lower()
    root = fake_replicate_thread.root_url
    assert prediction.urls is not None
    assert prediction.urls["get"] == f"{root}/v1/predictions/{prediction.id}"
    assert prediction.urls["cancel"] == f"{root}/v1/predictions/{prediction.id}/cancel"
    assert prediction.output == f"{root}/files/{prediction.id}.json"
    assert prediction.metrics is not None
    assert prediction.metrics["predict_time"] > 0
    assert prediction.created_at is not None
    assert prediction.created_at.endswith("Z")
    assert prediction.completed_at is not None
    assert prediction.completed_at.endswith("Z")
    assert prediction.completed_at > prediction.created_at
    assert fake_replicate_thread.stats.wait_timeouts == 0


def test_official_client_create_without_wait_starts_and_wait_polls_to_success(
    client: Client, fake_replicate_thread: FakeReplicateThread
) -> None:
    prediction = client.predictions.create(version=VERSION, input=json_input(audio("polled")))
    assert status(prediction) == "starting"
    assert prediction.output is None
    assert prediction.completed_at is None

    prediction.wait()

    assert status(prediction) == "succeeded"
    assert isinstance(prediction.output, str)
    stats = fake_replicate_thread.stats
    assert stats.gets >= 2, "a 200 ms prediction polled every 20 ms needs several GETs"
    assert stats.running == 0
    assert stats.final_statuses == {"succeeded": 1}


def test_official_client_get_returns_the_same_prediction(client: Client) -> None:
    created = client.predictions.create(version=VERSION, input=json_input(audio("got")))

    fetched = client.predictions.get(created.id)

    assert fetched.id == created.id
    assert fetched.version == VERSION
    assert fetched.input == json_input(audio("got"))
    assert fetched.status in ("starting", "processing")


def test_official_client_get_of_unknown_prediction_raises_404(client: Client) -> None:
    with pytest.raises(ReplicateError) as raised:
        client.predictions.get("doesnotexist00000000")
    assert raised.value.status == 404


def test_official_client_cancels_a_hanging_prediction(
    client: Client, fake_replicate_thread: FakeReplicateThread
) -> None:
    prediction = client.predictions.create(
        version=VERSION, input=json_input(audio("stuck", "hang")), wait=1
    )
    assert status(prediction) == "processing", "hang never completes on its own"

    prediction.cancel()

    assert status(prediction) == "canceled"
    assert prediction.completed_at is not None
    prediction.reload()
    assert status(prediction) == "canceled"
    stats = fake_replicate_thread.stats
    assert stats.cancels == 1
    assert stats.cancels_effective == 1
    assert stats.wait_timeouts == 1
    assert stats.running == 0


def test_official_client_sees_failed_prediction_error_text(client: Client) -> None:
    prediction = client.predictions.create(
        version=VERSION, input=json_input(audio("broken", "fail")), wait=5
    )

    assert status(prediction) == "failed"
    assert prediction.error in FAIL_MESSAGES
    assert prediction.output is None


def test_official_client_raises_on_throttled_create_without_retrying_it(
    client: Client, fake_replicate_thread: FakeReplicateThread
) -> None:
    url = audio("throttled", "throttle-once")

    with pytest.raises(ReplicateError) as raised:
        client.predictions.create(version=VERSION, input=json_input(url), wait=5)

    # The client's RetryTransport retries 429/503/504 only for GET-like methods, not POST.
    assert raised.value.status == 429
    assert raised.value.detail is not None
    assert "resets in ~30s" in raised.value.detail
    stats = fake_replicate_thread.stats
    assert stats.attempts_per_url == {url: 1}
    assert stats.rejected_429 == 1

    retried = client.predictions.create(version=VERSION, input=json_input(url), wait=5)
    assert retried.status == "succeeded"
    assert fake_replicate_thread.stats.creations_per_url == {url: 1}


def test_official_client_raises_on_create_5xx_without_retrying_it(
    client: Client, fake_replicate_thread: FakeReplicateThread
) -> None:
    url = audio("flaky", "5xx-once")

    with pytest.raises(ReplicateError) as raised:
        client.predictions.create(version=VERSION, input=json_input(url))

    assert raised.value.status == 503
    assert fake_replicate_thread.stats.attempts_per_url == {url: 1}


def test_official_client_retries_503_while_polling(
    client: Client, fake_replicate_thread: FakeReplicateThread
) -> None:
    created = client.predictions.create(version=VERSION, input=json_input(audio("poll-503")))
    fake_replicate_thread.configure(get_5xx_rate=0.5, get_5xx_statuses=[503])

    for _ in range(6):
        assert client.predictions.get(created.id).id == created.id

    stats = fake_replicate_thread.stats
    assert stats.get_5xx >= 1, "seeded faults: some GETs got a 503"
    assert stats.gets == 6 + stats.get_5xx, "each 503 was retried by the client"


def test_official_client_does_not_retry_500_while_polling(
    client: Client, fake_replicate_thread: FakeReplicateThread
) -> None:
    created = client.predictions.create(version=VERSION, input=json_input(audio("poll-500")))
    fake_replicate_thread.configure(get_5xx_rate=1.0, get_5xx_statuses=[500])

    with pytest.raises(ReplicateError) as raised:
        client.predictions.get(created.id)

    assert raised.value.status == 500
    assert fake_replicate_thread.stats.gets == 1


def test_official_client_with_wrong_token_gets_401(
    fake_replicate_thread: FakeReplicateThread, transport: httpx.HTTPTransport
) -> None:
    official = official_client(fake_replicate_thread.root_url, transport, token="r8_wrong")

    with pytest.raises(ReplicateError) as raised:
        official.predictions.create(version=VERSION, input=json_input(audio("nope")))

    assert raised.value.status == 401
    assert fake_replicate_thread.stats.creations == 0


def test_official_client_base_url_with_v1_suffix_misses_the_api(
    fake_replicate_thread: FakeReplicateThread, transport: httpx.HTTPTransport
) -> None:
    # Replicate's API root ends in /v1, but the official client appends /v1 itself.
    official = official_client(fake_replicate_thread.base_url, transport)

    with pytest.raises(ReplicateError) as raised:
        official.predictions.create(version=VERSION, input=json_input(audio("v1v1")))

    assert raised.value.status == 404


async def test_official_async_client_creates_and_waits_on_the_same_loop(
    fake_replicate: FakeReplicate,
) -> None:
    async_transport = httpx.AsyncHTTPTransport()
    official = official_client(fake_replicate.root_url, async_transport)

    prediction = await official.predictions.async_create(
        version=VERSION, input=json_input(audio("async"))
    )
    await prediction.async_wait()

    await async_transport.aclose()
    assert status(prediction) == "succeeded"
    assert fake_replicate.stats.creations == 1


def test_official_client_output_file_has_all_400_labels(client: Client) -> None:
    prediction = client.predictions.create(
        version=VERSION, input=json_input(audio("labels")), wait=5
    )
    assert isinstance(prediction.output, str)

    document = httpx.get(prediction.output).json()

    assert set(document) == set(load_labels())
    assert len(document) == 400
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in document.values())


# -- raw HTTP: scores, directives, counters -------------------------------------------------


async def output_of(http: httpx.AsyncClient, fake: FakeReplicate, url: str) -> Any:
    response = await create(http, fake, url, {"Prefer": "wait=5"})
    assert response.status_code == 201
    prediction = response.json()
    assert prediction["status"] == "succeeded"
    return (await http.get(prediction["output"])).json()


async def test_scores_are_deterministic_per_url_with_a_distinct_top_ten(
    fake_replicate: FakeReplicate,
) -> None:
    async with httpx.AsyncClient() as http:
        first = await output_of(http, fake_replicate, audio("same"))
        again = await output_of(http, fake_replicate, audio("same"))
        other = await output_of(http, fake_replicate, audio("other"))

    assert first == again
    assert first != other
    top = sorted(first.values(), reverse=True)[:10]
    assert len({round(v, 4) for v in top}) == 10
    assert sorted(first, key=first.__getitem__)[-1] != sorted(other, key=other.__getitem__)[-1]


async def test_prefer_wait_returns_an_unfinished_prediction_when_it_outlasts_the_wait(
    fake_replicate: FakeReplicate,
) -> None:
    fake_replicate.configure(slow_ms=3000)
    async with httpx.AsyncClient() as http:
        started = time.monotonic()
        response = await create(http, fake_replicate, audio("slow", "slow"), {"Prefer": "wait=1"})
        elapsed = time.monotonic() - started

    assert response.status_code == 201
    assert response.json()["status"] == "processing"
    assert response.json()["output"] is None
    assert 0.9 <= elapsed < 2.5
    assert fake_replicate.stats.wait_timeouts == 1
    assert fake_replicate.stats.running == 1


async def test_cancel_after_expiry_cancels_a_running_prediction_and_is_counted(
    fake_replicate: FakeReplicate,
) -> None:
    async with httpx.AsyncClient() as http:
        response = await create(
            http,
            fake_replicate,
            audio("deadline", "hang"),
            {"Prefer": "wait=5", "Cancel-After": "300ms"},
        )

    prediction = response.json()
    assert prediction["status"] == "canceled", "the wait ends when the deadline cancels it"
    assert prediction["completed_at"] is not None
    stats = fake_replicate.stats
    assert stats.cancel_after_expiries == 1
    assert stats.cancels == 0
    assert stats.final_statuses == {"canceled": 1}


async def test_cancel_after_later_than_completion_does_not_cancel(
    fake_replicate: FakeReplicate,
) -> None:
    async with httpx.AsyncClient() as http:
        response = await create(
            http, fake_replicate, audio("in-time"), {"Prefer": "wait", "Cancel-After": "1m"}
        )

    assert response.json()["status"] == "succeeded"
    assert fake_replicate.stats.cancel_after_expiries == 0


async def test_creations_are_counted_per_audio_url_and_served_over_http(
    fake_replicate: FakeReplicate,
) -> None:
    async with httpx.AsyncClient() as http:
        for name in ("a", "a", "b"):
            assert (await create(http, fake_replicate, audio(name))).status_code == 201
        over_http = (await http.get(f"{fake_replicate.root_url}/_fake/stats")).json()

    expected = {audio("a"): 2, audio("b"): 1}
    assert fake_replicate.stats.creations_per_url == expected
    assert over_http["creations_per_url"] == expected
    assert over_http["creations"] == 3
    assert over_http["running"] == 3
    assert over_http["max_running"] == 3


async def test_early_directive_shows_output_while_processing(
    fake_replicate: FakeReplicate,
) -> None:
    fake_replicate.configure(latency_ms=50, early_output_ms=2000)
    async with httpx.AsyncClient() as http:
        created = (await create(http, fake_replicate, audio("early", "early"))).json()
        await asyncio.sleep(0.3)
        polled = (await http.get(created["urls"]["get"], headers=auth())).json()
        document = (await http.get(polled["output"])).json()

    assert polled["status"] == "processing"
    assert len(document) == 400


@pytest.mark.parametrize(
    ("directive", "check"),
    [
        ("malformed", "not-a-label-map"),
        ("bad-json", "not-json"),
        ("missing-output", "null-output"),
        ("cancel", "canceled"),
    ],
)
async def test_output_directives_break_the_output_as_told(
    fake_replicate: FakeReplicate, directive: str, check: str
) -> None:
    async with httpx.AsyncClient() as http:
        response = await create(
            http, fake_replicate, audio(directive, directive), {"Prefer": "wait=5"}
        )
        prediction = response.json()
        if check == "canceled":
            assert prediction["status"] == "canceled"
            assert prediction["output"] is None
            return
        assert prediction["status"] == "succeeded"
        if check == "null-output":
            assert prediction["output"] is None
            return
        body = (await http.get(prediction["output"])).content

    if check == "not-json":
        with pytest.raises(json.JSONDecodeError):
            json.loads(body)
    else:
        document = json.loads(body)
        is_label_map = isinstance(document, dict) and all(
            isinstance(v, int | float) for v in document.values()
        )
        assert not is_label_map


async def test_sliding_window_limiter_throttles_with_reset_hint_and_retry_after(
    fake_replicate: FakeReplicate,
) -> None:
    fake_replicate.configure(max_creations_per_minute=2, retry_after_header=True)
    async with httpx.AsyncClient() as http:
        codes = [(await create(http, fake_replicate, audio(f"w{i}"))).status_code for i in range(2)]
        throttled = await create(http, fake_replicate, audio("w3"))

    assert codes == [201, 201]
    assert throttled.status_code == 429
    detail = throttled.json()["detail"]
    assert detail.startswith("Request was throttled. Your rate limit resets in ~")
    assert 55 <= int(throttled.headers["Retry-After"]) <= 60
    assert fake_replicate.stats.rate_limited_by_window == 1


def test_official_client_meets_the_scaled_window_cap_and_its_reset_hint(
    client: Client, fake_replicate_thread: FakeReplicateThread
) -> None:
    fake_replicate_thread.configure(max_creations_per_minute=3, window_s=2.0)
    for i in range(3):
        client.predictions.create(version=VERSION, input=json_input(audio(f"sw{i}")))
    with pytest.raises(ReplicateError) as raised:
        client.predictions.create(version=VERSION, input=json_input(audio("sw3")))
    assert raised.value.status == 429
    assert raised.value.detail is not None
    # A 2-second window frees its first slot within 2 s: the hint says so, rounded up.
    assert raised.value.detail in (
        "Request was throttled. Your rate limit resets in ~1s.",
        "Request was throttled. Your rate limit resets in ~2s.",
    )
    time.sleep(2.05)
    client.predictions.create(version=VERSION, input=json_input(audio("sw3")))
    stats = fake_replicate_thread.stats
    assert stats.creations == 4
    assert stats.rate_limited_by_window == stats.rejected_429 == 1
    assert stats.max_creations_in_window == 3


async def test_the_window_count_and_arrival_times_are_kept_with_the_limiter_off(
    fake_replicate: FakeReplicate,
) -> None:
    fake_replicate.configure(window_s=0.5)
    async with httpx.AsyncClient() as http:
        for i in range(3):
            assert (await create(http, fake_replicate, audio(f"t{i}"))).status_code == 201
        await asyncio.sleep(0.6)
        assert (await create(http, fake_replicate, audio("t3"))).status_code == 201
        times = (await http.get(f"{fake_replicate.root_url}/_fake/creations")).json()["times"]

    assert fake_replicate.stats.max_creations_in_window == 3
    assert len(times) == 4
    assert times == sorted(times)
    assert times[3] - times[2] >= 0.6
    assert fake_replicate.creation_times == times


async def test_latency_jitter_spreads_completion_times_within_its_bounds(
    fake_replicate: FakeReplicate,
) -> None:
    fake_replicate.configure(latency_ms=300, latency_jitter_ms=100, start_delay_ms=0)
    async with httpx.AsyncClient() as http:
        created = [
            (await create(http, fake_replicate, audio(f"j{i}"))).json()["id"] for i in range(40)
        ]
    # When each is due to end (timers may fire late on a busy machine; the draw does not).
    totals = []
    for pid in created:
        prediction = fake_replicate._predictions[pid]
        assert prediction.end_mono is not None
        totals.append(prediction.end_mono - prediction.created_mono)
    assert min(totals) >= 0.2
    assert max(totals) <= 0.4
    assert max(totals) - min(totals) > 0.1


@pytest.mark.parametrize(
    "body",
    [
        {"version": "not-a-version", "input": {"audio": "https://x/a.mp3"}},
        {"version": VERSION, "input": {"output_format": "JSON"}},
        {"version": VERSION},
    ],
)
async def test_bad_create_bodies_get_422(fake_replicate: FakeReplicate, body: object) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{fake_replicate.base_url}/predictions", json=body, headers=auth()
        )

    assert response.status_code == 422
    assert "detail" in response.json()
    assert fake_replicate.stats.creations == 0


async def test_missing_token_gets_401_with_detail(fake_replicate: FakeReplicate) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{fake_replicate.base_url}/predictions",
            json={"version": VERSION, "input": json_input(audio("anon"))},
        )

    assert response.status_code == 401
    assert "detail" in response.json()


async def test_global_fault_rates_are_seeded_and_reset_restores_the_sequence(
    fake_replicate: FakeReplicate,
) -> None:
    async with httpx.AsyncClient() as http:
        await http.post(
            f"{fake_replicate.root_url}/_fake/config",
            json={"error_5xx_rate": 0.3, "rate_limit_rate": 0.2, "rate_limit_reset_s": 7},
        )

        async def run() -> list[int]:
            return [
                (await create(http, fake_replicate, audio(f"g{i}"))).status_code for i in range(30)
            ]

        first = await run()
        assert (await http.post(f"{fake_replicate.root_url}/_fake/reset")).status_code == 200
        second = await run()

    assert first == second
    assert 429 in first
    assert any(code >= 500 for code in first)
    assert 201 in first
    stats = fake_replicate.stats
    assert stats.rejected_429 == first.count(429)
    assert stats.creations == first.count(201)


def test_cancel_after_parses_go_style_durations() -> None:
    assert parse_cancel_after("30s") == 30
    assert parse_cancel_after("2m") == 120
    assert parse_cancel_after("1h30m") == 5400
    assert parse_cancel_after("45") == 45
    assert parse_cancel_after("250ms") == pytest.approx(0.25)
    with pytest.raises(ValueError, match="invalid duration"):
        parse_cancel_after("soon")


async def test_final_predictions_are_forgotten_after_retention(
    fake_replicate: FakeReplicate,
) -> None:
    fake_replicate.configure(retention_s=0.0, latency_ms=20)
    async with httpx.AsyncClient() as http:
        first = (await create(http, fake_replicate, audio("old"), {"Prefer": "wait=5"})).json()
        await create(http, fake_replicate, audio("new"))
        gone = await http.get(first["urls"]["get"], headers=auth())

    assert first["status"] == "succeeded"
    assert gone.status_code == 404


def test_in_thread_context_manager_serves_sync_callers() -> None:
    with FakeReplicate.in_thread() as fake:
        response = httpx.post(
            f"{fake.base_url}/predictions",
            json={"version": VERSION, "input": json_input(audio("threaded"))},
            headers={**auth(), "Prefer": "wait=5"},
        )
        assert response.status_code == 201
        assert response.json()["status"] == "succeeded"
        assert fake.stats.creations == 1
        fake.reset()
        assert fake.stats.creations == 0


def test_module_runs_as_its_own_process_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_replicate", "--port", "0", "--latency-ms", "30"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("fake replicate listening on http://127.0.0.1:")
        base_url = line.rsplit(" ", 1)[1].strip()
        response = httpx.post(
            f"{base_url}/predictions",
            json={"version": VERSION, "input": json_input(audio("process"))},
            headers={**auth(), "Prefer": "wait=5"},
        )
        assert response.json()["status"] == "succeeded"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_cancel_after_before_start_aborts_and_official_client_cannot_parse_aborted(
    client: Client, fake_replicate_thread: FakeReplicateThread
) -> None:
    fake_replicate_thread.configure(start_delay_ms=500)
    response = httpx.post(
        f"{fake_replicate_thread.base_url}/predictions",
        json={"version": VERSION, "input": json_input(audio("never-started"))},
        headers={**auth(), "Prefer": "wait=5", "Cancel-After": "100ms"},
    )
    prediction = response.json()
    assert prediction["status"] == "aborted"
    assert prediction["started_at"] is None
    assert fake_replicate_thread.stats.cancel_after_expiries == 1

    # replicate 1.0.x types `status` as a Literal without "aborted": its model rejects it.
    with pytest.raises(ValueError, match="aborted"):
        client.predictions.get(prediction["id"])
