"""The Kafka client's repeated lines, limited per cause, on a fake clock."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import (
    GroupCoordinatorNotAvailableError,
    KafkaConnectionError,
    NotEnoughReplicasError,
    TopicAuthorizationFailedError,
)

from genres.observability import logs
from genres.observability.repeats import TLS_LOGGER, RepeatLimiter, adopt_orphans


@dataclass
class Clock:
    now: float = 500.0

    def __call__(self) -> float:
        return self.now


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self) -> list[str]:
        return [f"{r.levelname} {r.name} {r.getMessage()}" for r in self.records]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def kept(clock: Clock) -> Iterator[Kept]:
    handler = Kept()
    RepeatLimiter(interval=10.0, clock=clock).install(handler)
    names = ("aiokafka", "genres.faststream", "genres.x", TLS_LOGGER)
    loggers = [logging.getLogger(name) for name in names]
    saved = [(each.level, each.propagate) for each in loggers]
    for each in loggers:
        each.addHandler(handler)
        each.setLevel(logging.DEBUG)
        each.propagate = False
    try:
        yield handler
    finally:
        for each, (level, propagate) in zip(loggers, saved, strict=True):
            each.removeHandler(handler)
            each.setLevel(level)
            each.propagate = propagate


def fetch_error(node: int) -> None:
    logging.getLogger("aiokafka.consumer.fetcher").error(
        "Failed fetch messages from %s: %s", node, KafkaConnectionError(f"node {node} gone")
    )


def test_a_burst_is_one_warning_then_one_line_with_its_count(kept: Kept, clock: Clock) -> None:
    for second in range(25):
        clock.now = 500.0 + second * 0.4  # 25 lines in 10 s
        fetch_error(second % 3)
    assert kept.lines() == ["WARNING aiokafka.consumer.fetcher Failed fetch messages from 0: "
                            "KafkaConnectionError: node 0 gone"]  # fmt: skip
    clock.now = 511.0
    fetch_error(1)
    assert len(kept.records) == 2
    assert kept.records[1].getMessage() == (
        "Failed fetch messages from 1: KafkaConnectionError: node 1 gone "
        "(repeated 24 times in 10 s)"
    )


def test_a_cause_gone_quiet_has_its_count_written_with_the_next_line_logged(
    kept: Kept, clock: Clock
) -> None:
    for _ in range(5):
        fetch_error(2)
    clock.now += 30
    logging.getLogger("genres.x").info("partition moving again")
    assert kept.lines() == [
        "WARNING aiokafka.consumer.fetcher Failed fetch messages from 2: "
        "KafkaConnectionError: node 2 gone",
        "WARNING aiokafka.consumer.fetcher Failed fetch messages from 2: "
        "KafkaConnectionError: node 2 gone (repeated 4 times in 10 s)",
        "INFO genres.x partition moving again",
    ]
    # The window closed: the cause's next line is passed as new.
    fetch_error(2)
    assert kept.lines()[-1].endswith("node 2 gone")


def test_causes_are_counted_apart_by_logger_template_and_exception_type(
    kept: Kept, clock: Clock
) -> None:
    sender = logging.getLogger("aiokafka.producer.sender")
    for _ in range(3):
        fetch_error(1)
        sender.warning(
            "Got error produce response on topic-partition %s, retrying. Error: %s",
            TopicPartition("t", 0),
            NotEnoughReplicasError,
        )
        for error in (KafkaConnectionError("down"), NotEnoughReplicasError()):
            try:
                raise error
            except Exception:
                logging.getLogger("genres.faststream").exception("Kafka error occurred")
    assert len(kept.records) == 4
    faststream = [r for r in kept.records if r.name == "genres.faststream"]
    assert [r.levelname for r in faststream] == ["WARNING", "WARNING"]
    # The traceback is gone; the exception is in the line.
    assert [r.exc_info for r in faststream] == [None, None]
    assert [r.getMessage() for r in faststream] == [
        "Kafka error occurred: KafkaConnectionError: down",
        "Kafka error occurred: NotEnoughReplicasError: [Error 19] NotEnoughReplicasError",
    ]


def test_the_service_own_lines_and_info_lines_pass_untouched(kept: Kept) -> None:
    for _ in range(3):
        logging.getLogger("genres.x").error("partition stalled: %s", "x")
        logging.getLogger("aiokafka").info("joined group %s", "g")
    assert [r.levelname for r in kept.records] == ["ERROR", "INFO"] * 3


def test_a_permanent_refusal_stays_an_error_and_is_still_limited(kept: Kept) -> None:
    cluster = logging.getLogger("aiokafka.cluster")
    for _ in range(4):
        cluster.error("Topic %s is not authorized for this client", "track.uploaded")
        try:
            raise TopicAuthorizationFailedError("track.uploaded")
        except Exception:
            logging.getLogger("genres.faststream").exception("Kafka error occurred")
    assert [r.levelname for r in kept.records] == ["ERROR", "ERROR"]
    assert kept.records[1].exc_info is not None


def test_the_service_log_set_up_limits_the_client_lines() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_client = logging.getLogger("aiokafka").level
    logs.configure("INFO", "json")
    stream = io.StringIO()
    (handler,) = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    try:
        for node in range(50):
            fetch_error(node)
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        logging.getLogger("aiokafka").setLevel(saved_client)
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(e["level"], e["logger"]) for e in entries] == [
        ("warning", "aiokafka.consumer.fetcher")
    ]


async def _fails(error: Exception) -> None:
    raise error


@pytest.mark.parametrize("same", [True, False])
async def test_a_client_task_failing_with_nobody_waiting_is_a_client_line(
    kept: Kept, same: bool
) -> None:
    """aiokafka's shielded commit fails after the stop gave up on it: asyncio would log
    ``Task exception was never retrieved`` at ERROR with a traceback."""
    loop = asyncio.get_running_loop()
    passed: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: passed.append(context))
    try:
        adopt_orphans(loop)
        error = GroupCoordinatorNotAvailableError() if same else ValueError("not Kafka's")
        task = loop.create_task(_fails(error))
        await asyncio.wait([task])
        del task
        gc.collect()
    finally:
        loop.set_exception_handler(None)
    if same:
        assert kept.lines() == [
            "WARNING aiokafka a Kafka client task failed with nobody waiting for it: "
            "GroupCoordinatorNotAvailableError: [Error 15] GroupCoordinatorNotAvailableError"
        ]
        assert kept.records[0].exc_info is None
        assert passed == []
    else:
        assert kept.lines() == []
        assert [context["exception"] for context in passed] == [error]


CLOSED = (
    "unable to perform operation on <TCPTransport closed=True reading=False 0x5>;"
    " the handler is closed"
)


@pytest.mark.parametrize(
    ("message", "error", "adopted"),
    [
        ("Fatal error on SSL protocol", RuntimeError(CLOSED), True),
        ("Fatal error on SSL protocol", RuntimeError("another failure"), False),
        ("Fatal error on transport", RuntimeError(CLOSED), False),
    ],
)
async def test_a_tls_write_after_the_socket_closed_is_one_warning_client_line(
    kept: Kept, message: str, error: Exception, adopted: bool
) -> None:
    """At SIGTERM uvloop logged ``Fatal error on SSL protocol`` at ERROR: a TLS connection the
    client had closed got its peer's last bytes; any other transport failure stays asyncio's."""
    loop = asyncio.get_running_loop()
    passed: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: passed.append(context))
    try:
        adopt_orphans(loop)
        for _ in range(3):
            loop.call_exception_handler({"message": message, "exception": error})
    finally:
        loop.set_exception_handler(None)
    if adopted:
        assert kept.lines() == [
            "WARNING genres.tls a TLS connection got its peer's last bytes after its socket "
            f"closed: RuntimeError: {CLOSED}"
        ]
        assert passed == []
    else:
        assert kept.lines() == []
        assert [context["exception"] for context in passed] == [error] * 3
