"""Choosing and building the configured classifier backend."""

from __future__ import annotations

import ssl
from collections.abc import Callable

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


def replicate_http_clients(settings: Settings) -> list[httpx.AsyncClient]:
    """Long-lived clients for Replicate; how many is a measured choice (README, bench)."""
    limits = httpx.Limits(
        max_connections=max(8, settings.classifier_concurrency),
        max_keepalive_connections=max(8, settings.classifier_concurrency),
    )
    # One TLS context for all: building one per client costs ~25 ms of CPU each.
    tls = ssl.create_default_context()
    return [
        httpx.AsyncClient(timeout=httpx.Timeout(30.0), limits=limits, verify=tls)
        for _ in range(settings.replicate_http_clients)
    ]


def build_classifier(
    settings: Settings,
    http_clients: list[httpx.AsyncClient],
    *,
    allow_local_paths: bool = False,
    on_retry: Callable[[str], None] | None = None,
) -> Classifier:
    """The configured backend. Local paths only for the command line: a message must not be
    able to name a file on the server. ``on_retry``: Replicate's retried HTTP steps (metrics)."""
    backend = settings.backend
    if backend is Backend.REPLICATE:
        return ReplicateClassifier(
            clients=http_clients,
            token=settings.replicate_token or "",
            base_url=str(settings.replicate_base_url),
            version=settings.replicate_model_version,
            model_name=settings.replicate_model_name,
            top_n=settings.replicate_top_n,
            timeout_seconds=settings.replicate_timeout_seconds,
            max_attempts=settings.classifier_max_attempts,
            prefer_wait=settings.replicate_prefer_wait_seconds,
            limiter=CreationPacer(settings.replicate_max_predictions_per_minute),
            on_retry=on_retry,
        )
    if backend is Backend.LOCAL:
        from genres.classify.local.classifier import LocalClassifier

        return LocalClassifier.from_settings(
            settings, http_clients[0], allow_local_paths=allow_local_paths
        )
    return NoClassifier()
