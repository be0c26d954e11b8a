"""In-memory fakes of the roles' ports, for testing the rules without servers.

Each fake mirrors the adapter it stands for (named in its docstring) and nothing more:
state in dicts and lists, no timing, no I/O. The decisions are the roles' rules
(``decide_claim``, ``plan`` and ``auto_tags``, ``SingleFlight`` and ``marker_is_free``,
``eligible``), which the fakes call just as the SQL adapters do: a fake only loads and
stores. The responder's ``Watch`` is the real one, on a ``FakeClock``.

Every fake can be told to fail a method (``failures["name"] = exc``): the failure stands
until removed, as a database or broker that is down stays down.

Steps are written to a ``Journal`` shared by the fakes of one test, so tests can assert the
order in which the role used its ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from genres.backfill.rule import BackfillTrack, TrackRow
from genres.classifier.rule import Claimed, LedgerEntry, Recorded, decide_claim
from genres.classify.port import Checkpoint, Classification, Timings
from genres.errors import ClassificationError
from genres.projector.rule import TrackState, Write
from genres.responder.rule import Outcome, SingleFlight, TrackView, marker_is_free
from genres.responder.watch import Watch
from genres.stored import StoredPredictions
from genres_contracts import (
    CascadeRoute,
    ClassificationFailed,
    ClassificationRequested,
    ErrorInfo,
    GenresClassified,
    ModelRef,
    Prediction,
)

Journal = list[str]
"""Steps in the order the role took them, e.g. ``"ledger.claim"``, ``"outcomes.classified"``."""

EPOCH = datetime(2026, 11, 25, 19, 0, tzinfo=UTC)


class FakeClock:
    """Time that moves only when the test says so.

    ``now()`` gives seconds (monotonic, like ``loop.time()``), ``utcnow()`` a datetime.
    Waiters register an ``asyncio.Event`` and are woken on every ``advance``.
    """

    def __init__(self, start: datetime = EPOCH) -> None:
        self._start = start
        self._seconds = 0.0
        self._listeners: set[asyncio.Event] = set()

    def now(self) -> float:
        return self._seconds

    def utcnow(self) -> datetime:
        return self._start + timedelta(seconds=self._seconds)

    def advance(self, seconds: float) -> None:
        self._seconds += seconds
        for listener in self._listeners:
            listener.set()

    async def wait_until(self, event: asyncio.Event, deadline: float) -> None:
        """The ``Clock`` port of ``responder/watch.py``: returns when ``event`` is set or the
        test moves the clock (the caller re-checks its deadline)."""
        if self._seconds >= deadline:
            return
        with self.listening(event):
            await event.wait()

    @contextlib.contextmanager
    def listening(self, event: asyncio.Event) -> Iterator[None]:
        self._listeners.add(event)
        try:
            yield
        finally:
            self._listeners.discard(event)


class _Failing:
    """``failures[name]`` makes method ``name`` raise that exception (until removed)."""

    failures: dict[str, BaseException]

    def _step(self, name: str) -> None:
        error = self.failures.get(name)
        if error is not None:
            raise error


async def settle(rounds: int = 20) -> None:
    """Let every ready task run as far as it can (zero-length yields only, no sleeping)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


# -- classifier ------------------------------------------------------------------------------


@dataclass
class LedgerRow:
    """One ``genre_classifications`` row."""

    status: str  # pending | succeeded | failed
    source_event_id: str
    attempts: int = 0
    job_id: str | None = None
    event_id: str | None = None
    predictions: tuple[Prediction, ...] | None = None
    error: ErrorInfo | None = None
    retryable: bool | None = None
    updated_at: datetime = EPOCH
    answered_by: ModelRef | None = None
    cascade: CascadeRoute | None = None


LedgerKey = tuple[int, str, str, str]


