"""Requests and their replies, named for what they ask."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from genres_contracts._base import Message, TrackId


class RecommendedTagsRequest(Message):
    """`track.recommended_tags`: which genre tags would suit this track?"""

    track_id: TrackId
    limit: int = Field(default=5, ge=1, le=20, description="At most this many tags, 1..20.")
    wait_ms: int = Field(
        default=0,
        ge=0,
        le=30_000,
        description=(
            "When no predictions exist yet, wait up to this long (0..30000 ms) for the "
            "classification it triggers; 0 answers at once with `pending: true`."
        ),
    )


class RecommendedTag(Message):
    """One recommended tag."""

    name: str = Field(min_length=1, description="Genre name, lowercase.")
    score: float = Field(ge=0.0, le=1.0, description="The model's confidence, 0..1.")


class ReplyError(Message):
    """Why a request could not be answered."""

    kind: Literal["invalid_request", "not_found", "unavailable", "internal"] = Field(
        description="`invalid_request`, `not_found`, `unavailable` or `internal`."
    )
    message: str = Field(max_length=2000, description="What went wrong, for people.")


class RecommendedTags(Message):
    """Reply to `RecommendedTagsRequest`, published to the request's `reply_to` topic."""

    track_id: int | None = Field(
        description="The track asked about; null when the request could not be read."
    )
    tags: list[RecommendedTag] = Field(
        default_factory=list,
        description="Recommended tags, best first, without the track's own tags, at most `limit`.",
    )
    available: bool = Field(default=True, description="False when no classifier is configured.")
    pending: bool = Field(
        default=False, description="True: a classification was requested and is not done yet."
    )
    error: ReplyError | None = Field(
        default=None, description="Set when the request could not be answered."
    )
