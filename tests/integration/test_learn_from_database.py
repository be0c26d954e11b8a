"""``genres learn --from-database`` on PostgreSQL, the audio served over HTTP on loopback.

Tracks whose current predictions Replicate made (``projected_models``) teach their top label;
tracks another model classified are not examples; audio is fetched under the classifier's
rules, so with private addresses refused (the default) nothing can be learnt from loopback.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from rich.console import Console
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from genres.classify.local.head import Head
from genres.classify.local.learn import LearnError
from genres.cli.learn import LearnOptions, examples_from_database, learn_from_examples
from genres.config import load_settings
from tests.support import synth_classes
from tests.support.database import insert_tracks
from tests.support.synth_classes import clips, wav_bytes

TEACHER_NAMES = {"pad": "Electronic---Ambient", "drums": "Rock---Punk", "bells": "Jazz---Bop"}


@pytest_asyncio.fixture
async def served() -> AsyncIterator[tuple[str, list[tuple[str, bytes]]]]:
    """The clips (label, wav) at http://127.0.0.1:PORT/<index>.wav."""
    made = [(label, wav_bytes(a)) for label, a in clips(6, 3.2, seed=5) if label in TEACHER_NAMES]

    async with synth_classes.served([wav for _, wav in made]) as base:
        yield base, made


async def _store(engine: AsyncEngine, base: str, made: list[tuple[str, bytes]]) -> None:
    rows = []
    for i, (label, _) in enumerate(made):
        predictions = [
            {
                "name": TEACHER_NAMES[label].split("---")[1].lower()
                + " "
                + TEACHER_NAMES[label].split("---")[0].lower(),
                "confidence": 0.7,
            },
            {"name": "other genre", "confidence": 0.1},
        ]
        extra = {"genre_predictions": predictions, "genre_predictions_file_id": f"f{i}"}
        rows.append((i + 1, f"f{i}", f"{base}/{i}.wav", extra))
    # A label the teacher gave one track only: too rare to learn, left out.
    rare = [{"name": "dub reggae", "confidence": 0.9}]
    rows.append((50, "r", f"{base}/0.wav", {"genre_predictions": rare}))
    # One track the local model classified: not an example of the teacher.
    rows.append(
        (100, "g", f"{base}/0.wav", {"genre_predictions": [{"name": "x", "confidence": 1}]})
    )
    await insert_tracks(engine, rows)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO projected_models (track_id, file_id, model_name, model_version) "
                "VALUES (:t, :f, :m, 'v')"
            ),
            [{"t": i + 1, "f": f"f{i}", "m": "mtg/effnet-discogs"} for i in range(len(made))]
            + [{"t": 50, "f": "r", "m": "mtg/effnet-discogs"}]
            + [{"t": 100, "f": "g", "m": "musicnn/msd+mtt"}],
        )


async def test_learns_the_teachers_labels_from_tracks_it_classified(
    engine: AsyncEngine,
    database_url: str,
    served: tuple[str, list[tuple[str, bytes]]],
    tmp_path: Path,
) -> None:
    base, made = served
    await _store(engine, base, made)
    settings = load_settings(
        database_url=database_url,
        audio_allow_private_addresses=True,
        local_workers=0,
        local_windows=1,
    )
    examples, dropped = await examples_from_database(
        settings, "replicate", soft=False, min_tag_tracks=1, min_examples=5
    )
    assert len(examples) == len(made)
    assert dropped == ["dub reggae"]
    out = tmp_path / "head.npz"
    console = Console(file=io.StringIO(), width=120)
    learnt = await learn_from_examples(
        settings, examples, LearnOptions(out), console, source="db", allow_local_paths=False
    )
    head = Head.load(out)
    assert set(head.labels) == {"ambient electronic", "punk rock", "bop jazz"}
    assert head.meta["counts"] == dict.fromkeys(head.labels, 6)
    assert learnt.unreadable == []
    assert learnt.cv.top1 >= 0.8
    assert json.loads(json.dumps(head.meta))["source"] == "db"


async def test_private_addresses_are_refused_as_the_classifier_refuses_them(
    engine: AsyncEngine,
    database_url: str,
    served: tuple[str, list[tuple[str, bytes]]],
    tmp_path: Path,
) -> None:
    base, made = served
    await _store(engine, base, made)
    settings = load_settings(database_url=database_url, local_workers=0, local_windows=1)
    examples, _ = await examples_from_database(
        settings, "replicate", soft=False, min_tag_tracks=1, min_examples=5
    )
    console = Console(file=io.StringIO(), width=200)
    with pytest.raises(LearnError, match="no examples"):
        await learn_from_examples(
            settings,
            examples,
            LearnOptions(tmp_path / "head.npz"),
            console,
            source="db",
            allow_local_paths=False,
        )
    printed = console.file.getvalue()  # type: ignore[attr-defined]
    assert f"{len(made)} of {len(made)} unreadable" in printed
    assert "AUDIO_ALLOW_PRIVATE_ADDRESSES" in printed
    assert not (tmp_path / "head.npz").exists()