class FakeLedger(_Failing):
    """``classifier/ledger.py``'s ``PostgresLedger``: rows in a dict.

    As the real ledger, it loads the row, asks the rule (``decide_claim``) and stores the
    answer. ``attempts`` add up over attempts and are not reset by a claim, as in SQL.
    """

    def __init__(self, journal: Journal | None = None, *, clock: FakeClock | None = None) -> None:
        self.rows: dict[LedgerKey, LedgerRow] = {}
        self.journal: Journal = journal if journal is not None else []
        self.failures = {}
        self._clock = clock or FakeClock()

    @staticmethod
    def key(track_id: int, file_id: str, model: ModelRef) -> LedgerKey:
        return (track_id, file_id, model.name, model.version)

    def row(self, track_id: int, file_id: str, model: ModelRef) -> LedgerRow:
        return self.rows[self.key(track_id, file_id, model)]

    async def claim(
        self, track_id: int, file_id: str, model: ModelRef, *, source_event_id: str, force: bool
    ) -> Claimed | Recorded:
        self.journal.append("ledger.claim")
        self._step("claim")
        key = self.key(track_id, file_id, model)
        row = self.rows.get(key)
        entry = None
        if row is not None:
            entry = LedgerEntry(
                status=row.status,
                job_id=row.job_id,
                event_id=row.event_id,
                predictions=row.predictions or (),
                error=row.error,
                retryable=True if row.retryable is None else row.retryable,
                attempts=row.attempts,
                updated_at=row.updated_at,
                answered_by=row.answered_by,
                cascade=row.cascade,
            )
        decision = decide_claim(entry, force=force)
        if isinstance(decision, Claimed):
            self.rows[key] = LedgerRow(
                "pending",
                source_event_id,
                attempts=row.attempts if row is not None else 0,
                job_id=decision.resume,
                updated_at=self._clock.utcnow(),
            )
        return decision

    async def started(self, track_id: int, file_id: str, model: ModelRef, job_id: str) -> None:
        self.journal.append("ledger.started")
        self._step("started")
        row = self.rows.get(self.key(track_id, file_id, model))
        if row is not None and row.status == "pending":
            row.job_id = job_id

    async def succeeded(self, model: ModelRef, event: GenresClassified, *, attempts: int) -> None:
        self.journal.append("ledger.succeeded")
        self._step("succeeded")
        row = self.rows.get(self.key(event.track_id, event.file_id, model))
        if row is None:
            return  # an UPDATE of no row
        row.status, row.event_id = "succeeded", event.event_id
        row.predictions = tuple(event.predictions)
        row.attempts += attempts
        row.error, row.retryable, row.updated_at = None, None, event.classified_at
        # As the SQL ledger's `answered` column: kept only when not the key's model.
        different = event.model != model or event.cascade is not None
        row.answered_by = event.model if different else None
        row.cascade = event.cascade

    async def failed(self, model: ModelRef, event: ClassificationFailed) -> None:
        self.journal.append("ledger.failed")
        self._step("failed")
        row = self.rows.get(self.key(event.track_id, event.file_id, model))
        if row is None:
            return
        row.status, row.error, row.event_id = "failed", event.error, event.event_id
        row.retryable = event.retryable
        row.attempts += event.attempts
        row.predictions, row.updated_at = None, self._clock.utcnow()


class FakeOutcomes(_Failing):
    """``classifier/entry.py``'s ``PublishedOutcomes``: events in the order the broker got them."""

    def __init__(self, journal: Journal | None = None) -> None:
        self.published: list[GenresClassified | ClassificationFailed] = []
        self.journal: Journal = journal if journal is not None else []
        self.failures = {}

    async def classified(self, event: GenresClassified) -> None:
        self.journal.append("outcomes.classified")
        self._step("classified")
        self.published.append(event)

    async def failed(self, event: ClassificationFailed) -> None:
        self.journal.append("outcomes.failed")
        self._step("failed")
        self.published.append(event)


@dataclass
class FakeClassifier:
    """The ``Classifier`` port: answers from ``predictions`` or raises ``error``.

    With ``job_id`` set it behaves like a backend with remote jobs: it records the job's id
    through the checkpoint before answering (a resumed call records nothing new).
    ``crash`` is raised after the job is recorded, as a process dying mid-classification;
    ``gate``, when given, holds every call there until it is set (a job still running).
    """

    model: ModelRef = field(default_factory=lambda: ModelRef(name="fake/model", version="1"))
    predictions: tuple[Prediction, ...] = (
        Prediction(name="ambient electronic", confidence=0.6),
        Prediction(name="downtempo electronic", confidence=0.2),
    )
    attempts: int = 1
    error: ClassificationError | None = None
    job_id: str | None = None
    crash: BaseException | None = None
    gate: asyncio.Event | None = None
    journal: Journal = field(default_factory=list)
    calls: list[tuple[str, str | None]] = field(default_factory=list)
    """(audio, checkpoint.resume) of every call."""

    async def classify(self, audio: str, checkpoint: Checkpoint | None = None) -> Classification:
        self.journal.append("classifier.classify")
        self.calls.append((audio, checkpoint.resume if checkpoint else None))
        if self.job_id is not None and checkpoint is not None and checkpoint.resume is None:
            await checkpoint.record(self.job_id)
        if self.gate is not None:
            await self.gate.wait()
        if self.crash is not None:
            raise self.crash
        if self.error is not None:
            raise self.error
        return Classification(
            predictions=self.predictions,
            model=self.model,
            timings=Timings(total=0.0),
            attempts=self.attempts,
        )

    async def aclose(self) -> None:
        return None


