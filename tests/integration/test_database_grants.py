"""Least privilege: each role's SQL runs as a role holding exactly ``genres grants``' privileges.

Every statement of a role's store runs as a login role that owns nothing; then, for each of
the role's privileges, as a role holding all but that one, where some statement must be
refused: none is missing, none is spare. The role can change no table, nor write one it
does not need.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from genres.backfill.store import SqlBackfillStore
from genres.classifier.ledger import PostgresLedger
from genres.classifier.rule import Claimed, Recorded
from genres.database.engine import create_engine
from genres.database.grants import ROLES, Grant, grants_of, required_grants
from genres.database.migrate import upgrade
from genres.database.pace import DatabaseSlotBook
from genres.projector.rule import Write
from genres.projector.store import SqlProjectionStore
from genres.responder.tracks import SqlMarkers, create_read_engine, track_view
from genres_contracts import ClassificationFailed, GenresClassified, ModelRef, Prediction
from tests.support.grants import as_owner, role_holding

MODEL = ModelRef(name="m", version="1")
PREDICTIONS = (Prediction(name="rock", confidence=0.9), Prediction(name="pop", confidence=0.5))
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
INSUFFICIENT_PRIVILEGE = "42501"
REFUSAL = "permission denied|must be owner"


async def classifier(url: str) -> None:
    """The ledger's five statements and the Replicate pace's booking."""
    ledger = await PostgresLedger.connect(url, size=2)
    try:
        assert await ledger.claim(1, "f", MODEL, source_event_id="e1", force=False) == Claimed()
        await ledger.started(1, "f", MODEL, "job-1")
        failure = ClassificationFailed.model_validate(
            {
                "source_event_id": "e1",
                "track_id": 1,
                "file_id": "f",
                "error": {"kind": "audio_unreadable", "message": "no"},
                "attempts": 1,
                "retryable": True,
            }
        )
        await ledger.failed(MODEL, failure)
        # A row on record: loaded, locked, and taken again (the rule retries a failure).
        assert await ledger.claim(1, "f", MODEL, source_event_id="e2", force=False) == Claimed()
        done = GenresClassified(
            source_event_id="e2",
            track_id=1,
            file_id="f",
            predictions=list(PREDICTIONS),
            model=MODEL,
            classified_at=NOW,
        )
        await ledger.succeeded(MODEL, done, attempts=1)
        recorded = await ledger.claim(1, "f", MODEL, source_event_id="e3", force=False)
        assert isinstance(recorded, Recorded)
        assert recorded.status == "succeeded"
    finally:
        await ledger.close()
    book = await DatabaseSlotBook.connect(url, "sha256:test")
    try:
        assert await book.book(0.001) <= 0.001
    finally:
        await book.aclose()


async def projector(url: str) -> None:
    """A batch with auto-tags: the tracks read and locked, predictions stored, tags linked."""
    engine = create_engine(url, pool_size=0)
    try:
        async with SqlProjectionStore(engine).batch() as batch:
            current = await batch.tracks({1}, with_tags={1})
            assert current[1].file_id == "f"
            await batch.store([Write(1, "f", PREDICTIONS, MODEL)])
            assert await batch.add_tags([(1, ["new wave"]), (2, ["rock"])]) == 2
    finally:
        await engine.dispose()


async def responder(url: str) -> None:
    """The track's view, and an on-demand marker claimed and released."""
    engine = create_read_engine(url, pool_size=0)
    try:
        view = await track_view(engine, 1)
        assert view is not None
        assert view.file_id == "f"
        markers = SqlMarkers(engine)
        assert await markers.claim(2, "g", at=NOW, stale_before=NOW - timedelta(minutes=1))
        await markers.release(2, "g")
    finally:
        await engine.dispose()


async def backfill(url: str) -> None:
    engine = create_engine(url, pool_size=0)
    try:
        pages = [page async for page in SqlBackfillStore(engine).tracks()]
        assert [row.track_id for page in pages for row in page] == [1, 2]
    finally:
        await engine.dispose()


