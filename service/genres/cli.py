"""The ``genres`` command line."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from genres import logs
from genres.config import Settings, load_settings
from genres.errors import ConfigurationError, GenresError
from genres_contracts import RecommendedTags

app = typer.Typer(
    name="genres",
    help="Genre classification for music tracks, on Kafka and PostgreSQL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)

T = TypeVar("T")


def _settings(**overrides: Any) -> Settings:
    try:
        settings = load_settings(**overrides)
    except ConfigurationError as exc:
        _fail(str(exc), code=2)
    logs.configure(settings.log_level, settings.log_format, secrets=[settings.replicate_token])
    return settings


def _fail(message: str, code: int = 1) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        return asyncio.run(coro)
    except ConfigurationError as exc:
        _fail(str(exc), code=2)
    except GenresError as exc:
        _fail(str(exc))
    raise AssertionError("unreachable")


@app.command()
def run(
    role: Annotated[str, typer.Argument(help="classifier, projector, responder or all")],
) -> None:
    """Run roles until SIGTERM: in-flight work is finished or handed back, then exit 0."""
    from genres.bootstrap import ALL_ROLES, Role, serve

    choices = {"all": ALL_ROLES} | {r.value: frozenset({r}) for r in Role}
    if role not in choices:
        _fail(f"unknown role {role!r}: choose from {', '.join(choices)}", code=2)
    settings = _settings()
    _run(serve(settings, choices[role]))


@app.command()
def migrate() -> None:
    """Create or upgrade the schema (the platform's tables only when missing)."""
    from genres.bootstrap import database_url
    from genres.database.migrate import upgrade

    settings = _settings()
    revision = _run(upgrade(database_url(settings)))
    console.print(f"database at revision [bold]{revision}[/]")


@app.command()
def classify(
    sources: Annotated[
        list[str],
        typer.Argument(help="Audio files, folders (searched recursively) or http(s) URLs."),
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per line, per file.")
    ] = False,
) -> None:
    """Classify audio files, folders and URLs with the configured backend, in parallel.

    Exit codes: 0 every file classified, 1 any failed (each failure is on its own line),
    2 invalid configuration.
    """
    from genres.files import run_classify

    settings = _settings()
    failed = _run(run_classify(settings, sources, as_json=as_json, console=console, errors=errors))
    raise typer.Exit(1 if failed else 0)


@app.command()
def recommend(
    track_id: Annotated[int, typer.Argument(help="The track id.", min=1)],
    limit: Annotated[int, typer.Option(min=1, max=20, help="At most this many tags.")] = 5,
    wait_ms: Annotated[
        int, typer.Option(min=0, max=30_000, help="Wait this long for a classification.")
    ] = 0,
    timeout: Annotated[
        float, typer.Option(min=0.001, help="Seconds to wait for the reply, beyond --wait-ms.")
    ] = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the reply as JSON.")] = False,
) -> None:
    """Ask the running service for a track's recommended tags, over the bus.

    Exit codes: 0 answered (also when pending or no classifier is configured), 1 no such
    track or the service failed, 2 invalid request or configuration, 3 no answer (the
    broker is unreachable or no reply came in time).
    """
    from genres.kafka.client import genres_client
    from genres_contracts.kafka import (
        GenresClientError,
        InvalidRequest,
        RequestTimedOut,
        TrackNotFound,
        Unavailable,
    )

    settings = _settings()
    if settings.log_level.upper() != "DEBUG":
        # The one line printed below says what aiokafka's own error lines would.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    async def go() -> RecommendedTags | GenresClientError:
        try:
            async with genres_client(settings) as client:
                return await client.recommended_tags(
                    track_id, limit=limit, wait_ms=wait_ms, timeout=timeout + wait_ms / 1000
                )
        except GenresClientError as exc:
            return exc

    outcome = _run(go())
    if isinstance(outcome, GenresClientError):
        if as_json and outcome.reply is not None:
            print(outcome.reply.model_dump_json())
        kind = {TrackNotFound: "not_found", InvalidRequest: "invalid_request"}.get(type(outcome))
        code = {InvalidRequest: 2, RequestTimedOut: 3, Unavailable: 3}.get(type(outcome), 1)
        _fail(f"{kind}: {outcome}" if kind else str(outcome), code=code)
    elif as_json:
        print(outcome.model_dump_json())
    else:
        _print_tags(outcome)


def _print_tags(reply: RecommendedTags) -> None:
    table = Table(title=f"track {reply.track_id}")
    table.add_column("tag")
    table.add_column("score", justify="right")
    for tag in reply.tags:
        table.add_row(tag.name, f"{tag.score:.4f}")
    console.print(table)
    if not reply.available:
        console.print("no classifier is configured (available: false)")
    elif reply.pending:
        console.print("a classification was requested and is not done yet (pending)")


@app.command()
def backfill(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the tracks only.")] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many tracks.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=1000, help="Requests in flight.")] = 10,
    wait: Annotated[bool, typer.Option(help="Wait for the outcomes and count them.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for outcomes.")] = 600.0,
) -> None:
    """Request classification of tracks that lack predictions for their current file."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from genres.bootstrap import backfill as run

    settings = _settings()
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("listing" if dry_run else "requesting", total=None)
        report = _run(
            run(
                settings,
                dry_run=dry_run,
                limit=limit,
                concurrency=concurrency,
                wait=wait,
                timeout=timeout,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        )
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


@app.command()
def demo(
    path: Annotated[
        Path | None, typer.Argument(help="Your own audio file (default: the bundled sample).")
    ] = None,
) -> None:
    """The whole pipeline on embedded defaults: broker, database, all roles, one track."""
    from genres.demo import run_demo

    if path is not None and not path.is_file():
        _fail(f"{path}: no such file")
    settings = _settings(classifier_backend="local")
    code = _run(run_demo(settings, path, console))
    raise typer.Exit(code)


@app.command()
def schema(
    directory: Annotated[Path, typer.Argument(help="Where to write the schemas.")] = Path(
        "schemas"
    ),
) -> None:
    """Write the JSON Schema of every message model."""
    from genres_contracts.schema import write

    for path in write(directory):
        console.print(str(path))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
