"""A track's analysis: its mean genre scores and embedding over patches sampled across it.

A track's scores (and its embedding, from the same run of the model) are the mean over its
patches, as musicnn averages its taggram. With
``windows``, a few ~3 s windows spread across the track are reached by seeking, so the cost per
track is bounded whatever its length; the model runs them ``batch_size`` at a time.

Before its scores are kept, a track decoded from its start is judged by ``length.judge``: too
short for the model (``min_seconds``) or decodable for much less than its file states, it fails
(``AUDIO_TOO_SHORT``, ``AUDIO_TRUNCATED``). A sampled track whose every window was found is
long enough by construction (its windows lie across its whole stated length); one with a window
missing (past the real end of a partial file) is decoded from its start and judged.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from genres.classify.local.audio import SAMPLE_RATE, AudioSource, iter_decode, sample_windows
from genres.classify.local.frontend import (
    HOP,
    PATCH_FRAMES,
    LogMelStream,
    PatchStream,
    log_mel,
    to_patches,
)
from genres.classify.local.length import MIN_SECONDS, DecodeReport, judge
from genres.classify.local.model import Float32Array, MusicnnModel
from genres.errors import AudioError
from genres_contracts import FailureKind


@dataclass(frozen=True, slots=True)
class Analysis:
    """A track's mean tag scores and where the time went (seconds)."""

    scores: Float32Array
    """Mean sigmoid score per model tag, in ``MusicnnModel.tags`` order (33,)."""
    embedding: Float32Array
    """Mean over the same patches of the model's embedding (1,506,): a trained head's input."""
    patches: int
    audio_seconds: float
    decode_seconds: float
    frontend_seconds: float
    model_seconds: float


class _Accumulator:
    """Runs patches through the model in batches and sums their scores and embeddings."""

    def __init__(self, model: MusicnnModel) -> None:
        self._model = model
        self._pending: list[Float32Array] = []
        self._pending_count = 0
        self.total: npt.NDArray[np.float64] = np.zeros(len(model.tags), np.float64)
        self.embedding: npt.NDArray[np.float64] | None = None
        self.count = 0
        self.seconds = 0.0

    def add(self, patches: Float32Array) -> None:
        if len(patches):
            self._pending.append(patches)
            self._pending_count += len(patches)
        if self._pending_count >= self._model.batch_size:
            self._run(final=False)

    def finish(self) -> None:
        self._run(final=True)

    def _run(self, *, final: bool) -> None:
        if not self._pending:
            return
        pending = np.concatenate(self._pending)
        size = self._model.batch_size
        whole = len(pending) if final else len(pending) // size * size
        started = time.perf_counter()
        scores, embedding = self._model.predict_with_embedding(pending[:whole])
        self.seconds += time.perf_counter() - started
        self.total += scores.sum(axis=0, dtype=np.float64)
        summed = embedding.sum(axis=0, dtype=np.float64)
        self.embedding = summed if self.embedding is None else self.embedding + summed
        self.count += len(scores)
        rest = pending[whole:]
        self._pending = [rest] if len(rest) else []
        self._pending_count = len(rest)


WINDOW_SAMPLES = (PATCH_FRAMES - 1) * HOP
"""Samples of one window: exactly the 187 frames of one patch (about 3 s)."""

DEFAULT_WINDOWS = 4
"""Windows classified per track by default (``LOCAL_WINDOWS``); measured with
``python -m bench local-model``: docs/decisions/0005 and docs/benchmarks.md."""


