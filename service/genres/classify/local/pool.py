"""The embedded model in worker processes, so one classifier process uses every core.

Decoding, the front end and the model are CPU-bound, and the first two hold the GIL for much of
their time: threads in one process do not scale past about one core. ``ModelPool`` runs
``analyse`` in ``workers`` processes (default: the cores this process may run on), each with
the model loaded once and one onnxruntime thread, so N tracks use N cores without the threads
of N sessions fighting over them. Work is handed over as a path or the downloaded bytes (a
spooled temporary file cannot cross a process boundary) and at most ``workers`` analyses are
submitted at a time, so nothing queues inside the executor and memory stays bounded: the
callers wait here, on an asyncio semaphore.

Processes start with ``forkserver`` (``spawn`` where there is none): forking a process that
runs an event loop and HTTP clients' threads is unsafe, and the fork server, which preloads
the model's modules, makes a worker's start cheap. A worker that dies (a decoder crash) breaks
the executor: the tracks it held (the others' too: which one crashed cannot be told) fail as
internal errors, and a new executor replaces it for the next ones.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING

from genres.classify.local.length import MIN_SECONDS
from genres.errors import AudioError
from genres_contracts import FailureKind

if TYPE_CHECKING:
    from genres.classify.local.analysis import Analysis
    from genres.classify.local.model import MusicnnModel

_MODEL: MusicnnModel | None = None
"""The worker process's model, loaded once by its initializer."""


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS and Windows have no affinity call
        return max(1, os.cpu_count() or 1)


def _load_model() -> None:
    global _MODEL
    from genres.classify.local.model import MusicnnModel

    # One thread per process: the pool's processes are the parallelism.
    _MODEL = MusicnnModel(intra_op_threads=1).load()


def analyse_in_worker(
    source: str | bytes, max_seconds: float | None, windows: int | None, min_seconds: float
) -> Analysis:
    """``analysis.analyse`` with the worker's model (what the pool's workers run)."""
    from genres.classify.local.analysis import analyse

    if _MODEL is None:  # pragma: no cover - the initializer always ran
        raise RuntimeError("the worker's model is not loaded")
    return analyse(
        source, _MODEL, windows=windows, max_seconds=max_seconds, min_seconds=min_seconds
    )


def _context() -> multiprocessing.context.BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["genres.classify.local.analysis"])
        return context
    return multiprocessing.get_context("spawn")  # pragma: no cover - not Linux


class ModelPool:
    """``workers`` processes analysing audio; create inside the event loop, ``aclose`` it."""

    def __init__(
        self,
        workers: int | None = None,
        *,
        task: Callable[[str | bytes, float | None, int | None, float], Analysis] = (
            analyse_in_worker
        ),
    ) -> None:
        """``task``: what a worker runs (a module-level function; tests make workers die)."""
        self._task = task
        self.workers = workers if workers is not None else available_cores()
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        self._slots = asyncio.Semaphore(self.workers)
        self._executor = self._start()
        self._closed = False

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers, mp_context=_context(), initializer=_load_model
        )

    async def analyse(
        self,
        source: str | bytes,
        *,
        max_seconds: float | None,
        windows: int | None = None,
        min_seconds: float = MIN_SECONDS,
    ) -> Analysis:
        """``analyse`` in a worker. Cancelling waits for the worker's track to end (a process
        cannot be told to stop mid-track without killing it), so the slot is freed in order."""
        if self._closed:
            raise RuntimeError("the model pool is closed")
        async with self._slots:
            loop = asyncio.get_running_loop()
            executor = self._executor
            args = (source, max_seconds, windows, min_seconds)
            try:
                future = loop.run_in_executor(executor, self._task, *args)
            except BrokenProcessPool:  # broken under an earlier track: a new one takes this
                executor = self._replace(executor)
                future = loop.run_in_executor(executor, self._task, *args)
            try:
                return await asyncio.shield(future)
            except asyncio.CancelledError:
                await asyncio.wait([future])
                raise
            except BrokenProcessPool:
                self._replace(executor)
                raise AudioError(
                    "the model's worker process died on this audio", kind=FailureKind.INTERNAL
                ) from None

    def _replace(self, broken: ProcessPoolExecutor) -> ProcessPoolExecutor:
        """A new executor for a broken one (once, whichever of its tracks gets here first)."""
        if self._executor is broken and not self._closed:
            broken.shutdown(wait=False, cancel_futures=True)
            self._executor = self._start()
        return self._executor

    async def aclose(self) -> None:
        """Stops the workers (after the tracks they hold)."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
