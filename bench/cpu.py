"""CPU seconds per kind of process on this machine, between two snapshots (from /proc)."""

from __future__ import annotations

import os
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")
_KINDS = (
    ("genres run classifier", "classifier"),
    ("multiprocessing.forkserver", "local_model_workers"),
    ("genres run projector", "projector"),
    ("fake_replicate", "fake_replicate"),
    ("tansu", "broker"),
    ("kafka.Kafka", "broker"),
    ("postgres", "postgresql"),
    ("bench", "bench"),
)

Snapshot = tuple[dict[int, tuple[str, float]], float, float]


def _kind(pid: int) -> str:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "other"
    for needle, kind in _KINDS:
        if needle in cmdline:
            return kind
    return "other"


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (OSError once it is gone)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _processes() -> dict[int, tuple[str, float]]:
    found: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            found[int(entry.name)] = (_kind(int(entry.name)), cpu_seconds(int(entry.name)))
        except OSError:
            continue
    return found


def _machine() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / _TICK, sum(values) / _TICK


def cpu_snapshot() -> Snapshot:
    busy, total = _machine()
    return _processes(), busy, total


def cpu_used_since(before: Snapshot) -> dict[str, float]:
    """CPU seconds per kind since ``before``, plus the machine's busy share (0..1)."""
    then, busy_then, total_then = before
    now, busy_now, total_now = cpu_snapshot()
    used: dict[str, float] = {}
    for pid, (kind, seconds) in now.items():
        start = then.get(pid, (kind, 0.0))[1]
        used[kind] = used.get(kind, 0.0) + seconds - start
    result = {kind: round(seconds, 2) for kind, seconds in sorted(used.items())}
    result["machine_busy_share"] = round(
        (busy_now - busy_then) / max(1e-9, total_now - total_then), 3
    )
    return result
