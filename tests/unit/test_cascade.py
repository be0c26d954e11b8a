"""``CLASSIFIER_BACKEND=cascade`` on fakes: the route by threshold, the fallback when Replicate
fails, resumption, the marking on the outcome event and the metrics."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from genres.backfill.rule import TrackRow, eligible
from genres.bootstrap import _answering_models
from genres.classifier.observed import ObservedClassifier
from genres.classifier.rule import OutcomeKind, handle_classification
from genres.classify.cascade import CascadeClassifier
from genres.classify.port import Checkpoint
from genres.config import load_settings
from genres.errors import (
    AudioError,
    ClassificationTimeout,
    ConfigurationError,
    PredictionFailed,
    RateLimited,
    ServiceUnavailable,
)
from genres.observability.metrics import ServiceMetrics
from genres.stored import StoredPredictions
from genres_contracts import (
    CascadeRoute,
    FailureKind,
    GenresClassified,
    ModelRef,
    Prediction,
    TrackUploaded,
)
from tests.unit.fakes import FakeClassifier, FakeLedger, FakeOutcomes

URL = "https://cdn.example/audio/f1.mp3"
HEAD = ModelRef(name="musicnn/msd+mtt+head", version="head-1")
REPLICATE = ModelRef(name="mtg/effnet-discogs", version="v1")
REPLICATE_SAYS = (Prediction(name="reggae", confidence=0.7),)


def local(top: float, *, error: Exception | None = None) -> FakeClassifier:
    """A head whose top probability is ``top``."""
    return FakeClassifier(
        model=HEAD,
        predictions=(
            Prediction(name="rock", confidence=top),
            Prediction(name="pop", confidence=round(top / 2, 4)),
        ),
        error=error,  # type: ignore[arg-type]
    )


def replicate(**options: object) -> FakeClassifier:
    return FakeClassifier(model=REPLICATE, predictions=REPLICATE_SAYS, **options)  # type: ignore[arg-type]


async def no_record(job_id: str) -> None:
    return None


async def test_a_confident_head_answers_and_replicate_is_not_asked() -> None:
    head, remote = local(0.81), replicate()
    answer = await CascadeClassifier(head, remote, min_confidence=0.8).classify(URL)
    assert remote.calls == []
    assert answer.model == HEAD
    assert answer.predictions[0].name == "rock"
    assert answer.cascade == CascadeRoute(
        answered_by="local", local_confidence=0.81, min_confidence=0.8
    )


async def test_a_top_probability_equal_to_the_threshold_is_confident() -> None:
    head, remote = local(0.8), replicate()
    answer = await CascadeClassifier(head, remote, min_confidence=0.8).classify(URL)
    assert remote.calls == []
    assert answer.cascade is not None
    assert answer.cascade.answered_by == "local"


async def test_an_unsure_head_sends_the_track_to_replicate_with_the_checkpoint() -> None:
    head, remote = local(0.79), replicate(job_id="p-1")
    recorded: list[str] = []

    async def record(job_id: str) -> None:
        recorded.append(job_id)

    answer = await CascadeClassifier(head, remote, min_confidence=0.8).classify(
        URL, Checkpoint(resume=None, record=record)
    )
    assert remote.calls == [(URL, None)]
    assert recorded == ["p-1"]  # the prediction's id goes on record: a crash resumes it
    assert answer.model == REPLICATE
    assert answer.predictions == REPLICATE_SAYS
    assert answer.cascade == CascadeRoute(
        answered_by="replicate", local_confidence=0.79, min_confidence=0.8
    )


async def test_audio_the_local_model_cannot_read_goes_to_replicate() -> None:
    head = local(0.99, error=AudioError("not audio"))
    answer = await CascadeClassifier(head, replicate(), min_confidence=0.5).classify(URL)
    assert answer.model == REPLICATE
    assert answer.cascade is not None
    assert (answer.cascade.answered_by, answer.cascade.local_confidence) == ("replicate", None)


@pytest.mark.parametrize("kind", [FailureKind.AUDIO_TOO_SHORT, FailureKind.AUDIO_TRUNCATED])
async def test_audio_too_short_or_truncated_is_the_outcome_and_replicate_is_not_paid(
    kind: FailureKind,
) -> None:
    """Replicate would be paid to classify the same partial file, and its answer stored."""
    head, remote = local(0.99, error=AudioError("cut short", kind=kind)), replicate()
    with pytest.raises(AudioError) as failed:
        await CascadeClassifier(head, remote, min_confidence=0.5).classify(URL)
    assert failed.value.kind is kind
    assert remote.calls == []


async def test_both_failing_is_replicates_failure() -> None:
    head = local(0.9, error=AudioError("not audio"))
    remote = replicate(error=PredictionFailed("bad input"))
    with pytest.raises(PredictionFailed):
        await CascadeClassifier(head, remote, min_confidence=0.5).classify(URL)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ServiceUnavailable("503"), "unavailable"),
        (ClassificationTimeout("deadline"), "timeout"),
        (RateLimited("429"), "rate_limited"),
        (PredictionFailed("failed"), "prediction_failed"),
    ],
)
async def test_when_replicate_fails_the_local_answer_is_kept_and_marked(
    error: Exception, kind: str
) -> None:
    error.attempts = 5  # type: ignore[attr-defined]
    head, remote = local(0.3), replicate(error=error)
    answer = await CascadeClassifier(head, remote, min_confidence=0.8).classify(URL)
    assert remote.calls == [(URL, None)]
    assert answer.model == HEAD
    assert answer.predictions[0].name == "rock"
    assert answer.cascade == CascadeRoute(
        answered_by="local", local_confidence=0.3, min_confidence=0.8, fallback=kind
    )
    assert answer.attempts == 6


async def test_a_resumed_prediction_is_polled_without_running_the_head() -> None:
    head, remote = local(0.99), replicate(job_id="p-1")
    answer = await CascadeClassifier(head, remote, min_confidence=0.5).classify(
        URL, Checkpoint(resume="p-1", record=no_record)
    )
    assert head.calls == []
    assert remote.calls == [(URL, "p-1")]
    assert answer.model == REPLICATE


async def test_a_resumed_prediction_that_fails_falls_back_to_the_head() -> None:
    head, remote = local(0.4), replicate(error=ClassificationTimeout("deadline"))
    answer = await CascadeClassifier(head, remote, min_confidence=0.5).classify(
        URL, Checkpoint(resume="p-1", record=no_record)
    )
    assert answer.model == HEAD
    assert answer.cascade is not None
    assert answer.cascade.fallback == "timeout"


def test_the_ledger_key_changes_with_the_head_replicate_and_threshold() -> None:
    def key(head: ModelRef, remote: ModelRef, threshold: float) -> ModelRef:
        return CascadeClassifier(
            FakeClassifier(model=head), FakeClassifier(model=remote), min_confidence=threshold
        ).model

    base = key(HEAD, REPLICATE, 0.8)
    assert base == key(HEAD, REPLICATE, 0.8)
    others = {
        key(ModelRef(name=HEAD.name, version="head-2"), REPLICATE, 0.8),
        key(HEAD, ModelRef(name=REPLICATE.name, version="v2"), 0.8),
        key(HEAD, REPLICATE, 0.7),
    }
    assert base not in others
    assert len(others) == 3


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.2])
def test_a_threshold_outside_0_to_1_is_refused(threshold: float) -> None:
    with pytest.raises(ValueError, match="min_confidence"):
        CascadeClassifier(local(0.5), replicate(), min_confidence=threshold)


async def test_the_outcome_event_says_which_backend_answered() -> None:
    ledger, outcomes = FakeLedger(), FakeOutcomes()
    cascade = CascadeClassifier(local(0.3), replicate(), min_confidence=0.5)
    handled = await handle_classification(
        TrackUploaded(event_id="up-1", track_id=1, file_id="f1", audio_url=URL),
        source_event_id="up-1",
        classifier=cascade,
        ledger=ledger,
        outcomes=outcomes,
    )
    assert handled.kind is OutcomeKind.CLASSIFIED
    [event] = outcomes.published
    assert isinstance(event, GenresClassified)
    assert event.model == REPLICATE
    assert event.cascade is not None
    assert event.cascade.answered_by == "replicate"
    # The event round-trips through JSON with its route.
    assert GenresClassified.model_validate_json(event.model_dump_json()) == event


async def test_metrics_count_local_answers_and_the_creations_avoided() -> None:
    metrics = ServiceMetrics(CollectorRegistry())
    routes = [local(0.9), local(0.9), local(0.2), local(0.2), local(0.9, error=AudioError("x"))]
    for head in routes:
        cascade = CascadeClassifier(head, replicate(), min_confidence=0.5)
        await ObservedClassifier(cascade, backend="cascade", metrics=metrics).classify(URL)
    failing = CascadeClassifier(
        local(0.2), replicate(error=ServiceUnavailable("503")), min_confidence=0.5
    )
    await ObservedClassifier(failing, backend="cascade", metrics=metrics).classify(URL)

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    answers = "genres_cascade_answers_total"
    assert sample(answers, answered_by="local", reason="confident") == 2
    assert sample(answers, answered_by="replicate", reason="unsure") == 2
    assert sample(answers, answered_by="replicate", reason="local_failed") == 1
    assert sample(answers, answered_by="local", reason="fallback") == 1
    assert sample("genres_cascade_creations_avoided_total") == 2


async def test_a_duplicate_replays_the_answering_model_and_route_without_asking_again() -> None:
    ledger, outcomes = FakeLedger(), FakeOutcomes()
    head, remote = local(0.3), replicate(error=ServiceUnavailable("503"))
    cascade = CascadeClassifier(head, remote, min_confidence=0.5)
    upload = TrackUploaded(event_id="up-1", track_id=1, file_id="f1", audio_url=URL)
    for _ in range(2):
        await handle_classification(
            upload, source_event_id="up-1", classifier=cascade, ledger=ledger, outcomes=outcomes
        )
    first, replayed = outcomes.published
    assert isinstance(first, GenresClassified)
    assert isinstance(replayed, GenresClassified)
    assert len(remote.calls) == len(head.calls) == 1
    assert replayed.event_id == first.event_id
    assert (replayed.model, replayed.cascade) == (HEAD, first.cascade)
    assert replayed.cascade is not None
    assert replayed.cascade.fallback == "unavailable"


def test_other_model_leaves_the_cascades_answers_alone_and_reselects_an_older_heads() -> None:
    cascade = CascadeClassifier(local(0.5), replicate(), min_confidence=0.5)
    configured = _answering_models(cascade)
    assert configured == frozenset({HEAD, REPLICATE})
    assert _answering_models(replicate()) == REPLICATE

    def stored_by(model: ModelRef | None) -> TrackRow:
        return TrackRow(1, "f1", URL, StoredPredictions("f1", True, "f1", model))

    assert not eligible(stored_by(HEAD), model=configured)
    assert not eligible(stored_by(REPLICATE), model=configured)
    assert eligible(stored_by(ModelRef(name=HEAD.name, version="head-0")), model=configured)
    assert eligible(stored_by(cascade.model), model=configured)
    assert eligible(stored_by(None), model=configured)


@pytest.mark.parametrize(
    ("settings", "missing"),
    [
        ({}, "LOCAL_HEAD and REPLICATE_API_TOKEN"),
        ({"local_head": "/heads/h.npz"}, "needs REPLICATE_API_TOKEN"),
        ({"replicate_api_token": "r8_x"}, "needs LOCAL_HEAD"),
    ],
)
def test_the_cascade_without_a_head_or_a_token_stops_with_one_line(
    settings: dict[str, str], missing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("LOCAL_HEAD", "REPLICATE_API_TOKEN", "REPLICATE_API_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError, match=missing) as refused:
        load_settings(classifier_backend="cascade", **settings)
    assert "\n" not in str(refused.value)


def test_the_cascade_threshold_lies_strictly_between_0_and_1() -> None:
    ready = {"classifier_backend": "cascade", "local_head": "/h", "replicate_api_token": "r8_x"}
    assert load_settings(**ready, cascade_min_confidence="0.75").cascade_min_confidence == 0.75
    for bad in ("0", "1", "1.5", "high"):
        with pytest.raises(ConfigurationError, match="CASCADE_MIN_CONFIDENCE"):
            load_settings(**ready, cascade_min_confidence=bad)
