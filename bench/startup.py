"""``bench startup``: how long ``genres`` takes to answer, as whole processes.

Runs the installed ``genres`` script (next to this Python) ``--runs`` times per case and prints
the median and the slowest run's wall time, and the median CPU time (user + system) of the
process, in milliseconds; on a busy machine the CPU time is what the wall time would be on an
idle one (start-up is single-threaded and never waits on anything else). Cases: ``--help``,
each command's ``--help``, and the mistakes a user makes first (a wrong argument, a missing
or invalid setting, a missing file).
Targets (issue 15): help under 300 ms, every mistake under 500 ms. The service's variables are
removed from the environment, so each case sees only what it sets. ``PYTHONDONTWRITEBYTECODE``
is removed too: a warm-up run per case writes the bytecode caches, as any first run of an
installed program does (``pip`` and ``uv sync --compile-bytecode`` write them at install);
without them every run compiles pydantic again (about three times slower). Also prints the load
average, since other work on the machine adds to every figure.

    uv run python -m bench startup [--runs 15]

The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

GENRES = str(Path(sys.executable).with_name("genres"))
COMMANDS = ("run", "migrate", "classify", "recommend", "backfill", "demo", "schema")
HELP_MS = 300.0
MISTAKE_MS = 500.0

CASES: list[tuple[str, list[str], dict[str, str], float]] = [
    ("--help", ["--help"], {}, HELP_MS),
    *((f"{c} --help", [c, "--help"], {}, HELP_MS) for c in COMMANDS),
    ("unknown command", ["janitor"], {}, MISTAKE_MS),
    ("unknown role", ["run", "janitor"], {}, MISTAKE_MS),
    ("out-of-range option", ["recommend", "1", "--limit", "99"], {}, MISTAKE_MS),
    ("missing setting (run all)", ["run", "all"], {}, MISTAKE_MS),
    ("missing setting (backfill --dry-run)", ["backfill", "--dry-run"], {}, MISTAKE_MS),
    (
        "invalid setting",
        ["run", "all"],
        {
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
            "DATABASE_URL": "postgresql://127.0.0.1:9/x",
            "CLASSIFIER_CONCURRENCY": "many",
        },
        MISTAKE_MS,
    ),
    ("missing file (classify)", ["classify", "/nonexistent/song.mp3"], {}, MISTAKE_MS),
    ("missing file (demo)", ["demo", "/nonexistent/song.mp3"], {}, MISTAKE_MS),
]


def environment(extra: dict[str, str]) -> dict[str, str]:
    prefixes = ("REPLICATE_", "KAFKA_", "GENRES_", "CLASSIFIER_", "DATABASE_", "AUDIO_")
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith(prefixes) and k != "PYTHONDONTWRITEBYTECODE"
    }
    return base | extra


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(
    args: list[str], env: dict[str, str], runs: int
) -> tuple[list[float], list[float], int]:
    """Wall and CPU milliseconds of each run, and the last exit code."""
    walls, cpus, code = [], [], 0
    for _ in range(runs):
        cpu = cpu_of_children()
        start = time.perf_counter()
        done = subprocess.run(
            [GENRES, *args], env=environment(env), capture_output=True, check=False
        )
        walls.append((time.perf_counter() - start) * 1000)
        cpus.append((cpu_of_children() - cpu) * 1000)
        code = done.returncode
    return walls, cpus, code


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench startup", description=__doc__)
    parser.add_argument("--runs", type=int, default=15, help="runs per case (default 15)")
    options = parser.parse_args()
    results = []
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} cores")
    print(f"{'case':38} {'exit':>4} {'wall ms':>8} {'max ms':>7} {'CPU ms':>7} {'target':>7}")
    for name, args, env, target in CASES:
        measure(args, env, 1)  # warm the file cache, write the bytecode caches
        walls, cpus, code = measure(args, env, options.runs)
        wall, cpu = statistics.median(walls), statistics.median(cpus)
        flag = "" if wall < target else "  over (wall)" if cpu < target else "  OVER"
        print(
            f"{name:38} {code:>4} {wall:>8.0f} {max(walls):>7.0f} {cpu:>7.0f} {target:>7.0f}{flag}"
        )
        results.append(
            {"case": name, "exit": code, "wall_ms": round(wall, 1), "cpu_ms": round(cpu, 1)}
        )
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(json.dumps({"bench": "startup", "runs": options.runs, "results": results}))


if __name__ == "__main__":
    main()
