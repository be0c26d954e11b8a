"""One classification on Replicate (`mtg/effnet-discogs`), its steps in order.

One classification is one prediction, whatever fails along the way:

1. create it (``POST /predictions``) with ``Prefer: wait=N`` and a ``Cancel-After`` deadline;
   the create call is retried only when it got no prediction back (a prediction is never
   created twice);
2. poll ``urls.get`` with backoff until the prediction is final or its output is present;
3. fetch the output JSON (all 400 labels) and rank it.

Each HTTP call of a step (create, every poll, the output's fetch) is retried on its own on a
transient failure, up to ``max_attempts`` within the deadline (``retries``).

When the deadline passes, or the caller is cancelled, a prediction still running is cancelled
so that it stops billing. The HTTP calls, their retries, the prediction's typed shape and what
the answers mean live in the sibling modules (`transport`, `retries`, `prediction`,
`protocol`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import aiohttp

from genres.classify.port import Checkpoint, Classification, Timings
from genres.classify.ranking import discogs_name, rank
from genres.classify.replicate import protocol
from genres.classify.replicate.prediction import Prediction
from genres.classify.replicate.retries import CREATE, Backoff, Deadline, Retries
from genres.classify.replicate.transport import Transport
from genres.errors import ClassificationError, ClassificationTimeout, MalformedOutput, RateLimited
from genres.tasks import BackgroundTasks
from genres_contracts import ModelRef

log = logging.getLogger(__name__)

MAX_PREFER_WAIT = 60
MIN_CANCEL_AFTER = 5
CANCEL_AFTER_MARGIN = 5.0
DEFAULT_BACKOFF = Backoff()


class CreationLimiter(Protocol):
    """Paces prediction creations (Replicate counts creations per minute)."""

    async def acquire(self) -> None: ...

    def throttled(self, retry_after: float | None) -> None: ...

    def observe(self, latency: float) -> None:
        """A prediction took ``latency`` seconds from creation to its output."""


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
        backoff: Backoff = DEFAULT_BACKOFF,
        on_retry: Callable[[str], None] | None = None,
        on_throttled: Callable[[str], None] | None = None,
    ) -> None:
        self._background = BackgroundTasks("could not record a replicate prediction's id", log)
        self._base_url = base_url.rstrip("/")
        self._http = Transport(session, token, self._base_url)
        self._redact = self._http.redact
        self._version = version
        self._model = ModelRef(name=model_name, version=version)
        self._top_n = top_n
        self._timeout = timeout_seconds
        self._prefer_wait = max(1, min(MAX_PREFER_WAIT, prefer_wait))
        self._limiter = limiter
        self._backoff = backoff
        self._retries = Retries(backoff, max_attempts, on_retry, on_throttled)

    @property
    def model(self) -> ModelRef:
        return self._model

    async def aclose(self) -> None:
        """The HTTP session belongs to the composition root, which closes it."""
        await self._background.wait(timeout=5.0)

    async def classify(self, audio: str, checkpoint: Checkpoint | None = None) -> Classification:
        started = time.monotonic()
        deadline = Deadline(self._timeout)
        resumed = None
        if checkpoint is not None and checkpoint.resume:
            resumed = await self._resume(checkpoint.resume, deadline)
        if resumed is None:
            prediction, attempts, sent_at = await self._create(audio, deadline)
        else:
            prediction, attempts, sent_at = resumed, 1, None
        # The prediction's id goes on record as soon as it exists, so that a crash resumes it
        # instead of paying again. A prediction still running is awaited behind that record;
        # for one already final (the usual case: Prefer: wait outlasts it) the output is
        # fetched and returned without waiting for the database, as its outcome is recorded
        # moments later in any case.
        recording = None
        if checkpoint is not None and resumed is None:
            recording = asyncio.ensure_future(checkpoint.record(prediction.id))
            if prediction.final:
                self._background.add(recording)
                recording = None
        try:
            prediction = await self._until_output(prediction, deadline)
            scores = await self._fetch_output(prediction, deadline)
            if recording is not None:
                await recording
        except asyncio.CancelledError:
            # Shutting down: a recorded prediction is left to finish and the redelivered
            # record resumes it; an unrecorded one would only be paid for again, so stop it.
            recorded = resumed is not None or _succeeded(recording)
            if not recorded and prediction.running:
                await asyncio.shield(self._cancel(prediction))
            raise
        except BaseException:
            # Deadline or a bad answer: a prediction still running is paid for until it
            # stops, so stop it.
            if prediction.running:
                await asyncio.shield(self._cancel(prediction))
            raise
        finally:
            if recording is not None and not recording.done():
                recording.cancel()
        if sent_at is not None and self._limiter is not None:
            self._limiter.observe(time.monotonic() - sent_at)
        predictions = rank(scores, self._top_n, discogs_name)
        return Classification(
            predictions=predictions,
            model=self._model,
            timings=Timings(
                total=time.monotonic() - started,
                predict=prediction.predict_time,
            ),
            attempts=attempts,
            extra={"prediction_id": prediction.id},
        )

    # -- step 1: create, or resume ------------------------------------------------------

    async def _resume(self, prediction_id: str, deadline: Deadline) -> Prediction | None:
        """The prediction an earlier attempt created, if it can still deliver."""
        url = f"{self._base_url}/predictions/{quote(prediction_id, safe='')}"
        try:
            response = await self._http.send("GET", url, read_timeout=10.0, deadline=deadline)
            prediction = protocol.prediction_of(response, self._redact)
        except ClassificationError as exc:
            log.info(
                "cannot resume replicate prediction %s (%s); creating a new one",
                prediction_id,
                exc.kind,
            )
            return None
        if prediction.ended_without_output:
            return None
        log.info("resumed replicate prediction", extra={"prediction_id": prediction_id})
        return prediction

    async def _create(self, audio: str, deadline: Deadline) -> tuple[Prediction, int, float]:
        """The prediction, the attempts made, and when the one that created it was sent."""
        body = {"version": self._version, "input": {"audio": audio, "output_format": "JSON"}}
        # Our deadline comes first and cancels with a clear timeout; Replicate's own, a little
        # later, stops the prediction even if this process died.
        cancel_after = max(MIN_CANCEL_AFTER, math.ceil(self._timeout + CANCEL_AFTER_MARGIN))

        async def create() -> tuple[Prediction, float]:
            deadline.check("before the prediction was created")
            if self._limiter is not None:
                await self._limiter.acquire()
            wait = max(1, min(self._prefer_wait, math.floor(deadline.remaining)))
            sent_at = time.monotonic()
            response = await self._http.send(
                "POST",
                f"{self._base_url}/predictions",
                payload=body,
                headers={"Prefer": f"wait={wait}", "Cancel-After": f"{cancel_after}s"},
                read_timeout=wait + 5.0,
                deadline=deadline,
            )
            try:
                return protocol.prediction_of(response, self._redact), sent_at
            except RateLimited as exc:
                if self._limiter is not None:
                    self._limiter.throttled(exc.retry_after)
                raise

        (prediction, sent_at), attempts = await self._retries.run(CREATE, deadline, create)
        return prediction, attempts, sent_at

    # -- step 2: poll --------------------------------------------------------------------

    async def _until_output(self, prediction: Prediction, deadline: Deadline) -> Prediction:
        delay = self._backoff.poll_initial
        while True:
            protocol.raise_if_unsuccessful(prediction, self._redact)
            # A file output can be present while the status is still `processing`.
            if prediction.has_output:
                return prediction
            if deadline.remaining <= 0:
                raise ClassificationTimeout(
                    f"prediction {prediction.id} not finished within {self._timeout:g}s"
                )
            await asyncio.sleep(min(delay, deadline.remaining))
            delay = min(delay * 1.5, self._backoff.poll_maximum)
            prediction = await self._get_prediction(prediction, deadline)

    async def _get_prediction(self, prediction: Prediction, deadline: Deadline) -> Prediction:
        url = prediction.url("get", self._base_url)

        async def poll() -> Prediction:
            response = await self._http.send("GET", url, read_timeout=10.0, deadline=deadline)
            return protocol.prediction_of(response, self._redact)

        prediction, _ = await self._retries.run("poll", deadline, poll)
        return prediction

    # -- step 3: output ------------------------------------------------------------------

    async def _fetch_output(
        self, prediction: Prediction, deadline: Deadline
    ) -> Mapping[str, float]:
        output = prediction.output
        if isinstance(output, list) and len(output) == 1:
            output = output[0]
        if isinstance(output, dict):
            return protocol.scores(output)
        if not isinstance(output, str) or urlsplit(output).scheme not in ("http", "https"):
            raise MalformedOutput(
                f"prediction {prediction.id} has no JSON file output (got {type(output).__name__})"
            )

        async def fetch() -> Any:
            response = await self._http.send("GET", output, read_timeout=30.0, deadline=deadline)
            protocol.raise_for_status(response, self._redact)
            try:
                return response.json()
            except ValueError:
                raise MalformedOutput("the output file is not JSON") from None

        document, _ = await self._retries.run("output", deadline, fetch)
        if not isinstance(document, dict):
            raise MalformedOutput(
                f"the output JSON is a {type(document).__name__}, not a label map"
            )
        return protocol.scores(document)

    # -- cancel --------------------------------------------------------------------------

    async def _cancel(self, prediction: Prediction) -> None:
        try:
            url = prediction.url("cancel", self._base_url)
            status = await self._http.post_without_deadline(url, timeout=10.0)
            log.info(
                "replicate prediction cancelled",
                extra={"prediction_id": prediction.id, "status": status},
            )
        except (TimeoutError, aiohttp.ClientError, ClassificationError) as exc:
            # Cancel-After stops it on Replicate's side in any case.
            log.warning(
                "could not cancel replicate prediction %s: %s",
                prediction.id,
                type(exc).__name__,
            )


def _succeeded(task: asyncio.Future[None] | None) -> bool:
    """The task finished without an error (and its error, if any, counts as seen)."""
    if task is None or not task.done() or task.cancelled():
        return False
    return task.exception() is None
