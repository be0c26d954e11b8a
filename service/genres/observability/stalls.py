"""Loud partitions: a consumer that cannot make progress on a partition it owns says so.

(Over 300 lines: the sampling, the verdict and the reporting share each partition's state; the
progress sources of the four kinds of consumer are small classes that only make sense beside it.)

Every few seconds the watchdog samples, for each partition a watched consumer owns, its
*progress offset* (below it every record is done: the committed offset of a consumer that
commits after the work, the commit window's committed prefix for the classifier, the position
of a reader that is done with a record once it has it) and its *end* (the high watermark). A
partition is **stalled** when records wait there (end > progress) and progress has not moved
for longer than the bound (``KAFKA_STALL_SECONDS``), whatever the cause: a fetch error, a
record the client library cannot decode, a handler retrying against a dead dependency, a bug
that hangs.

A consumer whose records may legitimately take longer than the bound (a classification runs
up to its deadline) is watched with more ``patience``: silent slowness is a stall only past
it, while a partition whose consumer reports errors is stalled past the bound.

The publisher is watched the same way (``writes``): its progress is the count of sends the
cluster acknowledged, its end adds those waiting or refused (too few in-sync replicas), so a
partition whose produces are refused for longer than the bound is stalled too.

A partition that has **no leader** (``leaders``: one metadata request per sample, or no broker
answering it) counts as waiting even when no record is known to wait: reading or writing it is
impossible, so it is stalled once leaderless for longer than the bound.

When a partition turns stalled: one ERROR line naming role, topic, partition, offset and the
reason (the last error the consumer reported for it, else "no progress"), repeated every
``repeat_every`` seconds while it lasts, and an INFO line when it moves again. The state is
read by ``genres_partition_stalled`` and by the ``partitions`` check of ``/readyz``.

A watched consumer's group is judged beside its partitions: one whose coordinator is lost for
longer than the bound is stalled too, idle or not (``genres.observability.groups``).

(About 530 lines: the rule, its sampling loop and its log lines share one per-partition state,
and splitting them would spread one decision over several modules. Where progress is read is
``genres.observability.progress``.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from genres.observability.groups import Coordination, GroupWatch
from genres.tasks import cancel_and_wait

log = logging.getLogger(__name__)

Clock = Callable[[], float]
PartitionKey = tuple[str, int]
Leaders = Callable[[Collection[str]], Awaitable[set[PartitionKey]]]
"""``find(topics)``: the partitions of ``topics`` without a leader; raises when it cannot tell."""

REPEAT_SECONDS = 60.0
MAX_INTERVAL_SECONDS = 5.0
NO_ERROR = "no progress and no error reported"
NO_LEADER = "no leader for the partition in the cluster's metadata"


class ProgressSource(Protocol):
    """What the watchdog samples from one consumer (partitions are aiokafka TopicPartitions)."""

    def assignment(self) -> Iterable[Any]: ...

    def highwater(self, partition: Any) -> int | None: ...

    async def progress(self, partition: Any) -> int | None:
        """The offset below which every record of ``partition`` is done; None if unknown."""
        ...


class Coordinated(Protocol):
    """A source whose consumer is in a group (``genres.observability.groups``)."""

    def coordination(self) -> Coordination | None: ...


class Reporter(Protocol):
    """A consumer's hook: ``report(error)``, or ``report(error, partition)`` when known."""

    def __call__(self, error: BaseException, partition: Any = None, /) -> None: ...


@dataclass(frozen=True)
class Stall:
    role: str
    topic: str
    partition: int
    offset: int
    """The first record not done (the progress offset)."""
    end: int
    seconds: float
    """How long records have waited there without progress."""
    reason: str
    writes: bool = False
    """A partition written (offset and end count sends), not read."""

    @property
    def waiting(self) -> int:
        return self.end - self.offset

    def describe(self) -> str:
        if self.writes:
            where = f" {self.waiting} sends unacknowledged"
        else:
            where = f" at offset {self.offset}"
        return f"{self.role} {self.topic}[{self.partition}]{where}: {self.reason}"


@dataclass
class _Partition:
    progress: int | None = None
    end: int | None = None
    moved_at: float = -math.inf
    """When progress last moved (-inf: not seen moving since watched)."""
    waiting_since: float | None = None
    """Since when records have waited without progress (None: nothing waits)."""
    stall: Stall | None = None
    logged_at: float = -math.inf


@dataclass
class _Watched:
    source: ProgressSource
    patience: float
    writes: bool = False
    partitions: dict[PartitionKey, _Partition] = field(default_factory=dict)


@dataclass(frozen=True)
class _Error:
    at: float
    text: str


class PartitionsStalled(Exception):
    """The readiness check's failure: names every stalled partition."""


