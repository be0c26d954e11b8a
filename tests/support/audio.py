"""Writing stereo audio files for tests and benchmarks, one encoding loop for every format."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt


def write_stereo(
    path: Path,
    blocks: Iterable[npt.NDArray[np.float32]],
    *,
    rate: int,
    container_format: str,
    codec: str,
    options: Mapping[str, str] | None = None,
    codec_rate: int | None = None,
    bit_rate: int | None = None,
    container_options: Mapping[str, str] | None = None,
) -> Path:
    """Encode ``blocks`` ((2, n) float32 at ``rate``, in order) into ``path``.

    ``codec_rate``: the stream's rate when the codec needs another one (opus: 48 kHz).
    ``container_options``: the muxer's (mp3's ``write_xing``: ``"0"`` writes no length header).
    """
    with av.open(
        str(path), "w", format=container_format, options=dict(container_options or {})
    ) as container:
        stream = container.add_stream(codec, rate=codec_rate or rate, options=dict(options or {}))
        stream.layout = "stereo"
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        start = 0
        for block in blocks:
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(block), format="fltp", layout="stereo"
            )
            frame.sample_rate = rate
            frame.pts = start
            start += block.shape[1]
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def blocks_of(audio: npt.NDArray[np.float32], size: int) -> Iterable[npt.NDArray[np.float32]]:
    """``audio`` ((2, n)) cut into consecutive blocks of ``size`` samples (the last shorter)."""
    for start in range(0, audio.shape[1], size):
        yield audio[:, start : start + size]


def chord(seconds: float, rate: int = 44_100) -> npt.NDArray[np.float32]:
    """``seconds`` of a stereo chord (220, 277, 330 Hz) with a little noise, (2, n) float32."""
    t = np.arange(int(seconds * rate)) / rate
    tones = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) / 6
    noise = np.random.default_rng(23).normal(0.0, 0.02, (2, len(t)))
    return np.asarray(tones + noise, np.float32)


def write_mp3(
    path: Path, seconds: float, *, length_header: bool = True, rate: int = 44_100
) -> Path:
    """An mp3 of ``seconds`` of ``chord``; ``length_header``: LAME's Info header, which states
    the whole length (as most encoders write), else none (FFmpeg estimates it from the size)."""
    return write_stereo(
        path,
        blocks_of(chord(seconds, rate), 4096),
        rate=rate,
        container_format="mp3",
        codec="libmp3lame",
        container_options=None if length_header else {"write_xing": "0"},
    )
