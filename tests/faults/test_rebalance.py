"""Scenario: the classifier group rebalances under load, one member killed mid-rebalance.

Three ``genres run classifier`` processes share one group on 6 partitions while 600 uploads
run against the fake Replicate at 250 ms a prediction: one process at first, then two more
(1 -> 3); while that rebalance is in progress (the group is ``PreparingRebalance`` or
``CompletingRebalance``) the first one, busy with a full window, is killed with SIGKILL; once
the other two own every partition one of them is stopped with SIGTERM (-> 1), and the last one
drains the rest.

Besides the checker's rules (lost, wrong, paid twice), the group itself is watched through the
admin API: after each change every partition of the classifier's topics has an owner, at the
end the committed offsets are the end offsets, and no offset committed during the run covers a
record whose outcome was not published yet (see :func:`commits_ahead_of_outcomes`). The time
to drain runs from the moment one process owns every partition again until every track is
projected and every offset committed.

A second scenario makes a revoked member's drain outlast its session: the group must wait for
it rather than hand its records to the newcomer while it still runs them (paid twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import KafkaError, for_code
from tests.faults.harness import (
    Scenario,
    all_projected,
    current_projected,
    ensure_service_topics,
    make_tracks,
    pending_claims,
)
from tests.support.broker import KafkaTestBed
from tests.support.bus import read_topic
from tests.support.fake_replicate import FakeReplicate
from tests.support.waiting import eventually, holds_within

from genres.classifier.entry import GROUP
from genres_contracts import topics

if TYPE_CHECKING:
    from tests.faults.harness import Roles, Track

pytestmark = [pytest.mark.timeout(300)]

UPLOADS = 600
PARTITIONS = 6
LATENCY_MS = 250
# Per process: 8 predictions at once (a window of 16 records). Low enough that one process
# takes ~20 s for the whole load, so that every membership change happens under load.
CONCURRENCY = 8
# A member killed mid-rebalance is dropped after the session timeout, which is how long the
# others wait for it: short, for a short scenario.
SESSION_TIMEOUT_MS = 6000
HEARTBEAT_INTERVAL_MS = 1000
REBALANCING = ("PreparingRebalance", "CompletingRebalance")
INPUTS = (topics.TRACK_UPLOADED, topics.CLASSIFICATION_REQUESTED)
OUTCOMES = (topics.GENRES_CLASSIFIED, topics.GENRES_FAILED)


@dataclasses.dataclass(frozen=True)
class GroupView:
    """One DescribeGroups answer: the group's state and each member's partitions."""

    state: str
    #: client id -> partitions assigned (empty while the member has none)
    members: dict[str, frozenset[TopicPartition]]

    def owned(self) -> set[TopicPartition]:
        return set().union(*self.members.values()) if self.members else set()

    def owns_all(self, partitions: Iterable[TopicPartition], clients: set[str]) -> bool:
        """Stable, exactly ``clients`` as members, and every one of ``partitions`` owned."""
        return (
            self.state == "Stable"
            and set(self.members) == clients
            and set(partitions) <= self.owned()
        )


async def describe_group(admin: AIOKafkaAdminClient, group: str) -> GroupView:
    (response,) = await admin.describe_consumer_groups([group])
    error_code, _, state, _, _, members, *_ = response.groups[0]
    if error_code:
        raise for_code(error_code)(f"DescribeGroups({group})")
    owned: dict[str, frozenset[TopicPartition]] = {}
    for _, client_id, _, _, assignment, *_ in members:
        partitions = (
            ConsumerProtocolMemberAssignment.decode(assignment).partitions() if assignment else []
        )
        owned[str(client_id)] = frozenset(partitions)
    return GroupView(str(state), owned)


@dataclasses.dataclass
class CommitSamples:
    """The group's committed offsets of ``track.uploaded``, read every ``interval`` seconds:
    ``(wall-clock time the answer arrived, {partition: committed offset})``."""

    admin: AIOKafkaAdminClient
    group: str
    partitions: list[TopicPartition]
    interval: float = 0.1
    taken: list[tuple[float, dict[int, int]]] = dataclasses.field(default_factory=list)
    errors: int = 0

    async def run(self) -> None:
        while True:
            try:
                offsets = await self.admin.list_consumer_group_offsets(
                    self.group, partitions=self.partitions
                )
            except KafkaError:
                self.errors += 1  # a coordinator moving: the next sample will do
            else:
                answered = time.time()
                self.taken.append(
                    (
                        answered,
                        {
                            tp.partition: meta.offset
                            for tp, meta in offsets.items()
                            if meta.offset >= 0
                        },
                    )
                )
            await asyncio.sleep(self.interval)

    def backwards(self) -> int:
        """How many times a partition's committed offset went down between two samples."""
        count = 0
        last: dict[int, int] = {}
        for _, offsets in self.taken:
            for partition, offset in offsets.items():
                if offset < last.get(partition, 0):
                    count += 1
                last[partition] = offset
        return count


