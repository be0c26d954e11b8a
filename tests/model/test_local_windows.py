"""A bounded cost per track: windows spread across the track, reached by seeking.

The fixtures are made at run time, once per module (encoding a minute of mp3 takes about a
second): a tone whose amplitude rises linearly over the track, so a window's level says where
in the track it was taken from.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

import av
import numpy as np
import pytest

from genres.classify.local import audio
from genres.classify.local.analysis import WINDOW_SAMPLES, analyse
from genres.classify.local.model import MusicnnModel
from genres.config import Settings
from genres.errors import AudioError
from genres_contracts import FailureKind
from tests.support.audio import write_stereo

RATE = 44_100
SECONDS = 60.0
LOW, HIGH = 0.1, 0.8

# name -> (container format, codec)
FORMATS = {
    "wav": ("wav", "pcm_s16le"),
    "flac": ("flac", "flac"),
    "ogg": ("ogg", "vorbis"),
    "mp3": ("mp3", "libmp3lame"),
}


def amplitude(seconds: float, length: float = SECONDS) -> float:
    return LOW + (HIGH - LOW) * seconds / length


def write_ramp(path: Path, name: str, seconds: float = SECONDS) -> Path:
    """A 440 Hz stereo tone whose amplitude goes from LOW to HIGH over ``seconds``."""
    container_format, codec = FORMATS[name]
    total = int(seconds * RATE)

    def blocks() -> Iterator[np.ndarray]:
        for start in range(0, total, 8192):
            t = np.arange(start, min(total, start + 8192)) / RATE
            mono = (amplitude(t, seconds) * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
            yield np.stack([mono, mono])

    return write_stereo(
        path,
        blocks(),
        rate=RATE,
        container_format=container_format,
        codec=codec,
        options={"strict": "experimental"},
    )


@pytest.fixture(scope="module")
def ramp(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``ramp(name)``: the minute-long ramp as that format's file, encoded once per module."""
    folder = tmp_path_factory.mktemp("ramps")
    return cache(lambda name: write_ramp(folder / f"ramp.{name}", name))


@pytest.fixture(scope="module")
def model() -> MusicnnModel:
    return MusicnnModel()


@pytest.mark.parametrize("name", list(FORMATS))
def test_windows_are_spread_evenly_across_the_track(ramp: Callable[[str], Path], name: str) -> None:
    track = ramp(name)
    windows = audio.sample_windows(track, count=5, window_samples=WINDOW_SAMPLES)
    assert windows is not None
    assert [len(w) for w in windows] == [WINDOW_SAMPLES] * 5
    # The same stretches cut from the whole track, decoded from its start: a codec's gain
    # (mp3 comes out ~5% quieter) does not matter, a window taken from elsewhere would.
    whole = audio.decode(track)
    starts = [
        round(((i + 0.5) / 5 * SECONDS) * audio.SAMPLE_RATE) - WINDOW_SAMPLES // 2 for i in range(5)
    ]
    expected = [level(whole[s : s + WINDOW_SAMPLES]) for s in starts]
    np.testing.assert_allclose([level(w) for w in windows], expected, rtol=0.01)
    # And they are where the ramp says (a sanity check on the fixture itself).
    ramp = [amplitude((i + 0.5) / 5 * SECONDS) for i in range(5)]
    np.testing.assert_allclose(expected, ramp, rtol=0.06)


def level(samples: np.ndarray) -> float:
    """The amplitude of a steady sine: its RMS times sqrt(2)."""
    return float(np.sqrt(2 * np.mean(samples.astype(np.float64) ** 2)))


def test_short_tracks_and_unseekable_files_are_not_sampled(
    tmp_path: Path, ramp: Callable[[str], Path]
) -> None:
    """``None`` tells the caller to decode from the start instead."""
    short = write_ramp(tmp_path / "short.wav", "wav", seconds=20.0)  # < 2 x 4 windows x 3 s
    assert audio.sample_windows(short, count=4, window_samples=WINDOW_SAMPLES) is None

    class Pipe(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
            return self._data.readinto(buffer)

    long = ramp("wav").read_bytes()
    assert audio.sample_windows(Pipe(long), count=4, window_samples=WINDOW_SAMPLES) is None


def test_a_file_object_is_left_where_it_was(ramp: Callable[[str], Path]) -> None:
    data = ramp("ogg").read_bytes()
    fileobj = io.BytesIO(data)
    assert audio.sample_windows(fileobj, count=3, window_samples=WINDOW_SAMPLES) is not None
    assert fileobj.tell() == 0
    assert len(audio.decode(fileobj)) > 50 * audio.SAMPLE_RATE


def test_a_stated_length_past_the_real_end_keeps_the_windows_that_exist(
    tmp_path: Path, ramp: Callable[[str], Path]
) -> None:
    """A truncated mp3 whose header still states the whole length (a cut-short download)."""
    data = ramp("mp3").read_bytes()
    truncated = tmp_path / "truncated.mp3"
    truncated.write_bytes(data[: len(data) // 2])
    with av.open(str(truncated)) as container:
        assert audio.duration_seconds(container) == pytest.approx(SECONDS, abs=0.1)
    windows = audio.sample_windows(truncated, count=4, window_samples=WINDOW_SAMPLES)
    assert windows is not None
    assert len(windows) == 2  # the windows at 1/8 and 3/8 of the stated length


def test_a_sampled_track_with_a_window_missing_is_judged_truncated(
    tmp_path: Path, ramp: Callable[[str], Path], model: MusicnnModel
) -> None:
    """The windows past the real end of a cut-short download are missing: the track is
    decoded from its start, found to hold half of what its header states, and fails."""
    data = ramp("mp3").read_bytes()
    with pytest.raises(AudioError) as failed:
        analyse(data[: len(data) // 2], model, windows=4)
    assert failed.value.kind is FailureKind.AUDIO_TRUNCATED


def test_analyse_runs_the_model_on_the_sampled_windows_only(
    ramp: Callable[[str], Path], model: MusicnnModel
) -> None:
    sampled = analyse(ramp("mp3"), model, windows=4)  # of the minute's 20
    assert sampled.patches == 4
    assert sampled.audio_seconds == pytest.approx(4 * WINDOW_SAMPLES / audio.SAMPLE_RATE)
    assert sampled.scores.shape == (len(model.tags),)


def test_unseekable_input_is_decoded_and_windows_are_picked_from_it(
    ramp: Callable[[str], Path], model: MusicnnModel
) -> None:
    data = ramp("wav").read_bytes()

    class Unseekable(io.BytesIO):
        def seekable(self) -> bool:
            return False

    picked = analyse(Unseekable(data), model, windows=3)
    every = analyse(data, model, windows=None)
    assert picked.patches == 3
    assert every.patches == int(SECONDS * audio.SAMPLE_RATE / WINDOW_SAMPLES)
    assert picked.audio_seconds == every.audio_seconds == pytest.approx(SECONDS, abs=0.01)


def test_windows_must_be_positive(model: MusicnnModel) -> None:
    with pytest.raises(ValueError, match="windows"):
        analyse(b"", model, windows=0)


def test_a_cancelled_sampled_analysis_stops(
    ramp: Callable[[str], Path], model: MusicnnModel
) -> None:
    track = ramp("flac")
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Exception, match="abandoned"):
        analyse(track, model, windows=4, cancel=cancel)


def test_the_window_count_is_a_setting() -> None:
    assert Settings().local_windows == 4
    assert Settings(local_windows=0).local_windows == 0  # every window
    with pytest.raises(ValueError, match="local_windows"):
        Settings(local_windows=-1)
