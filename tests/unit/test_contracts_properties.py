"""Property-based tests of the contracts and of record parsing (hypothesis)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from genres.errors import InvalidMessage
from genres.kafka.parsing import parse
from genres_contracts import (
    ClassificationRequested,
    GenresClassified,
    RecommendedTagsRequest,
    TrackUploaded,
)
from genres_contracts.schema import MODELS

# No subnormal floats: onnxruntime, loaded by other tests in the same process, sets the CPU to
# flush them to zero, and hypothesis refuses to generate them then.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_subnormal=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
track_ids = st.integers(min_value=1, max_value=2**63 - 1)
file_ids = st.text(min_size=1, max_size=50)
urls = st.builds(
    lambda scheme, host, path: f"{scheme}://{host}.example/{path}",
    st.sampled_from(["http", "https"]),
    st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
    st.from_regex(r"[a-zA-Z0-9_./-]{0,40}", fullmatch=True),
)


@given(raw=st.binary(max_size=2000))
@settings(max_examples=300)
def test_any_bytes_either_parse_or_raise_invalid_message(raw: bytes) -> None:
    for model in (TrackUploaded, ClassificationRequested, RecommendedTagsRequest):
        reason = ""
        try:
            parse(model, raw)
        except InvalidMessage as exc:
            reason = str(exc)
        assert "\n" not in reason


@given(value=json_values)
@settings(max_examples=300)
def test_any_json_value_validates_or_fails_with_a_validation_error(value: Any) -> None:
    encoded = json.dumps(value).encode()
    for model in MODELS:
        with contextlib.suppress(ValidationError):
            model.model_validate_json(encoded)


@given(
    track_id=track_ids,
    file_id=file_ids,
    url=urls,
    auto_tag=st.booleans(),
    extra=st.dictionaries(
        st.text(min_size=1, max_size=8).filter(lambda k: k not in TrackUploaded.model_fields),
        json_values,
        max_size=3,
    ),
)
def test_valid_uploads_round_trip_and_unknown_fields_are_ignored(
    track_id: int, file_id: str, url: str, auto_tag: bool, extra: dict[str, Any]
) -> None:
    payload = {"track_id": track_id, "file_id": file_id, "audio_url": url, "auto_tag": auto_tag}
    event = TrackUploaded.model_validate_json(json.dumps(payload | extra))
    assert event.track_id == track_id
    assert event.file_id == file_id
    assert TrackUploaded.model_validate_json(event.model_dump_json()) == event


@given(track_id=st.integers(max_value=0) | st.integers(min_value=2**63))
def test_track_ids_outside_1_to_2_63_are_refused(track_id: int) -> None:
    payload = {"track_id": track_id, "file_id": "f", "audio_url": "https://a.example/x"}
    try:
        TrackUploaded.model_validate(payload)
    except ValidationError:
        return
    raise AssertionError(f"track_id {track_id} was accepted")


@given(
    scores=st.lists(
        st.floats(min_value=0, max_value=1, allow_nan=False, allow_subnormal=False),
        min_size=0,
        max_size=20,
    )
)
def test_classified_events_accept_exactly_the_best_first_orders(scores: list[float]) -> None:
    predictions = [{"name": f"g{i}", "confidence": s} for i, s in enumerate(scores)]
    payload = {
        "source_event_id": "e",
        "track_id": 1,
        "file_id": "f",
        "predictions": predictions,
        "model": {"name": "m", "version": "v"},
        "classified_at": "2026-11-25T00:00:00Z",
    }
    ordered = scores == sorted(scores, reverse=True)
    try:
        GenresClassified.model_validate(payload)
        accepted = True
    except ValidationError:
        accepted = False
    assert accepted == ordered


@given(limit=st.integers(), wait_ms=st.integers())
def test_request_bounds_hold_for_any_integers(limit: int, wait_ms: int) -> None:
    try:
        request = RecommendedTagsRequest(track_id=1, limit=limit, wait_ms=wait_ms)
    except ValidationError:
        assert not (1 <= limit <= 20 and 0 <= wait_ms <= 30_000)
    else:
        assert 1 <= request.limit <= 20
        assert 0 <= request.wait_ms <= 30_000
