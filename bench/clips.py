"""Real-music clips for the benches that classify many files (never committed: made in /tmp).

The music is Debian's ``wesnoth-music`` (orchestral Ogg Vorbis, GPL) when its files are found
under ``BENCH_MUSIC_DIR`` (default: where ``dpkg -x`` of the package into /tmp/h3_wesnoth/x, or
an installed package, puts them), else the packaged samples. Each clip is ``seconds`` long, cut
from consecutive positions of the sources in turn, and written as a 192 kb/s stereo mp3.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
from tests.support.audio import blocks_of, write_stereo

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "service" / "genres" / "samples"
MUSIC_DIRS = (
    Path("/tmp/h3_wesnoth/x/usr/share/games/wesnoth/1.16/data/core/music"),
    Path("/usr/share/games/wesnoth/1.16/data/core/music"),
)
RATE = 44_100


def sources() -> list[Path]:
    """The music the clips are cut from, and what it is."""
    named = os.environ.get("BENCH_MUSIC_DIR")
    for directory in [Path(named)] if named else MUSIC_DIRS:
        found = sorted(directory.glob("*.ogg"))
        if found:
            return found
    return sorted(SAMPLES.glob("*.flac"))


def _decoded(path: Path) -> npt.NDArray[np.float32]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=RATE)
        return np.concatenate(
            [
                out.to_ndarray()
                for frame in container.decode(stream)
                for out in resampler.resample(frame)
            ],
            axis=1,
        ).astype(np.float32)


def _cuts(seconds: float) -> Iterator[npt.NDArray[np.float32]]:
    length = int(seconds * RATE)
    while True:
        for path in sources():
            audio = _decoded(path)
            if audio.shape[1] < length:  # a short sample: looped to the clip's length
                audio = np.tile(audio, (1, length // audio.shape[1] + 1))
            for start in range(0, audio.shape[1] - length + 1, length):
                yield audio[:, start : start + length]


def write_mp3(path: Path, audio: npt.NDArray[np.float32]) -> None:
    write_stereo(
        path,
        blocks_of(audio, 16384),
        rate=RATE,
        container_format="mp3",
        codec="libmp3lame",
        bit_rate=192_000,
    )


def make_clips(directory: Path, count: int, seconds: float = 30.0) -> list[Path]:
    """``count`` clips in ``directory`` (kept when already there, for repeated runs)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"clip{i:03d}.mp3" for i in range(count)]
    if all(p.is_file() for p in paths):
        return paths
    for path, audio in zip(paths, _cuts(seconds), strict=False):
        write_mp3(path, audio)
    (directory / "SOURCES.txt").write_text("".join(f"{p}\n" for p in sources()))
    return paths


def made_from(directory: Path) -> str:
    """The folder of the music the clips in ``directory`` were cut from."""
    record = directory / "SOURCES.txt"
    if record.is_file():
        return str(Path(record.read_text().split("\n", 1)[0]).parent)
    return str(sources()[0].parent)


@contextlib.asynccontextmanager
async def cdn_process(directory: Path) -> AsyncIterator[str]:
    """A fake CDN: ``directory`` served over loopback HTTP by its own process (stdlib's
    threading ``http.server``, so its CPU stays out of the bench's loop); its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
        "--directory", str(directory),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(200):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            await writer.wait_closed()
            break
        else:
            raise RuntimeError("the fake CDN did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        await process.wait()
