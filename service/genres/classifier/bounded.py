"""At most CLASSIFIER_CONCURRENCY classifications at once, whatever the records around them do.

The classifier keeps more records in flight than classifications (``CLASSIFIER_RECORDS_IN_FLIGHT``,
twice as many by default): claiming a record, recording its outcome and publishing it take
database and broker round trips that must not hold one of the paid backend's slots. Bounding
the classifications themselves keeps exactly CLASSIFIER_CONCURRENCY predictions running at
Replicate under load (measured in ``bench pipeline``: docs/decisions/0009).
"""

from __future__ import annotations

import asyncio

from genres.classify.port import Checkpoint, Classification, Classifier
from genres_contracts import ModelRef


class BoundedClassifier:
    """Wraps any backend; a call beyond ``limit`` waits for one to finish."""

    def __init__(self, inner: Classifier, *, limit: int) -> None:
        self._inner = inner
        self._slots = asyncio.Semaphore(limit)
        self.running = 0
        """Classifications running now."""

    @property
    def model(self) -> ModelRef:
        return self._inner.model

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def classify(self, audio: str, checkpoint: Checkpoint | None = None) -> Classification:
        async with self._slots:
            self.running += 1
            try:
                return await self._inner.classify(audio, checkpoint)
            finally:
                self.running -= 1
