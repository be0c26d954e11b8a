"""The Replicate adapter: ``mtg/effnet-discogs`` over Replicate's HTTP API.

One classification is one prediction, whatever fails along the way:

1. create it (``POST /predictions``) with ``Prefer: wait=N`` and a ``Cancel-After`` deadline;
   only this step is retried as a whole, and only when the create call got no prediction back;
2. poll ``urls.get`` with backoff until the prediction is final or its output is present;
3. fetch the output JSON (all 400 labels) and rank it.

When the deadline passes, or the caller is cancelled, a prediction still running is cancelled
so that it stops billing. The token is sent only to Replicate's own host and never appears in
a message, since server texts are scrubbed of it too.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, urlsplit

import aiohttp
import orjson
import stamina

from genres.classify.port import Checkpoint, Classification, Timings
from genres.classify.ranking import discogs_name, is_confidence, rank
from genres.errors import (
    ClassificationError,
    ClassificationTimeout,
    MalformedOutput,
    PredictionFailed,
    RateLimited,
    RequestRejected,
    RetryableClassificationError,
    ServiceUnavailable,
)
from genres_contracts import FailureKind, ModelRef

log = logging.getLogger(__name__)

T = TypeVar("T")

FINAL_STATUSES = frozenset({"succeeded", "failed", "canceled", "aborted"})
MAX_PREFER_WAIT = 60
MIN_CANCEL_AFTER = 5
CANCEL_AFTER_MARGIN = 5.0
_RESET_HINT = re.compile(r"resets in ~?\s*(\d+(?:\.\d+)?)\s*s", re.IGNORECASE)
_SERVER_TEXT_LIMIT = 300
MAX_BODY_BYTES = 8 * 1024 * 1024
"""A prediction or a 400-label output file is a few KB; anything this large is not one."""


class CreationLimiter(Protocol):
    """Paces prediction creations (Replicate counts creations per minute)."""

    async def acquire(self) -> None: ...

    def throttled(self, retry_after: float | None) -> None: ...

    def observe(self, latency: float) -> None:
        """A prediction took ``latency`` seconds from creation to its output."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Retry pacing; tests shrink it."""

    initial: float = 0.5
    maximum: float = 10.0
    jitter: float = 0.5
    poll_initial: float = 0.25
    poll_maximum: float = 2.0


@dataclass(frozen=True, slots=True)
class _Reply:
    """An HTTP answer read in full (bodies here are small and capped)."""

    method: str
    url: str
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        # orjson: the 400-label output file is the largest thing the classifier parses.
        return orjson.loads(self.body)


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    @property
    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())