def commits_ahead_of_outcomes(
    samples: Iterable[tuple[float, Mapping[int, int]]],
    uploads: Iterable[ConsumerRecord[bytes, bytes]],
    outcomes: Iterable[ConsumerRecord[bytes, bytes]],
) -> list[str]:
    """Committed offsets that covered a record whose outcome was not published yet.

    An outcome is published once the broker appended it; the classifier may commit a record's
    offset only after that. A sample's time is when the committed offsets *arrived* here, so
    the commit happened before it, and for every upload below a committed offset the first
    outcome event of its track must have been appended no later than that.

    The outcome topics are created with ``message.timestamp.type=LogAppendTime``, so an
    outcome's timestamp is the moment the broker appended it (same host, same clock, whole
    milliseconds: compared with the sample time rounded up). A broker that ignores the setting
    (Tansu) keeps the producer's CreateTime, set before the send and so earlier still than
    the append: the comparison stays sound (a violation is always real), only less sharp.
    """
    first_outcome: dict[int, int] = {}
    for record in outcomes:
        track_id = int(json.loads(record.value)["track_id"])
        known = first_outcome.get(track_id)
        if known is None or record.timestamp < known:
            first_outcome[track_id] = record.timestamp
    # Per partition, in offset order: the latest "first outcome" time of the records up to
    # each offset (a record without an outcome counts as never).
    by_partition: dict[int, list[tuple[int, int, float]]] = {}
    for record in sorted(uploads, key=lambda r: (r.partition, r.offset)):
        track_id = int(json.loads(record.value)["track_id"])
        published = first_outcome.get(track_id, math.inf)
        rows = by_partition.setdefault(record.partition, [])
        latest = max(published, rows[-1][2]) if rows else published
        rows.append((record.offset, track_id, latest))
    problems: list[str] = []
    for answered, offsets in samples:
        now_ms = math.ceil(answered * 1000)
        for partition, committed in offsets.items():
            covered = [row for row in by_partition.get(partition, []) if row[0] < committed]
            if covered and covered[-1][2] > now_ms:
                late = [
                    f"offset {offset} (track {track_id})"
                    for offset, track_id, _ in covered
                    if first_outcome.get(track_id, math.inf) > now_ms
                ]
                problems.append(
                    f"partition {partition} committed at {committed} by {answered:.3f} "
                    f"before the outcome of {', '.join(late[:5])}"
                )
    return problems


def skip_on_tansu(kafka: KafkaTestBed) -> None:
    if kafka.is_tansu:
        pytest.skip(
            "Tansu 0.6 answers DescribeGroups without the members' assignments (nor client "
            "ids), so partition ownership cannot be watched; CI runs this on Apache Kafka"
        )


