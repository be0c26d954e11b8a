"""Replicate's prediction, read once into a typed shape (the fake's and Replicate's objects)."""

from __future__ import annotations

from typing import Any

import pytest

from genres.classify.replicate.prediction import Prediction

BASE = "https://api.replicate.com/v1"


def answer(**fields: Any) -> dict[str, Any]:
    """A prediction as Replicate (and tests/support/fake_replicate.py) answers it."""
    return {
        "id": "p1",
        "model": "mtg/effnet-discogs",
        "version": "v",
        "input": {"audio": "https://cdn.test/a.mp3", "output_format": "JSON"},
        "logs": "",
        "output": None,
        "error": None,
        "status": "starting",
        "urls": {"get": f"{BASE}/predictions/p1", "cancel": f"{BASE}/predictions/p1/cancel"},
        "metrics": {},
        **fields,
    }


def test_the_fields_the_classifier_reads() -> None:
    prediction = Prediction.from_json(
        answer(
            status="succeeded",
            output="https://files.test/p1.json",
            metrics={"predict_time": 1.5, "total_time": 2.0},
        )
    )
    assert prediction == Prediction(
        id="p1",
        status="succeeded",
        output="https://files.test/p1.json",
        get_url=f"{BASE}/predictions/p1",
        cancel_url=f"{BASE}/predictions/p1/cancel",
        predict_time=1.5,
    )


@pytest.mark.parametrize(
    "document", [None, [], "p1", {"status": "starting"}, {"id": 7}, {"id": ""}]
)
def test_an_answer_without_an_id_is_not_a_prediction(document: object) -> None:
    assert Prediction.from_json(document) is None


@pytest.mark.parametrize(
    ("status", "output", "running", "final", "has_output", "ended_without_output"),
    [
        ("starting", None, True, False, False, False),
        ("processing", None, True, False, False, False),
        # A file output can be there while Replicate still says processing.
        ("processing", "https://files.test/p1.json", True, True, True, False),
        ("succeeded", "https://files.test/p1.json", False, True, True, False),
        ("failed", None, False, True, False, True),
        ("canceled", None, False, True, False, True),
        ("aborted", None, False, True, False, True),
        ("queued", None, True, False, False, False),  # a status unknown today: still running
    ],
)
def test_what_a_status_means(
    status: str,
    output: str | None,
    running: bool,
    final: bool,
    has_output: bool,
    ended_without_output: bool,
) -> None:
    prediction = Prediction.from_json(answer(status=status, output=output))
    assert prediction is not None
    assert (
        prediction.running,
        prediction.final,
        prediction.has_output,
        prediction.ended_without_output,
    ) == (running, final, has_output, ended_without_output)


def test_odd_fields_are_read_as_absent() -> None:
    prediction = Prediction.from_json(
        answer(status=None, urls="nope", metrics={"predict_time": True}, error=42)
    )
    assert prediction is not None
    assert (prediction.status, prediction.get_url, prediction.predict_time) == ("", None, None)
    assert prediction.error == "42"
    assert prediction.running


def test_without_urls_the_api_paths_are_used() -> None:
    prediction = Prediction.from_json(answer(urls={}))
    assert prediction is not None
    assert prediction.url("get", BASE) == f"{BASE}/predictions/p1"
    assert prediction.url("cancel", BASE) == f"{BASE}/predictions/p1/cancel"
    given = Prediction.from_json(answer(urls={"get": "https://elsewhere.test/p1"}))
    assert given is not None
    assert given.url("get", BASE) == "https://elsewhere.test/p1"
