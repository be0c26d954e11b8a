"""``genres learn``: embed labelled audio with the local model, train a head, write it, report.

The sources of examples and the naming of labels are ``classify.local.examples``'s; training
is ``classify.local.learn``'s; the threshold rule is ``classify.cascade_threshold``'s. Audio
goes through the local classifier's own fetching and analysis (size caps, refusal of private
addresses, worker processes), at most ``in_flight`` at a time, so memory stays bounded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genres.classify.cascade_threshold import agreement_table, choose_threshold
from genres.classify.local.examples import (
    Example,
    folder_examples,
    restrict,
    tag_examples,
    teacher_examples,
)
from genres.classify.local.head import base_model_id
from genres.classify.local.learn import CrossValidation, LearnError, train
from genres.classify.local.model import MODEL_NAME
from genres.cli.common import plural
from genres.errors import ClassificationError

if TYPE_CHECKING:
    from rich.console import Console

    from genres.classify.local.head import Head
    from genres.config import Settings

TABLE_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True, slots=True)
class LearnOptions:
    out: Path
    min_examples: int = 5
    target_agreement: float = 0.9
    standardise: bool = False


@dataclass(frozen=True, slots=True)
class Learnt:
    head: Head
    cv: CrossValidation
    unreadable: list[tuple[str, str]]


async def learn_from_examples(
    settings: Settings,
    examples: Sequence[Example],
    options: LearnOptions,
    console: Console,
    *,
    source: str,
    allow_local_paths: bool,
) -> Learnt:
    """Embed every example's audio, train, write ``options.out``; print as it goes."""
    if not examples:
        raise LearnError(f"no examples: {source} holds no labelled audio")
    embeddings, kept, unreadable = await _embed(settings, examples, console, allow_local_paths)
    if unreadable:
        console.print(f"[yellow]{len(unreadable)} of {len(examples)} unreadable, skipped:[/]")
        for audio, why in unreadable:
            console.print(f"  {audio}: {why}", highlight=False, soft_wrap=True)
    labels = sorted({label for e in kept for label in e.target})
    targets = np.array([[e.target.get(label, 0.0) for label in labels] for e in kept])
    from genres.classify.local.model import MusicnnModel

    model = MusicnnModel()
    started = time.perf_counter()
    with console.status(f"training on {len(kept)} examples ({len(labels)} labels)"):
        head, cv = await asyncio.to_thread(
            train,
            np.array(embeddings) if embeddings else np.zeros((0, 1)),
            targets if len(kept) else np.zeros((0, len(labels))),
            labels,
            base_model=base_model_id(MODEL_NAME, model.version),
            standardise=options.standardise,
            min_examples=options.min_examples,
            meta={
                "source": source,
                "examples": len(kept),
                "unreadable": len(unreadable),
                "soft_targets": any(len(e.target) > 1 for e in kept),
            },
        )
    seconds = time.perf_counter() - started
    head = head.save(options.out)
    _report(console, head, cv, options.target_agreement, seconds)
    return Learnt(head, cv, unreadable)