async def create_topics_for_the_run(kafka: KafkaTestBed) -> None:
    """Every service topic with 6 partitions; outcome topics timestamped by the broker."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    kafka.topic(name),
                    PARTITIONS,
                    1,
                    topic_configs={"message.timestamp.type": "LogAppendTime"},
                )
                for name in OUTCOMES
            ]
        )
    finally:
        await admin.close()
    await ensure_service_topics(kafka.bootstrap_servers, kafka.prefix, PARTITIONS)


async def begin_on_the_group(
    scenario: Scenario,
    kafka: KafkaTestBed,
    fake: FakeReplicate,
    tracks: list[Track],
    *,
    concurrency: int,
    **env: str,
) -> tuple[Roles, str, list[TopicPartition], AIOKafkaAdminClient]:
    """:meth:`Scenario.begin` on ``PARTITIONS`` partitions a topic, and what watching the
    classifier's group takes: its name, its input partitions and a started admin client
    (the caller closes it)."""
    roles = await scenario.begin(
        kafka.bootstrap_servers,
        kafka.prefix,
        fake,
        tracks,
        concurrency=concurrency,
        partitions=PARTITIONS,
        KAFKA_TOPIC_PARTITIONS=str(PARTITIONS),
        **env,
    )
    inputs = [TopicPartition(kafka.topic(t), p) for t in INPUTS for p in range(PARTITIONS)]
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    return roles, kafka.group(GROUP), inputs, admin


async def test_the_classifier_group_rebalancing_under_load_loses_nothing_and_commits_safely(
    kafka: KafkaTestBed,
    fake_replicate: FakeReplicate,
    scenario: Scenario,
) -> None:
    skip_on_tansu(kafka)
    fake_replicate.configure(latency_ms=LATENCY_MS)
    tracks = make_tracks(UPLOADS)
    await create_topics_for_the_run(kafka)
    roles, group, inputs, admin = await begin_on_the_group(
        scenario,
        kafka,
        fake_replicate,
        tracks,
        concurrency=CONCURRENCY,
        KAFKA_SESSION_TIMEOUT_MS=str(SESSION_TIMEOUT_MS),
        KAFKA_HEARTBEAT_INTERVAL_MS=str(HEARTBEAT_INTERVAL_MS),
    )
    uploaded = [TopicPartition(kafka.topic(topics.TRACK_UPLOADED), p) for p in range(PARTITIONS)]
    samples = CommitSamples(admin, group, uploaded)
    sampling = asyncio.create_task(samples.run())
    seen: list[GroupView] = []

    async def look() -> GroupView:
        try:
            view = await describe_group(admin, group)
        except KafkaError as exc:  # no coordinator yet (a fresh broker), or it is moving
            return GroupView(type(exc).__name__, {})
        if not seen or seen[-1] != view:
            seen.append(view)
        return view

    async def owned_by(*clients: str, timeout: float = 60.0) -> float:
        """Seconds until the group is stable with ``clients``, owning every partition."""

        async def stable() -> bool:
            return (await look()).owns_all(inputs, set(clients))

        return await eventually(
            stable,
            within=timeout,
            what=f"{sorted(clients)} to own every partition",
            interval=0.05,
            diagnose=lambda: f"{seen[-3:]}\n{roles.tail('classifier-1', 1500)}",
        )

    def classifier(number: int) -> tuple[str, dict[str, str]]:
        name = f"classifier-{number}"
        return name, {"KAFKA_CLIENT_ID": name}

    figures: dict[str, Any] = {}
    codes: dict[str, int | None] = {}
    events = 0
    try:
        await roles.start("projector")
        name, env = classifier(1)
        await roles.start("classifier", env, name=name)
        await owned_by("classifier-1")
        events += await scenario.upload(tracks)
        uploads = await read_topic(kafka.bootstrap_servers, kafka.topic(topics.TRACK_UPLOADED))
        assert len(uploads) == UPLOADS
        ends: dict[int, int] = {}
        for record in uploads:
            ends[record.partition] = max(ends.get(record.partition, 0), record.offset + 1)

        # 1 -> 3 as soon as the first process is busy (all its predictions running): the new
        # processes take seconds to start (more on a loaded machine) while it works alone.
        async def busy() -> bool:
            return fake_replicate.stats.creations >= CONCURRENCY

        assert await holds_within(busy, within=90, interval=0.02), roles.tail("classifier-1")
        for number in (2, 3):
            name, env = classifier(number)
            await roles.start("classifier", env, name=name)
        # Kill the first process while the group rebalances: it is revoking (draining its
        # window) or about to, with records in flight that nobody else owns yet.
        joined = time.monotonic()

        async def rebalancing() -> bool:
            return (await look()).state in REBALANCING

        assert await holds_within(rebalancing, within=60, interval=0.02), seen[-3:]
        state_at_kill = seen[-1].state
        await roles.kill("classifier-1")
        killed = time.monotonic()
        # Only the killed process had partitions: its claims left pending are what it had
        # in flight; the fake's running predictions are the ones it was paying for.
        figures |= {
            "state_at_kill": state_at_kill,
            "kill_after_join_s": round(killed - joined, 2),
            "claims_in_flight_at_kill": await pending_claims(scenario.engine),
            "predictions_running_at_kill": fake_replicate.stats.running,
            "created_at_kill": fake_replicate.stats.creations,
        }
        figures["regroup_after_kill_s"] = round(await owned_by("classifier-2", "classifier-3"), 2)

        # 3 -> 1 (one killed, one stopped) once the two share the load.
        created = fake_replicate.stats.creations

        async def shared() -> bool:
            return fake_replicate.stats.creations >= created + UPLOADS // 10

        assert await holds_within(shared, within=60, interval=0.02)
        figures["settled_at_stop"] = len(await current_projected(scenario.engine))
        codes["classifier-3"] = await roles.stop("classifier-3")
        figures["regroup_after_stop_s"] = round(await owned_by("classifier-2"), 2)
        down_to_one = time.monotonic()

        # Drained: every track projected, and every offset committed by the last process.
        committed: dict[int, int] = {}

        async def drained() -> bool:
            if len(await current_projected(scenario.engine)) < UPLOADS:
                return False
            try:
                offsets = await admin.list_consumer_group_offsets(group, partitions=uploaded)
            except KafkaError:
                return False
            committed.clear()
            committed.update({tp.partition: meta.offset for tp, meta in offsets.items()})
            return committed == ends

        drained_ok = await holds_within(drained, within=120, interval=0.1)
        figures["drain_s"] = round(time.monotonic() - down_to_one, 2)
        final_view = await look()
    finally:
        sampling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampling
        codes |= await roles.stop_all()
        await admin.close()

    assert drained_ok, (committed, ends, roles.tail("classifier-2"), roles.tail("projector"))
    verdict = await scenario.check(tracks, crashes=roles.kills, concurrency=CONCURRENCY)
    outcomes: list[ConsumerRecord[bytes, bytes]] = []
    for name in OUTCOMES:
        outcomes += await read_topic(kafka.bootstrap_servers, kafka.topic(name))
    ahead = commits_ahead_of_outcomes(samples.taken, uploads, outcomes)
    unowned = sorted(f"{tp.topic}:{tp.partition}" for tp in set(inputs) - final_view.owned())
    scenario.report(
        verdict.figures(
            events=events,
            faults_injected=roles.kills + 1,  # the SIGKILL mid-rebalance and the SIGTERM
            started=scenario.started,
            **figures,
            commit_samples=len(samples.taken),
            commits_ahead_of_outcomes=len(ahead),
            commits_backwards=samples.backwards(),
            unowned_partitions=len(unowned),
            outcome_timestamps=sorted({r.timestamp_type for r in outcomes}),
            group_states_seen=list(dict.fromkeys(view.state for view in seen)),
            broker=kafka.kind,
        )
    )
    verdict.assert_clean()
    assert verdict.failed == 0
    assert not ahead, "\n".join(ahead[:20])
    assert not unowned, (unowned, final_view)
    assert final_view.owns_all(inputs, {"classifier-2"}), final_view
    # The faults landed under load: records were in flight at the kill, and work was left
    # when the second process was stopped.
    assert figures["claims_in_flight_at_kill"] > 0, (
        f"nothing in flight at the kill: the new processes took {figures['kill_after_join_s']}s "
        f"to join, the first one had done the load alone ({figures})"
    )
    # Sharper than the checker's bound: only predictions of the killed process whose id was
    # not on record yet can be paid twice, and each of them is a pending claim at the kill.
    assert verdict.duplicate_paid <= figures["claims_in_flight_at_kill"], figures
    assert figures["settled_at_stop"] < UPLOADS, figures
    assert len(samples.taken) > 50, samples.errors
    if kafka.kind in ("kafka", "docker"):
        # Apache Kafka honours LogAppendTime: the sharp form of the commit check ran.
        assert {r.timestamp_type for r in outcomes} == {1}
    assert codes["classifier-1"] == -9
    assert codes["classifier-2"] == 0, codes
    assert codes["classifier-3"] == 0, codes
    assert codes["projector"] == 0, codes
    assert fake_replicate.stats.running == 0


async def test_a_member_draining_longer_than_its_session_keeps_its_records_and_pays_none_twice(
    kafka: KafkaTestBed,
    fake_replicate: FakeReplicate,
    scenario: Scenario,
) -> None:
    """A revoked member drains its window (4 s predictions) far past its 1.5 s session: the
    group waits for it (the rebalance timeout covers the drain) instead of handing its
    records to the new member while it still runs them, which paid for them twice."""
    skip_on_tansu(kafka)
    session_ms, latency_ms, concurrency = 1500, 4000, 4
    fake_replicate.configure(latency_ms=latency_ms)
    tracks = make_tracks(24)
    roles, group, inputs, admin = await begin_on_the_group(
        scenario,
        kafka,
        fake_replicate,
        tracks,
        concurrency=concurrency,
        KAFKA_SESSION_TIMEOUT_MS=str(session_ms),
    )

    async def owned_by(*clients: str) -> bool:
        try:
            view = await describe_group(admin, group)
        except KafkaError:
            return False
        return view.owns_all(inputs, set(clients))

    async def rebalancing() -> bool:
        try:
            return (await describe_group(admin, group)).state in REBALANCING
        except KafkaError:
            return False

    try:
        await roles.start("projector")
        await roles.start("classifier", {"KAFKA_CLIENT_ID": "classifier-1"}, name="classifier-1")
        assert await holds_within(lambda: owned_by("classifier-1"), within=60)
        events = await scenario.upload(tracks)

        async def busy() -> bool:
            return fake_replicate.stats.creations >= concurrency

        assert await holds_within(busy, within=60, interval=0.02)
        await roles.start("classifier", {"KAFKA_CLIENT_ID": "classifier-2"}, name="classifier-2")
        assert await holds_within(rebalancing, within=60, interval=0.02)
        rebalance_started = time.monotonic()
        assert await holds_within(
            lambda: owned_by("classifier-1", "classifier-2"), within=60, interval=0.05
        ), roles.tail("classifier-1")
        rebalance_s = time.monotonic() - rebalance_started
        settled = await all_projected(scenario.engine, len(tracks), timeout=90)
    finally:
        codes = await roles.stop_all()
        await admin.close()

    commit_failures = roles.tail("classifier-1", 10**6).count("commit failed")
    verdict = await scenario.conclude(
        tracks,
        events=events,
        faults_injected=0,
        rebalance_s=round(rebalance_s, 2),
        commit_failures=commit_failures,
    )
    # No crash: nothing may be paid twice (the checker's bound is 0 here).
    verdict.assert_clean()
    assert settled
    # The drain really outlasted the session, and its commits were accepted.
    assert rebalance_s > session_ms / 1000, rebalance_s
    assert commit_failures == 0, roles.tail("classifier-1")
    assert codes == {"projector": 0, "classifier-1": 0, "classifier-2": 0}, codes


def _record(
    partition: int, offset: int, timestamp_ms: int, track_id: int
) -> ConsumerRecord[bytes, bytes]:
    value = json.dumps({"track_id": track_id}).encode()
    return ConsumerRecord(
        "topic", partition, offset, timestamp_ms, 1, None, value, None, 0, len(value), ()
    )


def test_the_commit_check_reports_an_offset_committed_before_its_outcome() -> None:
    """The check above can fail: a commit seen before an outcome's append is reported, one
    seen after it is not, and a record with no outcome at all is never covered."""
    uploads = [_record(0, 0, 0, 1), _record(0, 1, 0, 2), _record(1, 0, 0, 3)]
    # Track 2's outcome was appended at 5.000 s, again (republished) at 9.000 s; track 3 none.
    outcomes = [_record(0, 0, 1_000, 1), _record(0, 1, 5_000, 2), _record(1, 0, 9_000, 2)]
    assert commits_ahead_of_outcomes([(5.0, {0: 2}), (6.0, {0: 2, 1: 0})], uploads, outcomes) == []
    early = commits_ahead_of_outcomes([(4.9, {0: 2})], uploads, outcomes)
    assert len(early) == 1, early
    assert "offset 1 (track 2)" in early[0], early
    never = commits_ahead_of_outcomes([(60.0, {0: 1, 1: 1})], uploads, outcomes)
    assert len(never) == 1, never
    assert "partition 1 committed at 1" in never[0], never
    assert "track 3" in never[0], never
