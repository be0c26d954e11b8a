"""``genres classify`` on a folder, as a process: a line per file, failures included."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from tests.support.process import run_genres

SAMPLES = Path(__file__).resolve().parents[2] / "service" / "genres" / "samples"
LOCAL = {"CLASSIFIER_BACKEND": "local", "LOCAL_WORKERS": "2"}


def test_a_folder_gives_a_json_line_per_file_and_a_bad_file_fails_alone(tmp_path: Path) -> None:
    album = tmp_path / "album"
    (album / "disc 2").mkdir(parents=True)
    good = [album / "loop.flac", album / "disc 2" / "drone.flac"]
    shutil.copy(SAMPLES / "loop_garzul.flac", good[0])
    shutil.copy(SAMPLES / "ambi_drone.flac", good[1])
    bad = album / "broken.mp3"
    bad.write_bytes(b"ID3 but no mp3 frames at all " * 100)
    (album / "cover.jpg").write_bytes(b"\xff\xd8 not audio")  # not an audio extension: skipped
    missing = tmp_path / "nowhere"

    result = run_genres("classify", str(album), str(missing), "--json", env=LOCAL, timeout=120)

    assert result.returncode == 1, result.stderr
    lines = {line["path"]: line for line in map(json.loads, result.stdout.splitlines())}
    assert set(lines) == {str(good[0]), str(good[1]), str(bad), str(missing)}
    for path in good:
        line = lines[str(path)]
        assert "error" not in line
        assert line["model"]["name"] == "musicnn/msd+mtt"
        assert len(line["predictions"]) == 10
        assert line["seconds"] > 0
    assert lines[str(good[0])]["predictions"][0]["name"] == "electronic"
    assert lines[str(good[1])]["predictions"][0]["name"] == "ambient"
    assert lines[str(bad)]["error"]["kind"] == "audio_unreadable"
    assert "predictions" not in lines[str(bad)]
    assert "no such file" in lines[str(missing)]["error"]["message"]


def test_all_good_exits_zero_with_a_line_per_file_and_a_summary(tmp_path: Path) -> None:
    shutil.copy(SAMPLES / "loop_garzul.flac", tmp_path / "a.flac")
    shutil.copy(SAMPLES / "ambi_drone.flac", tmp_path / "b.flac")

    result = run_genres("classify", str(tmp_path), env=LOCAL, timeout=120)

    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    # Lines come as files finish, each naming its file.
    by_path = dict(line.split(": ", 1) for line in out)
    assert sorted(by_path) == [str(tmp_path / "a.flac"), str(tmp_path / "b.flac")]
    assert by_path[str(tmp_path / "a.flac")].startswith("electronic ")
    assert by_path[str(tmp_path / "b.flac")].startswith("ambient ")
    assert "2 classified, 0 failed" in result.stderr


def test_one_file_keeps_the_documented_json_object() -> None:
    result = run_genres(
        "classify", str(SAMPLES / "ambi_drone.flac"), "--json", env=LOCAL, timeout=120
    )

    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    payload = json.loads(line)
    assert {"predictions", "model"} <= payload.keys()
    assert payload["predictions"][0]["name"] == "ambient"
    assert set(payload["predictions"][0]) == {"name", "confidence"}
    assert payload["model"]["name"] == "musicnn/msd+mtt"


def test_a_folder_without_audio_is_an_error_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / "cover.jpg").write_bytes(b"\xff\xd8 not audio")

    result = run_genres("classify", str(tmp_path), env=LOCAL, timeout=120)

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == f"error: no audio files found in {tmp_path}\n"


def test_one_file_is_a_table_of_name_and_confidence_and_says_what_its_times_are(
    tmp_path: Path,
) -> None:
    broken = tmp_path / "broken.mp3"
    broken.write_bytes(b"ID3 but no mp3 frames at all " * 100)

    good = run_genres("classify", str(SAMPLES / "ambi_drone.flac"), env=LOCAL, timeout=120)
    bad = run_genres("classify", str(broken), env=LOCAL, timeout=120)

    assert good.returncode == 0, good.stderr
    header = next(line for line in good.stdout.splitlines() if "#" in line)
    assert [cell.strip() for cell in header.strip("┃ ").split("┃")] == ["#", "name", "confidence"]
    assert re.search(
        r"classified in \d+\.\d\ds; \d+\.\d\ds with starting the classifier", good.stdout
    )
    assert bad.returncode == 1
    [line] = bad.stderr.splitlines()
    assert line.startswith(f"error: {broken}: ")
