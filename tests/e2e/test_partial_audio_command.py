"""`genres classify` on a partial mp3 (issue 23): one line saying the file is cut short, exit 1,
no table of predictions; `--json` names the kind."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.audio import write_mp3
from tests.support.process import run_together

LOCAL = {"CLASSIFIER_BACKEND": "local", "LOCAL_WORKERS": "0"}


def test_a_partial_mp3_is_one_line_naming_the_truncation(tmp_path: Path) -> None:
    partial = tmp_path / "partial.mp3"
    partial.write_bytes(write_mp3(tmp_path / "eight.mp3", 8.0).read_bytes()[:5_000])

    plain, as_json = run_together(
        (["classify", str(partial)], LOCAL), (["classify", "--json", str(partial)], LOCAL)
    )

    assert plain.returncode == 1, plain.stderr
    assert plain.stdout == ""  # no table of predictions
    lines = plain.stderr.strip().splitlines()
    assert len(lines) == 1, plain.stderr
    assert "truncated" in lines[0]
    assert "0.29 s of the 8.00 s" in lines[0]
    assert as_json.returncode == 1, as_json.stderr
    (line,) = as_json.stdout.splitlines()
    assert json.loads(line)["error"]["kind"] == "audio_truncated"
