"""``genres backfill``: the command's output around ``genres.bus.backfill.run_backfill``."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from genres.bootstrap import database_url
from genres.bus.backfill import run_backfill
from genres.bus.producer import Publisher
from genres.config import Settings
from genres.store.engine import create_engine


async def backfill_command(
    settings: Settings,
    console: Console,
    dry_run: bool,
    limit: int | None,
    concurrency: int,
    wait: bool,
    timeout: float,
) -> None:
    engine = create_engine(database_url(settings), pool_size=2)
    publisher = Publisher.create(settings)
    try:
        if not dry_run:
            await publisher.start()
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task("listing" if dry_run else "requesting", total=None)
            report = await run_backfill(
                settings,
                engine,
                publisher,
                limit=limit,
                concurrency=concurrency,
                dry_run=dry_run,
                wait=wait,
                timeout=timeout,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    finally:
        if not dry_run:
            await publisher.stop()
        await engine.dispose()

    if dry_run:
        table = Table(title="tracks lacking current predictions")
        for column in ("track", "file", "audio url"):
            table.add_column(column)
        for track in report.tracks:
            table.add_row(str(track.track_id), track.file_id, track.audio_url)
        console.print(table)
        console.print(f"{report.eligible} tracks would be requested (dry run)")
        return
    console.print(f"requested {report.published} of {report.eligible} eligible tracks")
    if report.skipped:
        console.print(f"skipped {report.skipped} tracks whose row cannot make a request")
    if report.classified is not None:
        console.print(
            f"classified {report.classified}, failed {report.failed}, "
            f"no outcome within {timeout:g}s: {report.timed_out}"
        )
