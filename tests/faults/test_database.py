"""Scenario 3: PostgreSQL unavailable for 10 s during projection.

The shared PostgreSQL keeps running (other tests use it): the projector process reaches it
through a :class:`~tests.faults.tcp_proxy.TcpProxy` that refuses connections (a server that
went down) or swallows every byte (a partition) for 10 s. The classifier keeps its direct
connection, so classified events keep arriving while the projector cannot write.

What must hold: the projector waits the outage out in place (same process, no crash loop),
with retries spaced by a backoff (a bounded number of them), it commits no offset of a
record before that record's write (checked on the broker at the end of the outage: every
record below the committed offsets is in the database), and nothing is lost afterwards.
"""

from __future__ import annotations

import asyncio
import json
import random

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from tests.faults.harness import (
    Scenario,
    all_projected,
    current_projected,
    make_tracks,
    projected_count,
    projected_reaches,
)
from tests.faults.tcp_proxy import TcpProxy
from tests.support.broker import KafkaTestBed
from tests.support.bus import fast_consumer_options, read_topic
from tests.support.fake_replicate import FakeReplicate

from genres_contracts import topics

pytestmark = [pytest.mark.timeout(240)]

OUTAGE_S = 10.0
RETRY_LINE = "retrying after a transient failure"


async def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition (-1 when none)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        **fast_consumer_options(),
    )
    await consumer.start()
    try:
        ids = consumer.partitions_for_topic(topic)
        if ids is None:
            await consumer._client.force_metadata_update()
            ids = consumer.partitions_for_topic(topic) or set()
        found: dict[int, int] = {}
        for partition in sorted(ids):
            offset = await consumer.committed(TopicPartition(topic, partition))
            found[partition] = -1 if offset is None else offset
        return found
    finally:
        await consumer.stop()


@pytest.mark.parametrize("mode", ["refuse", "hang"])
async def test_the_projector_waits_out_a_10_s_database_outage_and_commits_nothing_unwritten(
    mode: str,
    kafka: KafkaTestBed,
    fake_replicate: FakeReplicate,
    scenario: Scenario,
) -> None:
    rng = random.Random(2026112503)
    count = 300 if mode == "refuse" else 200
    fake_replicate.configure(latency_ms=150)
    tracks = make_tracks(count)
    classified_topic = kafka.topic(topics.GENRES_CLASSIFIED)
    roles = await scenario.begin(
        kafka.bootstrap_servers, kafka.prefix, fake_replicate, tracks, concurrency=16
    )
    unwritten_below_commit: list[int] = []
    async with TcpProxy.for_database(scenario.database_url) as proxy:
        try:
            await roles.start(
                "projector", {"DATABASE_URL": proxy.url_through(scenario.database_url)}
            )
            await roles.start("classifier")
            events = await scenario.upload(tracks)
            target = rng.randint(count // 5, count * 2 // 5)
            assert await projected_reaches(scenario.engine, target, timeout=90), roles.tail(
                "projector"
            )
            log_before = roles.tail("projector", 10**7)
            if mode == "refuse":
                await proxy.refuse()
            else:
                proxy.hang()
            # Counted once the cut is in place: a batch committing while the proxy was being
            # cut was written before the outage, not during it.
            projected_at_cut = await projected_count(scenario.engine)
            try:
                await asyncio.sleep(OUTAGE_S)
                # Still the first projector process, and it wrote nothing meanwhile.
                projector_alive = roles.running["projector"].alive
                projected_in_outage = await projected_count(scenario.engine) - projected_at_cut
                # Nothing committed that is not written: read the group's offsets now.
                offsets = await committed_offsets(
                    kafka.bootstrap_servers, kafka.group("genres-projector"), classified_topic
                )
                written = await current_projected(scenario.engine)
                for record in await read_topic(kafka.bootstrap_servers, classified_topic):
                    if record.offset < offsets.get(record.partition, -1):
                        track_id = int(json.loads(record.value)["track_id"])
                        if track_id not in written:
                            unwritten_below_commit.append(track_id)
            finally:
                await proxy.restore()
            retries = roles.tail("projector", 10**7)[len(log_before) :].count(RETRY_LINE)
            settled = await all_projected(scenario.engine, count, timeout=90, interval=0.25)
            starts = roles.running["projector"].starts
        finally:
            codes = await roles.stop_all()

    verdict = await scenario.conclude(
        tracks,
        events=events,
        faults_injected=1,
        lost=len(unwritten_below_commit),
        mode=mode,
        outage_s=OUTAGE_S,
        projected_at_cut=projected_at_cut,
        projected_in_outage=projected_in_outage,
        retries_logged=retries,
        proxy_connections=proxy.connections,
    )
    verdict.assert_clean()
    assert not unwritten_below_commit, "offsets committed before the write"
    assert settled, roles.tail("projector")
    assert projector_alive, "the projector must wait the outage out in place"
    assert starts == 1
    assert projected_in_outage == 0
    assert 0 < projected_at_cut < count, "the outage should land mid-run"
    # A backoff, not a hot loop: stamina waits up to 5 s between attempts.
    assert retries <= 30, roles.tail("projector")
    if mode == "refuse":
        assert retries >= 1, roles.tail("projector")
    assert codes == {"projector": 0, "classifier": 0}, roles.tail("projector")
