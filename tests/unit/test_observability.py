"""Metrics hooks, the health server's answers and tracing's propagation, without a broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import SimpleNamespace

import aiohttp
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from genres.observability.health import HealthServer
from genres.observability.metrics import ServiceMetrics
from genres.observability.tracing import configure_tracing, extract, outgoing_headers


def values(metrics: ServiceMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    page = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(page)
        for s in family.samples
    }


@dataclass
class Window:
    in_flight: int = 3
    handled: int = 10
    retried: int = 2


def test_hooks_count_in_a_registry_of_their_own() -> None:
    first, second = ServiceMetrics(cost_per_second=0.0001), ServiceMetrics()
    first.observe_outcome("replicate", "classified")
    first.observe_outcome("replicate", "classified")
    first.observe_outcome("local", "failed")
    first.observe_prediction("replicate", predict=2.0, total=3.5)
    first.observe_prediction("local", predict=0.2, total=0.4)
    first.observe_replicate_retry("create")
    first.observe_dead_letter("track.uploaded")
    first.observe_projection(written=4, stale=1)
    first.watch_window(Window())
    first.watch_classifications(SimpleNamespace(running=2))

    found = values(first)
    assert (
        found[
            ("genres_classifications_total", (("backend", "replicate"), ("outcome", "classified")))
        ]
        == 2
    )
    assert (
        found[("genres_classifications_total", (("backend", "local"), ("outcome", "failed")))] == 1
    )
    assert found[("genres_replicate_latency_seconds_count", ())] == 1
    assert found[("genres_replicate_latency_seconds_sum", ())] == 3.5
    assert found[("genres_model_predict_seconds_count", (("backend", "local"),))] == 1
    assert found[("genres_replicate_estimated_cost_usd_total", ())] == pytest.approx(0.0002)
    assert found[("genres_replicate_retries_total", (("step", "create"),))] == 1
    assert found[("genres_dead_letters_total", (("topic", "track.uploaded"),))] == 1
    assert found[("genres_projections_written_total", ())] == 4
    assert found[("genres_projections_stale_total", ())] == 1
    assert found[("genres_classifier_records_in_flight", ())] == 3
    assert found[("genres_classifications_in_flight", ())] == 2
    assert found[("genres_classifier_records_handled_total", ())] == 10
    assert found[("genres_classifier_handler_retries_total", ())] == 2
    assert ("genres_classifier_records_in_flight", ()) not in values(second)


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


class Positions:
    def assignment(self) -> set[TP]:
        return {TP("t", 0), TP("t", 1), TP("t", 2)}

    def highwater(self, partition: TP) -> int | None:
        return None if partition.partition == 2 else 100

    async def position(self, partition: TP) -> int:
        return 60 + partition.partition


async def test_lag_is_sampled_on_refresh() -> None:
    metrics = ServiceMetrics()
    metrics.watch_lag("classifier", Positions())
    await metrics.refresh()
    found = values(metrics)
    lag = (("consumer", "classifier"), ("partition", "0"), ("topic", "t"))
    assert found[("genres_consumer_lag", lag)] == 40
    assert (
        found[
            (
                "genres_consumer_lag",
                (("consumer", "classifier"), ("partition", "1"), ("topic", "t")),
            )
        ]
        == 39
    )
    assert not any(("partition", "2") in labels for _, labels in found)


@pytest.fixture
async def health() -> AsyncIterator[tuple[HealthServer, dict[str, int]]]:
    calls = {"database": 0}

    async def broker() -> None:
        return None

    async def database() -> None:
        calls["database"] += 1
        raise ConnectionRefusedError("connection refused")

    server = HealthServer(
        host="127.0.0.1",
        port=0,
        metrics=ServiceMetrics(),
        checks={"broker": broker, "database": database},
        cache_seconds=60,
    )
    await server.start()
    server.started = True
    try:
        yield server, calls
    finally:
        await server.stop()


async def test_readiness_names_what_failed_and_is_cached(
    health: tuple[HealthServer, dict[str, int]],
) -> None:
    server, calls = health
    assert server.url is not None
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/healthz") as response:
            assert response.status == 200
        bodies = []
        for _ in range(3):
            async with session.get(f"{server.url}/readyz") as response:
                assert response.status == 503
                bodies.append(await response.json())
        async with session.get(f"{server.url}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            page = await response.text()
            assert "genres_classifications_total" in page
            assert "\ngenres_ready 0.0\n" in page  # the database check fails
    assert bodies[0]["failed"] == ["database"]
    assert bodies[0]["checks"]["broker"] == "ok"
    assert "ConnectionRefusedError" in bodies[0]["checks"]["database"]
    assert calls["database"] == 1


async def test_readiness_is_a_metric_too() -> None:
    async def answers() -> None:
        return None

    metrics = ServiceMetrics()
    server = HealthServer(
        host="127.0.0.1", port=0, metrics=metrics, checks={"database": answers}, cache_seconds=0
    )
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            scraped = []
            for started in (False, True, False):
                server.started = started
                async with session.get(f"{server.url}/metrics") as response:
                    assert response.status == 200
                scraped.append(values(metrics)[("genres_ready", ())])
    finally:
        await server.stop()
    assert scraped == [0.0, 1.0, 0.0]


async def test_a_slow_check_times_out() -> None:
    async def hangs() -> None:
        await asyncio.sleep(60)

    server = HealthServer(host="127.0.0.1", port=0, checks={"broker": hangs}, check_timeout=0.05)
    assert await server.readiness() == {"broker": "no answer within 0.05s"}


def test_without_an_endpoint_tracing_installs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert configure_tracing() is None


def test_headers_round_trip_a_traceparent() -> None:
    from opentelemetry import context, trace

    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    ctx = extract([("traceparent", parent.encode()), ("junk", b"\xff"), ("none", None)])
    span_context = trace.get_current_span(ctx).get_span_context()
    assert format(span_context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    token = context.attach(ctx)
    try:
        assert dict(outgoing_headers())["traceparent"] == parent.encode()
    finally:
        context.detach(token)


async def test_replicate_retries_and_predict_time_reach_the_metrics() -> None:
    import aiohttp
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from genres.classifier.observed import ObservedClassifier
    from genres.classify.replicate import Backoff, ReplicateClassifier

    answers = iter([429, 503, 201])

    async def reply(request: web.Request) -> web.Response:
        status = next(answers)
        if status != 201:
            return web.json_response({"detail": "busy"}, status=status)
        return web.json_response(
            {
                "id": "p1",
                "status": "succeeded",
                "output": {"Electronic---Ambient": 0.7, "Rock---Punk": 0.2},
                "metrics": {"predict_time": 2.0},
            },
            status=201,
        )

    app = web.Application()
    app.router.add_post("/v1/predictions", reply)
    metrics = ServiceMetrics(cost_per_second=0.0001)
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        classifier = ObservedClassifier(
            ReplicateClassifier(
                session=session,
                token="r8_x",
                base_url=str(server.make_url("/v1")),
                version="0" * 64,
                backoff=Backoff(initial=0.01, maximum=0.01, jitter=0.0),
                on_retry=metrics.observe_replicate_retry,
                on_throttled=metrics.observe_replicate_throttled,
            ),
            backend="replicate",
            metrics=metrics,
        )
        result = await classifier.classify("https://cdn.test/a.mp3")

    assert result.predictions[0].name == "ambient electronic"
    found = values(metrics)
    assert found[("genres_replicate_retries_total", (("step", "create"),))] == 2
    assert found[("genres_replicate_throttled_total", (("step", "create"),))] == 1
    assert found[("genres_model_predict_seconds_sum", (("backend", "replicate"),))] == 2.0
    assert found[("genres_replicate_estimated_cost_usd_total", ())] == pytest.approx(0.0002)
