"""What Replicate's answers mean: a prediction's end, its HTTP errors mapped to
classification errors (with server texts scrubbed of the token), and the checks a prediction
and its output file must pass before the classifier trusts them."""

from __future__ import annotations

import re
from collections.abc import Mapping

from genres.classify.ranking import is_confidence
from genres.classify.replicate.prediction import Prediction
from genres.classify.replicate.redaction import Redactor
from genres.classify.replicate.transport import Reply
from genres.errors import (
    MalformedOutput,
    PredictionFailed,
    RateLimited,
    RequestRejected,
    ServiceUnavailable,
)
from genres_contracts import FailureKind

_RESET_HINT = re.compile(r"resets in ~?\s*(\d+(?:\.\d+)?)\s*s", re.IGNORECASE)
_SERVER_TEXT_LIMIT = 300


def prediction_of(response: Reply, redact: Redactor) -> Prediction:
    raise_for_status(response, redact)
    try:
        document = response.json()
    except ValueError:
        raise ServiceUnavailable(
            f"Replicate answered {response.status} with a body that is not JSON"
        ) from None
    prediction = Prediction.from_json(document)
    if prediction is None:
        raise ServiceUnavailable("Replicate answered with something that is not a prediction")
    return prediction


def raise_for_status(response: Reply, redact: Redactor) -> None:
    status = response.status
    if status < 400:
        return
    detail = _server_text(response, redact)
    what = f"{response.method} {redact.url(response.url)}"
    if status == 429:
        raise RateLimited(
            f"Replicate throttled {what}: {detail}", retry_after=_retry_after(response)
        )
    if status >= 500 or status == 408:
        raise ServiceUnavailable(f"Replicate answered {status} to {what}: {detail}")
    raise RequestRejected(f"Replicate refused {what} with {status}: {detail}")


def raise_if_unsuccessful(prediction: Prediction, redact: Redactor) -> None:
    if prediction.status == "failed":
        error = redact.scrub(prediction.error or "no error text")
        raise PredictionFailed(f"prediction {prediction.id} failed: {error[:_SERVER_TEXT_LIMIT]}")
    if prediction.ended_without_output:
        raise PredictionFailed(
            f"prediction {prediction.id} was {prediction.status}",
            kind=FailureKind.PREDICTION_CANCELED,
        )


def scores(document: Mapping[str, object]) -> Mapping[str, float]:
    """The output file's label map, every score a confidence in 0..1."""
    if not document:
        raise MalformedOutput("the output JSON has no labels")
    values = document.values()
    # The usual document, all floats, checked at C speed (NaN fails the comparison).
    if all(type(value) is float for value in values) and all(
        0.0 <= value <= 1.0  # type: ignore[operator]
        for value in values
    ):
        return document  # type: ignore[return-value]
    bad = [label for label, value in document.items() if not is_confidence(value)]
    if bad:
        raise MalformedOutput(
            f"the output JSON has {len(bad)} labels without a score in 0..1 "
            f"(first: {bad[0][:80]!r})"
        )
    return {label: float(value) for label, value in document.items()}  # type: ignore[arg-type]


def _retry_after(response: Reply) -> float | None:
    header = response.headers.get("Retry-After")
    if header is not None:
        try:
            return max(0.0, float(header))
        except ValueError:
            pass
    match = _RESET_HINT.search(response.text)
    return float(match.group(1)) if match else None


def _server_text(response: Reply, redact: Redactor) -> str:
    try:
        body = response.json()
        text = body.get("detail") or body.get("title") if isinstance(body, dict) else None
        text = str(text) if text else response.text
    except ValueError:
        text = response.text
    return redact.scrub(" ".join(text.split())[:_SERVER_TEXT_LIMIT]) or "(no detail)"
