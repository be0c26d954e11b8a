"""musicnn's front end in numpy: log-mel spectrogram and 187-frame patches.

What musicnn 0.1.0 computes with librosa (``librosa.feature.melspectrogram(y, sr=16000,
n_fft=512, hop_length=256, n_mels=96)``), reimplemented so the service needs no librosa:

* frames centred on ``t * 256`` with zero padding of 256 samples at both ends
  (``1 + len(y) // 256`` frames), periodic Hann window of 512 samples, power spectrum ``|X|^2``;
* 96 triangular mel filters from 0 Hz to 8 kHz on the Slaney mel scale (linear below 1 kHz,
  logarithmic above), each normalised to unit area (``norm="slaney"``);
* the model's input is ``log10(10000 * mel + 1)`` in float32 (musicnn 0.1.0 takes it on float16
  data, which overflows to infinity for any loud frame; that bug is not copied);
* the spectrogram is cut into consecutive, non-overlapping patches of 187 frames (~3 s); a
  leftover shorter than a patch at the end is dropped, as musicnn does, except when the whole
  track is shorter than one patch: then its frames are repeated to fill one patch.

``LogMelStream`` and ``PatchStream`` do the same work incrementally on chunks of samples, so a
long track never needs its whole waveform or spectrogram in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import cache

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 16_000
N_FFT = 512
HOP = 256
N_MELS = 96
PATCH_FRAMES = 187
"""Frames per model input: ``librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256)``
+ 1 (about 3 s)."""

Float32Array = npt.NDArray[np.float32]


def hz_to_mel(hz: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Slaney's mel scale (librosa's default, ``htk=False``)."""
    f = np.asarray(hz, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = f / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    log_part = min_log_mel + np.log(np.maximum(f, min_log_hz) / min_log_hz) / logstep
    return np.where(f >= min_log_hz, log_part, mels)


def mel_to_hz(mels: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Inverse of ``hz_to_mel``."""
    m = np.asarray(mels, dtype=np.float64)
    f_sp = 200.0 / 3
    freqs = f_sp * m
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), freqs)


@cache
def mel_filterbank(
    sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS
) -> Float32Array:
    """``librosa.filters.mel(sr, n_fft, n_mels)`` with its defaults: (n_mels, 1 + n_fft // 2)."""
    fft_freqs = np.linspace(0.0, sample_rate / 2, 1 + n_fft // 2)
    mel_points = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2), n_mels + 2))
    fdiff = np.diff(mel_points)
    ramps = mel_points[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_points[2 : n_mels + 2] - mel_points[:n_mels]))[:, None]
    result = weights.astype(np.float32)
    result.setflags(write=False)
    return result


@cache
def _window(n_fft: int = N_FFT) -> Float32Array:
    n = np.arange(n_fft, dtype=np.float64)
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * n / n_fft)).astype(np.float32)
    window.setflags(write=False)
    return window


def _mel_frames(padded: Float32Array, n_frames: int) -> Float32Array:
    """Power mel spectra of the first ``n_frames`` frames of an already padded signal."""
    if n_frames <= 0:
        return np.zeros((0, N_MELS), np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[: n_frames * HOP : HOP]
    spectrum = np.fft.rfft(frames * _window(), axis=1)
    power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32, copy=False)
    return apply_filterbank(power)


@cache
def _filter_bands() -> tuple[tuple[int, int, Float32Array], ...]:
    """Each mel filter's nonzero FFT bins ``[lo, hi)`` and their weights."""
    bands = []
    for weights in mel_filterbank():
        nonzero = np.flatnonzero(weights)
        lo, hi = (int(nonzero[0]), int(nonzero[-1]) + 1) if len(nonzero) else (0, 0)
        bands.append((lo, hi, np.ascontiguousarray(weights[lo:hi])))
    return tuple(bands)


def apply_filterbank(power: Float32Array) -> Float32Array:
    """``power @ mel_filterbank().T`` (frames, 96), band by band, without BLAS.

    Each filter covers a few FFT bins, so this is ~5x less arithmetic than the dense product,
    and it keeps OpenBLAS's thread pool out of the process: OpenBLAS threads spin for a while
    after a call and, on 2 cores, were measured to slow the model's next onnxruntime call ~2x.
    """
    mel = np.empty((power.shape[0], len(_filter_bands())), np.float32)
    for i, (lo, hi, weights) in enumerate(_filter_bands()):
        np.sum(power[:, lo:hi] * weights, axis=1, out=mel[:, i])
    return mel


