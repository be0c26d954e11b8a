"""Shared pieces of the message models."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

TrackId = Annotated[
    int,
    # Strict: "668", 668.0 or true are a producer's bug, not a track id.
    Field(strict=True, gt=0, le=2**63 - 1, description="The platform's track id, an integer > 0."),
]
FileId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        description="Identifies one audio version of the track; changes when the audio changes.",
    ),
]
Confidence = Annotated[
    float, Field(ge=0.0, le=1.0, description="The model's confidence for this genre, 0..1.")
]
AudioUrl = Annotated[HttpUrl, Field(description="Where the audio can be fetched: an http(s) URL.")]


class Message(BaseModel):
    """Base of every message: tolerant of unknown fields (forward compatible), immutable."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class Prediction(Message):
    """One genre and its confidence, as stored in ``tracks.extra["genre_predictions"]``."""

    name: str = Field(
        min_length=1,
        max_length=200,
        description="Genre name, lowercase: Discogs `Genre---Style` becomes `style genre`.",
    )
    confidence: Confidence


class ModelRef(Message):
    """Which model made a classification."""

    name: str = Field(
        min_length=1, description="Model name, e.g. `mtg/effnet-discogs` or `musicnn/msd`."
    )
    version: str = Field(
        min_length=1, description="Model version (Replicate version id or local tag)."
    )
