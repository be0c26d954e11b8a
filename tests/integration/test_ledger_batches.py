"""The ledger's batched statements on a real PostgreSQL: many callers, one statement each step."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from genres.classifier.ledger import PostgresLedger
from genres.classifier.rule import Claimed, Recorded
from genres_contracts import GenresClassified, ModelRef, Prediction

MODEL = ModelRef(name="mtg/effnet-discogs", version="v1")
PREDICTIONS = (Prediction(name="ambient electronic", confidence=0.7),)


def classified(track_id: int, event_id: str, at: datetime) -> GenresClassified:
    return GenresClassified(
        event_id=event_id,
        source_event_id=f"e{track_id}",
        track_id=track_id,
        file_id="f1",
        predictions=list(PREDICTIONS),
        model=MODEL,
        classified_at=at,
    )


async def test_concurrent_claims_starts_and_outcomes_match_one_at_a_time_semantics(
    database_url: str,
) -> None:
    ledger = await PostgresLedger.connect(database_url, size=4)
    try:
        tracks = range(1, 41)
        claims = await asyncio.gather(
            *(ledger.claim(t, "f1", MODEL, source_event_id=f"e{t}", force=False) for t in tracks)
        )
        assert all(claim == Claimed(resume=None) for claim in claims)

        # Even tracks finish; odd ones only get as far as starting their job.
        await asyncio.gather(
            *(ledger.started(t, "f1", MODEL, f"job-{t}") for t in tracks),
        )
        classified_at = datetime(2026, 11, 26, tzinfo=UTC)
        await asyncio.gather(
            *(
                ledger.succeeded(MODEL, classified(t, f"out-{t}", classified_at), attempts=1)
                for t in tracks
                if t % 2 == 0
            )
        )

        again = await asyncio.gather(
            *(ledger.claim(t, "f1", MODEL, source_event_id=f"r{t}", force=False) for t in tracks),
            # A new file of a finished track is a new classification.
            ledger.claim(2, "f2", MODEL, source_event_id="new-file", force=False),
        )
    finally:
        await ledger.close()

    for track_id, claim in zip(tracks, again, strict=False):
        if track_id % 2 == 0:
            assert isinstance(claim, Recorded)
            assert (claim.status, claim.event_id) == ("succeeded", f"out-{track_id}")
            assert claim.predictions == PREDICTIONS
            assert claim.classified_at == classified_at
        else:
            # Interrupted: claimed again, resuming the job already paid for.
            assert claim == Claimed(resume=f"job-{track_id}")
    assert again[-1] == Claimed(resume=None)
    assert ledger._claims.batches < 2 * len(tracks)


async def test_the_same_track_claimed_twice_at_once_is_claimed_once_per_statement(
    database_url: str,
) -> None:
    ledger = await PostgresLedger.connect(database_url, size=2)
    try:
        await ledger.claim(7, "f1", MODEL, source_event_id="e1", force=False)
        await ledger.succeeded(MODEL, classified(7, "out-7", datetime.now(UTC)), attempts=1)
        first, second = await asyncio.gather(
            ledger.claim(7, "f1", MODEL, source_event_id="e2", force=False),
            ledger.claim(7, "f1", MODEL, source_event_id="e3", force=False),
        )
    finally:
        await ledger.close()

    assert isinstance(first, Recorded)
    assert isinstance(second, Recorded)
    assert first.event_id == second.event_id == "out-7"
