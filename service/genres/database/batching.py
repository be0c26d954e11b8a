"""Concurrent calls of one statement, run together: one round trip for many callers.

Sixty-four classifications in flight reach the same ledger step at nearly the same time. Run
one by one, they queue for pool connections and each costs a statement's CPU on both sides;
run as one statement over arrays, they cost about one. A batch starts at once while fewer than
``max_in_flight`` are running, so a lone caller waits for nothing; callers arriving while
they run form the next.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batcher(Generic[Item, Result]):
    """Submits items to ``run`` in batches; each caller gets its own item's result.

    ``run`` takes a batch and returns one result per item, in order. ``key`` names an item's
    row: two items with the same key never share a batch (one statement cannot change a row
    twice), the later one waits for the next. When a batch fails, its items are run one by
    one, so a single bad item fails alone and the others still succeed.
    """

    def __init__(
        self,
        run: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]],
        *,
        key: Callable[[Item], Hashable],
        max_size: int = 256,
        max_in_flight: int = 2,
    ) -> None:
        self._run = run
        self._key = key
        self._max_size = max_size
        self._max_in_flight = max_in_flight
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._workers: set[asyncio.Task[None]] = set()
        self.batches = 0
        """Batches run so far (statements saved = items - batches)."""

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if len(self._workers) < self._max_in_flight:
            worker = asyncio.create_task(self._drain(), name="batcher")
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
        return await future

    async def close(self) -> None:
        """Stop; callers still waiting get an error instead of waiting forever."""
        for worker in list(self._workers):
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        for _, future in self._waiting:
            _set_exception(future, RuntimeError("the batcher was closed"))
        self._waiting.clear()

    async def _drain(self) -> None:
        while self._waiting:
            batch = self._take()
            self.batches += 1
            try:
                await self._settle(batch)
            except BaseException:
                # Cancelled mid-batch: nobody may be left waiting for a result.
                for _, future in batch:
                    _set_exception(future, RuntimeError("the batch was interrupted"))
                raise

    def _take(self) -> list[tuple[Item, asyncio.Future[Result]]]:
        batch: list[tuple[Item, asyncio.Future[Result]]] = []
        later: list[tuple[Item, asyncio.Future[Result]]] = []
        keys: set[Hashable] = set()
        for entry in self._waiting:
            if entry[1].done():  # its caller was cancelled
                continue
            key = self._key(entry[0])
            if key in keys or len(batch) >= self._max_size:
                later.append(entry)
            else:
                keys.add(key)
                batch.append(entry)
        self._waiting = later
        return batch

    async def _settle(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._run([item for item, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                _set_exception(batch[0][1], exc)
                return
            log.warning("a batch of %d failed (%s); running its items one by one", len(batch), exc)
            for entry in batch:
                await self._settle([entry])
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)


def _set_exception(future: asyncio.Future[Result], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
