"""The embedded musicnn model as an onnxruntime session, and the track-level analysis.

``musicnn_genres.onnx`` (made by ``scripts/convert_musicnn.py`` from musicnn 0.1.0's MSD and MTT
checkpoints, ISC licence, see ``MUSICNN_LICENSE.txt``) runs both models on the same log-mel
patches ``(N, 187, 96)`` and outputs sigmoid scores of the 33 genre tags ``(N, 33)`` named in
``musicnn_genres.json`` (which tags and why: ``tags.py``); it also outputs each model's whole
taggram (``msd_tags``, ``mtt_tags``), used to check the port. A track's scores are the mean
over its patches, as musicnn averages its taggram. Patches go through the model
``batch_size`` at a time, so memory stays bounded whatever the track's length. Small batches
are also the fastest here: measured on 2 cores (AMD EPYC, AVX-512) with the MSD model alone,
20 patches (one minute of audio) took 0.32 s of wall time in batches of
1 or 2, 0.38 s in batches of 4 and 0.45 s in batches of 10 (the activations of a small batch
stay in cache), and a batch of 10 needs ~100 MB more memory than a batch of 2.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from genres.classify.local.audio import SAMPLE_RATE, AudioSource, iter_decode, sample_windows
from genres.classify.local.frontend import (
    HOP,
    N_MELS,
    PATCH_FRAMES,
    LogMelStream,
    PatchStream,
    log_mel,
    to_patches,
)
from genres.errors import AudioError
from genres_contracts import FailureKind

HERE = Path(__file__).resolve().parent
MODEL_PATH = HERE / "musicnn_genres.onnx"
TAGS_PATH = HERE / "musicnn_genres.json"
MODEL_NAME = "musicnn/msd+mtt"
"""The name stored with the predictions; it was ``musicnn/msd`` for the MSD model alone."""
MUSICNN_VERSION = "0.1.0"

DEFAULT_BATCH_SIZE = 2
DEFAULT_THREADS = 2

Float32Array = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class _Session:
    """An onnxruntime session's ``run``, its input's name and its outputs' widths by name
    (the genre scores first)."""

    run: Any
    input: str
    widths: dict[str, int]


class MusicnnModel:
    """An onnxruntime session over ``musicnn_genres.onnx``; create once, share; thread-safe.

    The session is created by :meth:`load` or by the first prediction: a process that only
    names the model (its tags and version), as a parent of worker processes does, never pays
    for it in time or memory.
    """

    def __init__(
        self,
        model_path: Path = MODEL_PATH,
        tags_path: Path = TAGS_PATH,
        *,
        intra_op_threads: int = DEFAULT_THREADS,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.model_path = model_path
        self.tags_path = tags_path
        self.batch_size = batch_size
        tags = json.loads(tags_path.read_text())
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ValueError(f"{tags_path} is not a list of tag names")
        self.tags: tuple[str, ...] = tuple(tags)
        self._intra_op_threads = intra_op_threads
        self._session: _Session | None = None
        self._loading = threading.Lock()

    @property
    def loaded(self) -> bool:
        """Whether the session exists (it takes ~40 MB and a fraction of a second)."""
        return self._session is not None

    def load(self) -> MusicnnModel:
        """Create the onnxruntime session now, if not done yet (each thread may call it)."""
        self._loaded()
        return self

    def _loaded(self) -> _Session:
        session = self._session
        if session is None:
            with self._loading:
                if self._session is None:
                    self._session = self._open()
                session = self._session
        return session

    def _open(self) -> _Session:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Measured (bench/local_model.py): the extended level is as fast as "all" here and
        # needs less memory (no NCHWc reorders); without the arena and memory patterns, large
        # activations go back to the system after each batch instead of staying reserved.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.enable_cpu_mem_arena = False
        options.enable_mem_pattern = False
        # Do not spin idle threads: the event loop and other work share these cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Flush subnormal floats to zero (~15% faster here; outputs unchanged to 1e-7).
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
        options.log_severity_level = 3
        session: Any = ort.InferenceSession(
            str(self.model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        outputs = session.get_outputs()
        if len(self.tags) != outputs[0].shape[-1]:
            raise ValueError(
                f"{self.tags_path} names {len(self.tags)} tags; the model has "
                f"{outputs[0].shape[-1]}"
            )
        return _Session(
            run=session.run,
            input=session.get_inputs()[0].name,
            widths={o.name: int(o.shape[-1]) for o in outputs},
        )

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.model_path.read_bytes()).hexdigest()

    @property
    def version(self) -> str:
        """Stable: musicnn's version plus the converted file's hash."""
        return f"{MUSICNN_VERSION}+onnx-{self.sha256[:12]}"

    def predict(self, patches: Float32Array) -> Float32Array:
        """Sigmoid scores (N, tags) of log-mel patches (N, 187, 96), ``batch_size`` at a time."""
        return self.outputs(patches, next(iter(self._loaded().widths)))

    def outputs(self, patches: Float32Array, name: str) -> Float32Array:
        """The graph's output ``name`` for log-mel patches (N, 187, 96)."""
        patches = np.asarray(patches, dtype=np.float32)
        if patches.ndim != 3 or patches.shape[1:] != (PATCH_FRAMES, N_MELS):
            raise ValueError(f"patches must be (N, {PATCH_FRAMES}, {N_MELS}), not {patches.shape}")
        session = self._loaded()
        out: list[Float32Array] = []
        for start in range(0, len(patches), self.batch_size):
            batch = np.ascontiguousarray(patches[start : start + self.batch_size])
            out.append(session.run([name], {session.input: batch})[0])
        if not out:
            return np.zeros((0, session.widths[name]), np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)


