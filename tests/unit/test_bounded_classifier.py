"""At most CLASSIFIER_CONCURRENCY classifications run at once, however many records wait."""

from __future__ import annotations

import asyncio

from genres.classifier.bounded import BoundedClassifier
from genres.classify.port import Checkpoint, Classification, Timings
from genres_contracts import ModelRef


class Slow:
    """Counts how many classifications overlap."""

    model = ModelRef(name="slow", version="1")

    def __init__(self) -> None:
        self.running = 0
        self.most = 0

    async def classify(self, audio: str, checkpoint: Checkpoint | None = None) -> Classification:
        self.running += 1
        self.most = max(self.most, self.running)
        await asyncio.sleep(0.02)
        self.running -= 1
        return Classification(predictions=(), model=self.model, timings=Timings(total=0.02))

    async def aclose(self) -> None:
        return None


async def test_classifications_beyond_the_limit_wait_for_a_slot() -> None:
    inner = Slow()
    bounded = BoundedClassifier(inner, limit=3)

    results = await asyncio.gather(*(bounded.classify(f"https://a/{i}.mp3") for i in range(12)))

    assert len(results) == 12
    assert inner.most == 3
    assert bounded.running == 0
    assert bounded.model == inner.model
