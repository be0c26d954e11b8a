"""Each ACL ``genres acls`` derives is needed: with any one of them removed, the role or command
that needs it stops with exit 2 and one line naming the operation and the resource.

The table comes from ``genres.kafka.acls.grants`` (every role and command, topics as code): one
case per (role, ACL). Each case runs only what needs the ACL, on a deployment of its own (a
topic prefix, hence its own topics and groups), with the whole set but that ACL granted; some
ACLs are used only on a path the case then triggers (an upload to classify, a request to
answer, one for a track never classified). Removing the only ACL on a topic removes the
DESCRIBE it implies, and the role's check of its topics at start names that.

All cases run in one fixture, a few at a time (:data:`SIDE_BY_SIDE`): the principal's ACLs are
set once for all of them, and the table costs what its slowest rounds do, not their sum."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from genres.cli.sandbox import SAMPLE, serve_file
from genres.config import Settings
from genres.kafka.acls import Acl, grants, required_acls, topics_used
from genres_contracts import topics
from tests.cluster.conftest import SECTION
from tests.support.cluster_service import (
    EVERYTHING,
    Process,
    Run,
    create_topics,
    genres,
    new_settings,
    produce,
    service_env,
    start,
)
from tests.support.database import create_database, drop_database, insert_track
from tests.support.kafka_cluster import SecuredCluster
from tests.support.parallel import add_summary_line

SIDE_BY_SIDE = 4
#: The whole table is the first case's set-up.
pytestmark = pytest.mark.timeout(600)
#: From a role's start to its exit on the refusal (the start-up is most of it).
BOUND_SECONDS = 60.0
GOOD_FILE = SAMPLE.name
#: Served beside the sample, and no audio: the local model's classification fails.
BAD_FILE = "README.md"


@dataclass(frozen=True)
class Case:
    """One ACL removed and who meets its absence."""

    role: str
    acl: Acl
    """Named for the case's own deployment (its prefix)."""
    canonical: str
    """The resource without the prefix: the case's id."""
    settings: Settings
    track_id: int

    @property
    def id(self) -> str:
        return f"{self.role}-{self.acl.operation}-{self.canonical}"

    def expected(self, granted: list[Acl]) -> str:
        """What the line names: the operation and the resource; DESCRIBE when no other ACL
        on the topic is left (Kafka then denies even describing it)."""
        if self.acl.resource_type == "group":
            return f"READ on group {self.acl.name}"
        if self.acl.pattern == "prefixed":
            return f"{self.acl.operation} on topic {self.acl.name}"
        others = [
            acl for acl in granted if acl.resource_type == "topic" and acl.name == self.acl.name
        ]
        operation = self.acl.operation if others else "DESCRIBE"
        return f"{operation} on topic {self.acl.name}"


def table() -> list[Case]:
    cases: list[Case] = []
    # Named from a throwaway deployment; each case gets its own below.
    names = new_settings(genres_topic_prefix="")
    for grant in grants(names, EVERYTHING, creates_topics=False):
        settings = new_settings(genres_topic_prefix=f"t{uuid.uuid4().hex[:8]}.")
        acl = grant.acl
        named = Acl(
            acl.resource_type,
            settings.group(acl.name) if acl.resource_type == "group" else settings.topic(acl.name),
            acl.pattern,
            acl.operation,
        )
        cases.append(Case(grant.role, named, acl.name, settings, track_id=100 + len(cases)))
    return cases


CASES = table()


def granted(case: Case) -> list[Acl]:
    everything = required_acls(case.settings, EVERYTHING, creates_topics=False)
    assert case.acl in everything
    return [acl for acl in everything if acl != case.acl]


@dataclass(frozen=True)
class Bed:
    """What the triggers use."""

    cluster: SecuredCluster
    audio: str
    """The base URL of the served audio files."""


Trigger = Callable[[Case, Bed, dict[str, str]], Awaitable[Process | None]]


def trigger_for(case: Case) -> Trigger | None:
    """What makes the role use the ACL, for those it uses only on some path."""
    if case.role == "classifier" and case.canonical == topics.GENRES_CLASSIFIED:
        return upload(GOOD_FILE)
    if case.role == "classifier" and case.canonical == topics.GENRES_FAILED:
        return upload(BAD_FILE)
    if case.role == "responder" and case.canonical == topics.CLASSIFICATION_REQUESTED:
        return ask("--wait-ms", "5000")  # a track never classified: classified on demand
    if case.role == "responder" and case.acl.pattern == "prefixed":
        return ask()  # its answer
    return None


