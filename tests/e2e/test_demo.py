"""``genres demo``: the whole job on embedded defaults, with no servers configured."""

from __future__ import annotations

import re
import signal
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
from tests.support.process import run_genres


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
    rows = re.findall(r"│ ([a-z][a-z &'/-]*?)\s+│ (0\.\d{4}) │", out)
    assert 1 <= len(rows) <= 5
    scores = [float(score) for _, score in rows]
    assert scores == sorted(scores, reverse=True)
    assert rows[0][0] == "electronic"  # an electronic drum-and-synth loop
    assert started, "no embedded server found"
    assert not [pid for pid in started if alive(pid)]


def test_a_file_that_is_not_audio_fails_in_one_line_within_seconds(tmp_path: Path) -> None:
    notes = tmp_path / "notes.mp3"
    notes.write_text("shopping: milk, eggs\n")
    with private_tmp() as servers:
        started = time.monotonic()
        result = run_genres("demo", str(notes), env={"TMPDIR": str(servers)}, timeout=240)
        elapsed = time.monotonic() - started
        assert wait_until(lambda: not leftovers(servers), within=5), leftovers(servers)

    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "audio_unreadable" in lines[0]
    assert "track 1" in lines[0]
    # Not the projection's 120 s deadline: the classifier's ClassificationFailed ends it.
    assert elapsed < 90, elapsed
    assert result.stdout.startswith("genres demo on notes.mp3")


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
