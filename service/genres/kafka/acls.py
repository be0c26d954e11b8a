"""The Kafka ACLs each role and command needs, derived from what it reads and writes.

What a role consumes (its group, its inputs, their dead-letter topics, whether it answers on
``reply_to``) is :mod:`genres.subscriptions`; what it publishes and reads without a group is
declared here, next to the code paths it names. The roles check at start (and create, unless
``KAFKA_CREATE_TOPICS`` is false) exactly the topics they use (:func:`topics_used`), so an
operator grants a role nothing on a topic it never touches.

Kafka's operations imply others: READ, WRITE and DELETE each imply DESCRIBE (metadata, offsets,
committed positions), so no DESCRIBE is listed. Idempotent producers need only WRITE on a topic
from Kafka 2.8 (KIP-679; the IdempotentWrite cluster ACL only for older brokers), and topics are
created with CREATE on the topic itself: no role needs a cluster ACL.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from genres.config import Settings
from genres.subscriptions import CLASSIFIER, PROJECTOR, RESPONDER, Subscription
from genres_contracts import topics

__all__ = [
    "ROLES",
    "SERVICE_ROLES",
    "USES",
    "Acl",
    "Grant",
    "Use",
    "grants",
    "required_acls",
    "topics_used",
]

REPLY_TOPIC_STEM: Final = "genres.replies."
"""The stem of every requester's reply topic (``genres_contracts.kafka.REPLY_TOPIC_STEM``: a
unit test keeps the two equal; importing that one here would import aiokafka)."""


@dataclass(frozen=True, order=True)
class Acl:
    """One ALLOW rule for the service's principal (any host)."""

    resource_type: Literal["topic", "group", "cluster"]
    name: str
    pattern: Literal["literal", "prefixed"]
    operation: str
    """Kafka's operation name, upper case: READ, WRITE, CREATE, DELETE, DESCRIBE."""


@dataclass(frozen=True)
class Grant:
    """An ACL a role needs, and why (the operators' table says it)."""

    role: str
    acl: Acl
    why: str


@dataclass(frozen=True)
class Use:
    """What one role or command does on the bus; topic names canonical (unprefixed)."""

    subscription: Subscription | None = None
    """Read in its group; each input's dead letters written; replies written if it answers."""
    reads: tuple[str, ...] = ()
    """Read without a group (every instance sees every record)."""
    writes: tuple[str, ...] = ()
    asks: bool = False
    """Requests on ``writes`` with a reply topic of its own (``genres_contracts.kafka``)."""
    checks: bool = True
    """Checks its topics at start, creating the missing ones unless ``KAFKA_CREATE_TOPICS`` is
    false (``genres.kafka.broker.ensure_topics``)."""


OUTCOMES = (topics.GENRES_CLASSIFIED, topics.GENRES_FAILED)

USES: Final[Mapping[str, Use]] = {
    # classifier/entry.py publishes each outcome.
    "classifier": Use(CLASSIFIER, writes=OUTCOMES),
    "projector": Use(PROJECTOR),
    # responder/outcomes.py reads every outcome for the requests waiting on them;
    # responder/runtime.py requests a classification on demand.
    "responder": Use(RESPONDER, reads=OUTCOMES, writes=(topics.CLASSIFICATION_REQUESTED,)),
    # `genres recommend`: the contracts' client asks on track.recommended_tags.
    "recommend": Use(writes=(topics.RECOMMENDED_TAGS,), asks=True, checks=False),
    # backfill/entry.py requests; with --wait, backfill/outcomes.py reads the outcomes.
    "backfill": Use(reads=OUTCOMES, writes=(topics.CLASSIFICATION_REQUESTED,)),
}
"""Every role (``genres run``) and every command that uses the bus."""

ROLES: Final = tuple(USES)
SERVICE_ROLES: Final = ("classifier", "projector", "responder")
"""What ``genres run all`` runs."""


def _known(roles: Iterable[str]) -> list[str]:
    chosen = list(dict.fromkeys(roles))
    unknown = [role for role in chosen if role not in USES]
    if unknown:
        raise ValueError(f"unknown roles {unknown}: choose among {', '.join(ROLES)}")
    return chosen


def _own_topics(use: Use) -> Iterator[str]:
    """The canonical topics a role uses: those it reads, writes and dead-letters to."""
    if use.subscription is not None:
        yield from use.subscription.topics
        yield from (topics.dead_letter_topic(topic) for topic in use.subscription.topics)
    yield from use.reads
    yield from use.writes


def topics_used(settings: Settings, roles: Iterable[str]) -> list[str]:
    """The topics ``roles`` read or write, prefixed, each once: the ones they check at start
    (and create when missing and allowed). Reply topics are the requesters' own."""
    names = (name for role in _known(roles) for name in _own_topics(USES[role]))
    return list(dict.fromkeys(settings.topic(name) for name in names))


def grants(settings: Settings, roles: Iterable[str], *, creates_topics: bool) -> list[Grant]:
    """Each ACL each role needs, with the reason, in the roles' order."""
    return [
        grant
        for role in _known(roles)
        for grant in _role_grants(settings, role, creates_topics=creates_topics)
    ]


def required_acls(settings: Settings, roles: Iterable[str], *, creates_topics: bool) -> list[Acl]:
    """The ACLs ``roles`` need together: sorted, each once. ``creates_topics``: the roles
    create their missing topics at start (``KAFKA_CREATE_TOPICS``)."""
    return sorted({grant.acl for grant in grants(settings, roles, creates_topics=creates_topics)})


def _role_grants(settings: Settings, role: str, *, creates_topics: bool) -> Iterator[Grant]:
    use = USES[role]

    def topic(name: str, operation: str, why: str) -> Grant:
        return Grant(role, Acl("topic", settings.topic(name), "literal", operation), why)

    def replies(operation: str, why: str) -> Grant:
        name = settings.topic(REPLY_TOPIC_STEM)
        return Grant(role, Acl("topic", name, "prefixed", operation), why)

    subscription = use.subscription
    if subscription is not None:
        group = settings.group(subscription.group)
        yield Grant(role, Acl("group", group, "literal", "READ"), "joins its consumer group")
        for name in subscription.topics:
            yield topic(name, "READ", "consumes it in its group")
            yield topic(
                topics.dead_letter_topic(name), "WRITE", f"dead-letters the records of {name}"
            )
        if subscription.answers:
            yield replies("WRITE", "answers each request on its reply_to topic")
    for name in use.reads:
        yield topic(name, "READ", "reads it without a group")
    for name in use.writes:
        yield topic(name, "WRITE", "publishes to it")
    if use.asks:
        yield replies("CREATE", "creates its own reply topic")
        yield replies("READ", "reads the replies on its reply topic")
        yield replies("DELETE", "deletes its reply topic when done (else one is left per run)")
    if creates_topics and use.checks:
        for name in dict.fromkeys(_own_topics(use)):
            yield topic(name, "CREATE", "creates it at start when missing")