EXERCISES: dict[str, Callable[[str], Awaitable[None]]] = {
    "classifier": classifier,
    "projector": projector,
    "responder": responder,
    "backfill": backfill,
}


async def platform_rows(database_url: str) -> None:
    """Two tracks, a tag on the first, and a pending on-demand request for it."""
    await as_owner(
        database_url,
        "INSERT INTO tracks (id, file_id, audio_url) VALUES (1, 'f', 'https://cdn.test/1.mp3'), "
        "(2, 'g', 'https://cdn.test/2.mp3')",
        "INSERT INTO tags (name) VALUES ('Rock')",
        "INSERT INTO track_tags (track_id, tag_id) SELECT 1, id FROM tags WHERE name = 'Rock'",
        "INSERT INTO classification_requests (track_id, file_id) VALUES (1, 'f')",
    )


def refused(exc: BaseException) -> bool:
    """Whether PostgreSQL refused a privilege somewhere in ``exc``'s chain."""
    seen: list[BaseException | None] = [exc]
    while seen:
        error = seen.pop()
        if error is None:
            continue
        if getattr(error, "sqlstate", None) == INSUFFICIENT_PRIVILEGE:
            return True
        seen += [getattr(error, "orig", None), error.__cause__, error.__context__]
        if isinstance(error, BaseExceptionGroup):
            seen += error.exceptions
    return False


@pytest.mark.parametrize("role", ROLES)
async def test_a_role_runs_all_its_sql_with_only_its_grants(database_url: str, role: str) -> None:
    await platform_rows(database_url)
    async with role_holding(database_url, grants_of(role)) as url:
        await EXERCISES[role](url)


def _each_grant() -> list[tuple[str, Grant]]:
    return [(role, grant) for role in ROLES for grant in grants_of(role)]


@pytest.mark.parametrize(
    ("role", "grant"),
    _each_grant(),
    ids=[
        f"{role}-{grant.privilege}-{'-'.join((grant.table, *grant.columns))}"
        for role, grant in _each_grant()
    ],
)
async def test_without_any_one_of_its_grants_a_role_is_refused(
    database_url: str, role: str, grant: Grant
) -> None:
    await platform_rows(database_url)
    fewer = [other for other in grants_of(role) if other != grant]
    async with role_holding(database_url, fewer) as url:
        with pytest.raises(Exception, match=REFUSAL) as raised:
            await EXERCISES[role](url)
    assert refused(raised.value), repr(raised.value)


FORBIDDEN = (
    "DROP TABLE tracks",
    "ALTER TABLE genre_classifications ADD COLUMN mine TEXT",
    "CREATE TABLE mine (id INT)",
    "TRUNCATE classification_requests",
    "UPDATE tracks SET audio_url = 'https://elsewhere.test/1.mp3'",
    "DELETE FROM tracks",
    "INSERT INTO tracks (id) VALUES (99)",
    "DELETE FROM genre_classifications",
    "UPDATE genres_alembic_version SET version_num = '0001'",
    "CREATE INDEX ON tracks (file_id)",
)


async def test_the_roles_grants_allow_no_schema_change_and_no_write_they_do_not_need(
    database_url: str,
) -> None:
    await platform_rows(database_url)
    async with role_holding(database_url, required_grants(ROLES)) as url:
        engine = create_engine(url, pool_size=0)
        try:
            for statement in FORBIDDEN:
                with pytest.raises(Exception, match=REFUSAL) as raised:
                    async with engine.begin() as connection:
                        await connection.execute(text(statement))
                assert refused(raised.value), f"{statement}: {raised.value!r}"
        finally:
            await engine.dispose()


async def test_the_role_cannot_migrate_which_is_the_owners_job(database_url: str) -> None:
    async with role_holding(database_url, required_grants(ROLES)) as url:
        with pytest.raises(Exception, match=REFUSAL) as raised:
            await upgrade(url)
    assert refused(raised.value)
