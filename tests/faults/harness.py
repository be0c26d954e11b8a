"""What the fault scenarios share: tracks, uploads, role processes, figures."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from tests.support.bus import create_topics
from tests.support.database import insert_tracks
from tests.support.fake_replicate import FakeReplicate
from tests.support.process import start_genres
from tests.support.service import process_env
from tests.support.waiting import holds_within

from genres.kafka.broker import SERVICE_TOPICS
from genres_contracts import topics

if TYPE_CHECKING:
    from tests.faults.checks import Verdict


@dataclasses.dataclass
class Figures:
    """What every scenario reports."""

    events: int
    faults_injected: int
    lost: int
    wrong: int
    duplicate_paid: int
    run_time_s: float
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["run_time_s"] = round(self.run_time_s, 2)
        return data


@dataclasses.dataclass(frozen=True)
class Track:
    id: int
    file_id: str
    audio_url: str
    plays: int

    def upload(self, **extra: Any) -> dict[str, Any]:
        return {
            "track_id": self.id,
            "file_id": self.file_id,
            "audio_url": self.audio_url,
            **extra,
        }


def make_tracks(
    count: int, *, start: int = 1, directives: Mapping[int, str] | None = None
) -> list[Track]:
    """Tracks ``start..start+count-1``; ``directives`` adds ``?fake=...`` to some audio URLs."""
    tracks = []
    for track_id in range(start, start + count):
        url = f"https://cdn.test/audio/{track_id}/a{track_id}.mp3"
        directive = (directives or {}).get(track_id)
        if directive:
            url += f"?fake={directive}"
        tracks.append(Track(track_id, f"a{track_id}", url, plays=track_id * 7))
    return tracks


async def seed_tracks(engine: AsyncEngine, tracks: Iterable[Track]) -> None:
    """Insert the tracks, each with an unrelated key in ``extra`` (``plays``)."""
    await insert_tracks(
        engine, ((t.id, t.file_id, t.audio_url, {"plays": t.plays}) for t in tracks)
    )


async def replace_file(engine: AsyncEngine, track: Track, file_id: str) -> Track:
    """The platform replaces a track's audio: a new ``file_id`` and URL in ``tracks``."""
    new = dataclasses.replace(
        track, file_id=file_id, audio_url=f"https://cdn.test/audio/{track.id}/{file_id}.mp3"
    )
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE tracks SET file_id = :f, audio_url = :u WHERE id = :i"),
            {"f": new.file_id, "u": new.audio_url, "i": new.id},
        )
    return new


async def ensure_service_topics(bootstrap: str, prefix: str, partitions: int = 3) -> None:
    names = [f"{prefix}{name}" for name in SERVICE_TOPICS]
    await create_topics(bootstrap, names + [f"{name}.dlq" for name in names], partitions)


async def prepare(
    engine: AsyncEngine, bootstrap: str, prefix: str, tracks: Iterable[Track], partitions: int = 3
) -> None:
    """Seed the tracks and create the service's topics: what every scenario starts with."""
    await seed_tracks(engine, tracks)
    await ensure_service_topics(bootstrap, prefix, partitions)