# -- projector -------------------------------------------------------------------------------


@dataclass
class FakeTrack:
    """A ``tracks`` row with its tag names (``track_tags`` joined to ``tags``)."""

    file_id: str | None
    audio_url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)


class FakeProjectionStore(_Failing):
    """``projector/store.py``'s ``SqlProjectionStore``: tracks, tags and markers in dicts.

    The decisions are the rule's; this stores and loads only. ``batch()`` is one
    transaction: anything that raises inside it (``failures["write"]`` fails the first
    read) leaves the state as it was. ``models`` is ``projected_models``.
    """

    def __init__(self, tracks: dict[int, FakeTrack] | None = None) -> None:
        self.tracks: dict[int, FakeTrack] = tracks if tracks is not None else {}
        self.tag_names: list[str] = []
        """The ``tags`` table, oldest first."""
        self.markers: set[tuple[int, str]] = set()
        """``classification_requests``: on-demand requests outstanding."""
        self.models: dict[int, tuple[str, ModelRef]] = {}
        """``projected_models``: track → (file_id, model) of the stored predictions."""
        self.batches: list[list[Write]] = []
        """The writes of every committed batch."""
        self.failures = {}

    @contextlib.asynccontextmanager
    async def batch(self) -> AsyncIterator[_FakeProjectionBatch]:
        saved = copy.deepcopy((self.tracks, self.tag_names, self.markers, self.models))
        batch = _FakeProjectionBatch(self)
        try:
            yield batch
        except BaseException:
            self.tracks, self.tag_names, self.markers, self.models = saved
            raise
        self.batches.append(batch.writes)


class _FakeProjectionBatch:
    def __init__(self, store: FakeProjectionStore) -> None:
        self._store = store
        self.writes: list[Write] = []

    async def tracks(
        self, track_ids: Collection[int], *, with_tags: Collection[int]
    ) -> Mapping[int, TrackState]:
        self._store._step("write")
        return {
            track_id: TrackState(track.file_id, tuple(track.tags) if track_id in with_tags else ())
            for track_id in track_ids
            if (track := self._store.tracks.get(track_id)) is not None
        }

    async def store(self, writes: Sequence[Write]) -> None:
        for write in writes:
            track = self._store.tracks[write.track_id]
            assert track.file_id == write.file_id, "the plan wrote a stale event"
            track.extra = {
                **track.extra,
                "genre_predictions": [
                    {"name": p.name, "confidence": p.confidence} for p in write.predictions
                ],
                "genre_predictions_file_id": write.file_id,
            }
            self._store.models[write.track_id] = (write.file_id, write.model)
            self._store.markers.discard((write.track_id, write.file_id))
            self.writes.append(write)

    async def add_tags(self, tags: Sequence[tuple[int, Sequence[str]]]) -> int:
        added = 0
        for track_id, names in tags:
            track = self._store.tracks[track_id]
            for name in names:
                tag = self._tag_named(name)
                if tag not in track.tags:
                    track.tags.append(tag)
                    added += 1
        return added

    def _tag_named(self, name: str) -> str:
        """Exact spelling first, then the oldest alike but for case, else a new tag."""
        known = self._store.tag_names
        if name in known:
            return name
        for existing in known:
            if existing.casefold() == name.casefold():
                return existing
        known.append(name)
        return name


# -- responder -------------------------------------------------------------------------------


class FakeTracks(_Failing):
    """The ``TrackReader`` port (``responder/tracks.py``'s ``track_view``).

    ``on_read`` runs after each read, before the role goes on: a hook for things that
    happen meanwhile (an outcome published, the track's audio replaced).
    """

    def __init__(self, views: dict[int, TrackView] | None = None) -> None:
        self.views: dict[int, TrackView] = views if views is not None else {}
        self.reads: list[int] = []
        self.on_read: Callable[[int], None] | None = None
        self.failures = {}

    async def __call__(self, track_id: int, /) -> TrackView | None:
        self.reads.append(track_id)
        self._step("read")
        view = self.views.get(track_id)
        if self.on_read is not None:
            self.on_read(track_id)
        return view


class FakeMarkers(_Failing):
    """The ``Markers`` port (``responder/tracks.py``'s ``SqlMarkers``): markers in a dict,
    judged by the rule's ``marker_is_free``. A claim yields to the loop first, as the
    database round trip does, so concurrent callers interleave."""

    def __init__(self) -> None:
        self.markers: dict[tuple[int, str], datetime] = {}
        self.failures = {}

    async def claim(
        self, track_id: int, file_id: str, *, at: datetime, stale_before: datetime
    ) -> bool:
        await asyncio.sleep(0)
        self._step("claim")
        key = (track_id, file_id)
        if not marker_is_free(self.markers.get(key), stale_before=stale_before):
            return False
        self.markers[key] = at
        return True

    async def release(self, track_id: int, file_id: str) -> None:
        self._step("release")
        self.markers.pop((track_id, file_id), None)


