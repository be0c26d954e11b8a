"""The commit window's fetch loop outlives any failed fetch (through the one retry policy):
a fetch loop that died would leave its partitions unread forever, with nothing said."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaConnectionError

from genres.classifier.consumer import ConcurrentConsumer
from tests.support.waiting import eventually

PARTITION = TopicPartition("track.uploaded", 0)


def record(offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=PARTITION.topic,
        partition=PARTITION.partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=str(offset).encode(),
        value=b"{}",
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=2,
        headers=(),
    )


class ScriptedKafkaConsumer:
    """An aiokafka consumer whose fetches follow a script: a failure is raised, a list of
    records is returned; past the script, fetches return nothing."""

    def __init__(self, *script: BaseException | list[ConsumerRecord[bytes, bytes]]) -> None:
        self.script = list(script)
        self.fetches = 0
        self.committed: dict[TopicPartition, int] = {}

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def subscribe(self, topics: list[str], listener: Any) -> None: ...

    def assignment(self) -> set[TopicPartition]:
        return {PARTITION}

    def pause(self, *partitions: TopicPartition) -> None: ...

    def resume(self, *partitions: TopicPartition) -> None: ...

    async def getmany(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        self.fetches += 1
        if not self.script:
            await asyncio.sleep(timeout_ms / 1000)
            return {}
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return {PARTITION: step}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed.update(offsets)


async def test_failed_fetches_are_retried_and_reported_and_reading_goes_on() -> None:
    kafka = ScriptedKafkaConsumer(
        KafkaConnectionError("broker gone"),
        RuntimeError("a bug in a fetch"),
        [record(0), record(1)],
    )
    handled: list[int] = []
    errors: list[BaseException] = []

    async def handler(message: ConsumerRecord[bytes, bytes]) -> None:
        handled.append(message.offset)

    consumer = ConcurrentConsumer(kafka, [PARTITION.topic], handler, records_in_flight=4)  # type: ignore[arg-type]
    consumer.on_error = lambda error, _partition: errors.append(error)
    await consumer.start()
    try:
        await eventually(lambda: kafka.committed.get(PARTITION) == 2, what="both committed")
    finally:
        await consumer.stop()

    assert sorted(handled) == [0, 1]
    assert [type(error) for error in errors] == [KafkaConnectionError, RuntimeError]
    assert kafka.fetches > 3  # and it went on fetching afterwards