class StallWatchdog:
    """Samples the progress of every watched consumer and says when a partition stalls.

    ``clock`` is injected so the rule can be tested without waiting; :meth:`sample` is one
    pass, :meth:`start` runs it every ``interval`` seconds (at most 5 s, by default a fifth
    of the bound).
    """

    def __init__(
        self,
        bound: float,
        *,
        clock: Clock = time.monotonic,
        interval: float | None = None,
        repeat_every: float = REPEAT_SECONDS,
        sample_timeout: float | None = None,
    ) -> None:
        self.bound = bound
        self.interval = interval if interval is not None else min(MAX_INTERVAL_SECONDS, bound / 5)
        self.repeat_every = repeat_every
        self._sample_timeout = sample_timeout if sample_timeout is not None else self.interval
        self._clock = clock
        self._watched: dict[str, _Watched] = {}
        self._errors: dict[tuple[str, PartitionKey | None], _Error] = {}
        self._task: asyncio.Task[None] | None = None
        self.listeners: list[Callable[[str, BaseException | str], object]] = []
        """Told every error noted, with its role (the process's refusals listen)."""
        self._leaders: Leaders | None = None
        self.groups = GroupWatch(bound, self.repeat_every)
        """The watched consumers' group coordinators (sampled with their partitions)."""

    # -- what is watched ---------------------------------------------------------------------

    def watch(
        self,
        role: str,
        source: ProgressSource,
        *,
        patience: float | None = None,
        writes: bool = False,
    ) -> None:
        """Watch ``source``'s partitions under ``role`` (one source per role).

        ``patience``: how long records may wait without progress when the consumer reports
        no error (at least the bound; by default the bound). ``writes``: the source counts
        sends to the partitions (the publisher), not records read.
        """
        self._watched[role] = _Watched(source, max(self.bound, patience or self.bound), writes)

    def watch_leaders(self, leaders: Leaders) -> None:
        """Ask ``leaders`` at each sample which watched partitions have no leader."""
        self._leaders = leaders

    def unwatch(self, role: str) -> None:
        watched = self._watched.pop(role, None)
        self.groups.forget(role, "no longer watched")
        for key in list(self._errors):
            if key[0] == role:
                del self._errors[key]
        if watched is not None:
            for (topic, partition), state in watched.partitions.items():
                if state.stall is not None:
                    log.info(
                        "no longer watching stalled partition %s[%d] of %s",
                        topic,
                        partition,
                        role,
                        extra={"role": role, "topic": topic, "partition": partition},
                    )

    def note_error(self, role: str, error: BaseException | str, partition: Any = None) -> None:
        """The consumer ``role`` met ``error`` (on ``partition``, a TopicPartition, if known).

        The newest one becomes the reason given for its stalled partitions."""
        text = error if isinstance(error, str) else _describe(error)
        key = None if partition is None else (str(partition.topic), int(partition.partition))
        self._errors[(role, key)] = _Error(self._clock(), text)
        for listener in self.listeners:
            listener(role, error)

    def reporter(self, role: str) -> Reporter:
        """A hook for a consumer: ``report(error, partition_or_None)``."""

        def report(error: BaseException, partition: Any = None, /) -> None:
            self.note_error(role, error, partition)

        return report

    # -- the rule ----------------------------------------------------------------------------

    async def sample(self) -> None:
        """Sample every watched consumer once and apply the rule."""
        roles = list(self._watched.items())
        samples = await asyncio.gather(*(self._sample_source(w.source) for _, w in roles))
        keys = {key for sampled in samples for key in sampled}
        leaderless = await self._leaderless(keys)
        now = self._clock()
        due: list[Stall] = []
        for (role, watched), sampled in zip(roles, samples, strict=True):
            if self._watched.get(role) is watched:
                self.groups.observe(role, _coordination(watched.source), now)
                for key in sampled:
                    if key in leaderless:
                        self._errors[(role, key)] = _Error(now, leaderless[key])
                due += self._apply(role, watched, sampled, now, leaderless)
        self._log_stalls(due)

    async def _leaderless(self, keys: Collection[PartitionKey]) -> dict[PartitionKey, str]:
        """Each watched partition without a leader, and why; every one of them when no
        broker answers."""
        if self._leaders is None or not keys:
            return {}
        try:
            found = await asyncio.wait_for(
                self._leaders({topic for topic, _ in keys}), self._sample_timeout
            )
        except TimeoutError:
            reason = f"no broker answered a metadata request within {self._sample_timeout:g}s"
            return dict.fromkeys(keys, reason)
        except Exception as exc:
            return dict.fromkeys(keys, _describe(exc))
        return {key: NO_LEADER for key in keys if key in found}

    async def _sample_source(
        self, source: ProgressSource
    ) -> dict[PartitionKey, tuple[int | None, int | None]]:
        try:
            assigned = sorted(source.assignment() or (), key=_order)
        except Exception as exc:  # a consumer stopping: nothing owned this time
            log.debug("assignment not sampled: %r", exc)
            return {}
        found: dict[PartitionKey, tuple[int | None, int | None]] = {}
        for partition in assigned:
            found[(str(partition.topic), int(partition.partition))] = (None, None)

        async def progress_of_all() -> None:
            for partition in assigned:
                key = (str(partition.topic), int(partition.partition))
                found[key] = (await source.progress(partition), found[key][1])

        # A broker round trip may hang while the broker is away: keep what was sampled.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(progress_of_all(), self._sample_timeout)
        for partition in assigned:
            key = (str(partition.topic), int(partition.partition))
            with contextlib.suppress(Exception):
                found[key] = (found[key][0], source.highwater(partition))
        return found

    def _apply(
        self,
        role: str,
        watched: _Watched,
        sampled: Mapping[PartitionKey, tuple[int | None, int | None]],
        now: float,
        leaderless: Collection[PartitionKey] = (),
    ) -> list[Stall]:
        """Apply the rule to one source's sample; returns the stalls to log now."""
        due: list[Stall] = []
        for key in list(watched.partitions):
            if key not in sampled:  # revoked: its new owner watches it
                state = watched.partitions.pop(key)
                if state.stall is not None:
                    self._log_released(state.stall, now, "revoked")
        for key, (progress, end) in sampled.items():
            state = watched.partitions.setdefault(key, _Partition())
            if progress is not None and progress != state.progress:
                if state.progress is not None:
                    state.moved_at = now
                state.progress = progress
                state.waiting_since = None
            if end is not None:
                state.end = end
            idle = state.progress is None or state.end is None or state.end <= state.progress
            if idle and key not in leaderless:
                state.waiting_since = None  # nothing waits: an idle partition is not stalled
                self._report(state, None, now)
                continue
            if state.waiting_since is None:
                state.waiting_since = now
            offset = state.progress if state.progress is not None else -1
            end = max(offset, state.end if state.end is not None else offset)
            stall = self._judge(role, watched, key, (offset, end, state.waiting_since), state, now)
            if self._report(state, stall, now) and stall is not None:
                due.append(stall)
        return due

    def _judge(
        self,
        role: str,
        watched: _Watched,
        key: PartitionKey,
        waiting: tuple[int, int, float],
        state: _Partition,
        now: float,
    ) -> Stall | None:
        progress, end, since = waiting
        waited = now - since
        if waited <= self.bound:
            return None
        error = self._error_for(role, key, since=state.moved_at)
        erring = error is not None and error.at >= since
        if not erring and waited <= watched.patience:
            return None
        reason = NO_ERROR
        if error is not None:
            # An error from before the records began to wait may be stale: say how old.
            reason = error.text if erring else f"{error.text} ({now - error.at:.0f}s ago)"
        return Stall(
            role=role,
            topic=key[0],
            partition=key[1],
            offset=progress,
            end=end,
            seconds=waited,
            reason=reason,
            writes=watched.writes,
        )

    def _error_for(self, role: str, key: PartitionKey, *, since: float) -> _Error | None:
        candidates = [
            e for e in (self._errors.get((role, key)), self._errors.get((role, None))) if e
        ]
        newest = max(candidates, key=lambda e: e.at, default=None)
        return newest if newest is not None and newest.at >= since else None

    def _report(self, state: _Partition, stall: Stall | None, now: float) -> bool:
        """Keep the partition's verdict; whether its stall is to be logged now."""
        previous, state.stall = state.stall, stall
        if stall is None:
            if previous is not None:
                self._log_released(previous, now, "moving again")
            return False
        if previous is None or now - state.logged_at >= self.repeat_every:
            state.logged_at = now
            return True
        return False

    def _log_stalls(self, due: list[Stall]) -> None:
        """One line per stalled partition where records wait; one line per cause for those
        stalled only for want of a leader (a cluster that lost a broker loses many)."""
        leaderless: dict[str, list[Stall]] = {}
        for stall in due:
            if stall.waiting > 0:
                self._log_stall(stall)
            else:
                leaderless.setdefault(stall.reason, []).append(stall)
        for reason, stalls in leaderless.items():
            if len(stalls) == 1:
                self._log_stall(stalls[0])
                continue
            seconds = max(stall.seconds for stall in stalls)
            log.error(
                "partitions stalled: %d without a leader for %.1fs: %s: %s",
                len(stalls),
                seconds,
                reason,
                _named(stalls),
                extra={
                    "partitions": [f"{s.role} {s.topic}[{s.partition}]" for s in stalls],
                    "stalled_seconds": round(seconds, 1),
                    "reason": reason,
                },
            )

    def _log_stall(self, stall: Stall) -> None:
        # A written partition's counts are sends, not offsets.
        template, counts = (
            ("%s %s[%d], %d sends unacknowledged, none acknowledged", (stall.waiting,))
            if stall.writes
            else (
                "%s %s[%d] at offset %d, %d records waiting, no progress",
                (stall.offset, stall.waiting),
            )
        )
        log.error(
            "partition stalled: " + template + " for %.1fs: %s",
            stall.role,
            stall.topic,
            stall.partition,
            *counts,
            stall.seconds,
            stall.reason,
            extra={
                "role": stall.role,
                "topic": stall.topic,
                "partition": stall.partition,
                "offset": stall.offset,
                "records_waiting": stall.waiting,
                "stalled_seconds": round(stall.seconds, 1),
                "reason": stall.reason,
            },
        )

    def _log_released(self, stall: Stall, now: float, how: str) -> None:
        log.info(
            "partition %s: %s %s[%d] (stalled at offset %d)",
            how,
            stall.role,
            stall.topic,
            stall.partition,
            stall.offset,
            extra={"role": stall.role, "topic": stall.topic, "partition": stall.partition},
        )

    # -- what is read ------------------------------------------------------------------------

    def stalls(self) -> list[Stall]:
        return [
            state.stall
            for watched in self._watched.values()
            for state in watched.partitions.values()
            if state.stall is not None
        ]

    def partitions(self) -> Iterator[tuple[str, str, int, bool]]:
        """``(role, topic, partition, stalled)`` of every partition owned at the last sample."""
        for role, watched in self._watched.items():
            for (topic, partition), state in sorted(watched.partitions.items()):
                yield role, topic, partition, state.stall is not None

    async def check(self) -> None:
        """The readiness check: raises naming the stalled partitions (those stalled only for
        want of a leader, with no record known to wait, grouped by reason and topic), then the
        groups without a working coordinator."""
        stalls = self.stalls()
        groups = [stall.describe() for stall in self.groups.stalls()]
        if not stalls and not groups:
            return
        named = [stall.describe() for stall in stalls if stall.waiting > 0]
        leaderless: dict[str, list[Stall]] = {}
        for stall in stalls:
            if stall.waiting <= 0:
                leaderless.setdefault(stall.reason, []).append(stall)
        named += [f"{_named(group)}: {reason}" for reason, group in leaderless.items()]
        raise PartitionsStalled("; ".join(named + groups))

    # -- running -----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="stall-watchdog")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sample()
            except Exception:  # the watchdog must outlive whatever it watches
                log.exception("sampling partition progress failed")


