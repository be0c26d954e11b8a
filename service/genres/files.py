"""``genres classify PATH...``: files, folders and URLs classified in parallel, one line each.

Paths are expanded lazily (folders recursively, audio extensions only, hidden entries skipped,
sorted), and at most ``in_flight`` sources are being classified at any moment, so a collection
of any size takes bounded memory. With the local backend the parallelism is the classifier's
own process pool (one worker per core); ``in_flight`` only keeps every worker fed. A source
that fails is reported on its own line and the batch goes on; the caller's exit code says
whether any failed. Lines come in the order sources finish, each naming its source.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from genres.classify.local.fetch import is_http_url
from genres.errors import ClassificationError
from genres.tasks import cancel_and_wait

if TYPE_CHECKING:
    from rich.console import Console

    from genres.classify.port import Classification, Classifier
    from genres.config import Settings

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


def _count(paths: list[str]) -> int:
    return sum(1 for _ in expand(paths))


def _one_file(paths: list[str]) -> bool:
    """Whether the command names one file or URL: it keeps its table (or JSON object)."""
    return len(paths) == 1 and (is_http_url(paths[0]) or os.path.isfile(paths[0]))


def _summary(outcome: Outcome, top: int = 3) -> str:
    if outcome.error is not None:
        return f"{outcome.source}: error: {outcome.error.message}"
    assert outcome.classification is not None
    best = ", ".join(
        f"{p.name} {p.confidence:.2f}" for p in outcome.classification.predictions[:top]
    )
    return f"{outcome.source}: {best} ({outcome.seconds:.2f}s)"


async def run_classify(
    settings: Settings, paths: list[str], *, as_json: bool, console: Console, errors: Console
) -> int:
    """The ``classify`` command: prints a line per source (or one table for a single file);
    the number of sources that failed."""
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
    from rich.table import Table

    from genres.classify.factory import open_classifier
    from genres.classify.local.pool import available_cores
    from genres.config import Backend

    single = _one_file(paths)
    outcomes: list[Outcome] = []

    def report(outcome: Outcome) -> None:
        if as_json:
            print(json.dumps(outcome.as_json()), flush=True)
        elif single:
            outcomes.append(outcome)
        else:  # failures on stderr, so stdout holds only results
            (console if outcome.error is None else errors).print(
                _summary(outcome), highlight=False, soft_wrap=True, markup=False
            )
        if bar is not None and task is not None:
            bar.advance(task)

    local = settings.backend is Backend.LOCAL
    if local and single:
        # One file: the model in this process, not worker processes that would each start
        # Python and load the model for a single track.
        settings = settings.model_copy(update={"local_workers": 0})
    workers = settings.local_workers
    workers = available_cores() if workers is None else workers
    in_flight = max(1, 2 * workers) if local else settings.classifications_in_flight
    started = time.perf_counter()
    bar: Progress | None = None
    if sys.stderr.isatty() and not single:
        bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=errors,
            transient=True,
        )
    task = bar.add_task("classifying", total=None) if bar is not None else None
    counting: asyncio.Task[None] | None = None
    if bar is not None and task is not None:
        # The bar's total: a second walk of the folders, beside the work (names only).
        progress, bar_task = bar, task

        async def count() -> None:
            total = await asyncio.to_thread(_count, paths)
            progress.update(bar_task, total=total)

        counting = asyncio.create_task(count())
    async with open_classifier(settings, allow_local_paths=True) as classifier:
        if bar is not None:
            bar.start()
        try:
            done, failed = await classify_many(
                classifier,
                expand(paths),
                in_flight=in_flight,
                on_outcome=report,
                urls_only=not local,
            )
        finally:
            await cancel_and_wait(counting)
            if bar is not None:
                bar.stop()
    elapsed = time.perf_counter() - started
    if done + failed == 0:
        errors.print("no audio files found", highlight=False)
        return 1
    if single and outcomes:
        only = outcomes[0]
        if only.classification is None:
            assert only.error is not None
            errors.print(
                f"[bold red]error:[/] {escape(only.error.message)}", highlight=False, soft_wrap=True
            )
            return 1
        result = only.classification
        table = Table(title=f"{result.model.name} {result.model.version}")
        table.add_column("#", justify="right")
        table.add_column("genre")
        table.add_column("confidence", justify="right")
        for rank, prediction in enumerate(result.predictions, 1):
            table.add_row(str(rank), prediction.name, f"{prediction.confidence:.4f}")
        console.print(table)
        console.print(f"[dim]classified in {result.timings.total:.2f}s[/]")
    elif not as_json:
        total = done + failed
        rate = total / elapsed if elapsed > 0 else 0.0
        errors.print(
            f"{done} classified, {failed} failed, in {elapsed:.1f}s ({rate:.2f} files/s)",
            highlight=False,
        )
    return failed
