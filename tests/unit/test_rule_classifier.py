"""The classifier's rules (claim, classify, record, publish; replay; force; resume), on fakes.

The bus and the SQL ledger are tested in tests/integration/test_classifier.py and
test_ledger_batches.py; here each rule of ``classifier/rule.py`` is checked against
in-memory ports, with the order of the steps read from a shared journal.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from genres.classifier.rule import (
    Claimed,
    Handled,
    LedgerEntry,
    OutcomeKind,
    Recorded,
    decide_claim,
    handle_classification,
)
from genres.errors import (
    AudioError,
    ClassificationError,
    PredictionFailed,
    RateLimited,
    ServiceUnavailable,
)
from genres_contracts import (
    ClassificationFailed,
    ClassificationReason,
    ClassificationRequested,
    ErrorInfo,
    FailureKind,
    GenresClassified,
    Prediction,
    TrackUploaded,
)
from tests.unit.fakes import FakeClassifier, FakeClock, FakeLedger, FakeOutcomes, Journal, settle

URL = "https://cdn.example/audio/f1.mp3"


def upload(
    track_id: int = 1, file_id: str = "f1", *, event_id: str = "up-1", auto_tag: bool = False
) -> TrackUploaded:
    return TrackUploaded(
        event_id=event_id, track_id=track_id, file_id=file_id, audio_url=URL, auto_tag=auto_tag
    )


def request(
    track_id: int = 1, file_id: str = "f1", *, event_id: str = "rq-1", force: bool = False
) -> ClassificationRequested:
    return ClassificationRequested(
        event_id=event_id,
        track_id=track_id,
        file_id=file_id,
        audio_url=URL,
        reason=ClassificationReason.RECLASSIFY,
        force=force,
    )


@dataclass
class World:
    journal: Journal = field(default_factory=list)
    clock: FakeClock = field(default_factory=FakeClock)
    classifier: FakeClassifier = field(init=False)
    ledger: FakeLedger = field(init=False)
    outcomes: FakeOutcomes = field(init=False)

    def __post_init__(self) -> None:
        self.classifier = FakeClassifier(journal=self.journal)
        self.ledger = FakeLedger(self.journal, clock=self.clock)
        self.outcomes = FakeOutcomes(self.journal)

    async def handle(self, message: TrackUploaded | ClassificationRequested) -> Handled:
        assert message.event_id is not None
        return await handle_classification(
            message,
            source_event_id=message.event_id,
            classifier=self.classifier,
            ledger=self.ledger,
            outcomes=self.outcomes,
            clock=self.clock.utcnow,
        )

    def steps(self) -> list[str]:
        steps = list(self.journal)
        self.journal.clear()
        return steps


@pytest.fixture
def world() -> World:
    return World()


# -- the paid path -----------------------------------------------------------------------------


async def test_a_new_upload_is_claimed_classified_recorded_then_published(world: World) -> None:
    handled = await world.handle(upload(auto_tag=True))

    assert world.steps() == [
        "ledger.claim",
        "classifier.classify",
        "ledger.succeeded",
        "outcomes.classified",
    ]
    assert handled.kind is OutcomeKind.CLASSIFIED
    assert world.outcomes.published == [handled.event]
    event = handled.event
    assert isinstance(event, GenresClassified)
    assert (event.source_event_id, event.track_id, event.file_id) == ("up-1", 1, "f1")
    assert tuple(event.predictions) == world.classifier.predictions
    assert event.model == world.classifier.model
    assert event.auto_tag is True
    assert event.classified_at == world.clock.utcnow()  # the injected clock's time
    assert world.classifier.calls == [(URL, None)]
    row = world.ledger.row(1, "f1", world.classifier.model)
    assert row.status == "succeeded"
    assert row.event_id == event.event_id  # what a replay will publish again
    assert row.predictions == world.classifier.predictions
    assert row.updated_at == event.classified_at
    assert row.attempts == 1


async def test_the_backends_attempts_go_on_record(world: World) -> None:
    world.classifier.attempts = 3

    await world.handle(upload())

    assert world.ledger.row(1, "f1", world.classifier.model).attempts == 3


async def test_a_remote_jobs_id_is_recorded_before_the_outcome(world: World) -> None:
    world.classifier.job_id = "job-1"

    await world.handle(upload())

    assert world.steps() == [
        "ledger.claim",
        "classifier.classify",
        "ledger.started",
        "ledger.succeeded",
        "outcomes.classified",
    ]
    assert world.ledger.row(1, "f1", world.classifier.model).job_id == "job-1"


async def test_another_file_of_the_same_track_is_classified_again(world: World) -> None:
    await world.handle(upload(file_id="f1"))
    handled = await world.handle(upload(file_id="f2", event_id="up-2"))

    assert handled.kind is OutcomeKind.CLASSIFIED
    assert len(world.classifier.calls) == 2


async def test_another_model_classifies_the_same_file_again(world: World) -> None:
    await world.handle(upload())
    world.classifier.model = world.classifier.model.model_copy(update={"version": "2"})

    handled = await world.handle(upload(event_id="up-2"))

    assert handled.kind is OutcomeKind.CLASSIFIED
    assert len(world.classifier.calls) == 2


# -- duplicates and redeliveries ---------------------------------------------------------------


async def test_a_duplicate_republishes_the_recorded_outcome_without_paying(world: World) -> None:
    first = await world.handle(upload(auto_tag=False))
    world.steps()
    world.clock.advance(60)

    again = await world.handle(upload(event_id="up-2", auto_tag=True))

    assert world.steps() == ["ledger.claim", "outcomes.classified"]
    assert again.kind is OutcomeKind.REPUBLISHED
    assert len(world.classifier.calls) == 1
    replayed, original = again.event, first.event
    assert isinstance(replayed, GenresClassified)
    assert isinstance(original, GenresClassified)
    # the same event (consumers may deduplicate on its id), answering the new request
    assert replayed.event_id == original.event_id
    assert replayed.predictions == original.predictions
    assert replayed.classified_at == original.classified_at
    assert replayed.source_event_id == "up-2"
    assert replayed.auto_tag is True
    assert world.outcomes.published == [original, replayed]


async def test_a_redelivered_record_republishes_the_same_event(world: World) -> None:
    first = await world.handle(upload())
    again = await world.handle(upload())

    assert again.kind is OutcomeKind.REPUBLISHED
    assert again.event == first.event
    assert len(world.classifier.calls) == 1


async def test_a_duplicate_of_a_permanent_failure_republishes_the_failure(world: World) -> None:
    error = PredictionFailed("the model crashed")
    error.attempts = 2
    world.classifier.error = error
    first = await world.handle(upload())
    world.steps()

    again = await world.handle(upload(event_id="up-2"))

    assert world.steps() == ["ledger.claim", "outcomes.failed"]
    assert again.kind is OutcomeKind.REPUBLISHED
    replayed, original = again.event, first.event
    assert isinstance(replayed, ClassificationFailed)
    assert isinstance(original, ClassificationFailed)
    assert replayed.event_id == original.event_id
    assert replayed.error == original.error
    assert (replayed.attempts, replayed.retryable) == (2, False)
    assert replayed.source_event_id == "up-2"
    assert len(world.classifier.calls) == 1


async def test_a_duplicate_after_a_retryable_failure_is_classified_again(world: World) -> None:
    world.classifier.error = ServiceUnavailable("503 from the backend")
    first = await world.handle(upload())
    world.classifier.error = None

    again = await world.handle(upload(event_id="up-2"))

    assert first.kind is OutcomeKind.FAILED
    assert again.kind is OutcomeKind.CLASSIFIED
    assert len(world.classifier.calls) == 2
    # the failed attempt counts too
    assert world.ledger.row(1, "f1", world.classifier.model).attempts == 2


# -- force -------------------------------------------------------------------------------------


async def test_force_pays_again_and_publishes_a_new_event(world: World) -> None:
    first = await world.handle(upload())

    forced = await world.handle(request(force=True))

    assert forced.kind is OutcomeKind.CLASSIFIED
    assert len(world.classifier.calls) == 2
    assert forced.event.event_id != first.event.event_id
    assert world.ledger.row(1, "f1", world.classifier.model).event_id == forced.event.event_id


async def test_a_request_without_force_is_a_duplicate_like_any_other(world: World) -> None:
    await world.handle(upload())

    again = await world.handle(request(force=False))

    assert again.kind is OutcomeKind.REPUBLISHED
    assert len(world.classifier.calls) == 1


async def test_force_starts_a_new_job_rather_than_resuming_one(world: World) -> None:
    world.classifier.job_id = "job-1"
    world.classifier.crash = ConnectionError("process killed")
    with pytest.raises(ConnectionError):
        await world.handle(upload())
    world.classifier.crash = None

    await world.handle(request(force=True))

    assert world.classifier.calls[-1] == (URL, None)


# -- failures of the classification ------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "kind", "retryable"),
    [
        (AudioError("not audio"), FailureKind.AUDIO_UNREADABLE, False),
        (PredictionFailed("canceled"), FailureKind.PREDICTION_FAILED, False),
        (
            AudioError("refused", kind=FailureKind.AUDIO_URL_REFUSED),
            FailureKind.AUDIO_URL_REFUSED,
            False,
        ),
        (
            AudioError("0.29 s, too short", kind=FailureKind.AUDIO_TOO_SHORT),
            FailureKind.AUDIO_TOO_SHORT,
            False,
        ),
        (
            AudioError("0.29 s of 8 s", kind=FailureKind.AUDIO_TRUNCATED),
            FailureKind.AUDIO_TRUNCATED,
            False,
        ),
        (ServiceUnavailable("503"), FailureKind.UNAVAILABLE, True),
        (RateLimited("429", retry_after=3), FailureKind.RATE_LIMITED, True),
    ],
)
async def test_a_classification_error_is_recorded_then_published(
    world: World, error: ClassificationError, kind: FailureKind, retryable: bool
) -> None:
    error.attempts = 4
    world.classifier.error = error

    handled = await world.handle(upload())

    assert world.steps() == [
        "ledger.claim",
        "classifier.classify",
        "ledger.failed",
        "outcomes.failed",
    ]
    assert handled.kind is OutcomeKind.FAILED
    failed = handled.event
    assert isinstance(failed, ClassificationFailed)
    assert world.outcomes.published == [failed]
    assert (failed.error.kind, failed.error.message) == (kind, error.message)
    assert (failed.attempts, failed.retryable) == (4, retryable)
    assert (failed.source_event_id, failed.track_id, failed.file_id) == ("up-1", 1, "f1")
    row = world.ledger.row(1, "f1", world.classifier.model)
    assert (row.status, row.event_id, row.error, row.retryable) == (
        "failed",
        failed.event_id,
        failed.error,
        retryable,
    )
    assert row.attempts == 4


async def test_a_long_error_message_is_cut_to_what_the_contract_allows(world: World) -> None:
    world.classifier.error = AudioError("x" * 5000)

    handled = await world.handle(upload())

    assert isinstance(handled.event, ClassificationFailed)
    assert handled.event.error.message == "x" * 2000


# -- infrastructure errors: propagate, publish nothing unrecorded ------------------------------


@pytest.mark.parametrize(
    ("step", "classifier"),
    [
        pytest.param("claim", {}, id="claiming: pays nothing"),
        pytest.param("started", {"job_id": "job-1"}, id="recording the job"),
        pytest.param("succeeded", {}, id="recording a success"),
        pytest.param("failed", {"error": AudioError("not audio")}, id="recording a failure"),
    ],
)
async def test_a_ledger_error_propagates_and_nothing_is_done_after_it(
    world: World, step: str, classifier: dict[str, object]
) -> None:
    for name, value in classifier.items():
        setattr(world.classifier, name, value)
    world.ledger.failures[step] = ConnectionError("database down")

    with pytest.raises(ConnectionError):
        await world.handle(upload())

    # The failing step is the last one: no classification after a failed claim, no further
    # ledger step, and no outcome published that the ledger does not hold.
    assert world.journal[-1] == f"ledger.{step}"
    assert world.outcomes.published == []


async def test_an_unexpected_classifier_error_propagates_unrecorded(world: World) -> None:
    world.classifier.crash = ValueError("a bug in the backend")

    with pytest.raises(ValueError, match="a bug"):
        await world.handle(upload())

    assert world.ledger.row(1, "f1", world.classifier.model).status == "pending"
    assert world.outcomes.published == []


@pytest.mark.parametrize("outcome", ["classified", "failed"])
async def test_a_publish_error_after_the_record_is_republished_on_redelivery(
    world: World, outcome: str
) -> None:
    if outcome == "failed":
        world.classifier.error = AudioError("not audio")
    world.outcomes.failures[outcome] = ConnectionError("broker down")
    with pytest.raises(ConnectionError):
        await world.handle(upload())
    recorded = world.ledger.row(1, "f1", world.classifier.model)
    assert recorded.status == ("succeeded" if outcome == "classified" else "failed")
    del world.outcomes.failures[outcome]

    again = await world.handle(upload())  # the uncommitted record, redelivered

    assert again.kind is OutcomeKind.REPUBLISHED
    assert again.event.event_id == recorded.event_id
    assert len(world.classifier.calls) == 1
    assert world.outcomes.published == [again.event]


async def test_a_redelivery_after_a_lost_record_pays_again_without_a_job_id(
    world: World,
) -> None:
    # what "Nothing paid twice" concedes: without a job id on record there is nothing to resume
    world.ledger.failures["succeeded"] = ConnectionError("database down")
    with pytest.raises(ConnectionError):
        await world.handle(upload())
    del world.ledger.failures["succeeded"]

    handled = await world.handle(upload())

    assert handled.kind is OutcomeKind.CLASSIFIED
    assert world.classifier.calls == [(URL, None), (URL, None)]


# -- resuming an interrupted job ---------------------------------------------------------------


async def test_a_redelivered_record_resumes_the_recorded_job(world: World) -> None:
    world.classifier.job_id = "job-1"
    world.classifier.crash = ConnectionError("process killed mid-classification")
    with pytest.raises(ConnectionError):
        await world.handle(upload())
    assert world.outcomes.published == []
    world.classifier.crash = None
    world.steps()

    handled = await world.handle(upload())

    assert handled.kind is OutcomeKind.CLASSIFIED
    assert world.classifier.calls == [(URL, None), (URL, "job-1")]
    # a resumed job is not recorded again
    assert world.steps() == [
        "ledger.claim",
        "classifier.classify",
        "ledger.succeeded",
        "outcomes.classified",
    ]


async def test_a_concurrent_duplicate_resumes_the_job_on_record_instead_of_paying(
    world: World,
) -> None:
    # Same-key records run one after another (classifier/consumer.py), but unkeyed duplicates or
    # another process may handle the same file at once: a pending claim is re-claimable, so
    # only the job id on record keeps the second from paying (README, "Nothing paid twice").
    world.classifier.job_id = "job-1"
    world.classifier.gate = asyncio.Event()
    first = asyncio.create_task(world.handle(upload()))
    await settle()
    assert world.ledger.row(1, "f1", world.classifier.model).job_id == "job-1"

    second = asyncio.create_task(world.handle(upload(event_id="up-2")))
    await settle()
    world.classifier.gate.set()
    await asyncio.gather(first, second)

    assert world.classifier.calls == [(URL, None), (URL, "job-1")]


# -- the claim decision on its own (no ledger at all) ------------------------------------------

_AT = datetime(2026, 11, 25, 19, 0, tzinfo=UTC)
_FAILED_FOR_GOOD = LedgerEntry(
    status="failed",
    event_id="e1",
    error=ErrorInfo(kind=FailureKind.AUDIO_UNREADABLE, message="not audio"),
    retryable=False,
    attempts=2,
    updated_at=_AT,
)


def test_a_key_with_nothing_on_record_is_a_new_claim() -> None:
    assert decide_claim(None, force=False) == Claimed(resume=None)


def test_an_interrupted_attempt_is_claimed_again_and_resumes_its_job() -> None:
    entry = LedgerEntry(status="pending", job_id="job-1")

    assert decide_claim(entry, force=False) == Claimed(resume="job-1")
    assert decide_claim(entry, force=True) == Claimed(resume=None)  # forced: pays anew


def test_a_retryable_failure_is_claimed_again_without_resuming() -> None:
    entry = LedgerEntry(status="failed", job_id="job-1", retryable=True, event_id="e1")

    assert decide_claim(entry, force=False) == Claimed(resume=None)


def test_a_success_is_replayed_as_recorded() -> None:
    entry = LedgerEntry(
        status="succeeded",
        event_id="e1",
        predictions=(Prediction(name="rock", confidence=0.5),),
        attempts=0,
        updated_at=_AT,
    )

    decision = decide_claim(entry, force=False)

    assert decision == Recorded(
        status="succeeded",
        event_id="e1",
        predictions=(Prediction(name="rock", confidence=0.5),),
        error=None,
        retryable=False,
        attempts=1,  # an outcome took at least one attempt
        classified_at=_AT,
    )


def test_a_failure_for_good_is_replayed_unless_forced() -> None:
    decision = decide_claim(_FAILED_FOR_GOOD, force=False)

    assert isinstance(decision, Recorded)
    assert (decision.status, decision.retryable, decision.attempts) == ("failed", False, 2)
    assert decision.error == _FAILED_FOR_GOOD.error
    assert decide_claim(_FAILED_FOR_GOOD, force=True) == Claimed(resume=None)