def _describe(error: BaseException) -> str:
    name = type(error).__name__
    text = " ".join(str(error).split())[:300]
    if not text:
        return name
    return text if text.startswith(name) else f"{name}: {text}"  # aiokafka's name themselves


def _coordination(source: ProgressSource) -> Coordination | None:
    """The group coordinator's state of ``source``'s consumer; None when it has no group."""
    if not hasattr(source, "coordination"):
        return None
    coordinated: Coordinated = source  # type: ignore[assignment]
    try:
        return coordinated.coordination()
    except Exception as exc:  # a consumer stopping: no group this time
        log.debug("coordination not sampled: %r", exc)
        return None


def _named(stalls: Iterable[Stall]) -> str:
    """``role topic[0,1,2], role topic[1]``: the stalls' partitions, by role and topic."""
    where: dict[tuple[str, str], list[int]] = {}
    for stall in stalls:
        where.setdefault((stall.role, stall.topic), []).append(stall.partition)
    return ", ".join(
        f"{role} {topic}[{','.join(map(str, sorted(numbers)))}]"
        for (role, topic), numbers in where.items()
    )


def _order(partition: Any) -> tuple[str, int]:
    return (str(partition.topic), int(partition.partition))


# -- metrics -------------------------------------------------------------------------------------


class StalledPartitions(Collector):
    """``genres_partition_stalled{role, topic, partition}``: 1 while stalled, else 0."""

    def __init__(self, watchdog: StallWatchdog) -> None:
        self._watchdog = watchdog

    def collect(self) -> Iterable[Metric]:
        gauge = GaugeMetricFamily(
            "genres_partition_stalled",
            "1 while records wait on the partition and its consumer makes no progress for "
            "longer than KAFKA_STALL_SECONDS; 0 for every other partition owned.",
            labels=["role", "topic", "partition"],
        )
        for role, topic, partition, stalled in self._watchdog.partitions():
            gauge.add_metric([role, topic, str(partition)], 1.0 if stalled else 0.0)
        return [gauge]

    def describe(self) -> Iterable[Metric]:
        return []
