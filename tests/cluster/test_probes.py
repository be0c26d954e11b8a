"""The readiness and stall probes (``broker_check``, ``leaders``) answer while produces wait
for a replica that stopped: a broker answers one connection's requests in order, so a probe
sent behind an acks=all produce held until the stopped broker leaves the ISR (fenced after
``broker.session.timeout.ms``, 4.5 s here) would make a well cluster look silent, and
``/readyz`` turned 503 on every routine failover under load.

The replica is frozen (SIGSTOP), not killed: thawing it is instant, a restart costs ~10 s. A
probe may ask it first and wait its 1.5 s for it, hence the bound of 2 s per probe; probes
behind the held produces would need ~4.5 s."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaProducer
from aiokafka.client import ConnectionGroup
from aiokafka.helpers import create_ssl_context
from aiokafka.protocol.metadata import MetadataRequest

from genres.kafka.acls import Acl
from genres.kafka.broker import leaders
from genres.observability.health import broker_check
from tests.support.kafka_cluster import BROKERS, SecuredCluster

PROBE_SECONDS = 2.0


def _producer(cluster: SecuredCluster) -> AIOKafkaProducer:
    env = cluster.settings_env("genres")
    return AIOKafkaProducer(
        bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"].split(","),
        security_protocol="SASL_SSL",
        ssl_context=create_ssl_context(cafile=env["KAFKA_SSL_CAFILE"]),
        sasl_mechanism=env["KAFKA_SASL_MECHANISM"],
        sasl_plain_username=env["KAFKA_SASL_USERNAME"],
        sasl_plain_password=env["KAFKA_SASL_PASSWORD"],
        acks="all",
        enable_idempotence=True,
    )


async def test_probes_answer_while_produces_wait_for_a_stopped_replica(
    cluster: SecuredCluster, topic: str
) -> None:
    cluster.set_acls("User:genres", [Acl("topic", topic, "literal", "WRITE")])
    producer = _producer(cluster)
    await producer.start()
    try:
        for partition in range(3):  # a connection to every leader
            await producer.send_and_wait(topic, b"warm", partition=partition)
        # And a probe connection to every broker, as a running service has from its stall
        # samples: aiokafka opens connections one at a time (one lock per client), so a first
        # probe connection to the frozen broker would hold up those to the others.
        for node in (broker.nodeId for broker in producer.client.cluster.brokers()):
            await producer.client.send(
                node, MetadataRequest([topic]), group=ConnectionGroup.COORDINATION
            )
        state = await asyncio.to_thread(cluster.partitions, topic)
        # a broker leading no more than one partition: the others' produces wait for it
        victim = min(range(BROKERS), key=lambda b: sum(lead == b for lead, _ in state.values()))
        cluster.pause(victim)
        waiting = [
            await producer.send(topic, b"held", partition=p)
            for p, (lead, _) in state.items()
            if lead != victim
        ]
        await asyncio.sleep(0.3)  # the produces reach their leaders first
        started = time.monotonic()
        found = await asyncio.wait_for(leaders(producer.client, [topic]), PROBE_SECONDS)
        await asyncio.wait_for(broker_check(producer.client)(), PROBE_SECONDS)
        took = time.monotonic() - started
        held = sum(not future.done() for future in waiting)
        cluster.resume(victim)
        written = await asyncio.gather(*waiting)
    finally:
        await producer.stop()
    print(f"probes answered in {took:.2f} s with {held} of {len(waiting)} produces held")
    assert held > 0, "no produce was held: nothing was probed behind one"
    assert sorted(found[topic]) == [0, 1, 2]
    assert len(written) == len(waiting)
