"""The checker every fault scenario ends with.

For every track in the database:

* **current predictions or a failure**: ``extra.genre_predictions_file_id`` equals the track's
  ``file_id`` and ``extra.genre_predictions`` equals the predictions of the latest
  ``GenresClassified`` for that (track, file), or there is a ``ClassificationFailed`` for
  that (track, file) and no ``GenresClassified``. Anything else is **lost**.
* **no prediction against the wrong file**: stored predictions are the fake Replicate's
  scores for the audio URL of the file they are stored for (the fake's scores are a
  deterministic function of the URL), and an event's predictions are those of its own file.
  Anything else is **wrong**. (The cascade's scenario gives its own ``expected``: the head's
  answer for the clips it is sure of.)
* **paid once**: the fake's ``creations_per_url`` above 1 are duplicate paid calls; only
  records in flight at a crash may be paid again, so they are bounded by
  ``crashes * CLASSIFIER_RECORDS_IN_FLIGHT`` (the service's default, twice
  CLASSIFIER_CONCURRENCY). In practice it is about the classifications in flight, whose
  prediction ids ``Prefer: wait`` hides until they finish.
* **nothing else touched**: ``extra`` minus the two prediction keys is exactly what the
  track was seeded with (``{"plays": N}``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from tests.faults.harness import Figures, Track
from tests.support.bus import read_topic
from tests.support.fake_replicate import FakeStats, load_labels, scores_for

from genres.classify.ranking import discogs_name, rank
from genres_contracts import topics

PREDICTION_KEYS = frozenset({"genre_predictions", "genre_predictions_file_id"})


@cache
def _labels() -> tuple[str, ...]:
    return tuple(load_labels())


@cache
def expected_predictions(audio_url: str, top_n: int = 10) -> tuple[tuple[str, float], ...]:
    """What the service must store for the fake's answer to ``audio_url``."""
    scores = scores_for(audio_url, list(_labels()))
    ranked = rank({discogs_name(label): value for label, value in scores.items()}, top_n)
    return tuple((p.name, p.confidence) for p in ranked)


def _pairs(predictions: Any) -> tuple[tuple[str, float], ...]:
    return tuple((str(p["name"]), float(p["confidence"])) for p in predictions or ())


@dataclasses.dataclass
class Verdict:
    tracks: int = 0
    classified: int = 0
    failed: int = 0
    outcome_events: int = 0
    lost: list[str] = dataclasses.field(default_factory=list)
    wrong: list[str] = dataclasses.field(default_factory=list)
    extra_changed: list[str] = dataclasses.field(default_factory=list)
    duplicate_paid: int = 0
    duplicate_bound: int = 0
    failure_kinds: dict[str, int] = dataclasses.field(default_factory=dict)
    failures: dict[tuple[int, str], dict[str, Any]] = dataclasses.field(default_factory=dict)

    def problems(self) -> list[str]:
        found = [f"lost: {item}" for item in self.lost]
        found += [f"wrong: {item}" for item in self.wrong]
        found += [f"extra changed: {item}" for item in self.extra_changed]
        if self.duplicate_paid > self.duplicate_bound:
            found.append(
                f"paid twice {self.duplicate_paid} times, more than the bound "
                f"{self.duplicate_bound} (crashes x records in flight)"
            )
        return found

    def assert_clean(self) -> None:
        problems = self.problems()
        assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:40])

    def summary(self) -> dict[str, Any]:
        return {
            "tracks": self.tracks,
            "classified": self.classified,
            "failed": self.failed,
            "outcome_events": self.outcome_events,
            "failure_kinds": dict(sorted(self.failure_kinds.items())),
            "duplicate_bound": self.duplicate_bound,
        }

    def figures(
        self,
        *,
        events: int,
        faults_injected: int,
        started: float,
        lost: int = 0,
        wrong: int = 0,
        **details: Any,
    ) -> Figures:
        """The scenario's figures: this verdict's counts (plus ``lost``/``wrong`` found by the
        scenario itself), the run time since ``started`` and the summary plus ``details``."""
        return Figures(
            events=events,
            faults_injected=faults_injected,
            lost=len(self.lost) + lost,
            wrong=len(self.wrong) + wrong,
            duplicate_paid=self.duplicate_paid,
            run_time_s=time.monotonic() - started,
            details={**self.summary(), **details},
        )