@dataclass(frozen=True, slots=True)
class Analysis:
    """A track's mean tag scores and where the time went (seconds)."""

    scores: Float32Array
    """Mean sigmoid score per model tag (50,)."""
    patches: int
    audio_seconds: float
    decode_seconds: float
    frontend_seconds: float
    model_seconds: float

    @property
    def total_seconds(self) -> float:
        return self.decode_seconds + self.frontend_seconds + self.model_seconds


class _Accumulator:
    """Runs patches through the model in batches and sums their scores."""

    def __init__(self, model: MusicnnModel) -> None:
        self._model = model
        self._pending: list[Float32Array] = []
        self._pending_count = 0
        self.total: npt.NDArray[np.float64] = np.zeros(len(model.tags), np.float64)
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
        scores = self._model.predict(pending[:whole])
        self.seconds += time.perf_counter() - started
        self.total += scores.sum(axis=0, dtype=np.float64)
        self.count += len(scores)
        rest = pending[whole:]
        self._pending = [rest] if len(rest) else []
        self._pending_count = len(rest)


WINDOW_SAMPLES = (PATCH_FRAMES - 1) * HOP
"""Samples of one window: exactly the 187 frames of one patch (about 3 s)."""

DEFAULT_WINDOWS = 4
"""Windows classified per track by default (``LOCAL_WINDOWS``); measured with
``python -m bench local-model``: see README, "The embedded model"."""


def analyse(
    source: AudioSource,
    model: MusicnnModel,
    *,
    windows: int | None = None,
    max_seconds: float | None = None,
    cancel: threading.Event | None = None,
) -> Analysis:
    """The track's mean scores over ``windows`` patches spread across it (CPU-bound).

    ``windows=None`` analyses every patch of the track (its first ``max_seconds``): the cost
    grows with the length. With ``windows=N``, the N patches are sampled where the file allows
    seeking (``audio.sample_windows``: the cost is bounded whatever the length); else, and for
    short tracks, the track is decoded from its start (up to ``max_seconds``) and N patches
    evenly spread over it are run through the model.

    ``cancel``, when set from another thread, stops the work at the next chunk (raising
    ``AudioError``); a caller that gave up waiting uses it so abandoned work does not go on.
    """
    if windows is not None and windows < 1:
        raise ValueError("windows must be at least 1 (or None for every patch)")
    if windows is not None:
        started = time.perf_counter()
        sampled = sample_windows(source, count=windows, window_samples=WINDOW_SAMPLES)
        decode_s = time.perf_counter() - started
        if sampled is not None:
            _check(cancel)
            started = time.perf_counter()
            patches = np.stack([to_patches(log_mel(window))[0] for window in sampled])
            frontend_s = time.perf_counter() - started
            acc = _Accumulator(model)
            acc.add(patches)
            acc.finish()
            return _analysis(acc, len(sampled) * WINDOW_SAMPLES, decode_s, frontend_s)
    return _analyse_from_start(source, model, windows, max_seconds, cancel)


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise AudioError("the classification was abandoned", kind=FailureKind.INTERNAL)


def _analysis(acc: _Accumulator, samples: int, decode_s: float, frontend_s: float) -> Analysis:
    if acc.count == 0:
        raise AudioError("the audio is too short to classify", kind=FailureKind.AUDIO_UNREADABLE)
    return Analysis(
        scores=(acc.total / acc.count).astype(np.float32),
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
    chunks = iter_decode(source, max_seconds=max_seconds)
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
    if windows is not None and kept:
        picks = sorted({int((i + 0.5) * len(kept) / windows) for i in range(windows)})
        acc.add(np.stack([kept[i] for i in picks]))
    acc.finish()
    return _analysis(acc, samples, decode_s, frontend_s)
