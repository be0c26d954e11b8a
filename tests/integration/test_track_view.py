"""What the responder reads of a track in one statement (``genres.responder.tracks.track_view``)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from genres.responder.tracks import track_view


async def _ledger_row(engine: AsyncEngine, file_id: str, error: dict[str, object] | None) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO genre_classifications "
                "(track_id, file_id, model_name, model_version, status, error) "
                "VALUES (7, :f, 'm', 'v', 'failed', CAST(:e AS jsonb))"
            ),
            {"f": file_id, "e": json.dumps(error) if error is not None else None},
        )


@pytest.mark.parametrize(
    ("file_id", "error", "failed"),
    [
        ("current", {"kind": "audio_unreadable", "retryable": False}, True),
        ("current", {"kind": "timeout", "retryable": True}, False),
        ("current", None, False),  # no flag: retryable, as the classifier's claim rule has it
        ("older", {"kind": "audio_unreadable", "retryable": False}, False),
    ],
)
async def test_a_track_view_says_whether_its_current_file_failed_for_good(
    engine: AsyncEngine, file_id: str, error: dict[str, object] | None, failed: bool
) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO tracks (id, file_id, audio_url) VALUES (7, 'current', 'https://a/b')")
        )
    await _ledger_row(engine, file_id, error)

    view = await track_view(engine, 7)

    assert view is not None
    assert view.failed is failed
