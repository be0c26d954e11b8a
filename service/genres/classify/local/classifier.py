"""``LocalClassifier``: the ``Classifier`` port on the embedded musicnn model (MSD + MTT).

``classify(audio)`` takes an http(s) URL (downloaded with ``fetch.fetch_audio`` under the
configured limits) or, when ``allow_local_paths``, a path to a local file. The CPU-bound work
(decode, front end, model) runs in ``workers`` processes (``pool.py``: one per core by default,
``LOCAL_WORKERS`` caps it), or with ``workers=0`` in a worker thread of this process, at most
``max_parallel`` at a time (the model already uses ``intra_op_threads`` cores). Either way the
event loop stays free and memory stays bounded however many classifications are in flight.
Only genre tags are kept (``tags.py``), ranked on their full scores, ties by name, the top N
kept, confidences rounded to 4 places. With a trained ``head`` (``LOCAL_HEAD``), the head's
labels and probabilities on the track's embedding are ranked instead, and the stored model says
which head (``head_model_ref``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

import httpx

from genres.classify.local.analysis import DEFAULT_WINDOWS, Analysis, analyse
from genres.classify.local.audio import AudioSource
from genres.classify.local.fetch import (
    FetchedAudio,
    FetchPolicy,
    fetch_audio,
    is_http_url,
    looks_like_url,
)
from genres.classify.local.head import Head, check_head, head_model_ref, load_head
from genres.classify.local.length import MIN_SECONDS
from genres.classify.local.model import MODEL_NAME, MusicnnModel
from genres.classify.local.pool import ModelPool, available_cores
from genres.classify.local.tags import genre_indices
from genres.classify.port import Checkpoint, Classification, Timings
from genres.classify.ranking import rank
from genres.errors import AudioError
from genres_contracts import FailureKind, ModelRef

if TYPE_CHECKING:
    from genres.config import Settings


class LocalClassifier:
    """Classifies audio with musicnn's MSD model, on this machine's CPU."""

    def __init__(
        self,
        *,
        http_client: httpx.AsyncClient,
        model: MusicnnModel | None = None,
        top_n: int = 10,
        fetch_policy: FetchPolicy | None = None,
        max_seconds: float | None = 30 * 60.0,
        windows: int | None = DEFAULT_WINDOWS,
        max_parallel: int = 1,
        workers: int = 0,
        allow_local_paths: bool = True,
        head: Head | None = None,
        min_seconds: float = MIN_SECONDS,
    ) -> None:
        """``http_client`` is long-lived and owned by the caller (``aclose`` leaves it open).

        ``model`` defaults to the packaged ``musicnn_genres.onnx`` (loaded here, once, when no
        ``workers`` run it).
        ``windows`` is how many ~3 s windows, spread across the track, are classified (``None``:
        all of them); ``max_seconds`` caps the audio decoded from a track's start, when it is not
        sampled by seeking (see ``analysis.analyse``). ``workers``: processes running the packaged
        model (0: none, the analyses run on threads of this process with ``model``, at most
        ``max_parallel`` at a time).
        ``allow_local_paths`` lets ``classify`` take paths of local files, not only URLs.
        ``head``: a trained head whose labels are output instead of the model's tags; one
        trained on another version of the model is refused (``ConfigurationError``).
        ``min_seconds``: less audio than this fails as ``AUDIO_TOO_SHORT`` (see ``length``).
        """
        if top_n < 1:
            raise ValueError("top_n must be at least 1")
        if max_parallel < 1:
            raise ValueError("max_parallel must be at least 1")
        if workers < 0:
            raise ValueError("workers must be at least 0")
        self._http = http_client
        self._model = model if model is not None else MusicnnModel()
        if not workers:
            # Analyses run here: load now, so a broken model fails at start, not on a track.
            # With workers, this process only names the model; each worker loads its own.
            self._model.load()
        self._top_n = top_n
        self._policy = fetch_policy if fetch_policy is not None else FetchPolicy()
        self._max_seconds = max_seconds
        self._windows = windows
        self._min_seconds = min_seconds
        self._allow_local_paths = allow_local_paths
        # With workers, a slot is a worker process: the wait for one is measured as queued.
        self._slots = asyncio.Semaphore(workers or max_parallel)
        self._pool = ModelPool(workers) if workers else None
        self._genres = genre_indices(self._model.tags)
        self._head = head
        self._ref = ModelRef(name=MODEL_NAME, version=self._model.version)
        if head is not None:
            check_head(head, self._model)
            self._ref = head_model_ref(head, self._model)
        self._closed = False

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        http_client: httpx.AsyncClient,
        *,
        model: MusicnnModel | None = None,
        allow_local_paths: bool = True,
    ) -> LocalClassifier:
        """A classifier configured from ``Settings`` (``REPLICATE_TOP_N`` is the top N)."""
        return cls(
            http_client=http_client,
            model=model,
            top_n=settings.replicate_top_n,
            fetch_policy=FetchPolicy.from_settings(settings),
            max_seconds=settings.audio_max_seconds,
            windows=settings.local_windows or None,
            workers=(
                available_cores() if settings.local_workers is None else settings.local_workers
            ),
            allow_local_paths=allow_local_paths,
            head=load_head(settings.local_head) if settings.local_head is not None else None,
            min_seconds=settings.audio_min_seconds,
        )

    @property
    def model(self) -> ModelRef:
        return self._ref

    @property
    def top_n(self) -> int:
        return self._top_n

    async def classify(self, audio: str, checkpoint: Checkpoint | None = None) -> Classification:
        """``checkpoint`` is ignored: nothing runs outside this process to resume."""
        started = time.perf_counter()
        analysis, fetched, waited = await self._fetch_and_analyse(audio)
        return self._classification(analysis, started, fetched, waited)

    async def analyse(self, audio: str) -> Analysis:
        """The track's analysis (scores and embedding), fetched and run as ``classify`` does."""
        return (await self._fetch_and_analyse(audio))[0]

    async def _fetch_and_analyse(self, audio: str) -> tuple[Analysis, _Fetched | None, float]:
        if self._closed:
            raise RuntimeError("the classifier is closed")
        fetched: FetchedAudio | None = None
        source: AudioSource
        if is_http_url(audio):
            fetched = await fetch_audio(audio, client=self._http, policy=self._policy)
            source = fetched.file
        elif looks_like_url(audio):
            raise AudioError(
                "only http and https audio URLs (or local paths) are accepted",
                kind=FailureKind.AUDIO_URL_REFUSED,
            )
        elif not self._allow_local_paths:
            raise AudioError(
                "local paths are not accepted here; give an http(s) URL",
                kind=FailureKind.AUDIO_URL_REFUSED,
            )
        else:
            source = Path(audio)
        try:
            queued_at = time.perf_counter()
            async with self._slots:
                waited = time.perf_counter() - queued_at
                analysis = await self._analyse(source)
        finally:
            if fetched is not None:
                fetched.close()
        done = _Fetched(fetched.seconds, fetched.size) if fetched is not None else None
        return analysis, done, waited

    async def _analyse(self, source: AudioSource) -> Analysis:
        if self._pool is not None:
            if isinstance(source, str | os.PathLike):
                return await self._pool.analyse(
                    str(source),
                    max_seconds=self._max_seconds,
                    windows=self._windows,
                    min_seconds=self._min_seconds,
                )
            # A download crosses to the worker as bytes when small, else as a file of its own
            # (a spooled temporary file has no name), so memory stays bounded per worker.
            handover, spilled = await asyncio.to_thread(_handover, source)
            try:
                return await self._pool.analyse(
                    handover,
                    max_seconds=self._max_seconds,
                    windows=self._windows,
                    min_seconds=self._min_seconds,
                )
            finally:
                if spilled is not None:
                    await asyncio.to_thread(spilled.unlink, missing_ok=True)
        cancel = threading.Event()
        task = asyncio.ensure_future(
            asyncio.to_thread(
                analyse,
                source,
                self._model,
                windows=self._windows,
                max_seconds=self._max_seconds,
                cancel=cancel,
                min_seconds=self._min_seconds,
            )
        )
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # The caller gave up (e.g. its deadline): stop the thread at its next chunk, and
            # wait for it so the slot, the file and the memory are released in order.
            cancel.set()
            with contextlib.suppress(Exception):  # the abandoned work's outcome is moot
                await task
            raise

    def _classification(
        self,
        analysis: Analysis,
        started: float,
        fetched: _Fetched | None,
        waited: float,
    ) -> Classification:
        if self._head is not None:
            probabilities = self._head.probabilities(analysis.embedding)
            scores = dict(zip(self._head.labels, map(float, probabilities), strict=True))
        else:
            scores = {name: float(analysis.scores[i]) for i, name in self._genres}
        download = fetched.seconds if fetched is not None else 0.0
        return Classification(
            predictions=rank(scores, self._top_n),
            model=self._ref,
            timings=Timings(
                total=time.perf_counter() - started,
                predict=analysis.model_seconds,
                queued=download + waited,
            ),
            extra={
                "audio_seconds": round(analysis.audio_seconds, 3),
                "patches": analysis.patches,
                "decode_seconds": round(analysis.decode_seconds, 4),
                "frontend_seconds": round(analysis.frontend_seconds, 4),
                "model_seconds": round(analysis.model_seconds, 4),
                "download_seconds": round(download, 4),
                "download_bytes": fetched.size if fetched is not None else None,
            },
        )

    async def aclose(self) -> None:
        """Marks the classifier closed and stops its workers; the HTTP client belongs to the
        caller."""
        self._closed = True
        if self._pool is not None:
            await self._pool.aclose()


@dataclass(frozen=True, slots=True)
class _Fetched:
    """What a download cost, kept after its file is closed."""

    seconds: float
    size: int


HANDOVER_BYTES = 8 * 1024 * 1024
"""Downloads up to this size go to a worker as bytes; larger ones through a named file."""


def _handover(source: bytes | IO[bytes]) -> tuple[str | bytes, Path | None]:
    """What a worker is given for a download, and the file to delete afterwards, if any."""
    if isinstance(source, bytes):
        return source, None
    size = source.seek(0, os.SEEK_END)
    source.seek(0)
    if size <= HANDOVER_BYTES:
        return source.read(), None
    with tempfile.NamedTemporaryFile(prefix="genres-audio-", delete=False) as spill:
        shutil.copyfileobj(source, spill, 1024 * 1024)
    return spill.name, Path(spill.name)
