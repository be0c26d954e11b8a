"""The cascade's load for the classifier-kill scenario: clips, a trained head, the threshold.

The classifier runs as ``genres run classifier`` with ``CLASSIFIER_BACKEND=cascade``: the real
local backend (the embedded model, one window, no worker processes) with a head trained here,
in the test, on synthesised classes of sound (``tests.support.synth_classes``), the audio
served over HTTP on loopback. The uploaded clips mix two classes in random proportions, so
the head is sure of some and unsure of others. Each upload's analysis is computed here too,
with the same model and settings, so the test knows beforehand which clips the head answers
(top probability, rounded as stored, at or above the threshold) and with which predictions:
the rest must go to the fake Replicate, whose answers are its usual deterministic scores.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tests.faults.checks import expected_predictions
from tests.faults.harness import Track
from tests.support.synth_classes import clips, wav_bytes

from genres.classify.local import MusicnnModel
from genres.classify.local.analysis import analyse
from genres.classify.local.head import Head, base_model_id
from genres.classify.local.learn import one_hot, train
from genres.classify.local.model import MODEL_NAME
from genres.classify.ranking import rank

SECONDS = 3.2
WINDOWS = 1
TOP_N = 10
"""The service's ``REPLICATE_TOP_N`` default: the local answer keeps as many (the head has
fewer labels, so all of them)."""

Predictions = tuple[tuple[str, float], ...]


def mixed_clips(count: int, seed: int) -> list[bytes]:
    """``count`` WAV clips, each one class mixed with another at a random share (0 to 1/2)."""
    rng = np.random.default_rng(seed)
    pool = clips(max(2, count // 5 + 1), SECONDS, seed=seed)
    out = []
    for _ in range(count):
        first, second = rng.choice(len(pool), size=2, replace=False)
        share = rng.uniform(0.0, 0.5)
        out.append(wav_bytes((1 - share) * pool[first][1] + share * pool[second][1]))
    return out


def train_head(model: MusicnnModel, path: Path, *, per_class: int = 6, seed: int = 31) -> Head:
    """A head trained on pure clips of each class, saved at ``path`` (for ``LOCAL_HEAD``)."""
    rows = [
        (label, analyse(wav_bytes(audio), model, windows=WINDOWS).embedding)
        for label, audio in clips(per_class, SECONDS, seed=seed)
    ]
    labels = sorted({label for label, _ in rows})
    head, _ = train(
        np.array([embedding for _, embedding in rows]),
        one_hot([label for label, _ in rows], labels),
        labels,
        base_model=base_model_id(MODEL_NAME, model.version),
    )
    return head.save(path)


def threshold_for(confidences: Sequence[float], share: float) -> float:
    """A threshold sending about ``share`` of the clips to Replicate, half-way between two
    distinct confidences so that no clip sits on it."""
    ordered = sorted(set(confidences))
    at = min(len(ordered) - 2, max(0, round(share * len(ordered)) - 1))
    return round((ordered[at] + ordered[at + 1]) / 2, 6)


@dataclasses.dataclass(frozen=True)
class CascadeLoad:
    """The uploads, the head's file and the threshold, and what each upload must store."""

    tracks: list[Track]
    head_path: Path
    threshold: float
    local: dict[str, Predictions]
    """Audio URL -> the head's predictions, for the clips the head is sure of."""
    confidences: dict[str, float]

    def expected(self, url: str) -> Predictions:
        """What the service must store for ``url``: the head's answer, else Replicate's."""
        return self.local.get(url) or expected_predictions(url, TOP_N)

    @property
    def sent(self) -> set[int]:
        """The tracks the threshold sends to Replicate."""
        return {t.id for t in self.tracks if t.audio_url not in self.local}

    def env(self) -> dict[str, str]:
        """The classifier process's variables for this cascade."""
        return {
            "CLASSIFIER_BACKEND": "cascade",
            "LOCAL_HEAD": str(self.head_path),
            "CASCADE_MIN_CONFIDENCE": f"{self.threshold:g}",
            "LOCAL_WORKERS": "0",
            "LOCAL_WINDOWS": str(WINDOWS),
            "AUDIO_ALLOW_PRIVATE_ADDRESSES": "true",
        }


def prepare_load(
    base: str, bodies: Sequence[bytes], folder: Path, *, share: float, seed: int
) -> CascadeLoad:
    """Train the head, analyse every clip served at ``<base>/<i>.wav`` and choose the
    threshold that sends about ``share`` of them to Replicate."""
    model = MusicnnModel().load()
    head = train_head(model, folder / "head.npz", seed=seed)
    answers: dict[str, Predictions] = {}
    tracks = []
    for index, body in enumerate(bodies):
        url = f"{base}/{index}.wav"
        embedding = analyse(body, model, windows=WINDOWS).embedding
        scores = dict(zip(head.labels, map(float, head.probabilities(embedding)), strict=True))
        answers[url] = tuple((p.name, p.confidence) for p in rank(scores, TOP_N))
        tracks.append(Track(index + 1, f"a{index + 1}", url, plays=(index + 1) * 7))
    confidences = {url: predictions[0][1] for url, predictions in answers.items()}
    threshold = threshold_for(list(confidences.values()), share)
    local = {url: p for url, p in answers.items() if confidences[url] >= threshold}
    return CascadeLoad(tracks, folder / "head.npz", threshold, local, confidences)
