"""``genres classify``'s batch: sources expanded from paths, classified in parallel, bounded.

Paths are expanded lazily (folders recursively, audio extensions only, hidden entries skipped,
sorted), and at most ``in_flight`` sources are being classified at any moment, so a collection
of any size takes bounded memory. With the local backend the parallelism is the classifier's
own process pool (one worker per core); ``in_flight`` only keeps every worker fed. A source
that fails is reported on its own line and the batch goes on; the caller's exit code says
whether any failed. Outcomes come in the order sources finish, each naming its source.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from genres.classify.local.fetch import is_http_url
from genres.errors import ClassificationError

if TYPE_CHECKING:
    from genres.classify.port import Classification, Classifier

AUDIO_EXTENSIONS = frozenset(
    [
        ".aac",
        ".aif",
        ".aifc",
        ".aiff",
        ".alac",
        ".ape",
        ".au",
        ".flac",
        ".m4a",
        ".mka",
        ".mp2",
        ".mp3",
        ".mp4",
        ".mpc",
        ".oga",
        ".ogg",
        ".opus",
        ".tta",
        ".wav",
        ".weba",
        ".webm",
        ".wma",
        ".wv",
    ]
)


@dataclass(frozen=True, slots=True)
class Missing:
    """A named path that does not exist (reported as that source's failure)."""

    path: str


def expand(paths: Iterable[str]) -> Iterator[str | Missing]:
    """Sources to classify: URLs and files as given, folders' audio files recursively."""
    for given in paths:
        if is_http_url(given):
            yield given
        elif os.path.isdir(given):
            yield from _walk(given)
        elif os.path.isfile(given):
            yield given
        else:
            yield Missing(given)


def _walk(folder: str) -> Iterator[str]:
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS:
                yield os.path.join(root, name)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One source's result: its classification or its error, and the seconds it took."""

    source: str
    seconds: float
    classification: Classification | None = None
    error: ClassificationError | None = None

    def as_json(self) -> dict[str, Any]:
        line: dict[str, Any] = {"path": self.source}
        if self.classification is not None:
            line["predictions"] = [p.model_dump() for p in self.classification.predictions]
            line["model"] = self.classification.model.model_dump()
        if self.error is not None:
            line["error"] = {"kind": self.error.kind.value, "message": self.error.message}
        line["seconds"] = round(self.seconds, 3)
        return line


async def classify_many(
    classifier: Classifier,
    sources: Iterable[str | Missing],
    *,
    in_flight: int,
    on_outcome: Callable[[Outcome], None],
    urls_only: bool = False,
) -> tuple[int, int]:
    """Classifies every source, at most ``in_flight`` at once; (classified, failed).

    ``urls_only``: the backend takes no local paths (Replicate), so a path fails at once.
    """
    if in_flight < 1:
        raise ValueError("in_flight must be at least 1")
    counts = [0, 0]

    async def one(source: str | Missing) -> None:
        started = time.perf_counter()
        outcome: Outcome
        if isinstance(source, Missing):
            unsupported = "://" in source.path
            error = ClassificationError(
                f"{source.path}: only http(s) URLs, files and folders are accepted"
                if unsupported
                else f"{source.path}: no such file or folder"
            )
            outcome = Outcome(source.path, 0.0, error=error)
        elif urls_only and not is_http_url(source):
            error = ClassificationError(
                "the Replicate backend takes http(s) URLs; use CLASSIFIER_BACKEND=local for files"
            )
            outcome = Outcome(source, 0.0, error=error)
        else:
            try:
                result = await classifier.classify(source)
            except ClassificationError as exc:  # this source's failure: the batch goes on
                outcome = Outcome(source, time.perf_counter() - started, error=exc)
            else:
                outcome = Outcome(source, time.perf_counter() - started, classification=result)
        counts[outcome.error is not None] += 1
        on_outcome(outcome)

    pending: set[asyncio.Task[None]] = set()
    try:
        for source in sources:
            if len(pending) >= in_flight:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()  # an infrastructure error ends the batch
            pending.add(asyncio.create_task(one(source)))
        if pending:
            done, pending = await asyncio.wait(pending)
            for task in done:
                task.result()
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    return counts[0], counts[1]
