"""Freezing a server (SIGSTOP) so that it is frozen when the call returns.

``kill(pid, SIGSTOP)`` returns before the process stops. One thread of a multi-threaded process
(Tansu's runtime, a JVM) takes the signal when it is next scheduled and only then asks the
others to stop; until they do, they go on serving. On a loaded machine that is hundreds of
milliseconds: a test that froze a broker saw it answer a request sent after the freeze (4 of
13 runs). :func:`freeze` waits until every thread is stopped, read from ``/proc``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

_NOT_RUNNING = frozenset("TtZX")
"""Thread states of ``/proc/<pid>/task/<tid>/stat`` that run no code: stopped, traced, dead."""


def freeze(pid: int, *, group: bool = True, within: float = 30.0) -> None:
    """SIGSTOP ``pid`` (its process group when ``group``) and return once all its threads are
    stopped (or it is gone); where there is no ``/proc``, return at once."""
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(pid, signal.SIGSTOP)
        else:
            os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + within
    while not all_stopped(pid):
        if time.monotonic() > deadline:
            raise AssertionError(f"process {pid} was not stopped {within:g} s after SIGSTOP")
        time.sleep(0.005)


def all_stopped(pid: int) -> bool:
    """Whether no thread of ``pid`` can run (true when it is gone or ``/proc`` is missing)."""
    tasks = Path(f"/proc/{pid}/task")
    if not Path("/proc/self").exists():
        return True
    try:
        threads = list(tasks.iterdir())
    except FileNotFoundError:
        return True  # the process is gone
    for thread in threads:
        try:
            stat = (thread / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue  # that thread ended
        # "tid (comm) S ...": the command may hold spaces and parentheses; the state follows
        # the last ")"
        if stat.rsplit(")", 1)[1].split()[0] not in _NOT_RUNNING:
            return False
    return True
