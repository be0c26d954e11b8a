"""Pytest fixtures for the fake Replicate server (wire them in with ``pytest_plugins``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from tests.support.fake_replicate import FakeConfig, FakeReplicate, FakeReplicateThread

__all__ = ["fake_replicate", "fake_replicate_thread"]


@pytest_asyncio.fixture
async def fake_replicate() -> AsyncIterator[FakeReplicate]:
    """A fake Replicate on the test's event loop, on a free loopback port."""
    async with FakeReplicate(FakeConfig()) as fake:
        yield fake


@pytest.fixture
def fake_replicate_thread() -> Iterator[FakeReplicateThread]:
    """A fake Replicate on its own loop in a background thread (for sync code)."""
    with FakeReplicateThread(FakeConfig()) as fake:
        yield fake
