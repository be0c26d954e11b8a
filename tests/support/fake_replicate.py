"""A fake Replicate: a real HTTP server on loopback speaking the prediction protocol.

It is good enough for our own httpx adapter and for the official ``replicate`` client:

* ``POST /v1/predictions`` (``Prefer: wait[=N]``, ``Cancel-After``), ``GET /v1/predictions/{id}``,
  ``POST /v1/predictions/{id}/cancel``; predictions go ``starting`` -> ``processing`` ->
  ``succeeded`` over ``latency_ms``; with ``output_format: "JSON"`` the output is the URL of a
  file on this server (``GET /files/{id}.json``) mapping all 400 Discogs labels to scores that
  are deterministic per audio URL.
* Faults at global rates drawn from a seeded RNG (:class:`FakeConfig`), a sliding-window
  creation limiter, and per-track directives in the audio URL's query string
  (``?fake=fail,slow``; see :data:`DIRECTIVES`).
* Counters in-process (:attr:`FakeReplicate.stats`) and over HTTP (``GET /_fake/stats``), the
  arrival time of every accepted creation (``GET /_fake/creations``);
  ``POST /_fake/config`` patches knobs, ``POST /_fake/reset`` clears counters and predictions.

The official client takes the server root as its ``base_url`` (it adds ``/v1`` to its paths):
use :attr:`FakeReplicate.root_url` there, and :attr:`FakeReplicate.base_url` (``…/v1``) for
clients that take Replicate's API root.

Run it as its own process (benchmarks)::

    python -m tests.support.fake_replicate --port 8787 --latency-ms 250 --fail-rate 0.01
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import random
import re
import signal
import string
import sys
import threading
import time
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self, TypeVar
from urllib.parse import parse_qs, urlsplit

from aiohttp import web

__all__ = [
    "DIRECTIVES",
    "FAIL_MESSAGES",
    "MODEL",
    "FakeConfig",
    "FakeReplicate",
    "FakeReplicateThread",
    "FakeStats",
    "load_labels",
    "parse_cancel_after",
    "scores_for",
]

MODEL = "mtg/effnet-discogs"
FINAL = frozenset({"succeeded", "failed", "canceled", "aborted"})
DIRECTIVES = frozenset(
    {
        "fail",
        "slow",
        "malformed",
        "early",
        "throttle-once",
        "5xx-once",
        "hang",
        "cancel",
        "missing-output",
        "bad-json",
    }
)
FAIL_MESSAGES = (
    "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.78 GiB total capacity)",
    "could not decode audio: Invalid data found when processing input",
)
_VERSION = re.compile(r"^[0-9a-f]{64}$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_ID_ALPHABET = string.ascii_lowercase + string.digits
_LABEL_FILES = (
    Path(__file__).resolve().parents[2] / "service/genres/classify/discogs400-labels.json",
)
# A 1x1 transparent PNG, the "Visualization" output.
_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
)
_T = TypeVar("_T")
_BAD_JSON = b"<html><body>502 Bad Gateway</body></html>{"


@dataclasses.dataclass
class FakeConfig:
    """Knobs. Rates are probabilities in 0..1 drawn from one RNG seeded with ``seed``."""

    token: str | None = "r8_fake_token"
    """Expected bearer token; ``None`` or empty accepts any request."""
    latency_ms: float = 200.0
    """From creation to ``succeeded`` (start delay included)."""
    latency_jitter_ms: float = 0.0
    """Each prediction's latency is drawn uniformly from ``latency_ms`` ± this."""
    start_delay_ms: float = 10.0
    """From creation to ``processing``."""
    seed: int = 0
    model: str = MODEL
    known_versions: list[str] | None = None
    """When set, only these versions are accepted (422 otherwise); else any 64-hex string."""
    max_wait_s: float = 60.0
    """Upper bound of ``Prefer: wait`` (Replicate: 60)."""
    error_5xx_rate: float = 0.0
    create_5xx_statuses: list[int] = dataclasses.field(default_factory=lambda: [500, 502, 503])
    rate_limit_rate: float = 0.0
    rate_limit_reset_s: int = 30
    """The ``N`` of "Your rate limit resets in ~Ns." (injected 429s)."""
    retry_after_header: bool = False
    """Send ``Retry-After: N`` with every 429 (Replicate does not document one)."""
    slow_rate: float = 0.0
    slow_ms: float = 5000.0
    fail_rate: float = 0.0
    malformed_rate: float = 0.0
    get_5xx_rate: float = 0.0
    get_5xx_statuses: list[int] = dataclasses.field(default_factory=lambda: [500, 502, 503])
    output_early: bool = False
    """Every prediction shows its output while still ``processing`` for ``early_output_ms``."""
    early_output_ms: float = 300.0
    max_creations_per_minute: int | None = None
    """A strict sliding-window limiter: at most this many accepted creations in any
    ``window_s`` seconds (429 beyond it, with Replicate's reset hint); ``None``: off."""
    window_s: float = 60.0
    """The limiter's window (Replicate: a minute); tests scale it down."""
    output_cache_size: int = 4096
    """Output documents kept (per audio URL); each is ~16 kB."""
    retention_s: float = 3600.0
    """Final predictions are forgotten this long after they end (Replicate: 1 hour)."""
    answers: dict[str, str] = dataclasses.field(default_factory=dict)
    """Audio URL -> a Discogs label that is its top prediction (a teacher whose answers for
    known clips are their labels); other URLs get the deterministic random scores."""