def analyse(
    source: AudioSource,
    model: MusicnnModel,
    *,
    windows: int | None = None,
    max_seconds: float | None = None,
    cancel: threading.Event | None = None,
    min_seconds: float = MIN_SECONDS,
) -> Analysis:
    """The track's mean scores over ``windows`` patches spread across it (CPU-bound).

    ``windows=None`` analyses every patch of the track (its first ``max_seconds``): the cost
    grows with the length. With ``windows=N``, the N patches are sampled where the file allows
    seeking (``audio.sample_windows``: the cost is bounded whatever the length); else, and for
    short tracks, the track is decoded from its start (up to ``max_seconds``) and N patches
    evenly spread over it are run through the model. A track shorter than ``min_seconds``
    or cut short of its stated length raises ``AudioError`` (see ``length``) before its
    scores are kept; ``min_seconds=0`` keeps only the second rule.

    ``cancel``, when set from another thread, stops the work at the next chunk (raising
    ``AudioError``); a caller that gave up waiting uses it so abandoned work does not go on.
    """
    if windows is not None and windows < 1:
        raise ValueError("windows must be at least 1 (or None for every patch)")
    if windows is not None:
        started = time.perf_counter()
        sampled = sample_windows(source, count=windows, window_samples=WINDOW_SAMPLES)
        decode_s = time.perf_counter() - started
        # Every window found: the audio spans the file's stated length. A window missing (a
        # partial file), or a minimum longer than the windows: decoded from the start, judged.
        if (
            sampled is not None
            and len(sampled) == windows
            and min_seconds <= windows * WINDOW_SAMPLES / SAMPLE_RATE
        ):
            _check(cancel)
            started = time.perf_counter()
            patches = np.stack([to_patches(log_mel(window))[0] for window in sampled])
            frontend_s = time.perf_counter() - started
            acc = _Accumulator(model)
            acc.add(patches)
            acc.finish()
            return _analysis(acc, len(sampled) * WINDOW_SAMPLES, decode_s, frontend_s)
    return _analyse_from_start(source, model, windows, max_seconds, cancel, min_seconds)


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise AudioError("the classification was abandoned", kind=FailureKind.INTERNAL)


def _analysis(acc: _Accumulator, samples: int, decode_s: float, frontend_s: float) -> Analysis:
    if acc.count == 0 or acc.embedding is None:
        raise AudioError("the audio is too short to classify", kind=FailureKind.AUDIO_UNREADABLE)
    return Analysis(
        scores=(acc.total / acc.count).astype(np.float32),
        embedding=(acc.embedding / acc.count).astype(np.float32),
        patches=acc.count,
        audio_seconds=samples / SAMPLE_RATE,
        decode_seconds=decode_s,
        frontend_seconds=frontend_s,
        model_seconds=acc.seconds,
    )


def _analyse_from_start(
    source: AudioSource,
    model: MusicnnModel,
    windows: int | None,
    max_seconds: float | None,
    cancel: threading.Event | None,
    min_seconds: float,
) -> Analysis:
    """Decode from the start; every patch to the model, or ``windows`` of them spread evenly.

    Kept patches cost 72 kB each (at most 600 for 30 minutes), so choosing them at the end
    stays bounded by ``max_seconds``.
    """
    decode_s = frontend_s = 0.0
    samples = 0
    mel = LogMelStream()
    patcher = PatchStream()
    acc = _Accumulator(model)
    kept: list[Float32Array] = []
    report = DecodeReport()
    chunks = iter_decode(source, max_seconds=max_seconds, report=report)
    try:
        while True:
            started = time.perf_counter()
            chunk = next(chunks, None)
            decode_s += time.perf_counter() - started
            _check(cancel)
            started = time.perf_counter()
            if chunk is None:
                patches = np.concatenate([patcher.push(mel.finish()), patcher.finish()])
            else:
                samples += len(chunk)
                patches = patcher.push(mel.push(chunk))
            frontend_s += time.perf_counter() - started
            if windows is None:
                acc.add(patches)
            elif len(patches):
                kept.extend(patches)
            if chunk is None:
                break
    finally:
        chunks.close()
    judge(report, min_seconds=min_seconds)
    if windows is not None and kept:
        picks = sorted({int((i + 0.5) * len(kept) / windows) for i in range(windows)})
        acc.add(np.stack([kept[i] for i in picks]))
    acc.finish()
    return _analysis(acc, samples, decode_s, frontend_s)
