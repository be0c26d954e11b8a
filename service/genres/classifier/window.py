"""The commit window: which offset of a partition may be committed while records finish
out of order.

Records are added in offset order per partition and finish in any order. The committable
offset is one past the last record of the contiguous finished prefix, so a crash re-delivers
every unfinished record and never skips one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

P = TypeVar("P", bound=Hashable)


@dataclass
class _Partition:
    pending: deque[int] = field(default_factory=deque)
    finished: set[int] = field(default_factory=set)
    committable: int | None = None
    committed: int | None = None
    first: int | None = None


class OffsetWindow(Generic[P]):
    """Tracks records in flight per partition; a partition is any hashable key."""

    def __init__(self) -> None:
        self._partitions: dict[P, _Partition] = {}
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        """Records added and not finished yet, over all partitions."""
        return self._in_flight

    def add(self, partition: P, offset: int) -> None:
        """A record was fetched. Offsets of one partition must be added in increasing order."""
        state = self._partitions.setdefault(partition, _Partition())
        if state.pending and offset <= state.pending[-1]:
            raise ValueError(f"offset {offset} added after {state.pending[-1]} on {partition}")
        state.pending.append(offset)
        if state.first is None:
            state.first = offset
        self._in_flight += 1

    def finish(self, partition: P, offset: int) -> None:
        """A record's outcome is durable; the committable offset may move forward."""
        state = self._partitions.get(partition)
        if state is None or offset in state.finished or offset not in state.pending:
            return  # a partition revoked meanwhile, or finished twice
        state.finished.add(offset)
        self._in_flight -= 1
        while state.pending and state.pending[0] in state.finished:
            done = state.pending.popleft()
            state.finished.discard(done)
            state.committable = done + 1

    def to_commit(self) -> dict[P, int]:
        """Offsets that may be committed and were not yet: one past the finished prefix."""
        return {
            partition: state.committable
            for partition, state in self._partitions.items()
            if state.committable is not None and state.committable != state.committed
        }

    def committed(self, offsets: dict[P, int]) -> None:
        """The broker accepted these commits."""
        for partition, offset in offsets.items():
            state = self._partitions.get(partition)
            if state is not None:
                state.committed = offset

    def progress(self, partition: P) -> int | None:
        """The offset below which the partition's records are finished and committed: the
        last commit, else the first record added (what came before it was committed before
        it was fetched); None when none was added."""
        state = self._partitions.get(partition)
        if state is None:
            return None
        return state.committed if state.committed is not None else state.first

    def partitions(self) -> list[P]:
        return list(self._partitions)

    def forget(self, partitions: Iterable[P]) -> None:
        """Drop partitions that were revoked; their unfinished records will be re-delivered."""
        for partition in partitions:
            state = self._partitions.pop(partition, None)
            if state is not None:
                self._in_flight -= len(state.pending) - len(state.finished)
