"""``leaders``: the metadata question the stall watchdog and the responder ask, on a real broker."""

from __future__ import annotations

from genres.kafka.broker import leaders
from tests.support.broker import KafkaTestBed
from tests.support.bus import producer


async def test_leaders_names_every_partition_leader_and_leaves_a_missing_topic_out(
    kafka: KafkaTestBed,
) -> None:
    [topic] = await kafka.create_topics("leaders.probe", partitions=3)
    missing = kafka.topic("leaders.missing")
    async with producer(kafka.bootstrap_servers) as client:
        found = await leaders(client.client, [topic, missing])
        assert set(found) == {topic}
        assert sorted(found[topic]) == [0, 1, 2]
        assert all(leader >= 0 for leader in found[topic].values()), found
        if not kafka.is_tansu:  # Tansu creates a topic a client asks about
            cluster = await client.client.fetch_all_metadata()
            assert missing not in cluster.topics()