def log_compress(mel: Float32Array) -> Float32Array:
    """The model's input scaling, ``log10(10000 * mel + 1)``, in float32."""
    out: Float32Array = np.log10(np.float32(10000.0) * mel + np.float32(1.0)).astype(
        np.float32, copy=False
    )
    return out


class LogMelStream:
    """Incremental mel spectrogram: feed samples, get the frames that became complete."""

    _BLOCK_FRAMES = 2048

    def __init__(self, *, log: bool = True) -> None:
        self._buffer: Float32Array = np.zeros(N_FFT // 2, np.float32)  # the centre padding
        self._log = log
        self._finished = False

    def push(self, samples: Float32Array) -> Float32Array:
        """Frames (n, 96) completed by ``samples`` (16 kHz mono float32)."""
        if self._finished:
            raise RuntimeError("push after finish")
        self._buffer = np.concatenate([self._buffer, np.asarray(samples, np.float32)])
        return self._drain()

    def finish(self) -> Float32Array:
        """The remaining frames, after the end-of-signal padding."""
        if self._finished:
            return np.zeros((0, N_MELS), np.float32)
        self._finished = True
        self._buffer = np.concatenate([self._buffer, np.zeros(N_FFT // 2, np.float32)])
        return self._drain()

    def _drain(self) -> Float32Array:
        available = 0 if len(self._buffer) < N_FFT else 1 + (len(self._buffer) - N_FFT) // HOP
        parts: list[Float32Array] = []
        start = 0
        while start < available:
            count = min(self._BLOCK_FRAMES, available - start)
            segment = self._buffer[start * HOP : (start + count - 1) * HOP + N_FFT]
            parts.append(_mel_frames(segment, count))
            start += count
        self._buffer = self._buffer[available * HOP :].copy()
        mel = np.concatenate(parts) if parts else np.zeros((0, N_MELS), np.float32)
        return log_compress(mel) if self._log else mel


class PatchStream:
    """Cuts a stream of log-mel frames into (187, 96) patches (see the module's rules)."""

    def __init__(self, patch_frames: int = PATCH_FRAMES) -> None:
        self._patch_frames = patch_frames
        self._pending: Float32Array = np.zeros((0, N_MELS), np.float32)
        self._emitted = 0

    @property
    def emitted(self) -> int:
        return self._emitted

    def push(self, frames: Float32Array) -> Float32Array:
        """Complete patches (k, 187, 96) now available."""
        self._pending = np.concatenate([self._pending, frames])
        whole = len(self._pending) // self._patch_frames
        if whole == 0:
            return np.zeros((0, self._patch_frames, N_MELS), np.float32)
        cut = whole * self._patch_frames
        patches = self._pending[:cut].reshape(whole, self._patch_frames, N_MELS)
        self._pending = self._pending[cut:].copy()
        self._emitted += whole
        return patches

    def finish(self) -> Float32Array:
        """A last, repeat-padded patch when the track was shorter than one patch; else none."""
        if self._emitted or len(self._pending) == 0:
            return np.zeros((0, self._patch_frames, N_MELS), np.float32)
        reps = -(-self._patch_frames // len(self._pending))
        patch = np.tile(self._pending, (reps, 1))[: self._patch_frames]
        self._emitted += 1
        return patch[None].astype(np.float32, copy=False)


def mel_spectrogram(audio: Float32Array) -> Float32Array:
    """Power mel spectrogram (frames, 96) of 16 kHz audio, as librosa computes it."""
    stream = LogMelStream(log=False)
    return np.concatenate([stream.push(audio), stream.finish()])


def log_mel(audio: Float32Array) -> Float32Array:
    """The model's input representation (frames, 96) of 16 kHz audio."""
    return log_compress(mel_spectrogram(audio))


def to_patches(log_mel_frames: Float32Array) -> Float32Array:
    """(frames, 96) -> (patches, 187, 96) by the module's rules."""
    stream = PatchStream()
    return np.concatenate([stream.push(log_mel_frames), stream.finish()])


def iter_patches(chunks: Iterable[Float32Array]) -> Iterator[Float32Array]:
    """Patch batches (k, 187, 96) from chunks of 16 kHz samples, incrementally."""
    mel = LogMelStream()
    patches = PatchStream()
    for chunk in chunks:
        out = patches.push(mel.push(chunk))
        if len(out):
            yield out
    for out in (patches.push(mel.finish()), patches.finish()):
        if len(out):
            yield out
