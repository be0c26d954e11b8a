"""``bench folder``: ``genres classify DIR --json`` on a folder of real 30-second clips.

    uv run python -m bench folder [--clips 60] [--seconds 30] [--dir /tmp/genres-bench-clips]

Makes the clips once (``bench/clips.py``: Debian's wesnoth music when unpacked, else the
packaged samples), runs the command as a process with the local backend and reports files per
second (the whole command: start, model loading, every file), CPU seconds per file over the
command's process tree (sampled from /proc, so the figure holds on a busy machine), the exit
code and the lines, and the 1-minute load average before and after (the machine is shared).
Target: at least 4 files/s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.clips import made_from, make_clips
from bench.cpu import cpu_seconds
from bench.infra import report

TARGET_FILES_PER_S = 4.0


def descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat[1])
    found = {root}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in found and pid not in found:
                found.add(pid)
                grew = True
    return found


class TreeCpu:
    """The CPU seconds of a process and its descendants, each last seen alive (0.2 s apart)."""

    def __init__(self, root: int) -> None:
        self._root = root
        self._seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            for pid in descendants(self._root):
                try:
                    self._seen[pid] = cpu_seconds(pid)
                except OSError:
                    continue

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return sum(self._seen.values())


def run(args: argparse.Namespace) -> dict[str, Any]:
    directory = Path(args.dir)
    clips = make_clips(directory, args.clips, args.seconds)
    env = os.environ | {"CLASSIFIER_BACKEND": "local", "LOG_LEVEL": "WARNING"}
    if args.workers:
        env["LOCAL_WORKERS"] = str(args.workers)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    process = subprocess.Popen(
        ["genres", "classify", str(directory), "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    tree = TreeCpu(process.pid)
    out, err = process.communicate(timeout=args.timeout)
    elapsed = time.perf_counter() - started
    cpu = tree.stop()
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    failed = [line for line in lines if "error" in line]
    return {
        "files": len(clips),
        "clip_seconds": args.seconds,
        "music": made_from(directory),
        "lines": len(lines),
        "failed": len(failed),
        "exit_code": process.returncode,
        "wall_s": round(elapsed, 2),
        "files_per_s": round(len(lines) / elapsed, 2),
        "target_files_per_s": TARGET_FILES_PER_S,
        "cpu_s_per_file": round(cpu / max(1, len(lines)), 3),
        "cores": os.cpu_count(),
        "load_average_1m_before": round(load_before, 2),
        "load_average_1m_after": round(os.getloadavg()[0], 2),
        "stderr_tail": err.strip().splitlines()[-3:],
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench folder", description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=60)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--dir", default="/tmp/genres-bench-clips")
    p.add_argument("--workers", type=int, default=0, help="LOCAL_WORKERS (default: the cores)")
    p.add_argument("--timeout", type=float, default=900)
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    result = run(args)
    return report(
        result,
        f"genres classify DIR on {result['files']} clips of {args.seconds:g} s: "
        f"{result['files_per_s']} files/s (target {TARGET_FILES_PER_S}), "
        f"{result['cpu_s_per_file']} CPU s per file, {result['failed']} failed, "
        f"exit {result['exit_code']}; load average {result['load_average_1m_before']} -> "
        f"{result['load_average_1m_after']} on {result['cores']} cores",
    )


if __name__ == "__main__":
    main()