@dataclasses.dataclass
class FakeStats:
    """Counters. :attr:`FakeReplicate.stats` returns a copy."""

    creation_attempts: int = 0
    creations: int = 0
    """Predictions created (HTTP 201)."""
    creations_per_url: dict[str, int] = dataclasses.field(default_factory=dict)
    attempts_per_url: dict[str, int] = dataclasses.field(default_factory=dict)
    rejected_401: int = 0
    rejected_422: int = 0
    rejected_429: int = 0
    rejected_5xx: int = 0
    rate_limited_by_window: int = 0
    """429s from ``max_creations_per_minute`` (also in ``rejected_429``)."""
    max_creations_in_window: int = 0
    """The most accepted creations seen in any ``window_s`` seconds (limiter on or off)."""
    gets: int = 0
    get_5xx: int = 0
    file_gets: int = 0
    cancels: int = 0
    """Explicit ``POST …/cancel`` calls."""
    cancels_effective: int = 0
    """Explicit cancel calls that stopped a prediction still running."""
    cancel_after_expiries: int = 0
    """Predictions stopped by their ``Cancel-After`` deadline (``canceled`` or ``aborted``)."""
    wait_timeouts: int = 0
    """``Prefer: wait`` requests answered before the prediction was final."""
    running: int = 0
    """Predictions not final now."""
    max_running: int = 0
    final_statuses: dict[str, int] = dataclasses.field(default_factory=dict)

    def copy(self) -> FakeStats:
        return dataclasses.replace(
            self,
            creations_per_url=dict(self.creations_per_url),
            attempts_per_url=dict(self.attempts_per_url),
            final_statuses=dict(self.final_statuses),
        )

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- helpers --------------------------------------------------------------------------------


def load_labels() -> list[str]:
    """The 400 ``Genre---Style`` labels of the Discogs model."""
    for path in _LABEL_FILES:
        if path.exists():
            labels: list[str] = json.loads(path.read_text(encoding="utf-8"))
            return labels
    raise FileNotFoundError("discogs400-labels.json not found")


def _url_seed(url: str) -> int:
    return int.from_bytes(hashlib.sha256(url.encode("utf-8")).digest()[:8], "big")


_BACKGROUND_CEILING = 0.01
"""Every label outside the top 10 scores below this; the top 10 stay above it."""
_BACKGROUNDS = 64


@functools.lru_cache(maxsize=4)
def _backgrounds(labels: tuple[str, ...]) -> tuple[tuple[float, ...], ...]:
    # A pool of low-score vectors, chosen per URL: a fresh one per URL cost the fake ~0.5 ms
    # of CPU per output, which on a 2-core machine is taken from the service under test.
    rng = random.Random(0x5EED)
    return tuple(
        tuple(round(_BACKGROUND_CEILING * rng.random() ** 3, 6) for _ in labels)
        for _ in range(_BACKGROUNDS)
    )


