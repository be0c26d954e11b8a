"""Choosing and building the configured classifier backend, with the HTTP client it needs."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import httpx

from genres.classify.pacing import CreationPacer
from genres.classify.port import Checkpoint, Classification, Classifier
from genres.classify.replicate import ReplicateClassifier
from genres.config import Backend, Settings
from genres.errors import NotConfigured
from genres_contracts import ModelRef


class NoClassifier:
    """``CLASSIFIER_BACKEND=none``: every classification fails as not configured."""

    model = ModelRef(name="none", version="0")

    async def classify(self, audio: str, checkpoint: Checkpoint | None = None) -> Classification:
        raise NotConfigured("no classifier backend is configured (CLASSIFIER_BACKEND=none)")

    async def aclose(self) -> None:
        return None


def replicate_session(settings: Settings) -> aiohttp.ClientSession:
    """One long-lived session for Replicate (call it inside the event loop).

    aiohttp rather than httpx here, a measured choice: at 64 classifications in flight, two
    calls each, httpx spent 3.2 ms of CPU per classification and aiohttp 1.2 ms
    (docs/decisions/0009), and the classifier's throughput is bounded by that CPU.
    """
    connector = aiohttp.TCPConnector(
        limit=max(8, settings.classifications_in_flight),
        ssl=ssl.create_default_context(),
        ttl_dns_cache=300,
    )
    return aiohttp.ClientSession(
        connector=connector,
        # Replicate needs no cookies; a jar would only carry state between predictions.
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=60.0),
    )


def audio_http_client() -> httpx.AsyncClient:
    """The local backend's client for fetching audio (its own limits apply per fetch)."""
    return httpx.AsyncClient(timeout=httpx.Timeout(30.0))


@contextlib.asynccontextmanager
async def open_classifier(
    settings: Settings,
    *,
    allow_local_paths: bool = False,
    on_retry: Callable[[str], None] | None = None,
    on_throttled: Callable[[str], None] | None = None,
) -> AsyncIterator[Classifier]:
    """The configured backend with the HTTP client it needs, both closed on exit."""
    async with contextlib.AsyncExitStack() as stack:
        classifier: Classifier
        if settings.backend is Backend.REPLICATE:
            pacer = await creation_pacer(settings)
            stack.push_async_callback(pacer.aclose)
            session = await stack.enter_async_context(replicate_session(settings))
            classifier = build_replicate_classifier(
                settings, session, on_retry=on_retry, on_throttled=on_throttled, pacer=pacer
            )
        elif settings.backend is Backend.LOCAL:
            from genres.classify.local.classifier import LocalClassifier

            client = await stack.enter_async_context(audio_http_client())
            classifier = LocalClassifier.from_settings(
                settings, client, allow_local_paths=allow_local_paths
            )
        elif settings.backend is Backend.CASCADE:
            from genres.classify.cascade import CascadeClassifier
            from genres.classify.local.classifier import LocalClassifier

            # LOCAL_HEAD is the local classifier's (from_settings): the cascade reads only the
            # top probability of what it answers.
            client = await stack.enter_async_context(audio_http_client())
            local = LocalClassifier.from_settings(
                settings, client, allow_local_paths=allow_local_paths
            )
            pacer = await creation_pacer(settings)
            stack.push_async_callback(pacer.aclose)
            session = await stack.enter_async_context(replicate_session(settings))
            classifier = CascadeClassifier(
                local,
                build_replicate_classifier(
                    settings, session, on_retry=on_retry, on_throttled=on_throttled, pacer=pacer
                ),
                min_confidence=settings.cascade_min_confidence,
            )
        else:
            classifier = NoClassifier()
        stack.push_async_callback(classifier.aclose)
        yield classifier


async def creation_pacer(settings: Settings, **options: Any) -> CreationPacer:
    """The pace of Replicate creations: booked in the database when there is one, so that
    every classifier process on the account keeps to one cap and a restart does not burst;
    else this process's own. ``options``: :class:`CreationPacer`'s (tests scale time)."""
    book = None
    if settings.database_url:
        from genres.database.pace import DatabaseSlotBook, account_of

        book = await DatabaseSlotBook.connect(
            settings.database_url, account_of(settings.replicate_token or "")
        )
    return CreationPacer(
        settings.replicate_max_predictions_per_minute,
        classifications_in_flight=settings.classifications_in_flight,
        book=book,
        **options,
    )


def build_replicate_classifier(
    settings: Settings,
    session: aiohttp.ClientSession,
    *,
    on_retry: Callable[[str], None] | None = None,
    on_throttled: Callable[[str], None] | None = None,
    pacer: CreationPacer | None = None,
) -> ReplicateClassifier:
    """``on_retry``: told each retried HTTP step (metrics); ``on_throttled``: each step
    answered 429 (metrics). ``pacer``: the creations' pace
    (:func:`creation_pacer`; without one, this process's own)."""
    return ReplicateClassifier(
        session=session,
        token=settings.replicate_token or "",
        base_url=str(settings.replicate_base_url),
        version=settings.replicate_model_version,
        model_name=settings.replicate_model_name,
        top_n=settings.replicate_top_n,
        timeout_seconds=settings.replicate_timeout_seconds,
        max_attempts=settings.classifier_max_attempts,
        prefer_wait=settings.replicate_prefer_wait_seconds,
        limiter=pacer
        if pacer is not None
        else CreationPacer(
            settings.replicate_max_predictions_per_minute,
            classifications_in_flight=settings.classifications_in_flight,
        ),
        on_retry=on_retry,
        on_throttled=on_throttled,
    )
