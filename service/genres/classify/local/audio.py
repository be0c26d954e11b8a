"""Decoding audio to 16 kHz mono float32 with PyAV (FFmpeg) and soxr, streaming.

(Over 300 lines: its two ways of reading a file, from the start and by sampled windows, share
the opening rules and the frame conversion, which must not drift apart.)

``iter_decode`` yields the audio in chunks: it never holds the whole compressed file (PyAV reads
it packet by packet from the path or file object) nor the whole decoded track, so a long file
costs memory in proportion to a chunk, not to its length. ``decode`` collects the chunks for
callers that want one array.

Rules:

* the first audio stream is decoded; channels are averaged to mono (as librosa does); the audio
  is resampled to 16 kHz with soxr (high quality), as musicnn's front end expects;
* ``iter_decode`` decodes from the start, at most ``max_seconds`` (the rest of a longer file is
  never read past that point); ``sample_windows`` instead seeks to a few short windows spread
  across the whole file and decodes only those, so its cost does not grow with the file's
  length (where the container states its length and can seek; else the caller decodes);
* only audio containers are opened (``ALLOWED_DEMUXERS``): FFmpeg's playlist and concat demuxers,
  which open further files or URLs named inside the input, are refused;
* paths must be regular files (not devices, pipes or directories); they are opened by Python and
  handed to FFmpeg as a file object, so FFmpeg's own protocols (``http:``, ``concat:``...) are
  never used;
* anything FFmpeg cannot read, or that has no audio, raises ``AudioError`` with
  ``FailureKind.AUDIO_UNREADABLE``. A decoding error after at least ``MIN_SECONDS_BEFORE_ERROR``
  of audio ends the track there (a damaged tail does not waste the rest);
* ``iter_decode`` fills a ``length.DecodeReport`` when given one (the audio decoded, the length
  the file states, its size at its bit rate), for ``length.judge`` to tell a partial or too
  short track from one the model may classify.
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

from genres.classify.local.length import DecodeReport
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

_PREROLL_SECONDS = 0.5
"""Audio decoded and dropped before each window: decoders (mp3's bit reservoir, for one) need
a few frames after a seek, and the resampler's filter needs some input before the window."""

_SAMPLE_ABOVE = 2.0
"""Sample only tracks longer than this many times the windows; shorter ones are decoded whole
(reading them is about as cheap as seeking, and every patch can be used)."""


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
    report: DecodeReport | None = None,
) -> Generator[Samples, None, None]:
    """Yield ``source``'s first audio stream as mono float32 chunks at ``sample_rate``.

    Chunks hold at least ``chunk_samples`` samples (the last one may hold fewer). At most
    ``max_seconds`` of audio are yielded. Raises ``AudioError`` (``AUDIO_UNREADABLE``) when the
    input is not audio FFmpeg can decode, or decodes to nothing. ``report``, when given, is
    filled in as the audio is decoded (complete once the generator is exhausted).
    """
    max_samples = None if max_seconds is None else max(1, round(max_seconds * sample_rate))
    fileobj, owned = _open_source(source)
    try:
        pending: list[Samples] = []
        pending_samples = 0
        if report is not None:
            report.cap_seconds = max_seconds
        for chunk in _decode_file(fileobj, max_samples, sample_rate, report or DecodeReport()):
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


def _decode_file(
    fileobj: IO[bytes], max_samples: int | None, out_rate: int, report: DecodeReport
) -> Iterator[Samples]:
    container = _open_container(fileobj)
    with container:
        if not container.streams.audio:
            raise _unreadable("the file has no audio stream")
        stream = container.streams.audio[0]
        report.stated_seconds = duration_seconds(container)
        report.size_seconds = _size_seconds(container, stream)
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
            report.decoded_seconds = produced / out_rate
            report.capped = max_samples is not None and produced >= max_samples
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


def _size_seconds(container: Any, stream: Any) -> float | None:
    """The file's size over the stream's bit rate (FFmpeg's estimate of a length not stated)."""
    size, bit_rate = getattr(container, "size", 0), stream.bit_rate
    if not size or size <= 0 or not bit_rate or bit_rate <= 0:
        return None
    return float(size * 8 / bit_rate)


def duration_seconds(container: Any) -> float | None:
    """The container's stated length of its first audio stream, if it states one."""
    stream = container.streams.audio[0]
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return float(container.duration / av.time_base)
    return None


