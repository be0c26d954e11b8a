"""What a person reads: one vocabulary in every table, failures naming their source, replies
without tags saying why, timings saying what they measure, counts agreeing with their nouns."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from genres.classify.port import Classification, Timings
from genres.cli.batch import Missing, Outcome
from genres.cli.classify import _print_one, _summary, failure
from genres.cli.common import plural
from genres.cli.demo import DemoFailed, check_audio
from genres.cli.render import print_recommended, without_tags
from genres.errors import AudioError, ClassificationError
from genres_contracts import ModelRef, Prediction, RecommendedTags


def console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=100, force_terminal=False), out


def reply(**fields: object) -> RecommendedTags:
    return RecommendedTags.model_validate({"track_id": 7, "available": True, **fields})


def header(text: str) -> list[str]:
    row = next(line for line in text.splitlines() if "#" in line)
    return [cell.strip() for cell in row.strip("┃│ ").replace("┃", "│").split("│")]


def test_recommended_tags_are_a_table_of_name_and_confidence() -> None:
    out, text = console()
    print_recommended(out, reply(tags=[{"name": "ambient", "score": 0.5}]))
    printed = text.getvalue()
    assert printed.startswith("recommended tags for track 7\n")
    assert header(printed) == ["#", "name", "confidence"]
    assert "0.5000" in printed


def test_a_pending_reply_says_it_is_pending_and_what_to_do_not_an_empty_table() -> None:
    out, text = console()
    print_recommended(out, reply(pending=True))
    printed = text.getvalue()
    assert "pending" in printed
    assert "genres recommend 7 --wait-ms" in printed
    assert "┃" not in printed
    assert "│" not in printed


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"available": False}, "no classifier is configured"),
        ({}, "no recommended tags"),
    ],
)
def test_a_reply_without_tags_says_why(fields: dict[str, object], words: str) -> None:
    line = without_tags(reply(**fields))
    assert line is not None
    assert line.startswith("track 7: ")
    assert words in line


def classified(seconds: float) -> Classification:
    return Classification(
        predictions=(Prediction(name="ambient", confidence=0.77),),
        model=ModelRef(name="musicnn/msd+mtt", version="1"),
        timings=Timings(total=seconds),
    )


def test_one_file_s_table_uses_the_same_words_and_both_timings_say_what_they_are() -> None:
    out, text = console()
    errors, _ = console()
    code = _print_one(Outcome("a.flac", 0.41, classification=classified(0.41)), 3.2, out, errors)
    printed = text.getvalue()
    assert code == 0
    assert header(printed) == ["#", "name", "confidence"]
    assert "classified in 0.41s; 3.20s with starting the classifier" in printed


def test_one_file_s_failure_is_an_error_line_naming_the_file() -> None:
    out, _ = console()
    errors, text = console()
    outcome = Outcome("song.mp3", 0.1, error=AudioError("not a readable audio file"))
    assert _print_one(outcome, 1.0, out, errors) == 1
    assert text.getvalue() == "error: song.mp3: not a readable audio file\n"


def test_a_source_is_named_once_even_when_its_message_names_it() -> None:
    missing = Missing("nowhere")
    error = ClassificationError(f"{missing.path}: no such file or folder")
    outcome = Outcome(missing.path, 0.0, error=error)
    assert failure(outcome) == "nowhere: no such file or folder"
    assert _summary(outcome) == "nowhere: error: no such file or folder"
    other = Outcome("b.mp3", 0.0, error=AudioError("truncated"))
    assert _summary(other) == "b.mp3: error: truncated"


def test_demo_refuses_a_file_that_is_not_audio_naming_it_as_typed(tmp_path: Path) -> None:
    notes = tmp_path / "notes.mp3"
    notes.write_text("shopping: milk, eggs\n")
    with pytest.raises(DemoFailed) as refused:
        check_audio(notes, "notes.mp3")
    assert str(refused.value).startswith("notes.mp3: ")


def test_demo_accepts_the_sample() -> None:
    from genres.cli.sandbox import SAMPLE

    check_audio(SAMPLE, str(SAMPLE))


@pytest.mark.parametrize(("count", "words"), [(0, "0 tracks"), (1, "1 track"), (2, "2 tracks")])
def test_counts_agree_with_their_nouns(count: int, words: str) -> None:
    assert plural(count, "track") == words
