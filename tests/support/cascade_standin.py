"""A stand-in for the embedded model with a trained head, for the cascade's tests and bench.

The real head (``genres.classify.local.head.Head``, trained by ``genres learn`` on the musicnn
embedding) is another change of issue 21; this stand-in has its interface (``labels``,
``digest``, ``probabilities``, ``top``) and learns the same way (multinomial logistic
regression, numpy), but on synthetic embeddings: each class a Gaussian cloud around its own
centre, the clouds overlapping so that some tracks are unsure. ``StandInLocal`` is the
``Classifier`` port over it: an audio URL's embedding is looked up, the head's top N are the
predictions, as the local backend with ``LOCAL_HEAD`` answers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from genres.classify.port import Checkpoint, Classification, Timings
from genres.classify.ranking import discogs_name
from genres.errors import AudioError
from genres_contracts import ModelRef, Prediction

Matrix = npt.NDArray[np.float64]

CLASSES = (
    "Reggae---Roots Reggae",
    "Electronic---House",
    "Rock---Punk",
    "Jazz---Bop",
    "Classical---Baroque",
    "Folk, World, & Country---Country",
)
"""Discogs labels: the fake Replicate answers a clip's with it; the head learns its name."""


@dataclass(frozen=True)
class Clip:
    url: str
    label: str
    """The Discogs label (the teacher's answer)."""
    embedding: Matrix


def collection(
    per_class: int, *, seed: int, dimensions: int = 16, spread: float = 1.8, base: str
) -> list[Clip]:
    """``per_class`` clips of each of ``CLASSES``, served (notionally) under ``base``."""
    rng = np.random.default_rng(seed)
    # The same centres for every call with the same dimensions: train and test clips of a
    # class come from one cloud.
    centres = np.random.default_rng(21).normal(size=(len(CLASSES), dimensions)) * 1.2
    clips = []
    for index, label in enumerate(CLASSES):
        for number in range(per_class):
            embedding = centres[index] + rng.normal(scale=spread, size=dimensions)
            clips.append(Clip(f"{base}/{seed}-{index}-{number}.mp3", label, embedding))
    order = rng.permutation(len(clips))
    return [clips[i] for i in order]


class StandInHead:
    """A multinomial logistic regression over embeddings (``Head``'s interface)."""

    def __init__(self, labels: Sequence[str], weights: Matrix, bias: Matrix) -> None:
        self.labels = tuple(labels)
        self._weights = weights
        self._bias = bias
        self.digest = hashlib.sha256(weights.tobytes() + bias.tobytes()).hexdigest()[:16]
        self.base_model = "musicnn/msd+mtt stand-in"

    @classmethod
    def fit(cls, clips: Sequence[Clip], *, steps: int = 400, l2: float = 0.05) -> StandInHead:
        labels = sorted({discogs_name(clip.label) for clip in clips})
        x = np.stack([clip.embedding for clip in clips])
        y = np.array([labels.index(discogs_name(clip.label)) for clip in clips])
        onehot = np.eye(len(labels))[y]
        weights = np.zeros((x.shape[1], len(labels)))
        bias = np.zeros(len(labels))
        for _ in range(steps):
            probabilities = _softmax(x @ weights + bias)
            error = (probabilities - onehot) / len(x)
            weights -= 0.5 * (x.T @ error + l2 * weights)
            bias -= 0.5 * error.sum(axis=0)
        return cls(labels, weights, bias)

    def probabilities(self, embedding: Matrix) -> Matrix:
        return _softmax(embedding @ self._weights + self._bias)

    def top(self, embedding: Matrix, n: int) -> list[tuple[str, float]]:
        probabilities = self.probabilities(embedding)
        order = np.argsort(-probabilities, kind="stable")[:n]
        return [(self.labels[i], float(probabilities[i])) for i in order]


def _softmax(logits: Matrix) -> Matrix:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    result: Matrix = shifted / shifted.sum(axis=-1, keepdims=True)
    return result


class StandInLocal:
    """The ``Classifier`` port: the local backend with a head, on looked-up embeddings."""

    def __init__(self, head: StandInHead, clips: Sequence[Clip], *, top_n: int = 5) -> None:
        self._head = head
        self._embeddings = {clip.url: clip.embedding for clip in clips}
        self._top_n = top_n
        self.model = ModelRef(name="musicnn/msd+mtt+head", version=head.digest)
        self.calls: list[str] = []

    async def classify(self, audio: str, checkpoint: Checkpoint | None = None) -> Classification:
        self.calls.append(audio)
        embedding = self._embeddings.get(audio)
        if embedding is None:
            raise AudioError(f"no audio at {audio}")
        top = self._head.top(embedding, self._top_n)
        predictions = tuple(
            sorted(
                (Prediction(name=name, confidence=round(p, 4)) for name, p in top),
                key=lambda prediction: -prediction.confidence,
            )
        )
        return Classification(predictions=predictions, model=self.model, timings=Timings(0.0))

    async def aclose(self) -> None:
        return None


def held_out(head: StandInHead, clips: Sequence[Clip]) -> list[tuple[float, bool]]:
    """Each clip's head top probability (rounded as stored) and whether its top label is the
    teacher's: the input of ``cascade_threshold``."""
    pairs = []
    for clip in clips:
        [(name, probability)] = head.top(clip.embedding, 1)
        pairs.append((round(probability, 4), name == discogs_name(clip.label)))
    return pairs
