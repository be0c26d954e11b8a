"""Running ``genres`` as its own process, the way operators and other teams do."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

GENRES = str(Path(sys.executable).with_name("genres"))


def environment(extra: Mapping[str, str]) -> dict[str, str]:
    """The current environment without the service's variables, plus ``extra``."""
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("REPLICATE_", "KAFKA_", "GENRES_", "CLASSIFIER_", "DATABASE_"))
    }
    # No health server unless a test asks: several processes run side by side.
    return base | {"LOG_FORMAT": "console", "HEALTH_PORT": "0"} | dict(extra)


def run_genres(
    *args: str, env: Mapping[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GENRES, *args],
        env=environment(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_together(
    *runs: tuple[Sequence[str], Mapping[str, str]], timeout: float = 60
) -> list[subprocess.CompletedProcess[str]]:
    """Independent ``genres`` runs (arguments, environment) side by side, in their order:
    a test that waits on several slow answers waits for the slowest only."""
    with ThreadPoolExecutor(len(runs)) as pool:
        return list(pool.map(lambda run: run_genres(*run[0], env=run[1], timeout=timeout), runs))


async def start_genres(*args: str, env: Mapping[str, str], log: Path) -> asyncio.subprocess.Process:
    """Start ``genres *args`` with its output appended to ``log``."""
    # The child writes to its own copy of the descriptor: ours is closed once it runs.
    with log.open("ab") as handle:
        return await asyncio.create_subprocess_exec(
            GENRES, *args, env=environment(env), stdout=handle, stderr=subprocess.STDOUT
        )


async def stop(
    process: asyncio.subprocess.Process, sig: int = signal.SIGTERM, timeout: float = 60
) -> int:
    if process.returncode is None:
        process.send_signal(sig)
    return await asyncio.wait_for(process.wait(), timeout)
