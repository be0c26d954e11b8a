"""A process that cleans up after this one however it ends, ``SIGKILL`` included.

``pg_ctl start`` daemonises PostgreSQL: the embedded server is not our child, so neither
``PR_SET_PDEATHSIG`` nor an ``atexit`` hook stops it when ``genres demo`` or ``genres dev up``
is killed outright (``kill -9``, the OOM killer, a CI timeout). The reaper is a small process
in a session of its own that reads paths from a pipe whose only writer is its parent. The
kernel closes that pipe when the parent dies, however it dies; on end of file the reaper
stops every process whose command line names a watched path (``SIGQUIT``: PostgreSQL's
immediate shutdown, in which the postmaster ends its children; ``SIGKILL`` after a grace) and
deletes the path. A parent that cleaned a path itself says ``forget``.

This file runs as a script (``python -I reaper.py``): it imports the standard library only.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

_GRACE_SECONDS = 3.0

_lock = threading.Lock()
_process: subprocess.Popen[bytes] | None = None


def watch(path: str | os.PathLike[str]) -> None:
    """On this process's death, stop whatever runs from ``path`` and delete it."""
    _send(f"watch {os.fspath(path)}\n")


def forget(path: str | os.PathLike[str]) -> None:
    """``path`` was cleaned by this process: nothing left to do for it."""
    _send(f"forget {os.fspath(path)}\n")


def _send(line: str) -> None:
    global _process
    with _lock:
        if _process is None or _process.poll() is not None:
            _process = subprocess.Popen(
                [sys.executable, "-I", __file__],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                # Its parent's terminal or pipe may be gone when it works: never write there.
                stderr=subprocess.DEVNULL,
                # Out of the parent's process group: a signal to the group spares it.
                start_new_session=True,
            )
            atexit.register(_close, _process)
        stdin: IO[bytes] | None = _process.stdin
        assert stdin is not None
        stdin.write(line.encode())
        stdin.flush()


def _close(process: subprocess.Popen[bytes]) -> None:
    """At a normal exit, end of file now: the reaper cleans what was not forgotten and ends,
    instead of outliving the interpreter as a process it never waited for."""
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=_GRACE_SECONDS + 2)


# ---------------------------------------------------------------------------- the reaper side


def _command_lines() -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    proc = Path("/proc")
    if proc.is_dir():
        for entry in proc.iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    raw = (entry / "cmdline").read_bytes()
                    found[int(entry.name)] = raw.decode(errors="replace").split("\0")
        return found
    listing = subprocess.run(["ps", "-axo", "pid=,args="], capture_output=True, text=True)
    for line in listing.stdout.splitlines():
        pid, _, args = line.strip().partition(" ")
        if pid.isdigit():
            found[int(pid)] = args.split()
    return found


def _running_from(path: str) -> list[int]:
    return [
        pid
        for pid, argv in _command_lines().items()
        if pid != os.getpid() and any(arg == path or arg.startswith(path + os.sep) for arg in argv)
    ]


def _reap(path: str) -> None:
    pids = _running_from(path)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGQUIT)
    deadline = time.monotonic() + _GRACE_SECONDS
    while pids and time.monotonic() < deadline:
        time.sleep(0.05)
        pids = _running_from(path)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    # Ctrl-C in the parent's terminal is for the parent: it must still be cleaned up after.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watched: list[str] = []
    for raw in sys.stdin.buffer:  # until the parent's end closes, however the parent ended
        command, _, path = raw.decode(errors="replace").rstrip("\n").partition(" ")
        if command == "watch":
            watched.append(path)
        elif command == "forget" and path in watched:
            watched.remove(path)
    for path in reversed(watched):
        _reap(path)


if __name__ == "__main__":
    main()