def upload(name: str) -> Trigger:
    async def trigger(case: Case, bed: Bed, env: dict[str, str]) -> None:
        record = {"track_id": case.track_id, "file_id": "f", "audio_url": f"{bed.audio}/{name}"}
        topic = case.settings.topic(topics.TRACK_UPLOADED)
        await asyncio.to_thread(produce, bed.cluster, topic, record, str(case.track_id))

    return trigger


def ask(*options: str) -> Trigger:
    async def trigger(case: Case, bed: Bed, env: dict[str, str]) -> Process:
        # Long enough for the responder to start and take the request: a requester gone
        # deletes its reply topic, and a reply to a missing topic is only a WARNING.
        return await start("recommend", str(case.track_id), *options, "--timeout", "60", env=env)

    return trigger


async def play(case: Case, bed: Bed, database_url: str) -> Run:
    """Run what needs the case's ACL, and trigger its use; its run."""
    trigger = trigger_for(case)
    env = service_env(
        bed.cluster,
        case.settings,
        database_url,
        # The model only where a case classifies (it costs each process seconds of CPU); the
        # responder asks for classifications only with a classifier configured.
        CLASSIFIER_BACKEND="local" if trigger is not None else "none",
        AUDIO_ALLOW_PRIVATE_ADDRESSES="true",
        LOCAL_WORKERS="1",
        KAFKA_STALL_SECONDS="5",
    )
    if case.role == "recommend":
        return await genres("recommend", str(case.track_id), "--timeout", "2", env=env)
    process = await start("run", case.role, env=env)
    helper = await trigger(case, bed, env) if trigger is not None else None
    run = await process.wait(BOUND_SECONDS + 30)
    if helper is not None:
        await helper.stop()
    return run


@pytest.fixture(scope="module")
def outcomes(
    pytestconfig: pytest.Config,
    secured_cluster: SecuredCluster,
    postgres_server_url: str,
    migrated_template: str,
) -> dict[str, Run]:
    """Every case's run, :data:`SIDE_BY_SIDE` at a time; the table's time is printed."""
    cluster = secured_cluster
    started = time.monotonic()
    names = [
        name
        for case in CASES
        for name in topics_used(case.settings, [case.role] if case.role != "recommend" else [])
    ]
    names += [case.settings.topic(topics.RECOMMENDED_TAGS) for case in CASES]
    create_topics(cluster, dict.fromkeys(names), partitions=1)
    cluster.set_acls("User:genres", [acl for case in CASES for acl in granted(case)])
    database = f"g_{uuid.uuid4().hex[:8]}"
    database_url = create_database(postgres_server_url, database, template=migrated_template)
    prepared = time.monotonic()

    async def every() -> list[Run]:
        engine = create_async_engine(database_url)
        try:
            for case in CASES:
                await insert_track(engine, case.track_id, "f")
        finally:
            await engine.dispose()
        gate = asyncio.Semaphore(SIDE_BY_SIDE)

        async def one(case: Case, bed: Bed) -> Run:
            async with gate:
                return await play(case, bed, database_url)

        with serve_file(SAMPLE) as url:
            bed = Bed(cluster, url.rsplit("/", 1)[0])
            return list(await asyncio.gather(*(one(case, bed) for case in CASES)))

    try:
        runs = asyncio.run(every())
    finally:
        cluster.clear_acls("User:genres")
        drop_database(postgres_server_url, database)
    add_summary_line(
        pytestconfig,
        SECTION,
        f"ACL table: {len(CASES)} cases, prepared in {prepared - started:.1f} s, "
        f"run in {time.monotonic() - prepared:.1f} s ({SIDE_BY_SIDE} side by side; each "
        f"{min(run.seconds for run in runs):.1f}-{max(run.seconds for run in runs):.1f} s, "
        f"{sum(run.seconds for run in runs):.0f} s in all)",
    )
    return {case.id: run for case, run in zip(CASES, runs, strict=True)}


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_without_it_what_needs_it_stops_naming_it(outcomes: dict[str, Run], case: Case) -> None:
    run = outcomes[case.id]
    expected = case.expected(granted(case))
    assert run.returncode == 2, run.output()
    assert run.seconds < BOUND_SECONDS, run.output()
    last = run.last_line()
    assert last.startswith("error: Kafka denies "), run.output()
    assert expected in last, run.output()
    if case.role != "recommend":
        errors = run.errors()
        assert len(errors) == 1, run.output()
        [error] = errors
        assert error["refusal"] == "authorization", error
        assert f"error: {error['message']}" == last
