"""Decoding every supported format to 16 kHz mono, and refusing what is not audio.

The fixtures are made at run time: a few seconds of the packaged sample re-encoded with PyAV
into ``tmp_path`` (mp3, ogg/vorbis, opus, flac, wav, m4a/aac).
"""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest

from genres.classify.local.audio import decode, iter_decode
from genres.errors import AudioError
from genres_contracts import FailureKind
from tests.support.audio import blocks_of, write_stereo

SAMPLES = Path(__file__).resolve().parents[2] / "service" / "genres" / "samples"
SAMPLE = SAMPLES / "loop_garzul.flac"
SECONDS = 4.0

# name -> (container format, codec, encoder options, codec rate or None for the source's)
FORMATS: dict[str, tuple[str, str, dict[str, str], int | None]] = {
    "mp3": ("mp3", "libmp3lame", {}, None),
    "ogg": ("ogg", "vorbis", {"strict": "experimental"}, None),
    "opus": ("opus", "libopus", {}, 48_000),
    "flac": ("flac", "flac", {}, None),
    "wav": ("wav", "pcm_s16le", {}, None),
    "m4a": ("ipod", "aac", {}, None),
}


def read_source(seconds: float = SECONDS) -> tuple[np.ndarray, int]:
    """The first ``seconds`` of the sample as (channels, samples) float32 and its rate."""
    with av.open(str(SAMPLE)) as container:
        stream = container.streams.audio[0]
        rate = stream.rate
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=rate)
        chunks = [
            out.to_ndarray()
            for frame in container.decode(stream)
            for out in resampler.resample(frame)
        ]
    audio = np.concatenate(chunks, axis=1)
    return audio[:, : int(seconds * rate)].astype(np.float32), rate


def encode(audio: np.ndarray, rate: int, path: Path, name: str) -> Path:
    container_format, codec, options, codec_rate = FORMATS[name]
    return write_stereo(
        path,
        blocks_of(audio, 4096),
        rate=rate,
        container_format=container_format,
        codec=codec,
        options=options,
        codec_rate=codec_rate,
    )


@pytest.fixture(scope="module")
def source() -> tuple[np.ndarray, int]:
    return read_source()


@pytest.fixture(scope="module")
def reference(source: tuple[np.ndarray, int]) -> np.ndarray:
    """The source decoded by our decoder from a lossless wav."""
    audio, rate = source
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="wav") as container:
        stream = container.add_stream("pcm_f32le", rate=rate)
        stream.layout = "stereo"
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio), format="fltp")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return decode(buffer.getvalue())


@pytest.mark.parametrize("name", list(FORMATS))
def test_each_format_decodes_to_16_khz_mono_as_loud_as_the_source(
    name: str, tmp_path: Path, source: tuple[np.ndarray, int], reference: np.ndarray
) -> None:
    audio, rate = source
    path = encode(audio, rate, tmp_path / f"clip.{name}", name)
    decoded = decode(path)
    assert decoded.dtype == np.float32
    assert decoded.ndim == 1
    # 4 s at 16 kHz, give or take the codec's priming and padding (< 0.1 s).
    assert abs(len(decoded) - SECONDS * 16_000) < 0.1 * 16_000, len(decoded)
    assert np.all(np.isfinite(decoded))
    assert float(np.abs(decoded).max()) <= 1.5
    # Lossy codecs shift and colour the signal; its loudness must survive.
    rms, ref_rms = float(np.sqrt(np.mean(decoded**2))), float(np.sqrt(np.mean(reference**2)))
    assert rms == pytest.approx(ref_rms, rel=0.25)
    if name in ("flac", "wav"):  # lossless: the same samples as the reference
        n = min(len(decoded), len(reference))
        np.testing.assert_allclose(decoded[:n], reference[:n], atol=2e-4)


def test_bytes_paths_and_file_objects_decode_alike(tmp_path: Path) -> None:
    data = SAMPLE.read_bytes()
    from_path = decode(SAMPLE)
    from_bytes = decode(data)
    with SAMPLE.open("rb") as f:
        from_file = decode(f)
    np.testing.assert_array_equal(from_path, from_bytes)
    np.testing.assert_array_equal(from_path, from_file)
    assert abs(len(from_path) - 8.0 * 16_000) < 100  # the sample is 8 s long


def test_stereo_is_averaged_to_mono(tmp_path: Path) -> None:
    rate = 16_000
    t = np.arange(rate) / rate
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    audio = np.stack([left, -left]).astype(np.float32)  # cancels out when averaged
    decoded = decode(encode(audio, rate, tmp_path / "c.wav", "wav"))
    assert float(np.abs(decoded).max()) < 1e-3
    same = np.stack([left, left]).astype(np.float32)
    decoded = decode(encode(same, rate, tmp_path / "s.wav", "wav"))
    np.testing.assert_allclose(decoded, left, atol=1e-4)


def test_max_seconds_caps_the_decoded_audio() -> None:
    decoded = decode(SAMPLE, max_seconds=2.5)
    assert len(decoded) == 40_000
    chunks = list(iter_decode(SAMPLE, max_seconds=2.5, chunk_samples=1000))
    assert sum(len(c) for c in chunks) == 40_000


def test_chunks_are_bounded() -> None:
    chunks = list(iter_decode(SAMPLE, chunk_samples=16_000))
    assert len(chunks) >= 3
    assert all(16_000 <= len(c) < 2 * 16_000 for c in chunks[:-1])
    assert 0 < len(chunks[-1]) < 2 * 16_000
    assert sum(len(c) for c in chunks) == len(decode(SAMPLE))


def assert_unreadable(source: object) -> AudioError:
    with pytest.raises(AudioError) as info:
        decode(source)  # type: ignore[arg-type]
    assert info.value.kind is FailureKind.AUDIO_UNREADABLE
    assert info.value.message
    return info.value


def test_non_audio_is_unreadable(tmp_path: Path) -> None:
    assert_unreadable(b"<html><body>Not found</body></html>")
    assert_unreadable(b"")
    assert_unreadable(bytes(range(256)) * 100)
    text = tmp_path / "notes.mp3"
    text.write_text("these are not the droids you are looking for\n" * 100)
    assert_unreadable(text)


def test_missing_files_directories_and_devices_are_unreadable(tmp_path: Path) -> None:
    assert "cannot read" in str(assert_unreadable(tmp_path / "missing.mp3"))
    assert "not a regular file" in str(assert_unreadable(tmp_path))
    assert "not a regular file" in str(assert_unreadable(Path("/dev/zero")))


def test_playlists_that_open_other_files_are_refused(tmp_path: Path) -> None:
    """FFmpeg's HLS and concat demuxers would read other files or URLs; they are not allowed."""
    playlist = tmp_path / "list.m3u8"
    playlist.write_text(
        f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:8,\n{SAMPLE}\n#EXT-X-ENDLIST\n"
    )
    assert_unreadable(playlist)
    concat = tmp_path / "list.txt"
    concat.write_text(f"ffconcat version 1.0\nfile '{SAMPLE}'\n")
    assert_unreadable(concat)


def test_a_truncated_file_keeps_what_decodes(
    tmp_path: Path, source: tuple[np.ndarray, int]
) -> None:
    audio, rate = source
    path = encode(audio, rate, tmp_path / "clip.mp3", "mp3")
    data = path.read_bytes()
    decoded = decode(data[: len(data) // 2])
    assert 1.0 * 16_000 < len(decoded) < 3.0 * 16_000
