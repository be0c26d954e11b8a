"""The reaper stops what a process started from a watched path, and deletes the path, when
that process dies by SIGKILL; a path the process forgot is left alone."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

PARENT = textwrap.dedent(
    """
    import subprocess, sys, time
    from genres.embedded import reaper

    watched, forgotten = sys.argv[1], sys.argv[2]
    reaper.watch(watched)
    reaper.watch(forgotten)
    reaper.forget(forgotten)
    # A daemon as pg_ctl makes one: not our child, its command line names the watched path.
    subprocess.Popen(["sleep", "300", watched], start_new_session=True)
    print("ready", flush=True)
    time.sleep(300)
    """
)


def _running(path: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if str(path).encode() in argv and state not in {"Z", "X"}:
                found.append(int(entry.name))
    return found


def test_a_killed_parent_leaves_nothing_running_from_a_watched_path() -> None:
    with tempfile.TemporaryDirectory() as root:
        watched = Path(root, "watched")
        forgotten = Path(root, "forgotten")
        watched.mkdir()
        forgotten.mkdir()
        parent = subprocess.Popen(
            [sys.executable, "-c", PARENT, str(watched), str(forgotten)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert parent.stdout is not None
        assert parent.stdout.readline() == "ready\n"
        daemons = _running(watched)
        assert daemons, "the daemon did not start"

        parent.send_signal(signal.SIGKILL)
        parent.wait(5)
        parent.stdout.close()  # else the garbage collector reports the pipe unclosed
        deadline = time.monotonic() + 10
        while (_running(watched) or watched.exists()) and time.monotonic() < deadline:
            time.sleep(0.1)

        assert _running(watched) == []
        assert not watched.exists()
        assert forgotten.exists()
