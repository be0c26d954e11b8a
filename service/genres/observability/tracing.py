"""OpenTelemetry tracing: one trace from an upload to its projection.

* ``configure_tracing`` installs an SDK ``TracerProvider`` exporting over OTLP when
  ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set and an
  OTLP exporter package is installed; otherwise the global provider stays as it is (a no-op
  unless someone, such as a test, installed one) and every span below costs next to nothing.
* FastStream's ``KafkaTelemetryMiddleware`` traces the projector and responder hops.
* The classifier consumes and publishes with aiokafka directly, so it propagates by hand:
  the W3C ``traceparent`` of a consumed record is the parent of its consumer span, and the
  outcome it publishes carries that span's context in its headers.
* The projector consumes in batches, for which FastStream starts a new trace; it opens one
  span per record as a child of the record's own ``traceparent`` so the trace continues.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

log = logging.getLogger(__name__)

TRACER_NAME = "genres"
_configured = False

Headers = Iterable[tuple[str, bytes | None]]


def tracer() -> trace.Tracer:
    # A proxy until a provider is installed: spans made later go to whatever is installed then.
    return trace.get_tracer(TRACER_NAME)


def configure_tracing(service_name: str = "genres") -> Callable[[], Awaitable[None]] | None:
    """Install an OTLP-exporting provider when the standard environment asks for one.

    Returns a coroutine function that flushes its spans, or ``None`` when nothing was
    installed. A provider installed before (by a test, or by ``opentelemetry-instrument``) is
    left alone.
    """
    global _configured
    if _configured or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if not endpoint:
        return None
    exporter = _otlp_exporter()
    if exporter is None:
        log.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but no OTLP exporter package is installed "
            "(opentelemetry-exporter-otlp-proto-http or -grpc): tracing stays off"
        )
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _configured = True
    log.info("tracing to OTLP", extra={"endpoint": endpoint})

    async def flush() -> None:
        # The provider itself shuts down at exit (it registers that); a later `running` in
        # the same process keeps using it.
        await asyncio.to_thread(provider.force_flush, 5_000)

    return flush


def _otlp_exporter() -> Any:
    # Optional packages: the exporter reads its endpoint and headers from the environment.
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found]
            OTLPSpanExporter,
        )
    except ImportError:
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found]
                OTLPSpanExporter,
            )
        except ImportError:
            return None
    return OTLPSpanExporter()


def telemetry_middleware() -> Sequence[Any]:
    """FastStream's tracing middleware for the broker (``faststream[otel]``)."""
    try:
        from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
    except ImportError:  # pragma: no cover - faststream[otel] is a dependency
        return []
    return [KafkaTelemetryMiddleware()]


# -- propagation -------------------------------------------------------------------------


def extract(headers: Headers | None) -> otel_context.Context:
    """The trace context in Kafka headers (W3C ``traceparent``/``tracestate``, baggage)."""
    carrier: dict[str, str] = {}
    for name, value in headers or ():
        if value is None:
            continue
        try:
            carrier[name.lower()] = value.decode()
        except UnicodeDecodeError:
            continue
    return propagate.extract(carrier)


def outgoing_headers() -> list[tuple[str, bytes]]:
    """The current span's context as Kafka headers; empty when nothing is being traced."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [(name, value.encode()) for name, value in carrier.items()]


# -- spans -------------------------------------------------------------------------------


def _messaging_attributes(topic: str, partition: int, offset: int) -> dict[str, Any]:
    return {
        "messaging.system": "kafka",
        "messaging.destination.name": topic,
        "messaging.kafka.destination.partition": partition,
        "messaging.kafka.message.offset": offset,
        "messaging.operation": "process",
    }


@contextlib.contextmanager
def consume_span(
    topic: str, partition: int, offset: int, headers: Headers | None
) -> Iterator[Span]:
    """The current span while one consumed record is handled, child of its ``traceparent``."""
    with tracer().start_as_current_span(
        f"{topic} process",
        context=extract(headers),
        kind=SpanKind.CONSUMER,
        attributes=_messaging_attributes(topic, partition, offset),
    ) as span:
        yield span


@contextlib.contextmanager
def client_span(name: str, **attributes: Any) -> Iterator[Span]:
    """A call to another service (Replicate) as the current span."""
    with tracer().start_as_current_span(
        name, kind=SpanKind.CLIENT, attributes=attributes, record_exception=True
    ) as span:
        yield span


@contextlib.contextmanager
def record_spans(
    name: str, records: Sequence[tuple[str, int, int, Headers | None]]
) -> Iterator[list[Span]]:
    """One span per record of a batch, each a child of its own record's trace context.

    The batch is handled in one go, so none of them becomes current; all end together, with
    an error status when the block raises.
    """
    spans = [
        tracer().start_span(
            name,
            context=extract(headers),
            kind=SpanKind.CONSUMER,
            attributes=_messaging_attributes(topic, partition, offset),
        )
        for topic, partition, offset, headers in records
    ]
    try:
        yield spans
    except BaseException as exc:
        for span in spans:
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        for span in spans:
            span.end()
