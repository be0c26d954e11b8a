"""The health server of a running service: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine

from genres.bootstrap import ALL_ROLES, Role, running
from genres.config import Settings
from genres.embedded import free_port
from tests.support.broker import KafkaTestBed
from tests.support.bus import producer
from tests.support.database import insert_track
from tests.support.fake_replicate import FakeReplicate
from tests.support.service import send_upload, service_settings

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(page: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as response:
        return response.status, await response.text()


async def test_healthy_ready_and_counting(
    kafka: KafkaTestBed,
    make_settings: Callable[..., Settings],
    fake_replicate: FakeReplicate,
    engine: AsyncEngine,
) -> None:
    port = free_port()
    settings = make_settings(fake_replicate, health_port=port, health_host="127.0.0.1")
    await insert_track(engine, 77, "f77")
    base = f"http://127.0.0.1:{port}"
    async with (
        running(settings, ALL_ROLES) as service,
        aiohttp.ClientSession() as session,
        producer(kafka.bootstrap_servers) as client,
    ):
        assert service.health is not None
        assert service.health.url == base
        assert (await get(session, f"{base}/healthz"))[0] == 200
        status, body = await get(session, f"{base}/readyz")
        assert status == 200, body

        await send_upload(client, kafka, 77, "f77")
        classified = (
            "genres_classifications_total",
            (("backend", "replicate"), ("outcome", "classified")),
        )
        deadline = time.monotonic() + 30
        while True:
            status, page = await get(session, f"{base}/metrics")
            assert status == 200
            found = samples(page)
            if found.get(classified) == 1.0 and found.get(("genres_projections_written_total", ())):
                break
            assert time.monotonic() < deadline, page
            await asyncio.sleep(0.1)

    assert ("genres_classifier_records_in_flight", ()) in found
    assert found[("genres_classifier_records_handled_total", ())] >= 1
    assert found[("genres_replicate_latency_seconds_count", ())] == 1
    assert found[("genres_model_predict_seconds_count", (("backend", "replicate"),))] == 1
    assert found[("genres_replicate_estimated_cost_usd_total", ())] > 0
    assert found[("genres_projections_stale_total", ())] == 0
    # FastStream's own metrics share the registry.
    assert any(name.startswith("faststream_") for name, _ in found)
    # Lag is sampled per assigned partition of the classifier's topics.
    lag = {
        labels: value for (name, labels), value in found.items() if name == "genres_consumer_lag"
    }
    assert any(("consumer", "classifier") in labels for labels in lag)


async def test_not_ready_when_the_database_is_down(kafka: KafkaTestBed) -> None:
    port = free_port()
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))
        dead_port = dead.getsockname()[1]
        # Bound, never listening: connections are refused.
        settings = service_settings(
            kafka,
            f"postgresql+asyncpg://postgres@127.0.0.1:{dead_port}/test",
            health_port=port,
            health_host="127.0.0.1",
        )
        base = f"http://127.0.0.1:{port}"
        # The projector touches the database only when it has something to store.
        async with running(settings, frozenset({Role.PROJECTOR})), aiohttp.ClientSession() as s:
            assert (await get(s, f"{base}/healthz"))[0] == 200
            async with s.get(f"{base}/readyz") as response:
                assert response.status == 503
                body = await response.json()

    assert body["status"] == "unavailable"
    assert body["failed"] == ["database"]
    assert body["checks"]["broker"] == "ok"
    assert body["checks"]["database"] != "ok"
