"""Reading the service's replies and naming a client's reply topic."""

from __future__ import annotations

import os
import re
import socket
import uuid
from typing import Final

from pydantic import ValidationError

from genres_contracts.kafka._errors import InvalidRequest, ServiceError, TrackNotFound, Unavailable
from genres_contracts.requests import RecommendedTags

REPLY_TOPIC_STEM: Final = "genres.replies."
_TOPIC_CHARS = re.compile(r"[^a-zA-Z0-9._-]")


def read_reply(value: bytes) -> RecommendedTags:
    """Read a reply to ``track.recommended_tags``; an error reply raises its typed error."""
    try:
        reply = RecommendedTags.model_validate_json(value)
    except ValidationError as exc:
        raise ServiceError(f"unreadable reply: {one_line(exc)}") from None
    error = reply.error
    if error is None:
        return reply
    if error.kind == "not_found":
        raise TrackNotFound(reply.track_id, error.message, reply=reply)
    if error.kind == "invalid_request":
        raise InvalidRequest(f"invalid request: {error.message}", reply=reply)
    if error.kind == "unavailable":
        raise Unavailable(f"the service is unavailable: {error.message}", reply=reply)
    raise ServiceError(f"the service failed ({error.kind}): {error.message}", reply=reply)


def reply_topic_name(prefix: str = "") -> str:
    """A topic name unique to one client: prefix, stem, host, pid and a random part."""
    host = _TOPIC_CHARS.sub("-", socket.gethostname())[:100] or "host"
    return f"{prefix}{REPLY_TOPIC_STEM}{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def one_line(exc: ValidationError) -> str:
    """The validation errors on one line, without echoing input values."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        where = ".".join(str(part) for part in error["loc"]) or "value"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)[:500]
