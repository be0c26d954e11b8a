"""Log lines: JSON with the ids as top-level keys, and never the Replicate token."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from genres.observability import logs

TOKEN = "r8_Zx9QkV3pLm2Tn8WcYb4Hd7Jf1Gs6Ra0Ue5Io"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """``logs.configure`` as the command line calls it, its handler writing to a buffer."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    logs.configure("DEBUG", "json", secrets=[TOKEN, None, ""])
    stream = io.StringIO()
    (handler,) = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    try:
        yield stream
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_extra_fields_become_top_level_keys(captured: io.StringIO) -> None:
    logging.getLogger("genres.test").info(
        "classification handled: %s",
        "classified",
        extra={
            "track_id": 668,
            "file_id": "b2c1e0",
            "event_id": "e-1",
            "source_event_id": "s-1",
        },
    )
    (entry,) = lines(captured)
    assert entry["message"] == "classification handled: classified"
    assert entry["level"] == "info"
    assert entry["logger"] == "genres.test"
    assert entry["track_id"] == 668
    assert entry["file_id"] == "b2c1e0"
    assert entry["event_id"] == "e-1"
    assert entry["source_event_id"] == "s-1"


def test_the_token_never_appears_wherever_it_is_logged(captured: io.StringIO) -> None:
    log = logging.getLogger("genres.anything")
    log.warning(f"token in the message {TOKEN}")
    log.warning("token in an argument %s and %r", TOKEN, {"auth": f"Bearer {TOKEN}"})
    log.warning("token in extra", extra={"header": f"Bearer {TOKEN}", "nested": {"t": TOKEN}})
    log.warning("%(who)s in a mapping", {"who": TOKEN})
    try:
        raise RuntimeError(f"server echoed {TOKEN}")
    except RuntimeError:
        log.exception("token in a traceback")
    # Third-party loggers go through the same handler.
    logging.getLogger("httpx").error("Authorization: Bearer %s", TOKEN)

    output = captured.getvalue()
    assert TOKEN not in output
    entries = lines(captured)
    assert len(entries) == 6
    assert "[redacted]" in entries[0]["message"]  # type: ignore[operator]
    assert entries[2]["header"] == "Bearer [redacted]"
    assert "[redacted]" in entries[4]["exception"]  # type: ignore[operator]


def test_the_console_format_redacts_too() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        logs.configure("INFO", "console", secrets=[TOKEN])
        stream = io.StringIO()
        handler = root.handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(stream)
        try:
            raise ValueError(TOKEN)
        except ValueError:
            logging.getLogger("genres.x").exception("failed with %s", TOKEN)
        assert TOKEN not in stream.getvalue()
        assert "[redacted]" in stream.getvalue()
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def test_no_secrets_leaves_records_alone(captured: io.StringIO) -> None:
    logs.configure("INFO", "json")
    stream = io.StringIO()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    logging.getLogger("genres.y").info("plain %s", "text", extra={"track_id": 1})
    (entry,) = lines(stream)
    assert entry["message"] == "plain text"
    assert entry["track_id"] == 1


def test_one_shot_commands_log_warnings_for_people_and_still_redact() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_kafka = logging.getLogger("aiokafka").level
    try:
        logs.configure_for_people("INFO", secrets=[TOKEN])
        stream = io.StringIO()
        (handler,) = root.handlers
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(stream)
        logging.getLogger("alembic.runtime.migration").info("Context impl PostgresqlImpl.")
        logging.getLogger("genres.test").warning("token %s refused", TOKEN)
        logging.getLogger("aiokafka").error("Unable connect to broker")
        assert stream.getvalue() == "warning: token [redacted] refused\n"
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        logging.getLogger("aiokafka").setLevel(saved_kafka)
