"""Decoding audio to 16 kHz mono float32 with PyAV (FFmpeg) and soxr, streaming.

``iter_decode`` yields the audio in chunks: it never holds the whole compressed file (PyAV reads
it packet by packet from the path or file object) nor the whole decoded track, so a long file
costs memory in proportion to a chunk, not to its length. ``decode`` collects the chunks for
callers that want one array.

Rules:

* the first audio stream is decoded; channels are averaged to mono (as librosa does); the audio
  is resampled to 16 kHz with soxr (high quality), as musicnn's front end expects;
* only the first ``max_seconds`` are decoded (the rest of a longer file is never read past that
  point); a file longer than that is classified on its beginning;
* only audio containers are opened (``ALLOWED_DEMUXERS``): FFmpeg's playlist and concat demuxers,
  which open further files or URLs named inside the input, are refused;
* paths must be regular files (not devices, pipes or directories); they are opened by Python and
  handed to FFmpeg as a file object, so FFmpeg's own protocols (``http:``, ``concat:``...) are
  never used;
* anything FFmpeg cannot read, or that has no audio, raises ``AudioError`` with
  ``FailureKind.AUDIO_UNREADABLE``. A decoding error after at least ``MIN_SECONDS_BEFORE_ERROR``
  of audio ends the track there (a damaged tail does not waste the rest).
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import IO, Any

import av
import numpy as np
import numpy.typing as npt
import soxr

from genres.errors import AudioError
from genres_contracts import FailureKind

SAMPLE_RATE = 16_000
"""The rate the model's front end works at."""

MIN_SECONDS_BEFORE_ERROR = 3.0

CHUNK_SAMPLES = 4 * SAMPLE_RATE
"""Decoded frames are gathered into chunks of about this many samples before being yielded."""

ALLOWED_DEMUXERS = (
    "mp3,ogg,flac,wav,w64,aiff,caf,au,aac,mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,asf,"
    "wv,ape,tta,mpc,mpc8,amr,ac3,eac3,dts,truehd,mlp,voc,xwma,mpeg,flv,avi"
)
"""FFmpeg demuxers that may be used (``format_whitelist``): audio containers only."""

AudioSource = str | os.PathLike[str] | bytes | IO[bytes]
"""A path, the file's bytes, or a readable (and preferably seekable) binary file object."""

Samples = npt.NDArray[np.float32]

_GATHER_SAMPLES = 32_768
"""Decoded frames (often ~1000 samples each) are mixed and resampled this many at a time."""

_INT_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0, "s64": 9223372036854775808.0}


def _unreadable(message: str) -> AudioError:
    return AudioError(message, kind=FailureKind.AUDIO_UNREADABLE)


def _open_source(source: AudioSource) -> tuple[IO[bytes], bool]:
    """A binary file object for ``source``, and whether we opened it (and must close it)."""
    if isinstance(source, bytes):
        return io.BytesIO(source), True
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            raise _unreadable(f"cannot read {path}: {exc.strerror or exc}") from None
        if not stat.S_ISREG(mode):
            raise _unreadable(f"{path} is not a regular file")
        try:
            return path.open("rb"), True
        except OSError as exc:
            raise _unreadable(f"cannot read {path}: {exc.strerror or exc}") from None
    return source, False


def _planar_float(frame: Any) -> npt.NDArray[np.float32]:
    """A decoded frame as float32 (channels, samples) in [-1, 1)."""
    fmt = frame.format
    data = frame.to_ndarray()
    channels = max(1, len(frame.layout.channels))
    if not fmt.is_planar:
        data = data.reshape(-1, channels).T
    name = fmt.name.rstrip("p")
    if name in ("flt", "dbl"):
        return data.astype(np.float32, copy=False)  # type: ignore[no-any-return]
    if name == "u8":
        return (data.astype(np.float32) - 128.0) / 128.0  # type: ignore[no-any-return]
    if name in _INT_SCALE:
        return (data.astype(np.float64) / _INT_SCALE[name]).astype(np.float32)  # type: ignore[no-any-return]
    raise _unreadable(f"unsupported sample format {fmt.name}")  # pragma: no cover


def _mix_down(blocks: list[npt.NDArray[np.float32]]) -> Samples:
    """Concatenate (channels, n) blocks and average the channels (as librosa does)."""
    block = blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1)
    if block.shape[0] == 1:
        return np.ascontiguousarray(block[0])
    mono: Samples = block.mean(axis=0, dtype=np.float32)
    return mono


