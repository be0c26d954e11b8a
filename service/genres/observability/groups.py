"""Loud groups: a consumer group without a working coordinator is stalled even when idle.

A group's coordinator (the leader of its ``__consumer_offsets`` partition) takes its
heartbeats, joins and commits. When it cannot be found (that partition has no leader) or keeps
refusing (``COORDINATOR_NOT_AVAILABLE``, ``NOT_COORDINATOR``, no answer), the client marks it
dead and looks it up again, forever and only at WARNING. No partition of the group need have
records waiting, so the partition rule (``genres.observability.stalls``) sees nothing.

At each sample the watchdog reads a :class:`Coordination` per watched group consumer: whether
a coordinator is known, and an ``epoch`` that changes each time one is found again. The group
is in **trouble** from the first sample that sees its coordinator unknown or changed, until
the same coordinator has stayed for longer than the bound and the group session (the client
drops a coordinator that takes no heartbeat for a session). In trouble for longer than the
bound, it is **stalled** when no coordinator has been known for longer than the bound, or when
it was lost twice or more (one refusing heartbeats is found again at once, so a coordinator is
known at nearly every sample; one failover loses it once). Stalled: one ERROR line naming
role, group and cause (again every ``repeat_every`` seconds), ``genres_group_stalled{role,
group}`` 1 and the ``partitions`` check of ``/readyz`` naming it; an INFO line once the trouble
ends.

Seen on a three-broker cluster with two brokers killed: a group whose coordinator was on a
dead broker found it again on the survivor, which refused its heartbeats every few seconds
(``NOT_COORDINATOR``) while a coordinator was known at nearly every sample.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("genres.observability.stalls")

UNKNOWN = (
    "no coordinator found for the group (its __consumer_offsets partition has no leader, "
    "or no broker answers)"
)
LOST = (
    "the group's coordinator was lost {count} times (heartbeats or commits refused or unanswered)"
)


@dataclass(frozen=True)
class Coordination:
    """What a group consumer knows of its coordinator at one moment."""

    group: str
    known: bool
    """A coordinator is known and not marked dead."""
    epoch: object
    """Changes each time the coordinator is found again (compared by identity)."""
    session: float = 0.0
    """The group session (seconds): a coordinator kept that long has taken heartbeats."""


@dataclass(frozen=True)
class GroupStall:
    role: str
    group: str
    seconds: float
    reason: str

    def describe(self) -> str:
        return f"{self.role} group {self.group}: {self.reason}"


@dataclass
class _Group:
    group: str
    epoch: object
    known: bool
    """Whether a coordinator was known at the last sample."""
    troubled_since: float | None = None
    """Since when the coordinator has been lost (None: well)."""
    trouble_at: float = -math.inf
    """The last sample that saw it lost or unknown."""
    unknown_since: float | None = None
    losses: int = 0
    """Times the coordinator was lost since ``troubled_since``."""
    stall: GroupStall | None = None
    logged_at: float = -math.inf


class GroupWatch:
    """The rule over each role's group coordinator; fed by the watchdog's samples."""

    def __init__(self, bound: float, repeat_every: float) -> None:
        self.bound = bound
        self.repeat_every = repeat_every
        self._groups: dict[str, _Group] = {}

    def observe(self, role: str, seen: Coordination | None, now: float) -> None:
        """Apply the rule to ``role``'s group as seen now (None: no group consumer running)."""
        state = self._groups.get(role)
        if seen is None or (state is not None and state.group != seen.group):
            self.forget(role, "no longer watched")
            state = None
            if seen is None:
                return
        if state is None:
            state = self._groups[role] = _Group(seen.group, seen.epoch, seen.known)
        changed = seen.epoch is not state.epoch
        # A new coordinator after none was known is the end of a loss, not another one.
        if (state.known and (changed or not seen.known)) or (changed and not seen.known):
            state.losses += 1
        state.epoch, state.known = seen.epoch, seen.known
        if not seen.known:
            state.unknown_since = state.unknown_since if state.unknown_since is not None else now
        else:
            state.unknown_since = None
        if not seen.known or changed:
            state.trouble_at = now
            if state.troubled_since is None:
                state.troubled_since = now
        if state.troubled_since is None:
            return
        if now - state.trouble_at > max(self.bound, seen.session):
            # The same coordinator for a whole session (the client drops one that takes no
            # heartbeat for a session) and longer than the bound: well again.
            state.troubled_since, state.losses = None, 0
            if state.stall is not None:
                log.info(
                    "group coordinator available again: %s group %s",
                    role,
                    state.group,
                    extra={"role": role, "group": state.group},
                )
                state.stall = None
            return
        self._judge(role, state, now)

    def _judge(self, role: str, state: _Group, now: float) -> None:
        """Stalled: no coordinator for longer than the bound, or one lost again and again
        (one refusing heartbeats is found again at once: known at nearly every sample)."""
        assert state.troubled_since is not None
        waited = now - state.troubled_since
        unknown = state.unknown_since is not None and now - state.unknown_since > self.bound
        if waited <= self.bound or not (unknown or state.losses >= 2 or state.stall):
            return
        if state.stall is not None and not unknown and state.losses < 2:
            reason = state.stall.reason  # found again: well once it stays for the bound
        elif unknown and state.losses < 2:
            reason = UNKNOWN
        else:
            reason = LOST.format(count=state.losses)
        first = state.stall is None
        state.stall = GroupStall(role, state.group, waited, reason)
        if first or now - state.logged_at >= self.repeat_every:
            state.logged_at = now
            log.error(
                "group stalled: %s group %s without a working coordinator for %.1fs: %s",
                role,
                state.group,
                waited,
                reason,
                extra={
                    "role": role,
                    "group": state.group,
                    "stalled_seconds": round(waited, 1),
                    "reason": reason,
                },
            )

    def forget(self, role: str, how: str) -> None:
        state = self._groups.pop(role, None)
        if state is not None and state.stall is not None:
            log.info(
                "group %s: %s group %s",
                how,
                role,
                state.group,
                extra={"role": role, "group": state.group},
            )

    def stalls(self) -> list[GroupStall]:
        return [state.stall for state in self._groups.values() if state.stall is not None]

    def groups(self) -> Iterator[tuple[str, str, bool]]:
        """``(role, group, stalled)`` of every group watched at the last sample."""
        for role, state in sorted(self._groups.items()):
            yield role, state.group, state.stall is not None


class StalledGroups(Collector):
    """``genres_group_stalled{role, group}``: 1 while the group has no working coordinator."""

    def __init__(self, groups: GroupWatch) -> None:
        self._groups = groups

    def collect(self) -> Iterable[Metric]:
        gauge = GaugeMetricFamily(
            "genres_group_stalled",
            "1 while the consumer group has had no working coordinator for longer than "
            "KAFKA_STALL_SECONDS (records waiting or not); 0 for every other group watched.",
            labels=["role", "group"],
        )
        for role, group, stalled in self._groups.groups():
            gauge.add_metric([role, group], 1.0 if stalled else 0.0)
        return [gauge]

    def describe(self) -> Iterable[Metric]:
        return []
