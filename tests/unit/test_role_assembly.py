"""The composition root's seam: roles assembled from the kernel it is given, started in order,
stopped in reverse; and what a subscriber tells observability through its bus entry."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any, cast

import pytest
from faststream.kafka import KafkaBroker

from genres.bootstrap import Role, _start_roles
from genres.kafka.entry import Subscribed
from genres.kernel import Kernel, RoleHandle
from genres.observability.metrics import ServiceMetrics
from genres.observability.stalls import StallWatchdog


def kernel() -> Kernel:
    built: list[KafkaBroker] = []

    def make_broker() -> KafkaBroker:
        built.append(KafkaBroker("localhost:9092"))
        return built[-1]

    return Kernel(
        settings=cast(Any, object()),
        engine=cast(Any, object()),
        publisher=cast(Any, object()),
        metrics=ServiceMetrics(),
        watchdog=StallWatchdog(30.0),
        make_broker=make_broker,
    )


class Recorded(RoleHandle):
    def __init__(self, role: str, said: list[str], *, fails: bool = False) -> None:
        super().__init__(role)
        self._said = said
        self._fails = fails

    async def _start(self, stack: AsyncExitStack) -> None:
        self._said.append(f"start {self.role}")
        stack.callback(self._said.append, f"stop {self.role}")
        if self._fails:
            raise RuntimeError(f"{self.role} refused to start")


def recording(said: list[str], *, failing: Role | None = None) -> dict[Role, Any]:
    return {
        role: (lambda k, role=role: Recorded(role.value, said, fails=role is failing))
        for role in Role
    }


async def test_the_roles_asked_for_start_in_order_and_stop_in_reverse() -> None:
    said: list[str] = []
    async with AsyncExitStack() as stack:
        handles = await _start_roles(
            kernel(), frozenset({Role.RESPONDER, Role.CLASSIFIER}), recording(said), stack
        )
        assert list(handles) == ["classifier", "responder"]
    assert said == ["start classifier", "start responder", "stop responder", "stop classifier"]


async def test_a_role_failing_to_start_undoes_what_it_and_the_others_started() -> None:
    said: list[str] = []
    with pytest.raises(RuntimeError, match="projector refused"):
        async with AsyncExitStack() as stack:
            await _start_roles(
                kernel(), frozenset(Role), recording(said, failing=Role.PROJECTOR), stack
            )
    assert said == ["start classifier", "start projector", "stop projector", "stop classifier"]


def test_the_broker_is_built_only_when_a_role_subscribes() -> None:
    parts = kernel()
    assert parts.subscribed_broker is None
    broker = parts.broker()
    assert parts.broker() is broker
    assert parts.subscribed_broker is broker


class Subscriber:
    """What ``Subscribed`` reads of a FastStream subscriber: its consumer and loop tasks."""

    def __init__(self) -> None:
        self.consumer: object | None = None
        self.tasks: list[asyncio.Task[Any]] = []


async def test_a_subscriber_tells_its_consumer_and_whether_its_own_loop_is_running() -> None:
    subscriber = Subscriber()
    subscribed, other = Subscribed(subscriber), Subscribed(Subscriber())
    assert subscribed.consumer() is None
    subscriber.consumer = consumer = object()
    assert subscribed.consumer() is consumer

    seen: list[tuple[bool, bool]] = []

    async def loop() -> None:
        seen.append((subscribed.fetching(), other.fetching()))

    task = asyncio.create_task(loop())
    subscriber.tasks.append(task)
    await task
    assert seen == [(True, False)]
    assert not subscribed.fetching()  # not from the test's own task
