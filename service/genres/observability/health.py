"""Health, readiness and metrics over HTTP, one small aiohttp server per process.

* ``GET /healthz``: 200 while the event loop answers (liveness).
* ``GET /readyz``: 200 when the service has started its roles and the broker and the
  database both answer within a short timeout; otherwise 503 with a JSON body naming what
  failed. Results are cached briefly so that frequent probes cost one check per interval.
  The server answers from the start of the process: while starting, the body says what the
  process still waits for (``"starting": "topics"``); a refusal from the cluster
  (``ClusterRefused``) is given as its one line (``"refused": "Kafka denies ..."``).
* ``GET /metrics``: the service's Prometheus registry in the text format, with ``genres_ready``
  (1 when ``/readyz`` would answer 200) set just before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from genres.errors import ClusterRefused
from genres.kafka.broker import leaders
from genres.observability.metrics import ServiceMetrics

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[None]]
"""Returns when the dependency answers; raises (anything) when it does not."""

CHECK_TIMEOUT_SECONDS = 2.0
CACHE_SECONDS = 1.5


def database_check(engine: AsyncEngine) -> Check:
    async def check() -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    return check


def broker_check(client: Any) -> Check:
    """``client`` is an aiokafka ``AIOKafkaClient`` (e.g. a started producer's ``.client``).

    A metadata request for no topic to each broker in turn (``leaders``), not aiokafka's
    ``fetch_all_metadata``: that one asks on the connections that carry the produces, which a
    broker answers in order, so during a failover an acks=all produce waiting for the dead
    replica made a well broker look silent (``/readyz`` 503 while the service progressed)."""

    async def check() -> None:
        await leaders(client, ())

    return check


class HealthServer:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        metrics: ServiceMetrics | None = None,
        checks: Mapping[str, Check] | None = None,
        check_timeout: float = CHECK_TIMEOUT_SECONDS,
        cache_seconds: float = CACHE_SECONDS,
    ) -> None:
        self._host = host
        self._port = port
        self._metrics = metrics
        self._checks = dict(checks or {})
        self._check_timeout = check_timeout
        self._cache_seconds = cache_seconds
        self._cached: tuple[float, dict[str, str]] | None = None
        self._refused: set[str] = set()
        """The checks whose last result was a refusal from the cluster."""
        self._lock = asyncio.Lock()
        self._runner: web.AppRunner | None = None
        self.started = False
        """Set by the composition root once every role runs, cleared when stopping."""
        self.starting: str | None = None
        """What the process still waits for while not started (``topics``, ``database``,
        ``roles``), set by the composition root."""
        self.port: int | None = None

    @property
    def url(self) -> str | None:
        if self.port is None:
            return None
        host = "127.0.0.1" if self._host in ("0.0.0.0", "", "::") else self._host
        return f"http://{host}:{self.port}"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics_page)
        return app

    async def start(self) -> None:
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            # The roles matter more than their probes: run on, loudly.
            await runner.cleanup()
            log.error(
                "health server could not listen on %s:%s: %s",
                self._host,
                self._port,
                exc,
                extra={"health_host": self._host, "health_port": self._port},
            )
            return
        self._runner = runner
        addresses = runner.addresses
        self.port = int(addresses[0][1]) if addresses else self._port
        log.info("health server listening", extra={"health_port": self.port})

    def add_check(self, name: str, check: Check) -> None:
        """Check ``name`` from now on (a dependency that exists only once started)."""
        self._checks[name] = check
        self._cached = None

    async def stop(self) -> None:
        self.started = False
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- readiness -----------------------------------------------------------------------

    async def readiness(self) -> dict[str, str]:
        """Each check's result, ``"ok"`` or a one-line reason; cached for a moment."""
        async with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < self._cache_seconds:
                return self._cached[1]
            names = list(self._checks)
            outcomes = await asyncio.gather(*(self._run(n, self._checks[n]) for n in names))
            results = dict(zip(names, outcomes, strict=True))
            self._cached = (time.monotonic(), results)
            return results

    async def _run(self, name: str, check: Check) -> str:
        self._refused.discard(name)
        try:
            await asyncio.wait_for(check(), self._check_timeout)
        except TimeoutError:
            return f"no answer within {self._check_timeout:g}s"
        except ClusterRefused as exc:
            self._refused.add(name)
            return str(exc)  # already one line for people, naming what to fix
        except Exception as exc:
            # Long enough to name the partitions of a cluster that lost its leaders.
            return f"{type(exc).__name__}: {' '.join(str(exc).split())[:1000]}"
        return "ok"

    # -- handlers ------------------------------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        body, failed = await self._status()
        return web.json_response(body, status=503 if failed else 200)

    async def _status(self) -> tuple[dict[str, Any], list[str]]:
        """``/readyz``'s body and the checks that failed (none: ready)."""
        checks = dict(await self.readiness())
        if self.started:
            checks["service"] = "ok"
        elif self.starting is not None:
            checks["service"] = f"starting: waiting for {self.starting}"
        else:
            checks["service"] = "not started (or stopping)"
        failed = sorted(name for name, result in checks.items() if result != "ok")
        body: dict[str, Any] = {
            "status": "unavailable" if failed else "ok",
            "failed": failed,
            "checks": checks,
        }
        refusals = [checks[name] for name in failed if name in self._refused]
        if refusals:
            body["status"] = "refused"
            body["refused"] = refusals[0]
        elif not self.started and self.starting is not None:
            body["status"] = "starting"
            body["starting"] = self.starting
        return body, failed

    async def _metrics_page(self, request: web.Request) -> web.Response:
        if self._metrics is None:
            return web.Response(status=404, text="no metrics\n")
        await self._metrics.refresh()
        # Readiness as a metric too, for alerts that outlive a probe's restarts (cached checks).
        _, failed = await self._status()
        self._metrics.ready.set(0 if failed else 1)
        body = generate_latest(self._metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
