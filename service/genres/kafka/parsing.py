"""Parsing a record's value into a message, with a one-line reason when that fails."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

from genres.errors import InvalidMessage

MAX_RECORD_BYTES = 1024 * 1024

M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], value: bytes | None) -> M:
    """Validate a record value as ``model``; raises ``InvalidMessage`` with a one-line reason."""
    if value is None:
        raise InvalidMessage("record has no value (tombstone)")
    if len(value) > MAX_RECORD_BYTES:
        raise InvalidMessage(f"record value is {len(value)} bytes, over {MAX_RECORD_BYTES}")
    try:
        return model.model_validate_json(value)
    except ValidationError as exc:
        raise InvalidMessage(f"not a valid {model.__name__}: {one_line(exc)}") from None


def one_line(exc: ValidationError) -> str:
    """The validation errors of ``exc`` on one line, without echoing input values."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        where = ".".join(str(part) for part in error["loc"]) or "value"
        parts.append(f"{where}: {error['msg']}")
    text = "; ".join(parts)
    return text if len(text) <= 500 else text[:497] + "..."
