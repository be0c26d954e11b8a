"""The message models: validation, tolerance of unknown fields, descriptions, schemas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from genres_contracts import (
    ClassificationFailed,
    ClassificationRequested,
    GenresClassified,
    RecommendedTags,
    RecommendedTagsRequest,
    TrackUploaded,
    derived_event_id,
    topics,
)
from genres_contracts.schema import MODELS, write

UPLOAD = {
    "track_id": 668,
    "file_id": "b2c1e0",
    "audio_url": "https://cdn.example/audio/b2c1e0.mp3",
}


def test_upload_with_only_required_fields_is_valid_and_defaults_auto_tag_off() -> None:
    event = TrackUploaded.model_validate_json(json.dumps(UPLOAD))
    assert event.track_id == 668
    assert event.event_id is None
    assert event.auto_tag is False


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    event = TrackUploaded.model_validate({**UPLOAD, "new_field": {"x": 1}})
    assert "new_field" not in event.model_dump()


@pytest.mark.parametrize("track_id", [0, -1, 2**63, "abc", "668", 1.5, 2.0, True, None])
def test_track_id_must_be_a_positive_integer(track_id: object) -> None:
    with pytest.raises(ValidationError):
        TrackUploaded.model_validate({**UPLOAD, "track_id": track_id})


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://host/a.mp3", "not a url", "", "gopher://x"]
)
def test_audio_url_must_be_http_or_https(url: str) -> None:
    with pytest.raises(ValidationError):
        TrackUploaded.model_validate({**UPLOAD, "audio_url": url})


def test_classification_requested_adds_reason_and_force() -> None:
    request = ClassificationRequested.model_validate({**UPLOAD, "reason": "backfill"})
    assert request.reason == "backfill"
    assert request.force is False
    with pytest.raises(ValidationError):
        ClassificationRequested.model_validate({**UPLOAD, "reason": "because"})


@pytest.mark.parametrize(
    ("field", "value"), [("limit", 0), ("limit", 21), ("wait_ms", -1), ("wait_ms", 30_001)]
)
def test_request_bounds_are_enforced(field: str, value: int) -> None:
    with pytest.raises(ValidationError):
        RecommendedTagsRequest.model_validate({"track_id": 1, field: value})


def test_request_defaults_are_limit_5_and_no_wait() -> None:
    request = RecommendedTagsRequest.model_validate({"track_id": 1})
    assert (request.limit, request.wait_ms) == (5, 0)


def classified(predictions: list[dict[str, object]]) -> dict[str, object]:
    return {
        "source_event_id": "e1",
        "track_id": 1,
        "file_id": "f",
        "predictions": predictions,
        "model": {"name": "mtg/effnet-discogs", "version": "v"},
        "classified_at": "2026-11-25T19:00:02Z",
    }


def test_predictions_must_be_best_first() -> None:
    GenresClassified.model_validate(
        classified([{"name": "a", "confidence": 0.5}, {"name": "b", "confidence": 0.2}])
    )
    with pytest.raises(ValidationError, match="best first"):
        GenresClassified.model_validate(
            classified([{"name": "a", "confidence": 0.2}, {"name": "b", "confidence": 0.5}])
        )


@pytest.mark.parametrize("confidence", [-0.01, 1.01, float("nan")])
def test_confidences_must_lie_in_0_to_1(confidence: float) -> None:
    with pytest.raises(ValidationError):
        GenresClassified.model_validate(classified([{"name": "a", "confidence": confidence}]))


def test_classified_event_gets_a_fresh_event_id() -> None:
    first = GenresClassified.model_validate(classified([]))
    second = GenresClassified.model_validate(classified([]))
    assert first.event_id != second.event_id


def test_failure_event_round_trips_through_json() -> None:
    event = ClassificationFailed(
        source_event_id="e",
        track_id=3,
        file_id="f",
        error={"kind": "timeout", "message": "too slow"},  # type: ignore[arg-type]
        attempts=5,
        retryable=True,
    )
    assert ClassificationFailed.model_validate_json(event.model_dump_json()) == event


def test_reply_for_an_unreadable_request_has_a_null_track_id() -> None:
    reply = RecommendedTags.model_validate(
        {"track_id": None, "error": {"kind": "invalid_request", "message": "bad"}}
    )
    assert reply.tags == []
    assert reply.pending is False


def test_derived_event_ids_are_stable_per_record_and_differ_between_records() -> None:
    assert derived_event_id("t", 0, 5) == derived_event_id("t", 0, 5)
    assert derived_event_id("t", 0, 5) != derived_event_id("t", 0, 6)
    assert derived_event_id("t", 0, 5) != derived_event_id("t", 1, 5)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_field_has_a_description(model: type[BaseModel]) -> None:
    schema = model.model_json_schema()

    def undescribed(node: dict[str, object]) -> list[str]:
        props = node.get("properties", {})
        assert isinstance(props, dict)
        return [name for name, prop in props.items() if "description" not in prop]

    missing = undescribed(schema)
    for name, definition in schema.get("$defs", {}).items():
        missing += [f"{name}.{field}" for field in undescribed(definition)]
    assert missing == []


def test_schema_command_writes_one_file_per_model(tmp_path: Path) -> None:
    paths = write(tmp_path)
    assert sorted(p.name for p in paths) == sorted(f"{m.__name__}.schema.json" for m in MODELS)
    for path in paths:
        assert json.loads(path.read_text())["type"] == "object"


def test_topic_names_match_the_interface() -> None:
    assert topics.TRACK_UPLOADED == "track.uploaded"
    assert topics.CLASSIFICATION_REQUESTED == "track.classification_requested"
    assert topics.GENRES_CLASSIFIED == "track.genres_classified"
    assert topics.GENRES_FAILED == "track.genres_failed"
    assert topics.RECOMMENDED_TAGS == "track.recommended_tags"
    assert topics.dead_letter_topic("track.uploaded") == "track.uploaded.dlq"