def iter_decode(
    source: AudioSource,
    *,
    max_seconds: float | None = None,
    sample_rate: int = SAMPLE_RATE,
    chunk_samples: int = CHUNK_SAMPLES,
) -> Generator[Samples, None, None]:
    """Yield ``source``'s first audio stream as mono float32 chunks at ``sample_rate``.

    Chunks hold at least ``chunk_samples`` samples (the last one may hold fewer). At most
    ``max_seconds`` of audio are yielded. Raises ``AudioError`` (``AUDIO_UNREADABLE``) when the
    input is not audio FFmpeg can decode, or decodes to nothing.
    """
    max_samples = None if max_seconds is None else max(1, round(max_seconds * sample_rate))
    fileobj, owned = _open_source(source)
    try:
        pending: list[Samples] = []
        pending_samples = 0
        for chunk in _decode_file(fileobj, max_samples, sample_rate):
            pending.append(chunk)
            pending_samples += len(chunk)
            if pending_samples >= chunk_samples:
                yield np.concatenate(pending)
                pending, pending_samples = [], 0
        if pending_samples:
            yield np.concatenate(pending)
    finally:
        if owned:
            fileobj.close()


def _decode_file(fileobj: IO[bytes], max_samples: int | None, out_rate: int) -> Iterator[Samples]:
    if _is_empty(fileobj):
        # FFmpeg would seek past the end, and PyAV print the error it drops on stderr.
        raise _unreadable("the file is empty")
    try:
        container = av.open(
            fileobj,
            mode="r",
            options={"format_whitelist": ALLOWED_DEMUXERS},
            metadata_errors="ignore",
        )
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise _unreadable(f"not a readable audio file ({_describe(exc)})") from None
    with container:
        if not container.streams.audio:
            raise _unreadable("the file has no audio stream")
        stream = container.streams.audio[0]
        resampler: soxr.ResampleStream | None = None
        in_rate = 0  # the rate of the frames being gathered; 0 before the first frame
        channels = 0
        gathered: list[npt.NDArray[np.float32]] = []  # decoded frames not yet resampled
        gathered_samples = 0
        decoded_seconds = 0.0
        produced = 0

        def emit(chunk: Samples) -> Samples:
            nonlocal produced
            if max_samples is not None and produced + len(chunk) > max_samples:
                chunk = chunk[: max_samples - produced]
            produced += len(chunk)
            return chunk

        def convert(last: bool) -> Samples:
            """Mix down and resample what was gathered (and flush the resampler if ``last``)."""
            nonlocal gathered, gathered_samples
            mono = _mix_down(gathered) if gathered else np.zeros(0, np.float32)
            gathered, gathered_samples = [], 0
            if resampler is None:
                return mono
            return np.asarray(resampler.resample_chunk(mono, last=last), dtype=np.float32)

        frames = container.decode(stream)
        while max_samples is None or produced < max_samples:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except (av.FFmpegError, ValueError, OSError) as exc:
                if decoded_seconds >= MIN_SECONDS_BEFORE_ERROR:
                    break  # a damaged tail: keep what was decoded
                raise _unreadable(f"the audio cannot be decoded ({_describe(exc)})") from None
            if frame.sample_rate <= 0 or frame.samples == 0:
                continue
            block = _planar_float(frame)
            if frame.sample_rate != in_rate or block.shape[0] != channels:
                # The first frame, or the stream changed its rate or channels mid-way.
                if len(chunk := convert(last=True)):
                    yield emit(chunk)
                if frame.sample_rate != in_rate:
                    in_rate = frame.sample_rate
                    resampler = (
                        None
                        if in_rate == out_rate
                        else soxr.ResampleStream(
                            in_rate, out_rate, 1, dtype="float32", quality="HQ"
                        )
                    )
                channels = block.shape[0]
            gathered.append(block)
            gathered_samples += block.shape[1]
            decoded_seconds += block.shape[1] / in_rate
            if gathered_samples >= _GATHER_SAMPLES and len(chunk := convert(last=False)):
                yield emit(chunk)
        if (max_samples is None or produced < max_samples) and len(chunk := convert(last=True)):
            yield emit(chunk)
        if produced == 0:
            raise _unreadable("the file contains no decodable audio")


def decode(
    source: AudioSource,
    *,
    max_seconds: float | None = None,
    sample_rate: int = SAMPLE_RATE,
) -> Samples:
    """``source``'s audio as one mono float32 array at ``sample_rate`` (see ``iter_decode``)."""
    chunks = list(iter_decode(source, max_seconds=max_seconds, sample_rate=sample_rate))
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def _describe(exc: BaseException) -> str:
    # FFmpeg's errors read "[Errno N] What: 'path'"; the number and the path say nothing more.
    text = getattr(exc, "strerror", None) if isinstance(exc, av.FFmpegError) else None
    text = text or str(exc).strip() or type(exc).__name__
    return text[:200]


def _is_empty(fileobj: IO[bytes]) -> bool:
    if not fileobj.seekable():
        return False
    position = fileobj.tell()
    end = fileobj.seek(0, io.SEEK_END)
    fileobj.seek(position)
    return end == position