async def publish(
    bootstrap: str,
    topic: str,
    values: Iterable[tuple[str | None, dict[str, Any] | bytes]],
) -> int:
    """Publish ``(key, value)`` records as a plain producer would (JSON, no headers)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = []
        for key, value in values:
            raw = value if isinstance(value, bytes) else json.dumps(value).encode()
            futures.append(
                await producer.send(topic, value=raw, key=key.encode() if key is not None else None)
            )
        await asyncio.gather(*futures)
        return len(futures)
    finally:
        await producer.stop()


async def publish_uploads(bootstrap: str, prefix: str, tracks: Iterable[Track]) -> int:
    return await publish(
        bootstrap,
        f"{prefix}{topics.TRACK_UPLOADED}",
        ((str(t.id), t.upload()) for t in tracks),
    )


async def list_topics(bootstrap: str, prefix: str) -> list[str]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return sorted(name for name in await consumer.topics() if name.startswith(prefix))
    finally:
        await consumer.stop()


async def _count(engine: AsyncEngine, query: str) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text(query)) or 0)


async def projected_count(engine: AsyncEngine) -> int:
    """Tracks holding predictions, for whichever file."""
    return await _count(engine, "SELECT count(*) FROM tracks WHERE extra ? 'genre_predictions'")


async def projected_reaches(
    engine: AsyncEngine, target: int, *, timeout: float, interval: float = 0.1
) -> bool:
    """Poll until at least ``target`` tracks hold predictions (False after ``timeout``)."""

    async def reached() -> bool:
        return await projected_count(engine) >= target

    return await holds_within(reached, within=timeout, interval=interval)


_CURRENT = (
    "extra ? 'genre_predictions' "
    "AND extra ->> 'genre_predictions_file_id' IS NOT DISTINCT FROM file_id"
)


async def current_projected(engine: AsyncEngine) -> set[int]:
    """Tracks whose stored predictions are for their current file."""
    async with engine.connect() as conn:
        rows = await conn.execute(text(f"SELECT id FROM tracks WHERE {_CURRENT}"))
        return {int(row.id) for row in rows}


async def all_projected(
    engine: AsyncEngine, count: int, *, timeout: float, interval: float = 0.25
) -> bool:
    """Poll until ``count`` tracks hold predictions for their current file."""

    async def done() -> bool:
        return len(await current_projected(engine)) >= count

    return await holds_within(done, within=timeout, interval=interval)


async def pending_claims(engine: AsyncEngine) -> int:
    """Classifications claimed in the ledger and not finished: the records in flight."""
    return await _count(
        engine, "SELECT count(*) FROM genre_classifications WHERE status = 'pending'"
    )


async def pending_tracks(engine: AsyncEngine) -> set[int]:
    """The tracks of :func:`pending_claims`."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT track_id FROM genre_classifications WHERE status = 'pending'")
        )
        return {int(row.track_id) for row in rows}


async def finished_claims(engine: AsyncEngine) -> int:
    """Classifications the ledger holds an outcome for (succeeded or failed)."""
    return await _count(
        engine, "SELECT count(*) FROM genre_classifications WHERE status <> 'pending'"
    )


async def settled_tracks(engine: AsyncEngine) -> int:
    """Tracks with predictions for their current file, or a recorded failure for it."""
    return await _count(
        engine,
        f"SELECT count(*) FROM tracks t WHERE ({_CURRENT}) "
        "OR EXISTS (SELECT 1 FROM genre_classifications g WHERE g.track_id = t.id "
        " AND g.file_id = t.file_id AND g.status = 'failed')",
    )


@dataclasses.dataclass
class Scenario:
    """What every scenario runs with: the test's database, a folder for the role processes'
    logs, and the report its figures go to (the ``scenario`` fixture). :meth:`begin` sets the
    broker, prefix and fake Replicate the scenario runs on and starts its clock;
    :meth:`conclude` checks every track against them and reports the figures."""

    database_url: str
    engine: AsyncEngine
    log_dir: Path
    report: Callable[[Figures], None]
    bootstrap: str = ""
    prefix: str = ""
    fake: FakeReplicate | None = None
    started: float = dataclasses.field(default_factory=time.monotonic)

    async def begin(
        self,
        bootstrap: str,
        prefix: str,
        fake: FakeReplicate,
        tracks: Iterable[Track],
        *,
        concurrency: int,
        partitions: int = 3,
        **options: Any,
    ) -> Roles:
        """Seed ``tracks`` and create the service's topics (``partitions`` each, unless they
        exist); returns the role processes (none started) on ``fake`` with ``options`` (see
        :func:`process_env`)."""
        self.bootstrap, self.prefix, self.fake = bootstrap, prefix, fake
        self.started = time.monotonic()
        await prepare(self.engine, bootstrap, prefix, tracks, partitions)
        env = process_env(
            bootstrap, prefix, self.database_url, fake, concurrency=concurrency, **options
        )
        return Roles(env, self.log_dir)

    async def upload(self, tracks: Iterable[Track]) -> int:
        """Publish the uploads of ``tracks`` on the scenario's broker; returns how many."""
        return await publish_uploads(self.bootstrap, self.prefix, tracks)

    async def check(self, tracks: Iterable[Track], **options: Any) -> Verdict:
        """Every track against the outcome topics and the fake's bill (``check_tracks``)."""
        # The checker reads this module's types: imported here, not at the top.
        from tests.faults.checks import check_tracks

        stats = self.fake.stats if self.fake is not None else None
        return await check_tracks(
            self.engine, self.bootstrap, self.prefix, tracks, fake_stats=stats, **options
        )

    async def conclude(
        self,
        tracks: Iterable[Track],
        *,
        events: int,
        faults_injected: int,
        check: Mapping[str, Any] | None = None,
        **figures: Any,
    ) -> Verdict:
        """:meth:`check` (with ``check`` options), then report the verdict's figures."""
        verdict = await self.check(tracks, **(check or {}))
        self.report(
            verdict.figures(
                events=events,
                faults_injected=faults_injected,
                started=self.started,
                **figures,
            )
        )
        return verdict


