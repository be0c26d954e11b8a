"""What each role consumes, declared once: read by the roles' entries and by the AsyncAPI
document (``genres.asyncapi``), so the two cannot drift apart.

A subscription is a role's consumer group and the topics it reads, each with the payload model
its records are parsed into. Every input has a dead-letter topic (``<topic>.dlq``) for records
that can never be handled; ``answers`` marks a request topic whose records get a reply on their
``reply_to`` header. Topic and group names are canonical: a deployment's prefix
(``GENRES_TOPIC_PREFIX``) is applied where they are used (``Settings.topic``/``group``).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from genres_contracts import (
    ClassificationRequested,
    GenresClassified,
    RecommendedTagsRequest,
    TrackUploaded,
    topics,
)

__all__ = ["CLASSIFIER", "PROJECTOR", "RESPONDER", "SUBSCRIPTIONS", "Input", "Subscription"]


@dataclass(frozen=True)
class Input:
    """A topic a role reads, the model of its records, and what the role does with them."""

    topic: str
    model: type[BaseModel]
    description: str


@dataclass(frozen=True)
class Subscription:
    role: str
    group: str
    inputs: tuple[Input, ...]
    answers: bool = False
    """Records are requests answered on their ``reply_to`` topic."""

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(each.topic for each in self.inputs)

    def model(self, topic: str) -> type[BaseModel]:
        """The payload model of ``topic`` (canonical name)."""
        for each in self.inputs:
            if each.topic == topic:
                return each.model
        raise KeyError(topic)


CLASSIFIER = Subscription(
    role="classifier",
    group="genres-classifier",
    inputs=(
        Input(
            topics.TRACK_UPLOADED,
            TrackUploaded,
            "The classifier classifies each uploaded audio file.",
        ),
        Input(
            topics.CLASSIFICATION_REQUESTED,
            ClassificationRequested,
            "The classifier classifies on request (backfill, on demand, reclassify); "
            "`force` classifies again what was classified before.",
        ),
    ),
)

PROJECTOR = Subscription(
    role="projector",
    group="genres-projector",
    inputs=(
        Input(
            topics.GENRES_CLASSIFIED,
            GenresClassified,
            "The projector stores the predictions in `tracks.extra` (`genre_predictions`, "
            "`genre_predictions_file_id`) and, with `auto_tag`, tags the track.",
        ),
    ),
)

RESPONDER = Subscription(
    role="responder",
    group="genres-responder",
    inputs=(
        Input(
            topics.RECOMMENDED_TAGS,
            RecommendedTagsRequest,
            "The responder answers with `RecommendedTags` on the `reply_to` topic, with the "
            "same `correlation_id`. Unreadable requests and unknown tracks get a reply with "
            "`error`; requests without `reply_to` are dead-lettered.",
        ),
    ),
    answers=True,
)

SUBSCRIPTIONS = (CLASSIFIER, PROJECTOR, RESPONDER)
"""Every consumer group of the service (backfill and the outcome readers use none)."""
