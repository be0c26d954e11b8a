"""A consumer that runs many records at once, beyond the partition count, and commits safely.

FastStream's ``max_workers`` either commits before handlers finish or runs at most one
consumer per partition (FACTS.md), so the classifier consumes with aiokafka directly:

- up to ``records_in_flight`` records in flight per process, whatever the partition count;
- records with the same key (a track) run one after another, in offset order;
- per partition only the contiguous prefix of finished records is committed
  (``OffsetWindow``), so a crash re-delivers unfinished records and never skips one;
- back-pressure: assigned partitions are paused while the window is full;
- a handler that raises is retried in place with backoff: its record is never committed
  before its outcome is durable;
- on revocation and on stop, in-flight records get a grace period to finish, then the
  committable prefix is committed and the rest is abandoned for re-delivery;
- a refusal from the cluster (``ClusterRefused``: an ACL, the login) is never retried: it is
  told to ``on_error`` (the process stops on it), fetching ends and its record stays
  uncommitted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from functools import partial
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from genres.classifier.window import OffsetWindow
from genres.errors import ClusterRefused
from genres.kafka.refusals import is_refusal
from genres.retry import is_transient, retrying
from genres.tasks import cancel_and_wait

log = logging.getLogger(__name__)

Handler = Callable[[ConsumerRecord[bytes, bytes]], Awaitable[None]]
ErrorHook = Callable[[BaseException, TopicPartition | None], None]
"""Told each error met (fetch, handler, commit) and its partition when known."""
WindowKey = tuple[TopicPartition, int]
"""A partition and its epoch (a new one each time the partition's offsets went backwards)."""


class ConcurrentConsumer:
    """Consumes ``topics`` with ``consumer`` (in its group, committing by hand) and runs
    ``handler`` on each record, at most ``records_in_flight`` at once."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        topics: list[str],
        handler: Handler,
        *,
        records_in_flight: int,
        grace_seconds: float = 30.0,
        commit_interval: float = 0.05,
        retry_initial: float = 0.5,
        retry_max: float = 15.0,
    ) -> None:
        self._consumer = consumer
        self._topics = topics
        self._handler = handler
        self._records_in_flight = records_in_flight
        self._grace = grace_seconds
        self._commit_interval = commit_interval
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._window: OffsetWindow[WindowKey] = OffsetWindow()
        self._chains: dict[Hashable, deque[tuple[ConsumerRecord[bytes, bytes], WindowKey]]] = {}
        # A partition's offsets only go backwards when its topic was re-created (or an empty
        # broker replaced the old one); records from before get a window of their own.
        self._epochs: dict[TopicPartition, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()
        self._commit_wanted = asyncio.Event()
        self._stopping = asyncio.Event()
        self._paused = False
        self._loop_task: asyncio.Task[None] | None = None
        self._commit_task: asyncio.Task[None] | None = None
        self.handled = 0
        self.retried = 0
        #: set by the composition root: the stall watchdog's reporter (the reason it gives)
        self.on_error: ErrorHook | None = None

    @property
    def in_flight(self) -> int:
        return self._window.in_flight

    @property
    def kafka_consumer(self) -> AIOKafkaConsumer:
        """The aiokafka consumer (for lag: positions and high watermarks)."""
        return self._consumer

    def progress(self, partition: TopicPartition) -> int | None:
        """The committed prefix of ``partition`` (below it every record is finished and
        committed); None when no record of it was fetched since it was assigned."""
        return self._window.progress((partition, self._epochs.get(partition, 0)))

    def _note(self, error: BaseException, partition: TopicPartition | None = None) -> None:
        if self.on_error is not None:
            self.on_error(error, partition)

    async def start(self) -> None:
        await self._consumer.start()
        self._consumer.subscribe(self._topics, listener=_Listener(self))
        self._loop_task = asyncio.create_task(self._fetch_loop(), name="consumer-fetch")
        self._commit_task = asyncio.create_task(self._commit_loop(), name="consumer-commit")

    async def stop(self, *, grace: float | None = None, timeout: float = 2.0) -> None:
        """Stop fetching, let in-flight records finish within ``grace`` (by default the grace
        period), commit, leave. Each broker round trip waits at most ``timeout``: a broker
        that does not answer must not hold the exit (what is not committed is redelivered)."""
        self._stopping.set()
        await cancel_and_wait(self._loop_task)
        await self._drain(self._grace if grace is None else grace, timeout)
        await cancel_and_wait(self._commit_task)
        await self._commit(timeout)
        try:
            await asyncio.wait_for(self._consumer.stop(), timeout)
        except TimeoutError:
            log.warning("the broker did not answer within %gs: left the group unannounced", timeout)

    # -- fetching ------------------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        while not self._stopping.is_set():
            # Any failure but a refusal is retried: a dead fetch loop would leave partitions
            # unread forever.
            try:
                await retrying(
                    self._fetch_once,
                    what="fetching records",
                    on=Exception,
                    wait_initial=0.5,
                    wait_max=2.0,
                    on_error=self._fetch_failed,
                    operation="READ",
                    topics=self._topics,
                )
            except ClusterRefused:
                return  # told to on_error; fetching again would meet it again

    def _fetch_failed(self, error: BaseException) -> None:
        if not is_transient(error) and not is_refusal(error):
            log.error("fetching failed, not on a broker error; retrying", exc_info=error)
        self._note(error)

    async def _fetch_once(self) -> None:
        free = self._records_in_flight - self._window.in_flight
        if free <= 0:
            self._pause()
            self._slot_freed.clear()
            with contextlib.suppress(TimeoutError):
                # getmany keeps the group membership alive while paused.
                await asyncio.wait_for(self._slot_freed.wait(), timeout=0.5)
            await self._consumer.getmany(timeout_ms=0)
            return
        self._resume()
        batches = await self._consumer.getmany(timeout_ms=200, max_records=free)
        for partition, records in batches.items():
            for record in records:
                self._admit(partition, record)

    def _admit(self, partition: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> None:
        window_key: WindowKey = (partition, self._epochs.get(partition, 0))
        try:
            self._window.add(window_key, record.offset)
        except ValueError:
            log.error(
                "offsets of %s went backwards to %d (topic re-created?): starting it over",
                partition,
                record.offset,
            )
            self._window.forget([window_key])
            window_key = (partition, self._epochs.get(partition, 0) + 1)
            self._epochs[partition] = window_key[1]
            self._window.add(window_key, record.offset)
        # Unkeyed records have no order to keep.
        key: Hashable = record.key if record.key is not None else (partition, record.offset)
        chain = self._chains.get(key)
        if chain is not None:
            chain.append((record, window_key))
            return
        self._chains[key] = deque([(record, window_key)])
        task = asyncio.create_task(self._run_chain(key), name=f"record-{key!r}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _pause(self) -> None:
        if not self._paused:
            self._consumer.pause(*self._consumer.assignment())
            self._paused = True

    def _resume(self) -> None:
        if self._paused:
            self._consumer.resume(*self._consumer.assignment())
            self._paused = False

    # -- handling ------------------------------------------------------------------------

    async def _run_chain(self, key: Hashable) -> None:
        chain = self._chains[key]
        try:
            while chain:
                record, window_key = chain[0]
                try:
                    await self._handle_until_done(record)
                except ClusterRefused:
                    return  # told to on_error; the record stays uncommitted
                self._window.finish(window_key, record.offset)
                chain.popleft()
                self.handled += 1
                self._slot_freed.set()
                self._commit_wanted.set()
        finally:
            self._chains.pop(key, None)

    async def _handle_until_done(self, record: ConsumerRecord[bytes, bytes]) -> None:
        partition = TopicPartition(record.topic, record.partition)

        def noted(exc: BaseException) -> None:
            # Infrastructure trouble (database, broker): the record stays uncommitted.
            self.retried += 1
            self._note(exc, partition)

        await retrying(
            partial(self._handler, record),
            what="classification",
            on=Exception,
            wait_initial=self._retry_initial,
            wait_max=self._retry_max,
            on_error=noted,
            context={"topic": record.topic, "offset": record.offset},
        )

    # -- committing ----------------------------------------------------------------------

    async def _commit_loop(self) -> None:
        while True:
            await self._commit_wanted.wait()
            self._commit_wanted.clear()
            await self._commit()
            await asyncio.sleep(self._commit_interval)

    async def _commit(self, timeout: float | None = None) -> None:
        # Only the current epoch of a partition is in the window (older ones are forgotten).
        offsets = self._window.to_commit()
        if not offsets:
            return
        try:
            await asyncio.wait_for(
                self._consumer.commit({key[0]: offset for key, offset in offsets.items()}),
                timeout,
            )
        except (CommitFailedError, KafkaError, TimeoutError) as exc:
            # A rebalance took the partitions: their records will be re-delivered. A refusal
            # (READ on the group) is named where on_error leads, once.
            if not is_refusal(exc):
                log.warning("commit failed: %s", exc)
            self._note(exc)
            return
        self._window.committed(offsets)

    async def _drain(self, grace: float, timeout: float | None = None) -> None:
        """Give in-flight records ``grace`` seconds, commit the finished prefix (waiting at most
        ``timeout`` for the broker), cancel the rest.

        aiokafka rebalances eagerly (every partition is revoked), so a drain covers them all.
        """
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in late:
                task.cancel()
            if late:
                log.warning("abandoned %d records still running after the grace period", len(late))
                await asyncio.wait(late, timeout=10.0 if timeout is None else timeout)
        await self._commit(timeout)

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._drain(self._grace)
        # Whatever did not finish is re-delivered from the committed offset.
        self._window.forget(list(self._window.partitions()))
        self._chains.clear()
        self._slot_freed.set()


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: ConcurrentConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._owner._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._owner._paused = False
