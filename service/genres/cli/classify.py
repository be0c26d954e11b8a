"""``genres classify PATH...``: the batch's lines, or one file's table, for a person or as JSON.

One file or URL keeps its table (or JSON object) and runs the model in this process; anything
else is a batch (``genres.cli.batch``): a line per source as it finishes, results on stdout and
failures on stderr, a progress bar on a terminal, and a summary. Every failure line names its
source; the timings say what they measure.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import TYPE_CHECKING

from genres.classify.local.fetch import is_http_url
from genres.cli.batch import Outcome, classify_many, expand
from genres.tasks import cancel_and_wait

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from genres.config import Settings


def _count(paths: list[str]) -> int:
    return sum(1 for _ in expand(paths))


def _one_file(paths: list[str]) -> bool:
    """Whether the command names one file or URL: it keeps its table (or JSON object)."""
    return len(paths) == 1 and (is_http_url(paths[0]) or os.path.isfile(paths[0]))


def failure(outcome: Outcome) -> str:
    """``SOURCE: message``: the source named once (some messages start with it already)."""
    assert outcome.error is not None
    message = outcome.error.message
    return message if message.startswith(f"{outcome.source}: ") else f"{outcome.source}: {message}"


def _summary(outcome: Outcome, top: int = 3) -> str:
    if outcome.error is not None:
        source, _, message = failure(outcome).partition(": ")
        return f"{source}: error: {message}"
    assert outcome.classification is not None
    best = ", ".join(
        f"{p.name} {p.confidence:.2f}" for p in outcome.classification.predictions[:top]
    )
    return f"{outcome.source}: {best} ({outcome.seconds:.2f}s)"


def _progress(errors: Console) -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors,
        transient=True,
    )


async def run_classify(
    settings: Settings, paths: list[str], *, as_json: bool, console: Console, errors: Console
) -> int:
    """The ``classify`` command: prints a line per source (or one table for a single file);
    the number of sources that failed."""
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
    bar = _progress(errors) if sys.stderr.isatty() and not single else None
    task: TaskID | None = bar.add_task("classifying", total=None) if bar is not None else None
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
    if done + failed == 0:  # only folders were named, and none holds audio
        _error(errors, f"no audio files found in {', '.join(paths)}")
        return 1
    if single and outcomes:
        return _print_one(outcomes[0], elapsed, console, errors)
    if not as_json:
        total = done + failed
        rate = total / elapsed if elapsed > 0 else 0.0
        errors.print(
            f"{done} classified, {failed} failed, in {elapsed:.1f}s ({rate:.2f} files/s)",
            highlight=False,
        )
    return failed


def _error(errors: Console, line: str) -> None:
    from rich.markup import escape

    errors.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)


def _print_one(outcome: Outcome, elapsed: float, console: Console, errors: Console) -> int:
    """One file's table under its model's name, and where the time went; 1 if it failed."""
    from genres.cli.render import ranked

    if outcome.classification is None:
        _error(errors, failure(outcome))
        return 1
    result = outcome.classification
    rows = ((p.name, p.confidence) for p in result.predictions)
    console.print(ranked(rows, title=f"{result.model.name} {result.model.version}"))
    console.print(
        f"[dim]classified in {result.timings.total:.2f}s; "
        f"{elapsed:.2f}s with starting the classifier[/]",
        highlight=False,
    )
    return 0
