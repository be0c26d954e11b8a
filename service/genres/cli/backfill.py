"""``genres backfill``'s output for people: a progress bar while it runs, then the report."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from genres.backfill.rule import BackfillReport
from genres.backfill.rule import Progress as OnProgress
from genres.cli.common import plural


@contextlib.contextmanager
def with_progress(console: Console, description: str) -> Iterator[OnProgress]:
    """A transient bar (on a terminal only); yields the backfill's ``progress`` callback."""
    if not console.is_terminal:
        yield lambda done, total: None
        return
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def print_report(console: Console, report: BackfillReport, *, timeout: float) -> None:
    if report.dry_run:
        table = Table(title="tracks lacking current predictions")
        for column in ("track", "file", "audio url"):
            table.add_column(column)
        for track in report.tracks:
            table.add_row(str(track.track_id), track.file_id, track.audio_url)
        console.print(table)
        console.print(f"{plural(report.eligible, 'track')} would be requested (dry run)")
        return
    console.print(f"requested {report.published} of {plural(report.eligible, 'eligible track')}")
    if report.skipped:
        console.print(f"skipped {plural(report.skipped, 'track')} whose row cannot make a request")
    if report.classified is not None:
        console.print(
            f"classified {report.classified}, failed {report.failed}, "
            f"no outcome within {timeout:g}s: {report.timed_out}"
        )
    for failure in report.failures:
        # One line each, not wrapped: people grep these.
        console.print(
            f"failed track {failure.track_id}: {failure.kind}: {failure.message}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
