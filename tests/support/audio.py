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
) -> Path:
    """Encode ``blocks`` ((2, n) float32 at ``rate``, in order) into ``path``.

    ``codec_rate``: the stream's rate when the codec needs another one (opus: 48 kHz).
    """
    with av.open(str(path), "w", format=container_format) as container:
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