# -- role processes -------------------------------------------------------------------------


@dataclasses.dataclass
class RoleProcess:
    role: str
    process: asyncio.subprocess.Process
    log: Path
    starts: int = 1

    @property
    def alive(self) -> bool:
        return self.process.returncode is None


class Roles:
    """``genres run <role>`` processes, one per role, each logging to ``<dir>/<role>.log``."""

    def __init__(self, env: Mapping[str, str], log_dir: Path) -> None:
        self.env = dict(env)
        self.log_dir = log_dir
        self.running: dict[str, RoleProcess] = {}
        self.kills = 0

    async def start(
        self, role: str, env: Mapping[str, str] | None = None, *, name: str | None = None
    ) -> RoleProcess:
        """Start ``genres run <role>``; ``name`` (default: the role) tells apart several
        processes of one role: it keys :attr:`running` and names the log."""
        name = name or role
        log = self.log_dir / f"{name}.log"
        previous = self.running.get(name)
        if previous is not None and previous.alive:
            raise RuntimeError(f"{name} is already running")
        with log.open("ab") as handle:
            handle.write(f"--- start {name}\n".encode())
        process = await start_genres("run", role, env=self.env | dict(env or {}), log=log)
        entry = RoleProcess(role, process, log, starts=(previous.starts + 1) if previous else 1)
        self.running[name] = entry
        return entry

    async def start_each(self, *roles: str) -> None:
        """Start the roles one after the other."""
        for role in roles:
            await self.start(role)

    async def kill(self, role: str) -> None:
        """SIGKILL: a crash, nothing cleaned up."""
        entry = self.running[role]
        entry.process.kill()
        await entry.process.wait()
        self.kills += 1

    async def stop(self, name: str, timeout: float = 60.0) -> int | None:
        """SIGTERM one process and wait for its exit code (None: SIGKILLed after ``timeout``)."""
        entry = self.running[name]
        if entry.alive:
            entry.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(entry.process.wait(), timeout)
        except TimeoutError:
            entry.process.kill()
            await entry.process.wait()
            return None

    async def stop_all(self, timeout: float = 60.0) -> dict[str, int | None]:
        """SIGTERM every role; returns their exit codes (SIGKILL after ``timeout``)."""
        codes: dict[str, int | None] = {}
        for entry in self.running.values():
            if entry.alive:
                entry.process.send_signal(signal.SIGTERM)
        for role, entry in self.running.items():
            try:
                codes[role] = await asyncio.wait_for(entry.process.wait(), timeout)
            except TimeoutError:
                entry.process.kill()
                await entry.process.wait()
                codes[role] = None
        return codes

    async def kill_all(self) -> None:
        for entry in self.running.values():
            if entry.alive:
                with contextlib.suppress(ProcessLookupError):
                    entry.process.kill()
                await entry.process.wait()

    def logs(self) -> str:
        return "\n".join(
            path.read_text(errors="replace") for path in sorted(self.log_dir.glob("*.log"))
        )

    def tail(self, role: str, chars: int = 3000) -> str:
        path = self.log_dir / f"{role}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""
