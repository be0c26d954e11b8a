"""Input edges (issue 23): audio too short for the model, or cut short of its stated length,
fails as ``audio_too_short`` / ``audio_truncated`` instead of being classified.

The rules on ``DecodeReport`` values first, then real files through the real decoder: an mp3
whose first 5,000 bytes are all a CDN served, with and without a header stating its length.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genres.classify.local import audio
from genres.classify.local.analysis import analyse
from genres.classify.local.length import (
    MIN_SECONDS,
    PATCH_SECONDS,
    DecodeReport,
    judge,
)
from genres.classify.local.model import MusicnnModel
from genres.config import Settings
from genres.errors import AudioError
from genres_contracts import FailureKind
from tests.support.audio import blocks_of, chord, write_mp3, write_stereo

PARTIAL_BYTES = 5_000


def kind_of(report: DecodeReport, min_seconds: float = MIN_SECONDS) -> FailureKind | None:
    try:
        judge(report, min_seconds=min_seconds)
    except AudioError as exc:
        return exc.kind
    return None


# -- the rules ----------------------------------------------------------------------------------


def test_the_default_minimum_is_one_whole_patch_of_the_model() -> None:
    assert pytest.approx(2.976) == PATCH_SECONDS
    assert PATCH_SECONDS <= MIN_SECONDS < PATCH_SECONDS + 0.1
    assert Settings().audio_min_seconds == MIN_SECONDS
    assert Settings(audio_min_seconds=0).audio_min_seconds == 0  # the minimum off
    with pytest.raises(ValueError, match="audio_min_seconds"):
        Settings(audio_min_seconds=-1)


@pytest.mark.parametrize(
    ("decoded", "min_seconds", "kind"),
    [
        (0.29, 3.0, FailureKind.AUDIO_TOO_SHORT),
        (2.99, 3.0, FailureKind.AUDIO_TOO_SHORT),
        (3.0, 3.0, None),
        (0.29, 0.0, None),
        (9.0, 10.0, FailureKind.AUDIO_TOO_SHORT),
    ],
)
def test_a_track_shorter_than_the_minimum_is_too_short(
    decoded: float, min_seconds: float, kind: FailureKind | None
) -> None:
    """A file that states no length (or states what it holds) is judged by the minimum."""
    for stated in (None, decoded):
        report = DecodeReport(decoded_seconds=decoded, stated_seconds=stated)
        assert kind_of(report, min_seconds) is kind


def test_the_too_short_message_says_how_long_and_which_setting() -> None:
    with pytest.raises(AudioError) as failed:
        judge(DecodeReport(decoded_seconds=0.29), min_seconds=3.0)
    assert str(failed.value) == (
        "the audio is too short: 0.29 s, less than the 3 s the model needs (AUDIO_MIN_SECONDS)"
    )


@pytest.mark.parametrize(
    ("decoded", "stated", "kind"),
    [
        (0.29, 8.0, FailureKind.AUDIO_TRUNCATED),  # checked before the minimum: it says why
        (10.0, 20.0, FailureKind.AUDIO_TRUNCATED),
        (17.9, 20.0, FailureKind.AUDIO_TRUNCATED),  # below 90 % and 2.1 s short
        (18.5, 20.0, None),  # within 10 %
        (4.2, 5.0, None),  # below 90 % but less than a second short (padding, rounding)
        (20.0, 20.0, None),
        (20.04, 20.0, None),
    ],
)
def test_a_track_decoded_for_much_less_than_its_file_states_is_truncated(
    decoded: float, stated: float, kind: FailureKind | None
) -> None:
    report = DecodeReport(decoded_seconds=decoded, stated_seconds=stated, size_seconds=0.31)
    assert kind_of(report) is kind


def test_the_truncated_message_says_both_lengths() -> None:
    with pytest.raises(AudioError) as failed:
        judge(DecodeReport(decoded_seconds=0.29, stated_seconds=8.0), min_seconds=3.0)
    assert str(failed.value) == (
        "the audio is truncated: it decodes for 0.29 s of the 8.00 s its file states "
        "(a partial file?)"
    )


def test_a_length_the_files_size_accounts_for_is_no_claim() -> None:
    """FFmpeg's estimate from the size and the first frame's bit rate (a VBR mp3 without a
    length header) can be several times the real length: it is not held against the file."""
    estimated = DecodeReport(decoded_seconds=20.0, stated_seconds=83.1, size_seconds=83.1)
    assert estimated.claimed_seconds is None
    assert kind_of(estimated) is None
    # Bytes missing: the size at the bit rate falls short of the stated length.
    partial = DecodeReport(decoded_seconds=10.0, stated_seconds=20.0, size_seconds=10.02)
    assert partial.claimed_seconds == 20.0
    assert kind_of(partial) is FailureKind.AUDIO_TRUNCATED


def test_audio_cut_at_the_decoding_cap_is_neither_short_nor_truncated() -> None:
    capped = DecodeReport(decoded_seconds=1.0, stated_seconds=3600.0, capped=True, cap_seconds=1.0)
    assert kind_of(capped) is None
    # The cap lowers what is expected: a file ending before it is judged against the cap.
    ended = DecodeReport(decoded_seconds=1000.0, stated_seconds=3600.0, cap_seconds=1800.0)
    assert kind_of(ended) is FailureKind.AUDIO_TRUNCATED
    assert (
        kind_of(DecodeReport(decoded_seconds=1700.0, stated_seconds=3600.0, cap_seconds=1800.0))
        is None
    )


# -- real files, the real decoder ---------------------------------------------------------------


@pytest.fixture(scope="module")
def model() -> MusicnnModel:
    return MusicnnModel()


@pytest.fixture(scope="module")
def eight_seconds(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """An 8 s mp3 whose Info header states its length (as LAME and most encoders write)."""
    return write_mp3(tmp_path_factory.mktemp("mp3") / "eight.mp3", 8.0).read_bytes()


def decoded_report(data: bytes) -> DecodeReport:
    report = DecodeReport()
    for _ in audio.iter_decode(data, report=report):
        pass
    return report


def test_the_decoder_reports_what_an_mp3_cut_at_5000_bytes_holds(eight_seconds: bytes) -> None:
    report = decoded_report(eight_seconds[:PARTIAL_BYTES])
    assert report.stated_seconds == pytest.approx(8.0)
    assert report.decoded_seconds == pytest.approx(0.29, abs=0.05)
    assert report.size_seconds is not None
    assert report.size_seconds < 0.5
    assert not report.capped
    whole = decoded_report(eight_seconds)
    assert whole.decoded_seconds == pytest.approx(8.0, abs=0.05)
    assert whole.claimed_seconds is None  # its size accounts for its length


def test_an_mp3_cut_at_5000_bytes_is_truncated_not_classified(
    eight_seconds: bytes, model: MusicnnModel
) -> None:
    for windows in (4, None):
        with pytest.raises(AudioError) as failed:
            analyse(eight_seconds[:PARTIAL_BYTES], model, windows=windows)
        assert failed.value.kind is FailureKind.AUDIO_TRUNCATED
        assert "0.29 s of the 8.00 s" in str(failed.value)
    assert analyse(eight_seconds, model, windows=4).patches == 2


def test_an_mp3_cut_in_half_is_truncated(eight_seconds: bytes, model: MusicnnModel) -> None:
    """4 s decode: long enough for the model, but half of what the file states."""
    with pytest.raises(AudioError) as failed:
        analyse(eight_seconds[: len(eight_seconds) // 2], model, windows=4)
    assert failed.value.kind is FailureKind.AUDIO_TRUNCATED


def test_a_partial_mp3_without_a_length_header_is_too_short(
    tmp_path: Path, model: MusicnnModel
) -> None:
    """Without a header the file states nothing FFmpeg did not estimate from its size: only
    the minimum can tell."""
    data = write_mp3(tmp_path / "bare.mp3", 8.0, length_header=False).read_bytes()
    with pytest.raises(AudioError) as failed:
        analyse(data[:PARTIAL_BYTES], model, windows=4)
    assert failed.value.kind is FailureKind.AUDIO_TOO_SHORT
    assert analyse(data[:PARTIAL_BYTES], model, windows=4, min_seconds=0).patches == 1
    assert analyse(data, model, windows=4).patches == 2


def test_a_vbr_mp3_whose_estimated_length_is_far_too_long_is_still_classified(
    tmp_path: Path, model: MusicnnModel
) -> None:
    """No header, a quiet start: FFmpeg estimates the length from the first frames' low bit
    rate, several times the real length. The file is whole and must not fail as truncated."""
    sound = chord(12.0)
    sound[:, : 2 * 44_100] = 0.0
    path = write_stereo(
        tmp_path / "vbr.mp3",
        blocks_of(sound, 4096),
        rate=44_100,
        container_format="mp3",
        codec="libmp3lame",
        options={"abr": "1"},
        bit_rate=192_000,
        container_options={"write_xing": "0"},
    )
    report = decoded_report(path.read_bytes())
    assert report.stated_seconds is not None
    assert report.stated_seconds > 2 * report.decoded_seconds  # the estimate is that wrong
    assert analyse(path, model, windows=4).patches >= 1


def test_a_too_short_wav_fails_and_one_of_the_minimum_is_classified(
    tmp_path: Path, model: MusicnnModel
) -> None:
    for seconds, kind in ((1.0, FailureKind.AUDIO_TOO_SHORT), (3.0, None)):
        path = write_stereo(
            tmp_path / f"{seconds}.wav",
            blocks_of(chord(seconds, 16_000), 4096),
            rate=16_000,
            container_format="wav",
            codec="pcm_s16le",
        )
        if kind is None:
            assert analyse(path, model, windows=4).patches == 1
            continue
        with pytest.raises(AudioError) as failed:
            analyse(path, model, windows=4)
        assert failed.value.kind is kind


def test_decoded_audio_is_what_the_report_says(eight_seconds: bytes) -> None:
    report = DecodeReport()
    samples = np.concatenate(list(audio.iter_decode(eight_seconds, report=report)))
    assert report.decoded_seconds == len(samples) / audio.SAMPLE_RATE
