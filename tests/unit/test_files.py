"""``genres classify PATH...``: path expansion and the bounded, failure-tolerant batch."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from genres.classify.port import Checkpoint, Classification, Timings
from genres.cli.batch import Missing, Outcome, classify_many, expand
from genres.errors import AudioError
from genres_contracts import FailureKind, ModelRef, Prediction

MODEL = ModelRef(name="fake", version="1")


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_folders_are_searched_recursively_for_audio_sorted(tmp_path: Path) -> None:
    for name in ("b.mp3", "a.FLAC", "notes.txt", "cover.jpg", "sub/c.ogg", "sub/deep/d.wav"):
        touch(tmp_path / name)
    assert list(expand([str(tmp_path)])) == [
        str(tmp_path / "a.FLAC"),
        str(tmp_path / "b.mp3"),
        str(tmp_path / "sub" / "c.ogg"),
        str(tmp_path / "sub" / "deep" / "d.wav"),
    ]


def test_hidden_files_and_folders_are_skipped(tmp_path: Path) -> None:
    touch(tmp_path / "._a.mp3")  # macOS resource forks look like audio
    touch(tmp_path / ".cache" / "b.mp3")
    keep = touch(tmp_path / "c.mp3")
    assert list(expand([str(tmp_path)])) == [str(keep)]


def test_files_and_urls_are_taken_as_given_in_order(tmp_path: Path) -> None:
    text = touch(tmp_path / "track.bin")  # named explicitly: whatever its extension
    folder = tmp_path / "album"
    song = touch(folder / "1.mp3")
    url = "https://cdn.example/x.mp3"
    assert list(expand([url, str(text), str(folder)])) == [url, str(text), str(song)]


def test_a_missing_path_is_an_item_not_an_error(tmp_path: Path) -> None:
    gone = str(tmp_path / "nope.mp3")
    song = touch(tmp_path / "a.mp3")
    assert list(expand([gone, str(song)])) == [Missing(gone), str(song)]


def test_expansion_is_lazy(tmp_path: Path) -> None:
    touch(tmp_path / "a.mp3")
    items = expand([str(tmp_path), str(tmp_path / "later.mp3")])
    assert next(items) == str(tmp_path / "a.mp3")
    touch(tmp_path / "later.mp3")  # created after the folder was listed: still found
    assert next(items) == str(tmp_path / "later.mp3")


class FakeClassifier:
    """Fails on names containing "bad"; records how many run at once."""

    model = MODEL

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self.release = asyncio.Event()

    async def classify(self, audio: str, checkpoint: Checkpoint | None = None) -> Classification:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            if "bad" in audio:
                raise AudioError(f"{audio}: unreadable", kind=FailureKind.AUDIO_UNREADABLE)
            return Classification(
                predictions=(Prediction(name="rock", confidence=0.5),),
                model=MODEL,
                timings=Timings(total=0.0),
            )
        finally:
            self.running -= 1

    async def aclose(self) -> None:
        return None


async def test_failures_are_reported_and_the_batch_goes_on() -> None:
    classifier = FakeClassifier()
    seen: list[Outcome] = []
    sources = ["a.mp3", "bad.mp3", Missing("gone.mp3"), "b.mp3"]
    done, failed = await classify_many(classifier, sources, in_flight=2, on_outcome=seen.append)
    assert (done, failed) == (2, 2)
    by_source = {o.source: o.as_json() for o in seen}
    assert set(by_source) == {"a.mp3", "bad.mp3", "gone.mp3", "b.mp3"}
    assert by_source["a.mp3"]["predictions"] == [{"name": "rock", "confidence": 0.5}]
    assert by_source["a.mp3"]["model"] == {"name": "fake", "version": "1"}
    assert "error" not in by_source["a.mp3"]
    assert by_source["bad.mp3"]["error"] == {
        "kind": "audio_unreadable",
        "message": "bad.mp3: unreadable",
    }
    assert "no such file" in by_source["gone.mp3"]["error"]["message"]
    assert all("seconds" in line for line in by_source.values())


async def test_at_most_in_flight_run_at_once_and_sources_are_pulled_lazily() -> None:
    classifier = FakeClassifier()
    pulled = 0

    def sources() -> object:
        nonlocal pulled
        for i in range(50):
            pulled += 1
            # Never more than the window ahead of what has finished.
            assert pulled - finished <= 3 + 1
            yield f"{i}.mp3"

    finished = 0

    def count(_: Outcome) -> None:
        nonlocal finished
        finished += 1

    done, failed = await classify_many(
        classifier,
        sources(),  # type: ignore[arg-type]
        in_flight=3,
        on_outcome=count,
    )
    assert (done, failed) == (50, 0)
    assert classifier.most == 3


async def test_urls_only_backends_fail_paths_without_calling_the_backend() -> None:
    classifier = FakeClassifier()
    seen: list[Outcome] = []
    done, failed = await classify_many(
        classifier,
        ["song.mp3", "https://cdn.example/a.mp3"],
        in_flight=4,
        on_outcome=seen.append,
        urls_only=True,
    )
    assert (done, failed) == (1, 1)
    errors = [o for o in seen if o.error is not None]
    assert errors[0].source == "song.mp3"
    assert "http(s) URLs" in errors[0].error.message  # type: ignore[union-attr]
    assert classifier.most == 1


async def test_in_flight_must_be_positive() -> None:
    with pytest.raises(ValueError, match="in_flight"):
        await classify_many(FakeClassifier(), [], in_flight=0, on_outcome=lambda _: None)
