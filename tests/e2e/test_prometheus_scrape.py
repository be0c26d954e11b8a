"""deploy/prometheus and deploy/grafana against the running service: a real Prometheus scrapes
``genres run all`` and the stalled-partition alert goes pending, then firing, then resolves;
every metric the dashboard's queries and the rules name is one ``/metrics`` exports.

The stall is test_stalls.py's: the process reaches PostgreSQL through a TCP proxy that then
refuses, while a record waits on the projector's partition. It is made quick by
``KAFKA_STALL_SECONDS=2``, a scrape and evaluation interval of 1 s, and the rules file loaded
with the stalled-partition alert's ``for`` shortened to 5 s (the one change to the file).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine

from genres.embedded import free_port
from genres_contracts import topics
from tests.faults.tcp_proxy import TcpProxy
from tests.integration.test_stalls import classified, projected
from tests.support.broker import KafkaTestBed
from tests.support.bus import producer
from tests.support.ci import missing, schema_dependency
from tests.support.database import insert_track
from tests.support.fake_replicate import FakeReplicate
from tests.support.process import start_genres, stop
from tests.support.service import process_env, send_upload
from tests.support.waiting import eventually

yaml = schema_dependency("yaml")

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "genres.rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "genres.json"
STALLED = "GenresPartitionStalled"
METRIC = re.compile(r"\b(?:genres|faststream)_[a-z0-9_]+\b")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    queries += [
        variable["query"]["query"]
        for variable in dashboard["templating"]["list"]
        if variable["type"] == "query"
    ]
    return queries


def rule_queries() -> list[str]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule["expr"] for group in document["groups"] for rule in group["rules"]]


def exported(page: str) -> set[str]:
    """The series names a scrape of ``page`` can hold: every sample's, and those of each
    declared family that has no sample yet (a labelled counter nobody incremented)."""
    names = set()
    for line in page.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            base = name.removesuffix("_total") if kind == "counter" else name
            names |= {base + suffix for suffix in SUFFIXES.get(kind, ("",))}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def test_the_metric_names_are_read_from_the_queries() -> None:
    """The extraction the live check relies on finds names in every query (not none)."""
    for query in dashboard_queries() + rule_queries():
        if "up{" not in query:
            assert METRIC.findall(query), query
    page = '# TYPE a_total counter\n# TYPE h histogram\nh_bucket{le="1"} 0\n# TYPE g gauge\n'
    assert exported(page) == {"a_total", "h_bucket", "h_sum", "h_count", "g"}


def text_of(log: Path) -> str:
    """A process's log, for a failure's message (read once the process has ended)."""
    return log.read_text(errors="replace")


async def answering(
    process: asyncio.subprocess.Process, url: str, log: Path, *, within: float
) -> None:
    """Wait until ``url`` answers 200; fail with ``log`` if ``process`` exits first."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:

        async def ready() -> bool:
            if process.returncode is not None:
                raise AssertionError(f"exited before {url} answered:\n{text_of(log)}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url) as response:
                    return response.status == 200
            return False

        await eventually(ready, within=within, interval=0.2, what=f"{url} answering 200")


@contextlib.asynccontextmanager
async def genres_run_all(
    kafka: KafkaTestBed, database_url: str, fake: FakeReplicate, log: Path, port: int
) -> AsyncIterator[str]:
    """``genres run all`` with its health server on ``port``; yields its base URL once ready."""
    env = process_env(
        kafka.bootstrap_servers,
        kafka.prefix,
        database_url,
        fake,
        concurrency=4,
        HEALTH_HOST="127.0.0.1",
        HEALTH_PORT=str(port),
        KAFKA_STALL_SECONDS="2",
    )
    process = await start_genres("run", "all", env=env, log=log)
    base = f"http://127.0.0.1:{port}"
    try:
        await answering(process, f"{base}/readyz", log, within=60)
        yield base
    finally:
        assert await stop(process) == 0, text_of(log)


async def scrape(base: str) -> str:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(f"{base}/metrics") as response,
    ):
        assert response.status == 200
        return await response.text()