def sample_windows(
    source: AudioSource,
    *,
    count: int,
    window_samples: int,
    sample_rate: int = SAMPLE_RATE,
) -> list[Samples] | None:
    """``count`` windows of ``window_samples`` samples spread evenly across ``source``.

    Window ``i`` is centred at ``(i + 0.5) / count`` of the track's stated length; each is
    reached by seeking (with ``_PREROLL_SECONDS`` decoded before it, so the decoder settles)
    and decoded alone, so the cost does not grow with the track's length. Returns ``None`` when
    sampling does not apply and the caller should decode the track from its start instead: the
    container states no length, the track is shorter than ``_SAMPLE_ABOVE`` times the windows,
    it cannot seek, or its frames carry no timestamps. A window that lands past the real end of
    the audio (a wrong stated length) or fails to decode is left out; none at all is ``None``.
    Raises ``AudioError`` when the input is not audio FFmpeg can open.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    fileobj, owned = _open_source(source)
    position = fileobj.tell() if fileobj.seekable() else None
    try:
        if position is None:
            return None
        container = _open_container(fileobj)
        with container:
            if not container.streams.audio:
                raise _unreadable("the file has no audio stream")
            length = duration_seconds(container)
            window_seconds = window_samples / sample_rate
            if length is None or length < _SAMPLE_ABOVE * count * window_seconds:
                return None
            windows: list[Samples] = []
            for i in range(count):
                start = (i + 0.5) / count * length - window_seconds / 2
                try:
                    window = _decode_window(container, start, window_samples, sample_rate)
                except _NotSeekableError:
                    return None
                if window is not None:
                    windows.append(window)
            return windows or None
    finally:
        if owned:
            fileobj.close()
        elif position is not None:
            fileobj.seek(position)  # the caller's file, as it was: it may decode it next


class _NotSeekableError(Exception):
    """The container cannot seek, or its frames have no timestamps to place a window by."""


def _open_container(fileobj: IO[bytes]) -> Any:
    if _is_empty(fileobj):
        # FFmpeg would seek past the end, and PyAV print the error it drops on stderr.
        raise _unreadable("the file is empty")
    try:
        return av.open(
            fileobj,
            mode="r",
            options={"format_whitelist": ALLOWED_DEMUXERS},
            metadata_errors="ignore",
        )
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise _unreadable(f"not a readable audio file ({_describe(exc)})") from None


def _decode_window(
    container: Any, start: float, window_samples: int, out_rate: int
) -> Samples | None:
    """``window_samples`` samples at ``out_rate`` from ``start`` seconds, or ``None``."""
    stream = container.streams.audio[0]
    seek_to = max(0.0, start - _PREROLL_SECONDS)
    try:
        container.seek(int(seek_to / stream.time_base), stream=stream, backward=True)
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise _NotSeekableError from exc
    first_time: float | None = None
    in_rate = 0
    blocks: list[npt.NDArray[np.float32]] = []
    have = 0
    need = 0
    try:
        for frame in container.decode(stream):
            if frame.sample_rate <= 0 or frame.samples == 0:
                continue
            if first_time is None:
                if frame.time is None:
                    raise _NotSeekableError
                first_time, in_rate = float(frame.time), frame.sample_rate
                # Samples (at the input rate) from the first frame to the window's end.
                lead = max(0.0, start - first_time)
                need = int((lead + window_samples / out_rate) * in_rate) + 1
            elif frame.sample_rate != in_rate:
                break  # the stream changed its rate: the window ends here
            block = _planar_float(frame)
            if blocks and block.shape[0] != blocks[0].shape[0]:
                break  # the stream changed its channels: likewise
            blocks.append(block)
            have += block.shape[1]
            if have >= need:
                break
    except (av.FFmpegError, ValueError, OSError):
        pass  # a damaged stretch: keep what was decoded, if it is enough
    if first_time is None or not blocks:
        return None
    mono = _mix_down(blocks)
    if in_rate != out_rate:
        mono = np.asarray(soxr.resample(mono, in_rate, out_rate, quality="HQ"), np.float32)
    offset = max(0, round((start - first_time) * out_rate))
    window = mono[offset : offset + window_samples]
    return window if len(window) == window_samples else None


def _is_empty(fileobj: IO[bytes]) -> bool:
    if not fileobj.seekable():
        return False
    position = fileobj.tell()
    end = fileobj.seek(0, io.SEEK_END)
    fileobj.seek(position)
    return end == position
