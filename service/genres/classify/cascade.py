"""``CLASSIFIER_BACKEND=cascade``: the local model with its head answers first; Replicate
answers what the head is unsure of.

The route for one track:

* a ``resume`` in the checkpoint means an earlier attempt already created a Replicate
  prediction (the head was unsure then): Replicate resumes it, nothing is paid twice;
* else the local classifier runs. Its top probability at or above ``min_confidence``: its
  answer is the track's (no Replicate creation). Below it, or when the local model cannot
  classify the audio (Replicate may still read it): Replicate, as the ``replicate`` backend
  would, with the same checkpoint and pace.
* **Too short or truncated**: when the local model finds the audio shorter than
  ``AUDIO_MIN_SECONDS`` or cut short of its stated length (``AUDIO_TOO_SHORT``,
  ``AUDIO_TRUNCATED``), that is the outcome: Replicate would be paid to classify the same
  partial file, and its answer stored.
* **Fallback**: when Replicate fails (unavailable, throttled or past its deadline after its
  own retries, or a permanent failure) and the local model had answered, the local answer is
  kept and marked (``CascadeRoute.fallback`` names Replicate's failure kind), so the record
  is never lost and a Replicate outage does not stop classification. Without a local answer,
  Replicate's failure is the outcome, as with the ``replicate`` backend.

The local answer's ``predictions[0].confidence`` is the head's top probability (rounded to 4
places, as every stored confidence is): the threshold is compared with what is stored.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from genres.classify.port import Checkpoint, Classification, Classifier, Timings
from genres.errors import ClassificationError
from genres_contracts import CascadeRoute, FailureKind, ModelRef

log = logging.getLogger(__name__)

_NOT_FOR_REPLICATE = frozenset({FailureKind.AUDIO_TOO_SHORT, FailureKind.AUDIO_TRUNCATED})
"""Local failures about the audio itself, which Replicate would be paid to classify anyway."""


class CascadeClassifier:
    """A ``Classifier`` over two: ``local`` first, ``remote`` (Replicate) when it is unsure."""

    def __init__(self, local: Classifier, remote: Classifier, *, min_confidence: float) -> None:
        if not 0.0 < min_confidence < 1.0:
            raise ValueError("min_confidence must lie in (0, 1)")
        self._local = local
        self._remote = remote
        self._min_confidence = min_confidence
        # The ledger's key: a change of head, Replicate version or threshold is another
        # classifier, whose answers may differ, so it claims anew rather than replaying.
        self._ref = ModelRef(
            name=f"cascade:{local.model.name}|{remote.model.name}",
            version=f"{local.model.version}|{remote.model.version}|{min_confidence:g}",
        )

    @property
    def model(self) -> ModelRef:
        return self._ref

    @property
    def local(self) -> Classifier:
        return self._local

    @property
    def remote(self) -> Classifier:
        return self._remote

    @property
    def min_confidence(self) -> float:
        return self._min_confidence

    async def classify(self, audio: str, checkpoint: Checkpoint | None = None) -> Classification:
        started = time.perf_counter()
        if checkpoint is not None and checkpoint.resume is not None:
            try:
                return self._from_remote(
                    await self._remote.classify(audio, checkpoint), None, started
                )
            except ClassificationError as exc:
                return await self._fallback_after_resume(audio, exc, started)
        local: Classification | None = None
        try:
            local = await self._local.classify(audio)
        except ClassificationError as exc:
            if exc.kind in _NOT_FOR_REPLICATE:
                raise
            log.info("cascade: the local model failed (%s): asking Replicate", exc.kind)
        confidence = _top(local)
        if local is not None and confidence >= self._min_confidence:
            return self._answer(local, "local", confidence, started)
        try:
            remote = await self._remote.classify(audio, checkpoint)
        except ClassificationError as exc:
            if local is None:
                raise
            return self._fallback(local, confidence, exc, started)
        return self._from_remote(remote, None if local is None else confidence, started)

    async def _fallback_after_resume(
        self, audio: str, exc: ClassificationError, started: float
    ) -> Classification:
        """A resumed prediction failed: the local answer, if the local model can give one."""
        try:
            local = await self._local.classify(audio)
        except ClassificationError:
            raise exc from None
        return self._fallback(local, _top(local), exc, started)

    def _fallback(
        self, local: Classification, confidence: float, exc: ClassificationError, started: float
    ) -> Classification:
        log.warning(
            "cascade: Replicate failed (%s): keeping the local answer (top %.4f < %g)",
            exc.kind,
            confidence,
            self._min_confidence,
        )
        answer = self._answer(local, "local", confidence, started, fallback=str(exc.kind))
        return replace(answer, attempts=local.attempts + exc.attempts)

    def _from_remote(
        self, remote: Classification, confidence: float | None, started: float
    ) -> Classification:
        return self._answer(remote, "replicate", confidence, started)

    def _answer(
        self,
        answer: Classification,
        answered_by: str,
        confidence: float | None,
        started: float,
        *,
        fallback: str | None = None,
    ) -> Classification:
        route = CascadeRoute.model_validate(
            {
                "answered_by": answered_by,
                "local_confidence": confidence,
                "min_confidence": self._min_confidence,
                "fallback": fallback,
            }
        )
        timings = Timings(
            total=time.perf_counter() - started,
            predict=answer.timings.predict,
            queued=answer.timings.queued,
        )
        return replace(answer, timings=timings, cascade=route)

    async def aclose(self) -> None:
        try:
            await self._local.aclose()
        finally:
            await self._remote.aclose()


def _top(classification: Classification | None) -> float:
    """The head's top probability (0 without an answer or without predictions)."""
    if classification is None or not classification.predictions:
        return 0.0
    return classification.predictions[0].confidence