class ReplicateClassifier:
    """Classifies audio URLs with a pinned version of ``mtg/effnet-discogs`` on Replicate."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        token: str,
        base_url: str,
        version: str,
        model_name: str = "mtg/effnet-discogs",
        top_n: int = 10,
        timeout_seconds: float = 120.0,
        max_attempts: int = 5,
        prefer_wait: int = MAX_PREFER_WAIT,
        limiter: CreationLimiter | None = None,
        backoff: Backoff = Backoff(),
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        self._session = session
        self._background: set[asyncio.Future[None]] = set()
        self._token = token
        self._base_url = base_url.rstrip("/")
        self._api_host = urlsplit(self._base_url).netloc
        self._version = version
        self._model = ModelRef(name=model_name, version=version)
        self._top_n = top_n
        self._timeout = timeout_seconds
        self._max_attempts = max_attempts
        self._prefer_wait = max(1, min(MAX_PREFER_WAIT, prefer_wait))
        self._limiter = limiter
        self._backoff = backoff
        self._on_retry = on_retry
        """Told the step (create, poll, output) of each HTTP call that is retried (metrics)."""

    @property
    def model(self) -> ModelRef:
        return self._model

    async def aclose(self) -> None:
        """The HTTP session belongs to the composition root, which closes it."""
        if self._background:
            await asyncio.wait(self._background, timeout=5.0)

    def _in_background(self, task: asyncio.Future[None]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Future[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("could not record a replicate prediction's id: %s", exc)

    async def classify(self, audio: str, checkpoint: Checkpoint | None = None) -> Classification:
        started = time.monotonic()
        deadline = _Deadline(self._timeout)
        client = self._session
        resumed = None
        if checkpoint is not None and checkpoint.resume:
            resumed = await self._resume(client, checkpoint.resume, deadline)
        if resumed is None:
            prediction, attempts, sent_at = await self._create(client, audio, deadline)
        else:
            prediction, attempts, sent_at = resumed, 1, None
        # The prediction's id goes on record as soon as it exists, so that a crash resumes it
        # instead of paying again. A prediction still running is awaited behind that record;
        # for one already final (the usual case: Prefer: wait outlasts it) the output is
        # fetched and returned without waiting for the database, as its outcome is recorded
        # moments later in any case.
        recording = None
        if checkpoint is not None and resumed is None:
            recording = asyncio.ensure_future(checkpoint.record(prediction["id"]))
            if _final(prediction):
                self._in_background(recording)
                recording = None
        try:
            prediction = await self._until_output(client, prediction, deadline)
            scores = await self._fetch_output(client, prediction, deadline)
            if recording is not None:
                await recording
        except asyncio.CancelledError:
            # Shutting down: a recorded prediction is left to finish and the redelivered
            # record resumes it; an unrecorded one would only be paid for again, so stop it.
            recorded = resumed is not None or _succeeded(recording)
            if not recorded and prediction.get("status") not in FINAL_STATUSES:
                await asyncio.shield(self._cancel(client, prediction))
            raise
        except BaseException:
            # Deadline or a bad answer: a prediction still running is paid for until it
            # stops, so stop it.
            if prediction.get("status") not in FINAL_STATUSES:
                await asyncio.shield(self._cancel(client, prediction))
            raise
        finally:
            if recording is not None and not recording.done():
                recording.cancel()
        if sent_at is not None and self._limiter is not None:
            self._limiter.observe(time.monotonic() - sent_at)
        predictions = rank(scores, self._top_n, discogs_name)
        metrics = prediction.get("metrics") or {}
        predict_time = metrics.get("predict_time") if isinstance(metrics, dict) else None
        return Classification(
            predictions=predictions,
            model=self._model,
            timings=Timings(
                total=time.monotonic() - started,
                predict=float(predict_time) if isinstance(predict_time, int | float) else None,
            ),
            attempts=attempts,
            extra={"prediction_id": prediction.get("id")},
        )

    # -- step 1: create, or resume ------------------------------------------------------

    async def _resume(
        self, client: aiohttp.ClientSession, prediction_id: str, deadline: _Deadline
    ) -> dict[str, Any] | None:
        """The prediction an earlier attempt created, if it can still deliver."""
        url = f"{self._base_url}/predictions/{quote(prediction_id, safe='')}"
        try:
            response = await self._send(client, "GET", url, read_timeout=10.0, deadline=deadline)
            prediction = self._prediction(response)
        except ClassificationError as exc:
            log.info(
                "cannot resume replicate prediction %s (%s); creating a new one",
                prediction_id,
                exc.kind,
            )
            return None
        if prediction.get("status") in ("failed", "canceled", "aborted"):
            return None
        log.info("resumed replicate prediction", extra={"prediction_id": prediction_id})
        return prediction

    async def _create(
        self, client: aiohttp.ClientSession, audio: str, deadline: _Deadline
    ) -> tuple[dict[str, Any], int, float]:
        """The prediction, the attempts made, and when the one that created it was sent."""
        attempts = 0
        body = {"version": self._version, "input": {"audio": audio, "output_format": "JSON"}}
        # Our deadline comes first and cancels with a clear timeout; Replicate's own, a little
        # later, stops the prediction even if this process died.
        cancel_after = max(MIN_CANCEL_AFTER, math.ceil(self._timeout + CANCEL_AFTER_MARGIN))

        async def create(attempt: int) -> tuple[dict[str, Any], float]:
            nonlocal attempts
            attempts = attempt
            self._check_deadline(deadline, "before the prediction was created")
            if self._limiter is not None:
                await self._limiter.acquire()
            wait = max(1, min(self._prefer_wait, math.floor(deadline.remaining)))
            sent_at = time.monotonic()
            response = await self._send(
                client,
                "POST",
                f"{self._base_url}/predictions",
                payload=body,
                headers={"Prefer": f"wait={wait}", "Cancel-After": f"{cancel_after}s"},
                read_timeout=wait + 5.0,
                deadline=deadline,
            )
            try:
                return self._prediction(response), sent_at
            except RateLimited as exc:
                if self._limiter is not None:
                    self._limiter.throttled(exc.retry_after)
                raise

        try:
            prediction, sent_at = await self._with_retries("create", deadline, create)
        except ClassificationError as exc:
            exc.attempts = max(1, attempts)
            raise
        return prediction, attempts, sent_at

    # -- step 2: poll --------------------------------------------------------------------

    async def _until_output(
        self, client: aiohttp.ClientSession, prediction: dict[str, Any], deadline: _Deadline
    ) -> dict[str, Any]:
        delay = self._backoff.poll_initial
        while True:
            self._raise_if_unsuccessful(prediction)
            # A file output can be present while the status is still `processing`.
            if prediction.get("output") is not None or prediction.get("status") == "succeeded":
                return prediction
            if deadline.remaining <= 0:
                raise ClassificationTimeout(
                    f"prediction {prediction.get('id')} not finished within {self._timeout:g}s"
                )
            await asyncio.sleep(min(delay, deadline.remaining))
            delay = min(delay * 1.5, self._backoff.poll_maximum)
            prediction = await self._get_prediction(client, prediction, deadline)

    async def _get_prediction(
        self, client: aiohttp.ClientSession, prediction: dict[str, Any], deadline: _Deadline
    ) -> dict[str, Any]:
        url = self._prediction_url(prediction, "get")

        async def poll(_: int) -> dict[str, Any]:
            response = await self._send(client, "GET", url, read_timeout=10.0, deadline=deadline)
            return self._prediction(response)

        return await self._with_retries("poll", deadline, poll)

    # -- step 3: output ------------------------------------------------------------------

    async def _fetch_output(
        self, client: aiohttp.ClientSession, prediction: dict[str, Any], deadline: _Deadline
    ) -> Mapping[str, float]:
        output = prediction.get("output")
        if isinstance(output, list) and len(output) == 1:
            output = output[0]
        if isinstance(output, dict):
            return self._scores(output)
        if not isinstance(output, str) or urlsplit(output).scheme not in ("http", "https"):
            raise MalformedOutput(
                f"prediction {prediction.get('id')} has no JSON file output "
                f"(got {type(output).__name__})"
            )

        async def fetch(_: int) -> Any:
            response = await self._send(client, "GET", output, read_timeout=30.0, deadline=deadline)
            self._raise_for_status(response)
            try:
                return response.json()
            except ValueError:
                raise MalformedOutput("the output file is not JSON") from None

        document = await self._with_retries("output", deadline, fetch)
        if not isinstance(document, dict):
            raise MalformedOutput(
                f"the output JSON is a {type(document).__name__}, not a label map"
            )
        return self._scores(document)

    @staticmethod
    def _scores(document: Mapping[str, object]) -> Mapping[str, float]:
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

    # -- cancel --------------------------------------------------------------------------

    async def _cancel(self, client: aiohttp.ClientSession, prediction: dict[str, Any]) -> None:
        try:
            url = self._prediction_url(prediction, "cancel")
            async with client.post(
                url,
                headers=self._auth_headers(url),
                timeout=aiohttp.ClientTimeout(total=10.0),
                allow_redirects=False,
            ) as response:
                status = response.status
            log.info(
                "replicate prediction cancelled",
                extra={"prediction_id": prediction.get("id"), "status": status},
            )
        except (TimeoutError, aiohttp.ClientError, ClassificationError) as exc:
            # Cancel-After stops it on Replicate's side in any case.
            log.warning(
                "could not cancel replicate prediction %s: %s",
                prediction.get("id"),
                type(exc).__name__,
            )

    # -- HTTP ----------------------------------------------------------------------------

    async def _with_retries(
        self, step: str, deadline: _Deadline, call: Callable[[int], Awaitable[T]]
    ) -> T:
        """``call(attempt)`` until it succeeds, fails for good, or attempts or time run out.

        The first attempt runs outside stamina: building a retry context costs about as
        much CPU as the HTTP call it guards (profiled), and most calls succeed at once.
        """
        try:
            return await call(1)
        except Exception as exc:
            decision = self._backoff_for(exc, deadline)
            if decision is False or self._max_attempts <= 1:
                raise
        # The wait stamina would have made before the second attempt.
        if decision is True:
            decision = self._backoff.initial + random.uniform(0, self._backoff.jitter)
        await asyncio.sleep(min(decision, deadline.remaining))
        async for attempt in stamina.retry_context(
            on=lambda exc: self._backoff_for(exc, deadline),
            attempts=self._max_attempts - 1,
            timeout=max(deadline.remaining, 0.001),
            wait_initial=self._backoff.initial,
            wait_max=self._backoff.maximum,
            wait_jitter=self._backoff.jitter,
        ):
            with attempt:
                if self._on_retry is not None:
                    self._on_retry(step)
                return await call(attempt.num + 1)
        raise AssertionError("unreachable: stamina raises when it stops retrying")

    @staticmethod
    def _backoff_for(exc: Exception, deadline: _Deadline) -> bool | float:
        """stamina's ``on``: False to give up, the server's own wait when it gave one that
        fits the deadline, else True (exponential backoff)."""
        if not isinstance(exc, RetryableClassificationError) or deadline.remaining <= 0:
            return False
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return exc.retry_after if exc.retry_after < deadline.remaining else False
        return True

    async def _send(
        self,
        client: aiohttp.ClientSession,
        method: str,
        url: str,
        *,
        read_timeout: float,
        deadline: _Deadline,
        payload: object | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> _Reply:
        remaining = deadline.remaining
        if remaining <= 0:
            raise ClassificationTimeout(f"no time left for {method} {self._redact_url(url)}")
        # `total` keeps every call, connection and body included, inside the deadline.
        timeout = aiohttp.ClientTimeout(
            total=remaining, connect=min(10.0, remaining), sock_read=min(read_timeout, remaining)
        )
        auth = self._auth_headers(url)
        try:
            async with client.request(
                method,
                url,
                json=payload,
                headers={**auth, **(headers or {})},
                timeout=timeout,
                # Output files may redirect to storage; the API never does, and a redirect
                # must never carry the token anywhere.
                allow_redirects=not auth,
            ) as response:
                body = await _read_capped(response)
                return _Reply(method, url, response.status, response.headers, body)
        except TimeoutError as exc:
            raise ClassificationTimeout(
                f"{method} {self._redact_url(url)} timed out ({type(exc).__name__})"
            ) from None
        except aiohttp.ClientError as exc:
            raise ServiceUnavailable(
                f"{method} {self._redact_url(url)} failed: {type(exc).__name__}"
            ) from None

    def _auth_headers(self, url: str) -> dict[str, str]:
        # Output files may live on another host; the token goes only to the API's host.
        if urlsplit(url).netloc != self._api_host:
            return {}
        return {"Authorization": f"Bearer {self._token}"}

    def _prediction(self, response: _Reply) -> dict[str, Any]:
        self._raise_for_status(response)
        try:
            prediction = response.json()
        except ValueError:
            raise ServiceUnavailable(
                f"Replicate answered {response.status} with a body that is not JSON"
            ) from None
        if not isinstance(prediction, dict) or not isinstance(prediction.get("id"), str):
            raise ServiceUnavailable("Replicate answered with something that is not a prediction")
        return prediction

    def _raise_for_status(self, response: _Reply) -> None:
        status = response.status
        if status < 400:
            return
        detail = self._server_text(response)
        what = f"{response.method} {self._redact_url(response.url)}"
        if status == 429:
            raise RateLimited(
                f"Replicate throttled {what}: {detail}", retry_after=self._retry_after(response)
            )
        if status >= 500 or status == 408:
            raise ServiceUnavailable(f"Replicate answered {status} to {what}: {detail}")
        raise RequestRejected(f"Replicate refused {what} with {status}: {detail}")

    def _retry_after(self, response: _Reply) -> float | None:
        header = response.headers.get("Retry-After")
        if header is not None:
            try:
                return max(0.0, float(header))
            except ValueError:
                pass
        match = _RESET_HINT.search(response.text)
        return float(match.group(1)) if match else None

    def _server_text(self, response: _Reply) -> str:
        try:
            body = response.json()
            text = body.get("detail") or body.get("title") if isinstance(body, dict) else None
            text = str(text) if text else response.text
        except ValueError:
            text = response.text
        return self._scrub(" ".join(text.split())[:_SERVER_TEXT_LIMIT]) or "(no detail)"

    def _raise_if_unsuccessful(self, prediction: Mapping[str, Any]) -> None:
        status = prediction.get("status")
        if status == "failed":
            error = self._scrub(str(prediction.get("error") or "no error text"))
            raise PredictionFailed(
                f"prediction {prediction.get('id')} failed: {error[:_SERVER_TEXT_LIMIT]}"
            )
        if status in ("canceled", "aborted"):
            raise PredictionFailed(
                f"prediction {prediction.get('id')} was {status}",
                kind=FailureKind.PREDICTION_CANCELED,
            )

    def _prediction_url(self, prediction: Mapping[str, Any], which: str) -> str:
        urls = prediction.get("urls")
        url = urls.get(which) if isinstance(urls, dict) else None
        if isinstance(url, str) and url:
            return url
        suffix = "/cancel" if which == "cancel" else ""
        return f"{self._base_url}/predictions/{prediction['id']}{suffix}"

    def _check_deadline(self, deadline: _Deadline, when: str) -> None:
        if deadline.remaining <= 0:
            raise ClassificationTimeout(f"deadline of {self._timeout:g}s passed {when}")

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "[redacted]") if self._token else text

    def _redact_url(self, url: str) -> str:
        return self._scrub(url.split("?", 1)[0])


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    if (response.content_length or 0) > MAX_BODY_BYTES:
        raise MalformedOutput(f"answer of {response.content_length} bytes is too large")
    body = bytearray()
    async for chunk in response.content.iter_any():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise MalformedOutput(f"answer larger than {MAX_BODY_BYTES} bytes")
    return bytes(body)


def _succeeded(task: asyncio.Future[None] | None) -> bool:
    """The task finished without an error (and its error, if any, counts as seen)."""
    if task is None or not task.done() or task.cancelled():
        return False
    return task.exception() is None


def _final(prediction: Mapping[str, Any]) -> bool:
    """Nothing more will happen to it (an output may arrive before `succeeded`)."""
    return prediction.get("status") in FINAL_STATUSES or prediction.get("output") is not None