class FakeOnDemand:
    """The responder's real ``SingleFlight`` over ``FakeMarkers`` and a recording publish,
    on the test's clock. ``failures["publish"]`` makes the publish raise."""

    def __init__(self, clock: FakeClock | None = None, *, stale_after: float = 240.0) -> None:
        self.clock = clock or FakeClock()
        self.markers = FakeMarkers()
        self.published: list[ClassificationRequested] = []
        self.calls = 0
        self.failures: dict[str, BaseException] = {}
        self._rule = SingleFlight(
            markers=self.markers,
            publish=self._publish,
            clock=self.clock.utcnow,
            stale_after=stale_after,
        )

    async def __call__(self, request: ClassificationRequested, /) -> bool:
        self.calls += 1
        return await self._rule(request)

    async def _publish(self, request: ClassificationRequested) -> None:
        error = self.failures.get("publish")
        if error is not None:
            raise error
        self.published.append(request)


class _FakeWatch:
    """The real ``Watch`` on the test's clock, counting waits for the tests."""

    def __init__(self, owner: FakeOutcomeWaiter) -> None:
        self._owner = owner
        self._watch = Watch(owner.clock)

    def offer(self, outcome: Outcome) -> None:
        self._watch.offer(outcome)

    async def wait(self, file_id: str, within: float) -> Outcome | None:
        self._owner.waits.append((file_id, within))
        self._owner.waiting += 1
        try:
            return await self._watch.wait(file_id, within)
        finally:
            self._owner.waiting -= 1


class FakeOutcomeWaiter:
    """The ``OutcomeWaiter`` port (``responder/outcomes.py``'s ``OutcomeListener``).

    ``publish`` is an outcome arriving from the broker: every watch of its track open at
    that moment gets it.
    """

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock or FakeClock()
        self._watches: dict[int, list[_FakeWatch]] = {}
        self.watched: list[int] = []
        self.waits: list[tuple[str, float]] = []
        """(file_id, seconds) of every wait."""
        self.waiting = 0
        """Waits in progress."""

    @contextlib.asynccontextmanager
    async def watch(self, track_id: int) -> AsyncIterator[_FakeWatch]:
        watch = _FakeWatch(self)
        self.watched.append(track_id)
        self._watches.setdefault(track_id, []).append(watch)
        try:
            yield watch
        finally:
            self._watches[track_id].remove(watch)

    def publish(self, outcome: Outcome) -> None:
        for watch in self._watches.get(outcome.track_id, []):
            watch.offer(outcome)

    @property
    def open_watches(self) -> int:
        return sum(len(w) for w in self._watches.values())


# -- backfill --------------------------------------------------------------------------------


class FakeBackfillStore(_Failing):
    """The ``BackfillStore`` port (``backfill/store.py``'s ``SqlBackfillStore``): every track
    in pages of ``page_size`` ordered by id; the selection is the rule's.

    A ``BackfillTrack`` given stands for a track with no predictions (always eligible).
    """

    def __init__(
        self, tracks: Sequence[BackfillTrack | TrackRow], *, page_size: int = 1000
    ) -> None:
        rows = [t if isinstance(t, TrackRow) else _unclassified(t) for t in tracks]
        self.rows = sorted(rows, key=lambda t: t.track_id)
        self.page_size = page_size
        self.pages_read = 0
        self.failures = {}

    async def tracks(self) -> AsyncIterator[Sequence[TrackRow]]:
        for start in range(0, len(self.rows), self.page_size):
            self._step("tracks")
            await asyncio.sleep(0)
            self.pages_read += 1
            yield self.rows[start : start + self.page_size]


def _unclassified(track: BackfillTrack) -> TrackRow:
    return TrackRow(
        track.track_id,
        track.file_id,
        track.audio_url,
        StoredPredictions(file_id=track.file_id, present=False, predictions_file_id=None),
    )


class FakePublish:
    """The backfill's ``Publish``: records requests; ``gate`` holds publishes until set;
    ``fail_at`` makes the n-th call (1-based) raise ``error``."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.published: list[ClassificationRequested] = []
        self.calls = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self.fail_at: int | None = None
        self.error: BaseException = ConnectionError("broker down")

    async def __call__(self, request: ClassificationRequested) -> None:
        self.calls += 1
        call = self.calls
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.gate.wait()
            if call == self.fail_at:
                raise self.error
            self.published.append(request)
        finally:
            self.in_flight -= 1
