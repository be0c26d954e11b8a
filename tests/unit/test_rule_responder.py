"""The responder's rules (docs/interface.md, "Reply semantics"), on in-memory ports.

``responder/rule.recommend`` decides; the track read, the on-demand claim and the outcome
listener are fakes (``tests/unit/fakes.py``) and time is a ``FakeClock``: a wait ends when
the test moves the clock, never by sleeping. The single-flight rule
(``SingleFlight``) and the ``Watch`` are the real ones, on fakes of their ports. The adapters
(SQL markers, Kafka outcome listener, request tasks) are tested in
tests/integration/test_responder.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from genres.responder.rule import TrackView, marker_is_free, recommend
from genres.responder.watch import LoopClock, Watch
from genres_contracts import (
    ClassificationFailed,
    ClassificationReason,
    GenresClassified,
    Prediction,
    RecommendedTags,
    RecommendedTagsRequest,
)
from tests.unit.fakes import FakeClock, FakeOnDemand, FakeOutcomeWaiter, FakeTracks, settle

URL = "https://cdn.example/audio/1.mp3"


def predictions(*pairs: tuple[str, float]) -> tuple[Prediction, ...]:
    return tuple(Prediction(name=n, confidence=c) for n, c in pairs)


STORED = predictions(("rock", 0.6), ("Pop", 0.3), ("punk", 0.2), ("jazz", 0.1))


def view(
    track_id: int = 1,
    *,
    file_id: str | None = "f1",
    audio_url: str | None = URL,
    stored: tuple[Prediction, ...] | None = None,
    stored_for: str | None = "f1",
    tags: tuple[str, ...] = (),
    failed: bool = False,
) -> TrackView:
    return TrackView(
        track_id=track_id,
        file_id=file_id,
        audio_url=audio_url,
        predictions=stored,
        predictions_file_id=stored_for if stored is not None else None,
        tag_names=tags,
        failed=failed,
    )


def classified(
    track_id: int = 1, file_id: str = "f1", pairs: tuple[Prediction, ...] = STORED
) -> GenresClassified:
    return GenresClassified.model_validate(
        {
            "source_event_id": "rq",
            "track_id": track_id,
            "file_id": file_id,
            "predictions": [p.model_dump() for p in pairs],
            "model": {"name": "fake/model", "version": "1"},
            "classified_at": "2026-11-25T19:00:02Z",
        }
    )


async def answered(task: asyncio.Task[RecommendedTags]) -> RecommendedTags:
    """The task's reply once the ready work has run: a reply that needs the clock to move
    or another outcome fails here instead of hanging."""
    await settle()
    assert task.done(), "not answered"
    return task.result()


def failed(track_id: int = 1, file_id: str = "f1") -> ClassificationFailed:
    return ClassificationFailed.model_validate(
        {
            "source_event_id": "rq",
            "track_id": track_id,
            "file_id": file_id,
            "error": {"kind": "audio_unreadable", "message": "not audio"},
            "attempts": 1,
            "retryable": False,
        }
    )


def names(reply: RecommendedTags) -> list[str]:
    return [tag.name for tag in reply.tags]


@dataclass
class Responder:
    clock: FakeClock = field(default_factory=FakeClock)
    tracks: FakeTracks = field(default_factory=FakeTracks)
    on_demand: FakeOnDemand = field(init=False)
    outcomes: FakeOutcomeWaiter = field(init=False)
    available: bool = True

    def __post_init__(self) -> None:
        self.on_demand = FakeOnDemand(self.clock)
        self.outcomes = FakeOutcomeWaiter(self.clock)

    def add(self, track: TrackView) -> None:
        self.tracks.views[track.track_id] = track

    async def ask(self, track_id: int = 1, *, limit: int = 5, wait_ms: int = 0) -> RecommendedTags:
        return await recommend(
            RecommendedTagsRequest(track_id=track_id, limit=limit, wait_ms=wait_ms),
            tracks=self.tracks,
            on_demand=self.on_demand,
            outcomes=self.outcomes,
            available=self.available,
        )

    def asking(self, track_id: int = 1, *, wait_ms: int = 0) -> asyncio.Task[RecommendedTags]:
        return asyncio.create_task(self.ask(track_id, wait_ms=wait_ms))


@pytest.fixture
def responder() -> Responder:
    return Responder()


# -- stored predictions ------------------------------------------------------------------------


async def test_stored_predictions_best_first_minus_own_tags_case_insensitively(
    responder: Responder,
) -> None:
    responder.add(view(stored=STORED, tags=("ROCK", "pop")))

    reply = await responder.ask()

    assert [(t.name, t.score) for t in reply.tags] == [("punk", 0.2), ("jazz", 0.1)]
    assert (reply.available, reply.pending, reply.error) == (True, False, None)
    assert responder.on_demand.calls == 0


async def test_at_most_limit_tags(responder: Responder) -> None:
    many = predictions(*[(f"g{i:02}", 0.9 - i * 0.01) for i in range(15)])
    responder.add(view(stored=many, tags=("g00",)))

    reply = await responder.ask(limit=3)

    assert names(reply) == ["g01", "g02", "g03"]


async def test_a_name_stored_twice_in_different_case_is_recommended_once(
    responder: Responder,
) -> None:
    responder.add(view(stored=predictions(("Rock", 0.5), ("rock", 0.4), ("pop", 0.3))))

    assert names(await responder.ask()) == ["Rock", "pop"]


async def test_all_predictions_already_tags_gives_no_tags_and_no_request(
    responder: Responder,
) -> None:
    responder.add(view(stored=predictions(("rock", 0.5)), tags=("Rock",)))

    reply = await responder.ask()

    assert (reply.tags, reply.pending) == ([], False)
    assert responder.on_demand.calls == 0


async def test_legacy_predictions_count_on_a_track_without_a_file(responder: Responder) -> None:
    responder.add(view(file_id=None, stored=STORED, stored_for=None))

    assert names(await responder.ask(limit=1)) == ["rock"]


async def test_legacy_predictions_on_a_track_with_a_file_are_stale(responder: Responder) -> None:
    responder.add(view(file_id="f1", stored=STORED, stored_for=None))

    reply = await responder.ask()

    assert (reply.tags, reply.pending) == ([], True)
    assert len(responder.on_demand.published) == 1


# -- errors and unavailability -----------------------------------------------------------------


@pytest.mark.parametrize("available", [True, False])
async def test_an_unknown_track_is_not_found(responder: Responder, available: bool) -> None:
    responder.available = available

    reply = await responder.ask(42, wait_ms=1000)

    assert reply.error is not None
    assert reply.error.kind == "not_found"
    assert (reply.track_id, reply.tags, reply.pending) == (42, [], False)
    assert responder.on_demand.calls == 0
    assert responder.outcomes.open_watches == 0


@pytest.mark.parametrize("stored", [STORED, None])
async def test_without_a_classifier_nothing_is_available_or_requested(
    responder: Responder, stored: tuple[Prediction, ...] | None
) -> None:
    responder.available = False
    responder.add(view(stored=stored))

    reply = await responder.ask(wait_ms=5000)

    assert (reply.tags, reply.available, reply.pending, reply.error) == ([], False, False, None)
    assert responder.on_demand.calls == 0
    assert responder.outcomes.watched == []


@pytest.mark.parametrize(
    "track",
    [
        view(file_id=None),
        view(file_id=""),
        view(audio_url=None),
        view(audio_url=""),
        view(audio_url="ftp://cdn.example/1.mp3"),
        view(audio_url="not a url"),
    ],
    ids=["no-file", "empty-file", "no-audio", "empty-audio", "ftp-audio", "bad-audio"],
)
async def test_a_track_that_cannot_be_classified_gets_empty_tags_at_once(
    responder: Responder, track: TrackView
) -> None:
    responder.add(track)

    reply = await responder.ask(wait_ms=5000)

    assert (reply.tags, reply.available, reply.pending, reply.error) == ([], True, False, None)
    assert responder.on_demand.calls == 0
    assert responder.outcomes.waits == []


async def test_a_failing_on_demand_publish_propagates(responder: Responder) -> None:
    # the bus answers such a request with error.kind = internal
    responder.add(view())
    responder.on_demand.failures["publish"] = ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        await responder.ask(wait_ms=1000)

    assert responder.outcomes.open_watches == 0


# -- on demand, single flight ------------------------------------------------------------------


async def test_a_track_without_current_predictions_is_requested_on_demand(
    responder: Responder,
) -> None:
    responder.add(view(file_id="f2", stored=STORED, stored_for="f1"))

    reply = await responder.ask()

    assert (reply.tags, reply.available, reply.pending) == ([], True, True)
    [request] = responder.on_demand.published
    assert (request.track_id, request.file_id, str(request.audio_url)) == (1, "f2", URL)
    assert request.reason is ClassificationReason.ON_DEMAND
    assert (request.force, request.auto_tag) == (False, False)
    assert request.event_id
    assert responder.outcomes.watched == []  # wait_ms 0: nothing to watch


async def test_many_concurrent_requests_publish_exactly_one_on_demand_request(
    responder: Responder,
) -> None:
    responder.add(view())

    replies = await asyncio.gather(*(responder.ask() for _ in range(25)))

    assert all(r.pending and r.tags == [] and r.error is None for r in replies)
    assert responder.on_demand.calls == 25
    assert len(responder.on_demand.published) == 1


async def test_concurrent_waiting_requests_share_one_request_and_its_outcome(
    responder: Responder,
) -> None:
    responder.add(view())
    waiting = [responder.asking(wait_ms=3000) for _ in range(5)]
    await settle()
    assert responder.outcomes.waiting == 5

    responder.outcomes.publish(classified())
    replies = [await answered(task) for task in waiting]

    assert len(responder.on_demand.published) == 1
    assert all(names(r) == ["rock", "Pop", "punk", "jazz"] and not r.pending for r in replies)


# -- wait_ms -----------------------------------------------------------------------------------


async def test_a_waiting_request_is_answered_when_the_outcome_arrives(
    responder: Responder,
) -> None:
    responder.add(view(tags=("punk",)))
    asking = responder.asking(wait_ms=2000)
    await settle()
    assert not asking.done()
    assert responder.outcomes.waits == [("f1", 2.0)]

    responder.outcomes.publish(classified())
    reply = await answered(asking)

    assert names(reply) == ["rock", "Pop", "jazz"]
    assert (reply.pending, reply.available) == (False, True)
    assert responder.clock.now() == 0  # answered by the outcome, not by the clock
    assert responder.outcomes.open_watches == 0


async def test_a_wait_that_ends_first_answers_pending(responder: Responder) -> None:
    responder.add(view())
    asking = responder.asking(wait_ms=2000)
    await settle()

    responder.clock.advance(1.999)
    await settle()
    assert not asking.done()
    responder.clock.advance(0.001)
    reply = await answered(asking)

    assert (reply.tags, reply.pending) == ([], True)
    assert responder.outcomes.open_watches == 0


async def test_an_outcome_for_another_file_does_not_answer(responder: Responder) -> None:
    responder.add(view(file_id="f2"))
    asking = responder.asking(wait_ms=1000)
    await settle()

    responder.outcomes.publish(classified(file_id="f1"))
    await settle()
    assert not asking.done()
    responder.outcomes.publish(classified(file_id="f2", pairs=predictions(("dub", 0.4))))

    assert names(await answered(asking)) == ["dub"]


async def test_a_failed_classification_answers_empty_tags(responder: Responder) -> None:
    responder.add(view())
    asking = responder.asking(wait_ms=1000)
    await settle()

    responder.outcomes.publish(failed())
    reply = await answered(asking)

    assert (reply.tags, reply.pending, reply.available, reply.error) == ([], False, True, None)


async def test_an_outcome_published_before_the_wait_begins_is_not_missed(
    responder: Responder,
) -> None:
    # the outcome arrives between the track read and the wait: the watch, opened before the
    # read, has it
    responder.add(view())
    responder.tracks.on_read = lambda track_id: responder.outcomes.publish(classified(track_id))

    reply = await answered(responder.asking(wait_ms=1000))

    assert names(reply) == ["rock", "Pop", "punk", "jazz"]
    assert responder.clock.now() == 0


async def test_a_waiting_request_holds_up_no_other(responder: Responder) -> None:
    responder.add(view(1))
    responder.add(view(2, stored=STORED))
    responder.add(view(3))
    waiting = responder.asking(1, wait_ms=30000)
    await settle()

    cached = await responder.ask(2)
    pending = await responder.ask(3)
    other = responder.asking(3, wait_ms=500)
    await settle()
    responder.outcomes.publish(classified(3))
    resolved = await answered(other)

    assert names(cached) == ["rock", "Pop", "punk", "jazz"]
    assert pending.pending
    assert not resolved.pending
    assert names(resolved) == ["rock", "Pop", "punk", "jazz"]
    assert not waiting.done()
    responder.clock.advance(30)
    assert (await answered(waiting)).pending


async def test_a_cached_answer_does_not_wait(responder: Responder) -> None:
    responder.add(view(stored=STORED))

    reply = await responder.ask(wait_ms=30000)

    assert names(reply) == ["rock", "Pop", "punk", "jazz"]
    assert responder.outcomes.waits == []
    assert responder.on_demand.calls == 0


async def test_after_a_permanent_failure_a_later_request_is_not_told_pending(
    responder: Responder,
) -> None:
    responder.add(view())
    asking = responder.asking(wait_ms=1000)
    await settle()
    responder.outcomes.publish(failed())
    assert not (await answered(asking)).pending
    # The classifier records the failure in the ledger before it publishes it.
    responder.add(view(failed=True))
    responder.clock.advance(5)

    later = await responder.ask()

    assert (later.tags, later.pending) == ([], False)
    assert responder.on_demand.calls == 1  # the first request's, not another


# -- single flight on its own, and the real Watch on the test's clock --------------------------


def test_a_marker_is_free_when_absent_or_older_than_the_cut() -> None:
    cut = datetime(2026, 11, 25, 19, 0, tzinfo=UTC)

    assert marker_is_free(None, stale_before=cut)
    assert marker_is_free(cut - timedelta(microseconds=1), stale_before=cut)
    assert not marker_is_free(cut, stale_before=cut)


async def test_a_lost_on_demand_request_is_asked_again_once_its_marker_is_stale(
    responder: Responder,
) -> None:
    responder.add(view())

    await responder.ask()
    responder.clock.advance(240)  # stale_after: not yet older than the cut
    await responder.ask()
    assert len(responder.on_demand.published) == 1
    responder.clock.advance(0.001)
    await responder.ask()

    assert len(responder.on_demand.published) == 2
    assert responder.on_demand.markers.markers == {(1, "f1"): responder.clock.utcnow()}


async def test_after_a_failed_publish_the_next_request_publishes(responder: Responder) -> None:
    responder.add(view())
    responder.on_demand.failures["publish"] = ConnectionError("broker down")
    with pytest.raises(ConnectionError):
        await responder.ask()
    assert responder.on_demand.markers.markers == {}  # dropped, not left to go stale

    del responder.on_demand.failures["publish"]
    reply = await responder.ask()

    assert reply.pending
    assert len(responder.on_demand.published) == 1


async def test_a_watch_keeps_outcomes_offered_before_the_wait_and_skips_other_files() -> None:
    clock = FakeClock()
    watch = Watch(clock)
    watch.offer(classified(1, "old"))
    waiting = asyncio.create_task(watch.wait("f1", 2.0))
    await settle()
    assert not waiting.done()  # the other file's outcome does not answer

    watch.offer(classified(1, "f1"))
    await settle()

    assert waiting.done()
    outcome = waiting.result()
    assert outcome is not None
    assert outcome.file_id == "f1"
    assert clock.now() == 0


async def test_a_watch_gives_up_exactly_at_its_deadline() -> None:
    clock = FakeClock()
    waiting = asyncio.create_task(Watch(clock).wait("f1", 1.5))
    await settle()  # the wait has begun: its deadline is 1.5 s from now
    clock.advance(1.25)
    await settle()
    assert not waiting.done()

    clock.advance(0.25)
    await settle()

    assert waiting.done()
    assert waiting.result() is None


async def test_a_watch_on_the_loop_clock_gives_up_after_its_time() -> None:
    # the real clock, with a zero-length wait: no wall-clock assertion, only the outcome
    assert await Watch(LoopClock()).wait("f1", 0) is None