async def test_the_dashboard_and_the_rules_name_only_metrics_the_service_exports(
    kafka: KafkaTestBed,
    database_url: str,
    engine: AsyncEngine,
    fake_replicate: FakeReplicate,
    tmp_path: Path,
) -> None:
    await insert_track(engine, 1)
    async with genres_run_all(
        kafka, database_url, fake_replicate, tmp_path / "genres.log", free_port()
    ) as base:
        # One track through the pipeline, so that every subscriber has handled something.
        async with producer(kafka.bootstrap_servers) as client:
            await send_upload(client, kafka, 1)
        await eventually(lambda: projected(engine, 1), within=60, what="track 1 projected")
        names = exported(await scrape(base))
    assert {"genres_partition_stalled", "genres_ready", "genres_consumer_lag"} <= names
    for where, queries in (("dashboard", dashboard_queries()), ("rules", rule_queries())):
        named = {name for query in queries for name in METRIC.findall(query)}
        assert named, where
        unknown = sorted(named - names)
        assert unknown == [], f"the {where} names metrics /metrics does not export"


# -- a real Prometheus ---------------------------------------------------------------------


def prometheus_files(directory: Path, target: str) -> Path:
    """The configuration (scrape and evaluate every second) and the rules, ``for`` of the
    stalled-partition alert shortened; returns the configuration file."""
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    (stalled,) = [r for g in rules["groups"] for r in g["rules"] if r.get("alert") == STALLED]
    stalled["for"] = "5s"
    (directory / "rules.yml").write_text(yaml.safe_dump(rules), encoding="utf-8")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["rules.yml"],
        "scrape_configs": [{"job_name": "genres", "static_configs": [{"targets": [target]}]}],
    }
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@contextlib.asynccontextmanager
async def running_prometheus(config: Path, log: Path) -> AsyncIterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        missing("prometheus is not installed (Debian: apt-get install prometheus)")
    port = free_port()
    with log.open("ab") as handle:
        process = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={config.parent / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        await answering(process, f"{base}/-/ready", log, within=30)
        yield base
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)


async def alerts(session: aiohttp.ClientSession, base: str) -> list[dict[str, Any]]:
    async with session.get(f"{base}/api/v1/alerts") as response:
        body = await response.json()
    return [a for a in body["data"]["alerts"] if a["labels"]["alertname"] == STALLED]


async def test_a_real_prometheus_fires_the_stalled_partition_alert(
    kafka: KafkaTestBed,
    database_url: str,
    engine: AsyncEngine,
    fake_replicate: FakeReplicate,
    tmp_path: Path,
) -> None:
    port = free_port()
    config = prometheus_files(tmp_path, f"127.0.0.1:{port}")
    topic = kafka.topic(topics.GENRES_CLASSIFIED)
    for track_id in (1, 2):
        await insert_track(engine, track_id)
    async with (
        TcpProxy.for_database(database_url) as proxy,
        genres_run_all(
            kafka, proxy.url_through(database_url), fake_replicate, tmp_path / "genres.log", port
        ),
        running_prometheus(config, tmp_path / "prometheus.log") as prometheus,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
        producer(kafka.bootstrap_servers) as client,
    ):
        await client.send_and_wait(topic, classified(1), key=b"1")
        await eventually(lambda: projected(engine, 1), what="track 1 projected")

        async def scraped() -> bool:
            async with session.get(
                f"{prometheus}/api/v1/query", params={"query": 'up{job="genres"}'}
            ) as response:
                result = (await response.json())["data"]["result"]
            return [r["value"][1] for r in result] == ["1"]

        await eventually(scraped, what="prometheus scraping genres")
        assert await alerts(session, prometheus) == []

        await proxy.refuse()
        sent = await client.send_and_wait(topic, classified(2), key=b"2")
        seen: list[str] = []

        async def state(wanted: str) -> bool:
            found = await alerts(session, prometheus)
            for alert in found:
                labels = alert["labels"]
                assert (labels["role"], labels["topic"], labels["partition"]) == (
                    "projector",
                    topic,
                    str(sent.partition),
                ), alert
                assert labels["severity"] == "page"
                if not seen or seen[-1] != alert["state"]:
                    seen.append(alert["state"])
            return bool(found) and found[0]["state"] == wanted

        await eventually(lambda: state("firing"), within=60, interval=0.2, what="firing")
        # Pending first (for: 5s), then firing: the alert's own `for` at work.
        assert seen == ["pending", "firing"]

        await proxy.restore()
        await eventually(lambda: projected(engine, 2), what="track 2 projected")
        await eventually(
            lambda: _none(alerts(session, prometheus)), within=30, what="the alert resolved"
        )


async def _none(found: Any) -> bool:
    return not await found