async def check(
    engine: AsyncEngine,
    bootstrap: str,
    prefix: str,
    *,
    fake_stats: FakeStats | None,
    seeded_extra: Mapping[int, dict[str, Any]],
    uploaded_urls: Mapping[tuple[int, str], str] | None = None,
    crashes: int = 0,
    concurrency: int = 0,
    top_n: int = 10,
    expected: Callable[[str], tuple[tuple[str, float], ...]] | None = None,
) -> Verdict:
    """Compare the database with the outcome topics and the fake's bill (see the module).

    ``expected``: an audio URL's predictions, when not all of them are the fake's (the
    cascade's local answers); by default :func:`expected_predictions` with ``top_n``."""
    verdict = Verdict()
    expect = expected or (lambda url: expected_predictions(url, top_n))
    classified_records = await read_topic(bootstrap, f"{prefix}{topics.GENRES_CLASSIFIED}")
    failed_records = await read_topic(bootstrap, f"{prefix}{topics.GENRES_FAILED}")
    verdict.outcome_events = len(classified_records) + len(failed_records)

    # The latest GenresClassified per (track, file): records of a track share a partition,
    # so offset order is publication order.
    latest: dict[tuple[int, str], tuple[tuple[str, float], ...]] = {}
    seen: dict[int, list[str]] = {}
    for record in sorted(classified_records, key=lambda r: (r.partition, r.offset)):
        event = json.loads(record.value)
        key = (int(event["track_id"]), str(event["file_id"]))
        latest[key] = _pairs(event["predictions"])
        seen.setdefault(key[0], []).append(f"{key[1]}@{record.partition}:{record.offset}")
        if record.key != str(event["track_id"]).encode():
            verdict.wrong.append(f"GenresClassified for track {key[0]} keyed {record.key!r}")
    for record in failed_records:
        event = json.loads(record.value)
        key = (int(event["track_id"]), str(event["file_id"]))
        verdict.failures[key] = event

    async with engine.connect() as conn:
        rows = (
            await conn.execute(text("SELECT id, file_id, audio_url, extra FROM tracks ORDER BY id"))
        ).all()
    # (track, file) -> audio URL: every file the test uploaded, and the current ones.
    urls = dict(uploaded_urls or {})
    urls |= {(int(row.id), str(row.file_id)): str(row.audio_url) for row in rows}

    # Events against their own file: the predictions are the fake's scores for that file's URL.
    for (track_id, file_id), predictions in latest.items():
        url = urls.get((track_id, file_id))
        if url is not None and predictions != expect(url):
            verdict.wrong.append(f"GenresClassified for track {track_id} file {file_id}")

    verdict.tracks = len(rows)
    for row in rows:
        track_id, file_id = int(row.id), str(row.file_id)
        extra: dict[str, Any] = dict(row.extra or {})
        others = {k: v for k, v in extra.items() if k not in PREDICTION_KEYS}
        seeded = seeded_extra.get(track_id)
        if seeded is not None and others != seeded:
            verdict.extra_changed.append(f"track {track_id}: {others} (seeded {seeded})")
        stored_file = extra.get("genre_predictions_file_id")
        stored = _pairs(extra.get("genre_predictions")) if "genre_predictions" in extra else None
        if stored is not None and stored_file != file_id:
            # Predictions of a replaced file may stay until the new file's land; but they must
            # be that file's predictions, never stored under the current file id.
            old_url = urls.get((track_id, str(stored_file)))
            if old_url is None or stored != expect(old_url):
                verdict.wrong.append(
                    f"track {track_id}: predictions under file {stored_file!r} are not its own"
                )
        if stored is not None and stored_file == file_id:
            if stored != expect(str(row.audio_url)):
                verdict.wrong.append(
                    f"track {track_id}: stored predictions are not those of file {file_id}"
                )
            elif (track_id, file_id) not in latest:
                verdict.wrong.append(
                    f"track {track_id}: predictions for {file_id} stored without an event "
                    f"(events: {seen.get(track_id)})"
                )
            elif stored != latest[(track_id, file_id)]:
                verdict.wrong.append(f"track {track_id}: not the latest predictions")
            else:
                verdict.classified += 1
            continue
        if (track_id, file_id) in latest:
            verdict.lost.append(f"track {track_id} file {file_id}: classified but not stored")
            continue
        failure = verdict.failures.get((track_id, file_id))
        if failure is not None:
            verdict.failed += 1
            kind = str(failure["error"]["kind"])
            verdict.failure_kinds[kind] = verdict.failure_kinds.get(kind, 0) + 1
            continue
        verdict.lost.append(f"track {track_id} file {file_id}: no predictions and no failure")

    if fake_stats is not None:
        verdict.duplicate_paid = sum(n - 1 for n in fake_stats.creations_per_url.values() if n > 1)
    # CLASSIFIER_RECORDS_IN_FLIGHT's default: the harness leaves it unset.
    verdict.duplicate_bound = crashes * 2 * concurrency
    return verdict


async def check_tracks(
    engine: AsyncEngine,
    bootstrap: str,
    prefix: str,
    tracks: Iterable[Track],
    *,
    fake_stats: FakeStats | None,
    **options: Any,
) -> Verdict:
    """:func:`check` for tracks seeded by :func:`~tests.faults.harness.seed_tracks`."""
    return await check(
        engine,
        bootstrap,
        prefix,
        fake_stats=fake_stats,
        seeded_extra={t.id: {"plays": t.plays} for t in tracks},
        **options,
    )
