"""Replies to requesters' topics: a missing topic is said, never created; idle ones untracked
(a fake producer and cluster, a fake clock)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError

from genres.config import load_settings
from genres.kafka.broker import leaders
from genres.kafka.producer import REPLY_TOPIC_IDLE_SECONDS, Publisher, ReplyTopicMissing
from tests.unit.test_stalls import Clock


@dataclass
class FakeCluster:
    """The topics the producer's metadata has cached, and the cluster's real ones."""

    cached: dict[str, set[int]] = field(default_factory=dict)

    def brokers(self) -> list[Any]:
        return [SimpleNamespace(nodeId=1), SimpleNamespace(nodeId=2)]

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.cached.get(topic)


@dataclass
class FakeClient:
    existing: dict[str, dict[int, int]]
    cluster: FakeCluster = field(default_factory=FakeCluster)
    _topics: set[str] = field(default_factory=set)
    requests: dict[int, list[list[str]]] = field(default_factory=dict)
    """The topics asked of each broker (every one is asked each time)."""
    down: set[int] = field(default_factory=set)
    frozen: set[int] = field(default_factory=set)

    async def send(self, node: int, request: Any, *, group: Any = None) -> Any:
        if node in self.down:
            raise KafkaConnectionError(f"node {node} down")
        if node in self.frozen:
            await asyncio.Event().wait()
        names = list(request._topics)
        self.requests.setdefault(node, []).append(names)
        topics = [
            (0, name, False, [(0, p, leader, [], []) for p, leader in self.existing[name].items()])
            if name in self.existing
            else (3, name, False, [])
            for name in names
        ]
        return SimpleNamespace(topics=topics)

    async def add_topic(self, topic: str) -> None:
        self._topics.add(topic)
        if topic in self.existing:
            self.cluster.cached[topic] = set(self.existing[topic])

    def set_topics(self, topics: set[str]) -> None:
        self._topics = set(topics)


@dataclass
class FakeProducer:
    client: FakeClient
    sent: list[str] = field(default_factory=list)

    async def send_and_wait(self, topic: str, **options: Any) -> None:
        self.sent.append(topic)


def publisher_on(client: FakeClient, clock: Clock) -> Publisher:
    settings = load_settings(kafka_bootstrap_servers="127.0.0.1:9")
    return Publisher(FakeProducer(client), settings, clock=clock)  # type: ignore[arg-type]


async def test_leaders_names_each_known_partition_leader_and_leaves_out_unknown_topics() -> None:
    client = FakeClient({"a": {0: 1, 1: -1}}, down={1})
    assert await leaders(client, ["a", "b"]) == {"a": {0: 1, 1: -1}}
    assert client.requests == {2: [["a", "b"]]}  # node 1 was down: node 2 answered
    client.down, client.frozen = set(), {1}
    assert await leaders(client, ["a"], attempt_timeout=0.05) == {"a": {0: 1, 1: -1}}
    client.down = {2}
    with pytest.raises(Exception, match="no broker answered a metadata request"):
        await leaders(client, ["a"], attempt_timeout=0.05)


async def test_leaders_asks_every_broker_at_once_so_a_hung_one_costs_no_time() -> None:
    """The stall watchdog's sample may be shorter than one attempt (0.6 s under a 3 s bound):
    asked one after the other, a frozen broker asked first used it all, and the cluster was
    said not to answer while another broker would have (half the time here)."""
    client = FakeClient({"a": {0: 1}}, frozen={1})
    for _ in range(4):
        found = await asyncio.wait_for(leaders(client, ["a"], attempt_timeout=30), 1.0)
        assert found == {"a": {0: 1}}


async def test_a_reply_to_a_missing_topic_raises_and_tracks_nothing() -> None:
    client = FakeClient({"track.uploaded": {0: 1}}, _topics={"track.uploaded"})
    publisher = publisher_on(client, Clock())
    with pytest.raises(ReplyTopicMissing, match=r"genres\.replies\.x does not exist"):
        await publisher.publish_json("genres.replies.x", {}, key=None, headers=[])
    assert client._topics == {"track.uploaded"}
    assert publisher.producer.sent == []  # type: ignore[attr-defined]


async def test_reply_topics_are_tracked_while_used_and_forgotten_when_idle() -> None:
    clock = Clock()
    client = FakeClient(
        {"track.uploaded": {0: 1}, "genres.replies.a": {0: 1}, "genres.replies.b": {0: 1}},
        _topics={"track.uploaded"},
    )
    publisher = publisher_on(client, clock)
    await publisher.publish_json("genres.replies.a", {}, key=None, headers=[])
    await publisher.publish_json("genres.replies.a", {}, key=None, headers=[])
    # Asked once whether it exists: the second reply finds it in the client's metadata.
    assert client.requests == {1: [["genres.replies.a"]], 2: [["genres.replies.a"]]}
    assert client._topics == {"track.uploaded", "genres.replies.a"}
    clock.now += REPLY_TOPIC_IDLE_SECONDS / 2
    await publisher.publish_json("genres.replies.b", {}, key=None, headers=[])
    clock.now += REPLY_TOPIC_IDLE_SECONDS / 2 + 1
    await publisher.publish_json("genres.replies.b", {}, key=None, headers=[])
    assert client._topics == {"track.uploaded", "genres.replies.b"}
    # The requester of ``a`` deleted its topic meanwhile: the next reply says so.
    del client.existing["genres.replies.a"]
    client.cluster.cached.pop("genres.replies.a")
    with pytest.raises(ReplyTopicMissing):
        await publisher.publish_json("genres.replies.a", {}, key=None, headers=[])
    assert not await publisher.reply_topic_exists("genres.replies.a")
    assert await publisher.reply_topic_exists("genres.replies.b")
