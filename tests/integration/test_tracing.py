"""One trace from an upload to its projection, across the classifier and the projector."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy.ext.asyncio import AsyncEngine

from genres.bootstrap import ALL_ROLES, running
from genres.config import Settings
from genres_contracts import topics
from tests.support.broker import KafkaTestBed
from tests.support.bus import producer
from tests.support.database import insert_track
from tests.support.fake_replicate import FakeReplicate
from tests.support.service import send_upload
from tests.support.waiting import eventually

_EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Finished spans of this test; the global provider can be set once per process."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
        provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    if not getattr(provider, "_genres_test_exporter", False):
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        provider._genres_test_exporter = True  # type: ignore[attr-defined]
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


async def wait_for_span(
    exporter: InMemorySpanExporter, where: Callable[[ReadableSpan], bool]
) -> ReadableSpan:
    found: list[ReadableSpan] = []

    def finished() -> bool:
        found.extend(s for s in exporter.get_finished_spans() if where(s))
        return bool(found)

    await eventually(
        finished,
        what="the span",
        diagnose=lambda: f"finished: {[s.name for s in exporter.get_finished_spans()]}",
    )
    return found[0]


async def test_an_upload_and_its_projection_share_one_trace(
    kafka: KafkaTestBed,
    make_settings: Callable[..., Settings],
    fake_replicate: FakeReplicate,
    engine: AsyncEngine,
    spans: InMemorySpanExporter,
) -> None:
    settings = make_settings(fake_replicate)
    await insert_track(engine, 31, "f31")
    # The platform's upload span, as another service would propagate it.
    trace_id = secrets.token_hex(16)
    upload_span_id = secrets.token_hex(8)
    traceparent = f"00-{trace_id}-{upload_span_id}-01"

    async with running(settings, ALL_ROLES), producer(kafka.bootstrap_servers) as client:
        await send_upload(client, kafka, 31, "f31", headers=[("traceparent", traceparent.encode())])
        projected = await wait_for_span(
            spans, lambda s: s.name == f"{kafka.topic(topics.GENRES_CLASSIFIED)} project"
        )

    finished = spans.get_finished_spans()
    in_trace = [
        s for s in finished if s.context is not None and s.context.trace_id == int(trace_id, 16)
    ]
    by_name = {s.name: s for s in in_trace}
    consumed = by_name[f"{kafka.topic(topics.TRACK_UPLOADED)} process"]
    classify = by_name["classify replicate"]

    assert projected.context is not None
    assert format(projected.context.trace_id, "032x") == trace_id
    # upload -> classifier's consumer span -> Replicate client span; -> projection.
    assert consumed.parent is not None
    assert format(consumed.parent.span_id, "016x") == upload_span_id
    assert consumed.kind is SpanKind.CONSUMER
    assert classify.kind is SpanKind.CLIENT
    assert classify.parent is not None
    assert consumed.context is not None
    assert classify.parent.span_id == consumed.context.span_id
    assert projected.parent is not None
    assert projected.parent.span_id == consumed.context.span_id
    assert projected.attributes is not None
    assert projected.attributes["messaging.destination.name"] == kafka.topic(
        topics.GENRES_CLASSIFIED
    )
