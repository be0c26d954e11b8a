"""The micro-batcher: concurrent calls run together, each caller gets its own result."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from genres.database.batching import Batcher


class Recorder:
    """A ``run`` that records its batches; items named "bad" make a batch fail."""

    def __init__(self, delay: float = 0.01) -> None:
        self.batches: list[list[tuple[str, int]]] = []
        self.delay = delay

    async def __call__(self, items: Sequence[tuple[str, int]]) -> list[str]:
        self.batches.append(list(items))
        await asyncio.sleep(self.delay)
        if any(key == "bad" for key, _ in items):
            raise ValueError("bad item")
        return [f"{key}:{value}" for key, value in items]


def by_key(item: tuple[str, int]) -> str:
    return item[0]


async def test_concurrent_calls_share_batches_and_each_gets_its_own_result() -> None:
    run = Recorder()
    batcher = Batcher(run, key=by_key)

    results = await asyncio.gather(*(batcher.submit((f"k{i}", i)) for i in range(50)))

    assert results == [f"k{i}:{i}" for i in range(50)]
    assert len(run.batches) < 50
    assert sorted(item for batch in run.batches for item in batch) == sorted(
        (f"k{i}", i) for i in range(50)
    )


async def test_a_lone_call_runs_at_once_in_a_batch_of_its_own() -> None:
    run = Recorder(delay=0)
    batcher = Batcher(run, key=by_key)

    assert await asyncio.wait_for(batcher.submit(("a", 1)), timeout=1) == "a:1"
    assert run.batches == [[("a", 1)]]


async def test_two_items_with_the_same_key_never_share_a_batch() -> None:
    run = Recorder()
    batcher = Batcher(run, key=by_key)

    results = await asyncio.gather(
        batcher.submit(("same", 1)), batcher.submit(("same", 2)), batcher.submit(("other", 3))
    )

    assert results == ["same:1", "same:2", "other:3"]
    for batch in run.batches:
        keys = [key for key, _ in batch]
        assert len(keys) == len(set(keys))


async def test_a_failing_item_fails_alone_and_the_rest_of_its_batch_succeeds() -> None:
    run = Recorder()
    batcher = Batcher(run, key=by_key)

    results = await asyncio.gather(
        *(batcher.submit((key, 0)) for key in ("a", "bad", "c")), return_exceptions=True
    )

    assert results[0] == "a:0"
    assert isinstance(results[1], ValueError)
    assert results[2] == "c:0"


async def test_batches_are_capped_at_max_size() -> None:
    run = Recorder()
    batcher = Batcher(run, key=by_key, max_size=4)

    await asyncio.gather(*(batcher.submit((f"k{i}", i)) for i in range(10)))

    assert max(len(batch) for batch in run.batches) == 4


async def test_closing_fails_the_callers_still_waiting() -> None:
    run = Recorder(delay=10)
    batcher = Batcher(run, key=by_key)
    first = asyncio.ensure_future(batcher.submit(("a", 1)))
    await asyncio.sleep(0.01)
    waiting = asyncio.ensure_future(batcher.submit(("b", 2)))
    await asyncio.sleep(0)

    await batcher.close()

    for call in (first, waiting):
        with pytest.raises(RuntimeError):
            await call
