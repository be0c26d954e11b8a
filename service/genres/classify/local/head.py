"""A trained head: multinomial logistic regression on the embedded model's embedding.

``genres learn`` (``learn.py``) writes one; ``LOCAL_HEAD=PATH`` makes the local classifier
answer with its labels instead of the model's 33 tags. The file is an ``.npz`` without pickled
objects (``np.load(allow_pickle=False)``): ``weights`` (D, K), ``bias`` (K,), ``mean`` and
``scale`` (D,) (the standardisation, applied before the weights), and ``meta``: UTF-8 JSON
(as bytes) with ``labels``, ``base_model`` (the embedded model's name and version the
embedding came from), ``counts`` per label and the cross-validated figures. Its ``digest`` is
the sha256 of the file's bytes: the stored model version names it (``head_model_ref``). A head
trained on another version of the embedded model is refused (``check_head``).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from genres.classify.local.model import MODEL_NAME, MusicnnModel
from genres.errors import ConfigurationError
from genres_contracts import ModelRef

Float32Array = npt.NDArray[np.float32]
FORMAT = "genres-head/1"
"""The file format written in ``meta``; another format is refused when loading."""


class HeadFileError(ValueError):
    """A head file that cannot be read or is not a head."""


def softmax(logits: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float64]:
    """Row-wise softmax, stable for large logits."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=-1, keepdims=True), np.float64)


@dataclass(frozen=True, eq=False)
class Head:
    """A multinomial logistic head over embeddings of width ``weights.shape[0]``."""

    labels: tuple[str, ...]
    base_model: str
    """The embedded model's ``name@version`` whose embedding the head was trained on."""
    weights: Float32Array
    bias: Float32Array
    mean: Float32Array
    scale: Float32Array
    meta: dict[str, Any] = field(default_factory=dict)
    """Everything else the file says: counts per label, cross-validated figures, settings."""
    digest: str = ""
    """sha256 of the file's bytes ("" until written or loaded)."""

    def __post_init__(self) -> None:
        d, k = self.weights.shape
        if k != len(self.labels) or self.bias.shape != (k,):
            raise HeadFileError(f"the head has {len(self.labels)} labels but weights for {k}")
        if self.mean.shape != (d,) or self.scale.shape != (d,):
            raise HeadFileError("the head's standardisation does not match its weights")
        if len(set(self.labels)) != len(self.labels) or k < 2:
            raise HeadFileError("a head needs at least two distinct labels")

    @property
    def width(self) -> int:
        return int(self.weights.shape[0])

    def probabilities(self, embedding: npt.ArrayLike) -> Float32Array:
        """One probability per label (summing to 1) for one embedding (D,), or rows (N, D)."""
        x = np.asarray(embedding, np.float32)
        if x.shape[-1] != self.width:
            raise ValueError(f"the head expects embeddings of {self.width}, not {x.shape[-1]}")
        logits = ((x - self.mean) / self.scale) @ self.weights + self.bias
        return softmax(logits).astype(np.float32)

    def top(self, embedding: npt.ArrayLike, n: int) -> list[tuple[str, float]]:
        """The ``n`` most probable labels, most probable first (ties by label)."""
        p = self.probabilities(embedding)
        order = sorted(range(len(self.labels)), key=lambda i: (-float(p[i]), self.labels[i]))
        return [(self.labels[i], float(p[i])) for i in order[:n]]

    def to_bytes(self) -> bytes:
        meta = {**self.meta, "format": FORMAT, "labels": list(self.labels)}
        meta["base_model"] = self.base_model
        buffer = io.BytesIO()
        np.savez(
            buffer,
            weights=self.weights.astype(np.float32),
            bias=self.bias.astype(np.float32),
            mean=self.mean.astype(np.float32),
            scale=self.scale.astype(np.float32),
            meta=np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8),
        )
        return buffer.getvalue()

    def save(self, path: Path) -> Head:
        """Writes the file (atomically: a temporary file renamed); the head with its digest."""
        data = self.to_bytes()
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(data)
        partial.replace(path)
        return Head.from_bytes(data)

    @classmethod
    def load(cls, path: Path) -> Head:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise HeadFileError(f"cannot read the head {path}: {exc.strerror or exc}") from None
        return cls.from_bytes(data, name=str(path))

    @classmethod
    def from_bytes(cls, data: bytes, *, name: str = "the head") -> Head:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in ("weights", "bias", "mean", "scale", "meta")}
            meta = json.loads(arrays.pop("meta").tobytes().decode())
        except (OSError, ValueError, KeyError) as exc:
            raise HeadFileError(
                f"{name} is not a head file written by genres learn ({exc})"
            ) from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise HeadFileError(f"{name} is not a {FORMAT} file")
        labels = meta.pop("labels")
        base_model = meta.pop("base_model")
        meta.pop("format")
        return cls(
            labels=tuple(str(label) for label in labels),
            base_model=str(base_model),
            weights=arrays["weights"].astype(np.float32),
            bias=arrays["bias"].astype(np.float32),
            mean=arrays["mean"].astype(np.float32),
            scale=arrays["scale"].astype(np.float32),
            meta=meta,
            digest=hashlib.sha256(data).hexdigest(),
        )


def base_model_id(name: str, version: str) -> str:
    """How a head names the embedded model it was trained on."""
    return f"{name}@{version}"


HEAD_SUFFIX = "+head"
"""The stored model name with a head: ``musicnn/msd+mtt+head``."""


def head_model_ref(head: Head, model: MusicnnModel) -> ModelRef:
    """The stored model of a head's answers: the base model's name and version, plus the head's
    digest, so a new head (or a new base model) is another model to ``backfill --other-model``."""
    return ModelRef(
        name=MODEL_NAME + HEAD_SUFFIX, version=f"{model.version}+head-{head.digest[:16]}"
    )


def check_head(head: Head, model: MusicnnModel) -> None:
    """Refuse a head trained on the embedding of another model or version (one line)."""
    expected = base_model_id(MODEL_NAME, model.version)
    if head.base_model != expected:
        raise ConfigurationError(
            f"LOCAL_HEAD was trained on {head.base_model}, not on this service's model "
            f"{expected}: train it again with genres learn"
        )


def load_head(path: Path) -> Head:
    try:
        return Head.load(path)
    except HeadFileError as exc:
        raise ConfigurationError(f"LOCAL_HEAD: {exc}") from None
