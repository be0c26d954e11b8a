"""The embedded musicnn model as an onnxruntime session (a track's analysis: ``analysis.py``).

``musicnn_genres.onnx`` (made by ``scripts/convert_musicnn.py`` from musicnn 0.1.0's MSD and MTT
checkpoints, ISC licence, see ``MUSICNN_LICENSE.txt``) runs both models on the same log-mel
patches ``(N, 187, 96)`` and outputs sigmoid scores of the 33 genre tags ``(N, 33)`` named in
``musicnn_genres.json`` (which tags and why: ``tags.py``); it also outputs each model's whole
taggram (``msd_tags``, ``mtt_tags``), used to check the port, MSD's pooled mid-level features
(``embedding``, 1,506 per patch: what a trained head learns from) and its penultimate layer
(``msd_penultimate``, 200; measured as a head's input, and worse: docs/decisions/0006).
Patches go through the model ``batch_size`` at a time, so memory stays bounded whatever the
track's length. Small batches are also the fastest here: measured on 2 cores (AMD EPYC,
AVX-512) with the MSD model alone, 20 patches (one minute of audio) took 0.32 s of wall time in
batches of 1 or 2, 0.38 s in batches of 4 and 0.45 s in batches of 10 (the activations of a
small batch stay in cache), and a batch of 10 needs ~100 MB more memory than a batch of 2.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from genres.classify.local.frontend import N_MELS, PATCH_FRAMES

HERE = Path(__file__).resolve().parent
MODEL_PATH = HERE / "musicnn_genres.onnx"
TAGS_PATH = HERE / "musicnn_genres.json"
MODEL_NAME = "musicnn/msd+mtt"
"""The name stored with the predictions; it was ``musicnn/msd`` for the MSD model alone."""
MUSICNN_VERSION = "0.1.0"
SCORES = "genres"
"""The graph's output of genre scores, one per tag of ``musicnn_genres.json``."""
EMBEDDING = "embedding"
"""The graph's output of MSD's pooled mid-level features (1,506 per patch): what a trained head
(``head.py``) learns from; computed on the way to the scores, so asking for it costs no pass."""

DEFAULT_BATCH_SIZE = 2
DEFAULT_THREADS = 2

Float32Array = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class _Session:
    """An onnxruntime session's ``run``, its input's name and its outputs' widths by name."""

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
        """Whether the session exists (~20 MB of memory and a fraction of a second to create)."""
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
        widths = {o.name: int(o.shape[-1]) for o in session.get_outputs()}
        if len(self.tags) != widths[SCORES]:
            raise ValueError(
                f"{self.tags_path} names {len(self.tags)} tags; the model has {widths[SCORES]}"
            )
        return _Session(run=session.run, input=session.get_inputs()[0].name, widths=widths)

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.model_path.read_bytes()).hexdigest()

    @property
    def version(self) -> str:
        """Stable: musicnn's version plus the converted file's hash."""
        return f"{MUSICNN_VERSION}+onnx-{self.sha256[:12]}"

    def predict(self, patches: Float32Array) -> Float32Array:
        """Sigmoid scores (N, tags) of log-mel patches (N, 187, 96), ``batch_size`` at a time."""
        return self.outputs(patches, SCORES)

    def predict_with_embedding(self, patches: Float32Array) -> tuple[Float32Array, Float32Array]:
        """Scores (N, tags) and embeddings (N, 1506) of the patches, from one run of the graph."""
        scores, embedding = self.run(patches, (SCORES, EMBEDDING))
        return scores, embedding

    def outputs(self, patches: Float32Array, name: str) -> Float32Array:
        """The graph's output ``name`` for log-mel patches (N, 187, 96)."""
        return self.run(patches, (name,))[0]

    def run(self, patches: Float32Array, names: tuple[str, ...]) -> list[Float32Array]:
        """The graph's outputs ``names`` for log-mel patches (N, 187, 96), from one run."""
        patches = np.asarray(patches, dtype=np.float32)
        if patches.ndim != 3 or patches.shape[1:] != (PATCH_FRAMES, N_MELS):
            raise ValueError(f"patches must be (N, {PATCH_FRAMES}, {N_MELS}), not {patches.shape}")
        session = self._loaded()
        out: list[list[Float32Array]] = [[] for _ in names]
        for start in range(0, len(patches), self.batch_size):
            batch = np.ascontiguousarray(patches[start : start + self.batch_size])
            for kept, value in zip(
                out, session.run(list(names), {session.input: batch}), strict=True
            ):
                kept.append(value)
        return [
            np.concatenate(kept).astype(np.float32, copy=False)
            if kept
            else np.zeros((0, session.widths[name]), np.float32)
            for name, kept in zip(names, out, strict=True)
        ]