@functools.lru_cache(maxsize=4)
def _encoded_backgrounds(labels: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    keys = [json.dumps(label) + ":" for label in labels]
    return tuple(
        tuple(key + repr(value) for key, value in zip(keys, values, strict=True))
        for values in _backgrounds(labels)
    )


def _tops(url: str, size: int) -> tuple[int, dict[int, float]]:
    """(background index, {label index: score}) for one URL, deterministically."""
    seed = _url_seed(url)
    rng = random.Random(seed)
    top_n = min(10, size)
    tops: list[float] = []
    value = rng.uniform(0.25, 0.6)
    for _ in range(top_n):
        tops.append(round(value, 6))
        # >= 0.019 after nine steps: always above the background ceiling.
        value = min(value * rng.uniform(0.75, 0.92), tops[-1] - 0.001)
    chosen = rng.sample(range(size), top_n)
    return seed % _BACKGROUNDS, dict(zip(chosen, tops, strict=True))


def scores_for(url: str, labels: list[str]) -> dict[str, float]:
    """Deterministic scores in 0..1 for one audio URL; the top 10 differ by >= 0.001."""
    background, tops = _tops(url, len(labels))
    values = list(_backgrounds(tuple(labels))[background])
    for index, score in tops.items():
        values[index] = score
    return dict(zip(labels, values, strict=True))


def output_json(url: str, labels: list[str]) -> bytes:
    """``json.dumps(scores_for(url, labels))``, compact, without encoding 400 floats again."""
    background, tops = _tops(url, len(labels))
    fragments = list(_encoded_backgrounds(tuple(labels))[background])
    for index, score in tops.items():
        fragments[index] = f"{json.dumps(labels[index])}:{score!r}"
    return ("{" + ",".join(fragments) + "}").encode()


def parse_cancel_after(value: str) -> float:
    """``30s``, ``2m``, ``1h30m``, ``500ms``, ``1.5s`` or plain seconds -> seconds."""
    text = value.strip().lower()
    if not text:
        raise ValueError("empty duration")
    try:
        return float(text)
    except ValueError:
        pass
    position = 0
    total = 0.0
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            raise ValueError(f"invalid duration {value!r}")
        total += float(match.group(1)) * units[match.group(2)]
        position = match.end()
    if position != len(text):
        raise ValueError(f"invalid duration {value!r}")
    return total


def _parse_prefer_wait(header: str | None, maximum: float) -> float | None:
    if not header:
        return None
    for raw in header.replace(";", ",").split(","):
        token = raw.strip().lower()
        if token == "wait":
            return maximum
        if token.startswith("wait="):
            try:
                seconds = float(token[5:])
            except ValueError:
                return None
            return min(max(seconds, 1.0), maximum)
    return None


def _directives(url: str) -> frozenset[str]:
    query = urlsplit(url).query
    if "fake=" not in query:
        return frozenset()
    found: set[str] = set()
    for value in parse_qs(query).get("fake", []):
        found.update(part.strip() for part in value.split(",") if part.strip())
    return frozenset(found)


def _iso(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}Z"


def _json(
    data: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=json.dumps(data, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _detail(status: int, detail: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return _json({"detail": detail, "status": status}, status=status, headers=headers)


# -- predictions ----------------------------------------------------------------------------


class _Prediction:
    __slots__ = (
        "audio",
        "cancel_at",
        "created_mono",
        "created_wall",
        "end_mono",
        "error",
        "final_mono",
        "id",
        "input",
        "outcome",
        "output_kind",
        "output_mono",
        "start_mono",
        "status",
        "timers",
        "version",
        "waiters",
    )

    def __init__(self, pid: str, version: str, payload: dict[str, Any], now: float) -> None:
        self.id = pid
        self.version = version
        self.input = payload
        self.audio: str = payload["audio"]
        self.created_mono = now
        self.created_wall = time.time()
        self.start_mono = now
        self.output_mono: float | None = None
        """When the output becomes visible (``None``: never)."""
        self.end_mono: float | None = None
        """When it becomes final on its own (``None``: hangs)."""
        self.final_mono: float | None = None
        self.cancel_at: float | None = None
        self.outcome = "succeeded"
        self.output_kind = "json"  # json | malformed | bad-json | missing | png
        self.error: str | None = None
        self.status: str | None = None
        """Set once final; before that the status follows the clock."""
        self.timers: list[asyncio.TimerHandle] = []
        self.waiters: list[asyncio.Future[None]] = []

    def current_status(self, now: float) -> str:
        if self.status is not None:
            return self.status
        return "starting" if now < self.start_mono else "processing"

    def output_visible(self, now: float) -> bool:
        if self.output_kind == "missing" or self.outcome != "succeeded":
            return False
        if self.status == "succeeded":
            return True
        if self.status is not None:
            return False
        return self.output_mono is not None and now >= self.output_mono

    def to_json(self, root: str, model: str, now: float) -> dict[str, Any]:
        status = self.current_status(now)
        started = status != "starting" and (self.status != "aborted")
        wall = self.created_wall
        base = f"{root}/v1/predictions/{self.id}"
        output: str | None = None
        if self.output_visible(now):
            ext = "png" if self.output_kind == "png" else "json"
            output = f"{root}/files/{self.id}.{ext}"
        logs = ""
        if started:
            logs = "Loading audio\nRunning effnet-discogs\n"
            if self.error:
                logs += f"Traceback (most recent call last):\nRuntimeError: {self.error}\n"
        data: dict[str, Any] = {
            "id": self.id,
            "model": model,
            "version": self.version,
            "input": self.input,
            "logs": logs,
            "output": output,
            "data_removed": False,
            "error": self.error if status == "failed" else None,
            "status": status,
            "source": "api",
            "created_at": _iso(wall),
            "started_at": _iso(wall + self.start_mono - self.created_mono) if started else None,
            "completed_at": None,
            "urls": {
                "get": base,
                "cancel": f"{base}/cancel",
                "web": f"https://replicate.com/p/{self.id}",
            },
        }
        if self.final_mono is not None:
            data["completed_at"] = _iso(wall + self.final_mono - self.created_mono)
            metrics: dict[str, Any] = {"total_time": round(self.final_mono - self.created_mono, 6)}
            if started:
                metrics["predict_time"] = round(self.final_mono - self.start_mono, 6)
            data["metrics"] = metrics
        else:
            data["metrics"] = {}
        return data


# -- the server -----------------------------------------------------------------------------


class FakeReplicate:
    """The fake server on the running event loop. Use ``async with`` or ``start``/``stop``."""

    def __init__(self, config: FakeConfig | None = None) -> None:
        self.config = config if config is not None else FakeConfig()
        self._labels = load_labels()
        self._stats = FakeStats()
        self._predictions: dict[str, _Prediction] = {}
        self._once_done: set[tuple[str, str]] = set()
        self._window: collections.deque[float] = collections.deque()
        self._creation_times: list[float] = []
        self._epoch = 0.0
        self._ended: collections.deque[tuple[float, str]] = collections.deque()
        self._outputs: collections.OrderedDict[tuple[str, str], bytes] = collections.OrderedDict()
        self._rng = random.Random(self.config.seed)
        self._rng_seed = self.config.seed
        self._ids = random.Random()
        self._runner: web.AppRunner | None = None
        self._host = "127.0.0.1"
        self._port = 0

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if self._runner is not None:
            raise RuntimeError("already started")
        app = web.Application(client_max_size=1024 * 1024)
        app.add_routes(
            [
                web.post("/v1/predictions", self._handle_create),
                web.get("/v1/predictions/{id}", self._handle_get),
                web.post("/v1/predictions/{id}/cancel", self._handle_cancel),
                web.get("/files/{name}", self._handle_file),
                web.get("/_fake/stats", self._handle_stats),
                web.get("/_fake/creations", self._handle_creations),
                web.get("/_fake/config", self._handle_get_config),
                web.post("/_fake/config", self._handle_config),
                web.post("/_fake/reset", self._handle_reset),
            ]
        )
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port, backlog=2048, reuse_address=True)
        await site.start()
        self._runner = runner
        self._epoch = self._now()
        self._host = host
        address = runner.addresses[0]
        self._port = int(address[1])

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        self._clear_predictions()
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start(self._host, self._port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @classmethod
    def in_thread(
        cls, config: FakeConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> FakeReplicateThread:
        """A context manager running a fake on its own loop in a background thread."""
        return FakeReplicateThread(config, host=host, port=port)

    # -- public state -------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def root_url(self) -> str:
        """``http://HOST:PORT``: the official client's ``base_url``."""
        host = "127.0.0.1" if self._host in ("0.0.0.0", "") else self._host
        return f"http://{host}:{self._port}"

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v1``: Replicate's API root (our adapter's base URL)."""
        return f"{self.root_url}/v1"

    @property
    def stats(self) -> FakeStats:
        return self._stats.copy()

    @property
    def token(self) -> str | None:
        return self.config.token

    def reset(self) -> None:
        """Clear counters, predictions, one-shot directive memory and the limiter window."""
        self._clear_predictions()
        self._stats = FakeStats()
        self._once_done.clear()
        self._window.clear()
        self._creation_times.clear()
        with contextlib.suppress(RuntimeError):  # no running loop: the epoch stays
            self._epoch = self._now()
        self._rng = random.Random(self.config.seed)
        self._rng_seed = self.config.seed

    def prediction(self, pid: str) -> dict[str, Any] | None:
        """The JSON of one prediction as ``GET`` would show it (without counting)."""
        found = self._predictions.get(pid)
        if found is None:
            return None
        return found.to_json(self.root_url, self.config.model, self._now())

    def configure(self, **knobs: Any) -> None:
        """Patch knobs by name (unknown names raise ``KeyError``)."""
        names = {field.name for field in dataclasses.fields(FakeConfig)}
        unknown = set(knobs) - names
        if unknown:
            raise KeyError(f"unknown knobs: {sorted(unknown)}")
        for name, value in knobs.items():
            setattr(self.config, name, value)
        if self.config.seed != self._rng_seed:
            self._rng = random.Random(self.config.seed)
            self._rng_seed = self.config.seed

    # -- internals ----------------------------------------------------------------------

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def _clear_predictions(self) -> None:
        for prediction in self._predictions.values():
            for timer in prediction.timers:
                timer.cancel()
            prediction.timers.clear()
            self._wake(prediction)
        self._predictions.clear()
        self._stats.running = 0
        self._ended.clear()

    def _root(self, request: web.Request) -> str:
        return f"{request.scheme}://{request.host}" if request.host else self.root_url

    def _authorized(self, request: web.Request) -> bool:
        token = self.config.token
        if not token:
            return True
        header = request.headers.get("Authorization", "")
        return header in (f"Bearer {token}", f"Token {token}")

    def _unauthorized(self) -> web.Response:
        self._stats.rejected_401 += 1
        return _detail(401, "You did not pass a valid authentication token")

    def _throttled(self, reset_s: int, *, window: bool = False) -> web.Response:
        self._stats.rejected_429 += 1
        if window:
            self._stats.rate_limited_by_window += 1
        headers = {"Retry-After": str(reset_s)} if self.config.retry_after_header else None
        return _detail(
            429, f"Request was throttled. Your rate limit resets in ~{reset_s}s.", headers
        )

    def _server_error(self, status: int) -> web.Response:
        self._stats.rejected_5xx += 1
        texts = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
        return _detail(status, texts.get(status, "Server Error"))

    def _unprocessable(self, detail: str) -> web.Response:
        self._stats.rejected_422 += 1
        return _json(
            {"title": "Input validation failed", "detail": detail, "status": 422},
            status=422,
        )

    def _forget_old(self, now: float) -> None:
        ended = self._ended
        horizon = now - self.config.retention_s
        while ended and ended[0][0] < horizon:
            _, pid = ended.popleft()
            self._predictions.pop(pid, None)

    def _window_check(self, now: float) -> int | None:
        """Seconds until a slot frees when the creation window is full, else ``None``."""
        span = self.config.window_s
        window = self._window
        # A creation at t counts in (t, t + span]: one exactly a window ago has left it.
        while window and window[0] <= now - span:
            window.popleft()
        limit = self.config.max_creations_per_minute
        if limit is None or limit <= 0:
            return None
        if len(window) >= limit:
            return max(1, math.ceil(window[0] + span - now))
        return None

    def _count_creation(self, now: float) -> None:
        self._window.append(now)
        self._creation_times.append(now - self._epoch)
        stats = self._stats
        stats.max_creations_in_window = max(stats.max_creations_in_window, len(self._window))

    @property
    def creation_times(self) -> list[float]:
        """When each accepted creation arrived: seconds since the fake started (or reset)."""
        return list(self._creation_times)

    # -- handlers -----------------------------------------------------------------------

    async def _handle_create(self, request: web.Request) -> web.Response:
        stats = self._stats
        config = self.config
        stats.creation_attempts += 1
        if not self._authorized(request):
            return self._unauthorized()
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _detail(400, "Request body is not valid JSON")
        if not isinstance(body, dict):
            return self._unprocessable("The request body must be a JSON object")
        version = body.get("version")
        if not isinstance(version, str) or not _VERSION.match(version):
            return self._unprocessable("Invalid version or not permitted")
        if config.known_versions is not None and version not in config.known_versions:
            return self._unprocessable("Invalid version or not permitted")
        payload = body.get("input")
        if not isinstance(payload, dict):
            return self._unprocessable("input: input is required")
        audio = payload.get("audio") or payload.get("url")
        if not isinstance(audio, str) or not audio:
            return self._unprocessable("input: audio is required")
        cancel_after: float | None = None
        header = request.headers.get("Cancel-After")
        if header is not None:
            try:
                cancel_after = parse_cancel_after(header)
            except ValueError:
                return self._unprocessable(f"Invalid Cancel-After header: {header!r}")
            if cancel_after <= 0:
                return self._unprocessable(f"Invalid Cancel-After header: {header!r}")
        stats.attempts_per_url[audio] = stats.attempts_per_url.get(audio, 0) + 1

        now = self._now()
        self._forget_old(now)
        reset_in = self._window_check(now)
        if reset_in is not None:
            return self._throttled(reset_in, window=True)

        directives = _directives(audio)
        if directives:
            if "throttle-once" in directives and (audio, "throttle") not in self._once_done:
                self._once_done.add((audio, "throttle"))
                return self._throttled(config.rate_limit_reset_s)
            if "5xx-once" in directives and (audio, "5xx") not in self._once_done:
                self._once_done.add((audio, "5xx"))
                return self._server_error(503)
        rng = self._rng
        if config.rate_limit_rate > 0 and rng.random() < config.rate_limit_rate:
            return self._throttled(config.rate_limit_reset_s)
        if config.error_5xx_rate > 0 and rng.random() < config.error_5xx_rate:
            return self._server_error(rng.choice(config.create_5xx_statuses or [500]))

        self._count_creation(now)
        prediction = self._new_prediction(version, payload, audio, directives, now, cancel_after)
        stats.creations += 1
        stats.creations_per_url[audio] = stats.creations_per_url.get(audio, 0) + 1

        wait = _parse_prefer_wait(request.headers.get("Prefer"), config.max_wait_s)
        if wait is not None and prediction.status is None:
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()
            prediction.waiters.append(waiter)
            timer = loop.call_later(wait, _resolve, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                if waiter in prediction.waiters:
                    prediction.waiters.remove(waiter)
            if prediction.status is None:
                stats.wait_timeouts += 1
        return _json(prediction.to_json(self._root(request), config.model, self._now()), status=201)

    def _new_prediction(
        self,
        version: str,
        payload: dict[str, Any],
        audio: str,
        directives: frozenset[str],
        now: float,
        cancel_after: float | None,
    ) -> _Prediction:
        config = self.config
        rng = self._rng
        pid = "".join(self._ids.choices(_ID_ALPHABET, k=20))
        while pid in self._predictions:
            pid = "".join(self._ids.choices(_ID_ALPHABET, k=20))
        prediction = _Prediction(pid, version, payload, now)
        start_delay = max(config.start_delay_ms, 0.0) / 1000.0
        prediction.start_mono = now + start_delay

        slow = "slow" in directives or (config.slow_rate > 0 and rng.random() < config.slow_rate)
        fail = "fail" in directives or (config.fail_rate > 0 and rng.random() < config.fail_rate)
        malformed = "malformed" in directives or (
            config.malformed_rate > 0 and rng.random() < config.malformed_rate
        )
        duration = (config.slow_ms if slow else config.latency_ms) / 1000.0
        if config.latency_jitter_ms > 0 and not slow:
            duration += rng.uniform(-config.latency_jitter_ms, config.latency_jitter_ms) / 1000.0
        done_at = now + max(duration, start_delay)

        if payload.get("output_format", "Visualization") != "JSON":
            prediction.output_kind = "png"
        if malformed:
            prediction.output_kind = "malformed"
        if "bad-json" in directives:
            prediction.output_kind = "bad-json"
        if "missing-output" in directives:
            prediction.output_kind = "missing"
        if fail:
            prediction.outcome = "failed"
            prediction.error = FAIL_MESSAGES[_url_seed(audio) % len(FAIL_MESSAGES)]
        elif "cancel" in directives:
            prediction.outcome = "canceled"

        loop = asyncio.get_running_loop()
        if "hang" in directives:
            prediction.end_mono = None
        else:
            end = done_at
            if prediction.outcome == "succeeded" and (config.output_early or "early" in directives):
                prediction.output_mono = done_at
                end = done_at + max(config.early_output_ms, 0.0) / 1000.0
            prediction.end_mono = end
            prediction.timers.append(
                loop.call_at(end, self._finish, prediction, prediction.outcome)
            )
        if cancel_after is not None:
            deadline = now + cancel_after
            prediction.cancel_at = deadline
            if prediction.end_mono is None or deadline < prediction.end_mono:
                prediction.timers.append(loop.call_at(deadline, self._expire, prediction))

        self._predictions[pid] = prediction
        stats = self._stats
        stats.running += 1
        stats.max_running = max(stats.max_running, stats.running)
        return prediction

    def _finish(self, prediction: _Prediction, status: str) -> None:
        if prediction.status is not None:
            return
        prediction.status = status
        prediction.final_mono = self._now()
        for timer in prediction.timers:
            timer.cancel()
        prediction.timers.clear()
        stats = self._stats
        stats.running = max(0, stats.running - 1)
        stats.final_statuses[status] = stats.final_statuses.get(status, 0) + 1
        self._wake(prediction)
        self._ended.append((prediction.final_mono, prediction.id))

    def _expire(self, prediction: _Prediction) -> None:
        if prediction.status is not None:
            return
        self._stats.cancel_after_expiries += 1
        started = self._now() >= prediction.start_mono
        self._finish(prediction, "canceled" if started else "aborted")

    @staticmethod
    def _wake(prediction: _Prediction) -> None:
        for waiter in prediction.waiters:
            _resolve(waiter)
        prediction.waiters.clear()

    async def _handle_get(self, request: web.Request) -> web.Response:
        self._stats.gets += 1
        if not self._authorized(request):
            return self._unauthorized()
        config = self.config
        if config.get_5xx_rate > 0 and self._rng.random() < config.get_5xx_rate:
            self._stats.get_5xx += 1
            status = self._rng.choice(config.get_5xx_statuses or [500])
            return _detail(status, "Server Error")
        prediction = self._predictions.get(request.match_info["id"])
        if prediction is None:
            return _detail(404, "Not found.")
        return _json(prediction.to_json(self._root(request), config.model, self._now()))

    async def _handle_cancel(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        self._stats.cancels += 1
        prediction = self._predictions.get(request.match_info["id"])
        if prediction is None:
            return _detail(404, "Not found.")
        if prediction.status is None:
            self._stats.cancels_effective += 1
            self._finish(prediction, "canceled")
        return _json(prediction.to_json(self._root(request), self.config.model, self._now()))

    async def _handle_file(self, request: web.Request) -> web.Response:
        self._stats.file_gets += 1
        pid, _, ext = request.match_info["name"].partition(".")
        prediction = self._predictions.get(pid)
        if prediction is None or not prediction.output_visible(self._now()):
            return _detail(404, "Not found.")
        if ext == "png" and prediction.output_kind == "png":
            return web.Response(body=_PNG, content_type="image/png")
        if ext != "json":
            return _detail(404, "Not found.")
        if prediction.output_kind == "bad-json":
            return web.Response(body=_BAD_JSON, content_type="application/json")
        kind = "malformed" if prediction.output_kind == "malformed" else "json"
        return web.Response(
            body=self._output(prediction.audio, kind), content_type="application/json"
        )

    def _output(self, audio: str, kind: str) -> bytes:
        key = (audio, kind)
        cached = self._outputs.get(key)
        if cached is not None:
            self._outputs.move_to_end(key)
            return cached
        if kind == "malformed":
            # Not a label -> number map: the labels and activations as parallel lists.
            scores = scores_for(audio, self._labels)
            document = {"labels": list(scores), "activations": [str(v) for v in scores.values()]}
            body = json.dumps(document, separators=(",", ":")).encode()
        elif audio in self.config.answers:
            scores = scores_for(audio, self._labels)
            # Above every random score (at most 0.6): the label is the top prediction.
            scores[self.config.answers[audio]] = 0.9
            body = json.dumps(scores, separators=(",", ":")).encode()
        else:
            body = output_json(audio, self._labels)
        self._outputs[key] = body
        while len(self._outputs) > max(1, self.config.output_cache_size):
            self._outputs.popitem(last=False)
        return body

    async def _handle_stats(self, request: web.Request) -> web.Response:
        return _json(self._stats.as_dict())

    async def _handle_creations(self, request: web.Request) -> web.Response:
        return _json({"times": self._creation_times, "now": self._now() - self._epoch})

    async def _handle_get_config(self, request: web.Request) -> web.Response:
        return _json(dataclasses.asdict(self.config))

    async def _handle_config(self, request: web.Request) -> web.Response:
        try:
            patch = json.loads(await request.read())
        except ValueError:
            return _detail(400, "Request body is not valid JSON")
        if not isinstance(patch, dict):
            return _detail(400, "Expected a JSON object of knobs")
        try:
            self.configure(**{key: _coerce(key, value) for key, value in patch.items()})
        except (KeyError, TypeError, ValueError) as exc:
            return _detail(400, str(exc))
        return _json(dataclasses.asdict(self.config))

    async def _handle_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return _json({"ok": True})


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


_HINTS: dict[str, Any] = typing.get_type_hints(FakeConfig)


def _coerce(name: str, value: Any) -> Any:
    """Coerce a knob value (from JSON or the command line) to the knob's type."""
    if name not in _HINTS:
        raise KeyError(f"unknown knob {name!r}")
    hint = _HINTS[name]
    args = typing.get_args(hint)
    optional = isinstance(hint, types.UnionType) and type(None) in args
    if value is None:
        if optional:
            return None
        raise ValueError(f"knob {name!r} cannot be null")
    base = next((arg for arg in args if arg is not type(None)), hint) if optional else hint
    origin = typing.get_origin(base)
    if origin is list:
        (item,) = typing.get_args(base)
        items: Iterable[Any] = value.split(",") if isinstance(value, str) else value
        return [item(part) for part in items]
    if base is bool:
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes", "on")
        return bool(value)
    if base in (int, float, str):
        caster: Callable[[Any], Any] = base
        return caster(value)
    return value


# -- running it on another thread -----------------------------------------------------------


class FakeReplicateThread:
    """Runs a :class:`FakeReplicate` on its own event loop in a daemon thread.

    For synchronous code (the official client's sync API) and for code on another loop.
    """

    def __init__(
        self, config: FakeConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.fake = FakeReplicate(config)
        self._host = host
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("already started")
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        thread = threading.Thread(target=run, name="fake-replicate", daemon=True)
        thread.start()
        ready.wait()
        self._loop, self._thread = loop, thread
        try:
            asyncio.run_coroutine_threadsafe(self.fake.start(self._host, self._port), loop).result(
                timeout=30
            )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.fake.stop(), loop).result(timeout=30)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
            loop.close()
            self._loop = self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, function: Callable[[], _T]) -> _T:
        loop = self._loop
        if loop is None:
            return function()

        async def call() -> _T:
            return function()

        return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout=30)

    @property
    def config(self) -> FakeConfig:
        return self.fake.config

    @property
    def root_url(self) -> str:
        return self.fake.root_url

    @property
    def base_url(self) -> str:
        return self.fake.base_url

    @property
    def token(self) -> str | None:
        return self.fake.token

    @property
    def stats(self) -> FakeStats:
        return self._call(lambda: self.fake.stats)

    def reset(self) -> None:
        self._call(self.fake.reset)

    def configure(self, **knobs: Any) -> None:
        self._call(lambda: self.fake.configure(**knobs))

    def prediction(self, pid: str) -> dict[str, Any] | None:
        return self._call(lambda: self.fake.prediction(pid))


# -- command line ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.fake_replicate",
        description="A fake Replicate prediction API on its own process.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    defaults = FakeConfig()
    for field in dataclasses.fields(FakeConfig):
        flag = "--" + field.name.replace("_", "-")
        default = getattr(defaults, field.name)
        if _HINTS[field.name] is bool:
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction)
        else:
            parser.add_argument(
                flag,
                dest=field.name,
                default=None,
                metavar=field.name.upper(),
                help=f"default: {default}",
            )
    return parser


async def _serve(config: FakeConfig, host: str, port: int) -> None:
    fake = FakeReplicate(config)
    await fake.start(host, port)
    print(f"fake replicate listening on {fake.base_url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await fake.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = FakeConfig()
    for field in dataclasses.fields(FakeConfig):
        value = getattr(args, field.name)
        if value is None:
            continue
        if (
            isinstance(value, str)
            and value.lower() in ("none", "null", "")
            and (isinstance(_HINTS[field.name], types.UnionType))
        ):
            setattr(config, field.name, None)
        else:
            setattr(config, field.name, _coerce(field.name, value))
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        runner.run(_serve(config, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
