"""The responder on the bus: answers ``track.recommended_tags`` requests.

Wiring (``genres.responder.assembly.register_responder`` builds the runtime's parts and calls
``subscribe_responder``; the composition root starts it)::

    runtime = register_responder(broker, settings=settings, engine=engine, publisher=publisher)
    await publisher.start()
    await runtime.start()   # the outcome listener, positioned before any request is served
    await broker.start()
    ...
    await broker.stop()
    await runtime.stop()    # waits (bounded) for the requests in flight

How a request is handled:

* The FastStream subscriber only hands the raw record to a task and returns; each request
  runs in its own task (at most ``max_in_flight`` at once; beyond that the subscriber waits
  for a slot, which is the back-pressure). A request waiting for a classification
  (``wait_ms``) therefore never holds up the others. The reply is published by the task
  itself to the ``reply_to`` topic **as given** (no prefix), with the request's
  ``correlation_id`` header, so FastStream's automatic reply is switched off
  (``no_reply=True``).
* Commit policy: ``AckPolicy.ACK_FIRST`` (offsets auto-committed in the background). A
  responder that crashes loses the requests it was answering; their requesters time out
  and may ask again. Requests are cheap to repeat and are answered within seconds, so
  at-most-once is the right trade here (redelivering stale requests would only produce
  replies nobody waits for).
* A request whose value cannot be parsed gets a reply with ``error.kind =
  invalid_request`` (``track_id`` when the JSON had a usable one). A request without a
  ``reply_to`` header (or with one that is not UTF-8, or to which the reply cannot be
  published) goes to ``track.recommended_tags.dlq`` with the reason.
* ``correlation_id`` is echoed back byte for byte, whatever it holds (UTF-8 or not): the
  requester matches on it, and a requester that can send bytes can compare bytes, so there
  is nothing to gain from dead-lettering an odd id. A request without one is still answered
  (without the header). FastStream's own parser decodes every header as UTF-8 and would drop
  such a record, so this subscriber has a parser that tolerates undecodable headers.

Where the rest lives: the decisions in ``rule.py`` (``recommend``, ``SingleFlight``); the
request tasks, their lifecycle and the reply path in ``runtime.py``; the outcome listener in
``outcomes.py`` and a request's wait on it in ``watch.py``; the SQL in ``tracks.py``.
"""

from __future__ import annotations

from typing import Any

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.message import StreamMessage

from genres.config import Settings
from genres.kafka.entry import BusEntry, Subscribed
from genres.responder.outcomes import RESPONDER_FETCH_MAX_WAIT_MS, OutcomeListener
from genres.responder.runtime import DEFAULT_MAX_IN_FLIGHT, ResponderRuntime
from genres.subscriptions import RESPONDER

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "RESPONDER_FETCH_MAX_WAIT_MS",
    "OutcomeListener",
    "ResponderRuntime",
    "subscribe_responder",
]

GROUP = RESPONDER.group


async def _record_decoder(message: StreamMessage[Any]) -> Any:
    """The "body" is the untouched record: the handler validates the bytes itself.

    (Taking the record this way, rather than through an injected ``KafkaMessage``, avoids
    FastDepends resolving a context field in a worker thread for every request.)
    """
    return message.raw_message


def subscribe_responder(
    broker: KafkaBroker, *, settings: Settings, runtime: ResponderRuntime
) -> Subscribed:
    """Subscribe ``runtime`` to ``track.recommended_tags`` on ``broker`` (its parts are built
    by :mod:`genres.responder.assembly`). Start the runtime before the broker."""
    entry = BusEntry.of(
        RESPONDER,
        settings,
        fetch_max_wait_ms=min(settings.kafka_fetch_max_wait_ms, RESPONDER_FETCH_MAX_WAIT_MS),
    )

    async def handle_request(record: Any) -> None:
        await runtime.accept(record)

    runtime.subscribed = subscribed = entry.subscribed(
        broker,
        ack_policy=AckPolicy.ACK_FIRST,
        no_reply=True,
        decoder=_record_decoder,
        title="recommended_tags",
        description="Answers RecommendedTagsRequest with RecommendedTags on reply_to.",
    )
    subscribed.subscriber(handle_request)
    return subscribed