async def _embed(
    settings: Settings, examples: Sequence[Example], console: Console, allow_local_paths: bool
) -> tuple[list[Any], list[Example], list[tuple[str, str]]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from genres.classify.factory import audio_http_client
    from genres.classify.local.classifier import LocalClassifier

    # The head being trained is not the one the service may run with (LOCAL_HEAD).
    plain = settings.model_copy(update={"local_head": None})
    embeddings: list[Any] = [None] * len(examples)
    unreadable: list[tuple[str, str]] = []
    async with audio_http_client() as client:
        classifier = LocalClassifier.from_settings(
            plain, client, allow_local_paths=allow_local_paths
        )
        # Enough in flight to keep every worker busy while others download; no more.
        slots = asyncio.Semaphore(max(2, 2 * (settings.local_workers or 2)))
        try:
            with Progress(
                "embedding",
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            ) as progress:
                task = progress.add_task("embedding", total=len(examples))

                async def one(i: int, example: Example) -> None:
                    async with slots:
                        try:
                            analysis = await classifier.analyse(example.audio)
                            embeddings[i] = analysis.embedding
                        except ClassificationError as exc:
                            unreadable.append((example.audio, str(exc)))
                        finally:
                            progress.advance(task)

                await asyncio.gather(*(one(i, e) for i, e in enumerate(examples)))
        finally:
            await classifier.aclose()
    kept = [e for e, v in zip(examples, embeddings, strict=True) if v is not None]
    return [v for v in embeddings if v is not None], kept, sorted(unreadable)


def _report(
    console: Console, head: Head, cv: CrossValidation, target: float, seconds: float
) -> None:
    from rich.table import Table

    counts: dict[str, int] = head.meta["counts"]
    table = Table("label", "examples", title="examples per label")
    for label in head.labels:
        table.add_row(label, str(counts[label]))
    console.print(table)
    console.print(
        f"held-out ({cv.folds}-fold) top-1 {cv.top1:.1%}, top-3 {cv.top3:.1%} "
        f"(L2 {cv.l2:g}, chosen by cross-validation; trained in {seconds:.1f} s)"
    )
    rows = Table("threshold", "sent to the teacher", "agreement of the rest", title="cascade")
    for choice in agreement_table(cv.held_out, TABLE_THRESHOLDS):
        agreement = "-" if choice.agreement is None else f"{choice.agreement:.1%}"
        rows.add_row(f"{choice.threshold:.2f}", f"{choice.share_sent:.1%}", agreement)
    console.print(rows)
    choice = choose_threshold(cv.held_out, target)
    if choice.reached:
        console.print(
            f"proposed CASCADE_MIN_CONFIDENCE={choice.threshold:.4f}: agreement "
            f"{choice.agreement:.1%} on the tracks answered locally, {choice.share_sent:.1%} sent "
            f"to the teacher (target {target:.0%})"
        )
    else:
        console.print(f"[yellow]no threshold reaches {target:.0%} agreement on held-out folds[/]")
    console.print(f"wrote {head.digest[:16]} ({len(head.labels)} labels)")


@dataclass(frozen=True, slots=True)
class Source:
    """Where the examples come from: labelled folders under ``directory``, else the database."""

    directory: Path | None
    teacher: str = "replicate"
    soft: bool = False
    min_tag_tracks: int = 20


async def learn_from(
    settings: Settings, source: Source, options: LearnOptions, console: Console
) -> Learnt:
    """The ``learn`` command: gather the examples, say what was left out, learn, write."""
    if source.directory is not None:
        examples, ignored = examples_from_folder(source.directory)
        if ignored:
            console.print(
                f"ignored {plural(len(ignored), 'file')} that are not audio or not in a label "
                "folder",
                highlight=False,
            )
        name, local = str(source.directory), True
    else:
        examples, dropped = await examples_from_database(
            settings,
            source.teacher,
            soft=source.soft,
            min_tag_tracks=source.min_tag_tracks,
            min_examples=options.min_examples,
        )
        if dropped:
            console.print(
                f"{plural(len(dropped), 'label')} with fewer than "
                f"{plural(options.min_examples, 'track')} left out",
                highlight=False,
            )
        name, local = f"database ({source.teacher})", False
    return await learn_from_examples(
        settings, examples, options, console, source=name, allow_local_paths=local
    )


def examples_from_folder(root: Path) -> tuple[list[Example], list[str]]:
    from genres.cli.batch import AUDIO_EXTENSIONS

    return folder_examples(str(root), AUDIO_EXTENSIONS)


REPLICATE_TRACKS = """
SELECT t.audio_url, t.extra -> 'genre_predictions'
FROM tracks t
JOIN projected_models m ON m.track_id = t.id AND m.file_id = t.file_id
WHERE m.model_name = :model_name AND t.audio_url IS NOT NULL
  AND jsonb_typeof(t.extra -> 'genre_predictions') = 'array'
ORDER BY t.id
"""

TAGGED_TRACKS = """
SELECT t.audio_url, array_agg(tag.name ORDER BY tag.name)
FROM tracks t
JOIN track_tags tt ON tt.track_id = t.id
JOIN tags tag ON tag.id = tt.tag_id
WHERE t.audio_url IS NOT NULL
GROUP BY t.id, t.audio_url
ORDER BY t.id
"""


async def examples_from_database(
    settings: Settings, teacher: str, *, soft: bool, min_tag_tracks: int, min_examples: int
) -> tuple[list[Example], list[str]]:
    """Examples from the database, and the labels dropped for having too few tracks."""
    from sqlalchemy import text

    from genres.database.engine import create_engine

    engine = create_engine(settings.required_database_url, pool_size=1)
    try:
        async with engine.connect() as connection:
            if teacher == "replicate":
                result = await connection.execute(
                    text(REPLICATE_TRACKS), {"model_name": settings.replicate_model_name}
                )
                examples = teacher_examples(((r[0], r[1]) for r in result), soft=soft)
            else:
                result = await connection.execute(text(TAGGED_TRACKS))
                examples = tag_examples(((r[0], list(r[1])) for r in result), min_tag_tracks)
    finally:
        await engine.dispose()
    return restrict(examples, min_examples)
