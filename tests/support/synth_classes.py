"""Synthesised classes of sound for tests that prove a head learns (no audio is shipped).

Each class is a kind of sound whose clips vary at random (pitch, tempo, timbre, loudness), so a
head must learn the kind, not one clip: ``pad`` (a sustained chord of soft partials),
``drums`` (a kick and hi-hats at a tempo), ``bass`` (a low sawtooth riff), ``bells``
(inharmonic struck partials at random onsets) and ``wind`` (noise swelling and fading through
a moving low-pass filter). All at 16 kHz mono, seeded.
"""

from __future__ import annotations

import contextlib
import io
import socket
import wave
from collections.abc import AsyncIterator, Callable, Sequence

import numpy as np
import numpy.typing as npt
from aiohttp import web

RATE = 16_000
Audio = npt.NDArray[np.float32]


def _t(seconds: float) -> npt.NDArray[np.float64]:
    return np.arange(int(seconds * RATE)) / RATE


def pad(rng: np.random.Generator, seconds: float) -> Audio:
    t = _t(seconds)
    root = rng.uniform(110, 330)
    chord = root * np.array([1.0, rng.choice([1.189, 1.26]), 1.498, 2.0])
    sound = sum(
        np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) / (i + 1) for i, f in enumerate(chord)
    )
    swell = np.minimum(1.0, t / rng.uniform(0.3, 1.0))
    return np.asarray(0.3 * swell * sound, np.float32)


def drums(rng: np.random.Generator, seconds: float) -> Audio:
    t = _t(seconds)
    beat = 60.0 / rng.uniform(85, 150)
    out = np.zeros_like(t)
    for start in np.arange(0, seconds, beat):
        k = (t >= start) & (t < start + 0.3)
        dt = t[k] - start
        out[k] += np.sin(2 * np.pi * (60 + 90 * np.exp(-dt * 30)) * dt) * np.exp(-dt * 12)
        h = (t >= start + beat / 2) & (t < start + beat / 2 + 0.05)
        out[h] += 0.3 * rng.standard_normal(h.sum()) * np.exp(-(t[h] - start - beat / 2) * 80)
    return np.asarray(0.6 * out, np.float32)


def bass(rng: np.random.Generator, seconds: float) -> Audio:
    t = _t(seconds)
    step = 60.0 / rng.uniform(90, 140) / 2
    notes = rng.uniform(40, 90) * 2 ** (
        rng.choice([0, 3, 5, 7, 10], size=int(seconds / step) + 1) / 12
    )
    f = notes[(t / step).astype(int)]
    phase = np.cumsum(f) / RATE
    saw = 2 * (phase % 1.0) - 1
    gate = np.exp(-((t % step) * rng.uniform(3, 8)))
    return np.asarray(0.4 * saw * gate, np.float32)


def bells(rng: np.random.Generator, seconds: float) -> Audio:
    t = _t(seconds)
    out = np.zeros_like(t)
    for start in np.sort(rng.uniform(0, seconds, size=rng.integers(4, 9))):
        k = t >= start
        dt = t[k] - start
        base = rng.uniform(600, 1500)
        for ratio, decay in ((1.0, 2.0), (2.76, 3.0), (5.4, 5.0), (8.93, 8.0)):
            out[k] += np.sin(2 * np.pi * base * ratio * dt) * np.exp(-dt * decay) / ratio
    return np.asarray(0.3 * out, np.float32)


def wind(rng: np.random.Generator, seconds: float) -> Audio:
    t = _t(seconds)
    noise = rng.standard_normal(len(t))
    out = np.empty_like(noise)
    cutoff = 0.02 + 0.05 * (1 + np.sin(2 * np.pi * t / rng.uniform(1.0, 3.0)))
    acc = 0.0
    for i, x in enumerate(noise):  # a one-pole low-pass whose cut-off moves
        acc += cutoff[i] * (x - acc)
        out[i] = acc
    swell = 0.5 + 0.5 * np.sin(2 * np.pi * t / rng.uniform(2.0, 4.0))
    return np.asarray(out * swell / max(1e-6, float(np.abs(out).max())) * 0.5, np.float32)


CLASSES: dict[str, Callable[[np.random.Generator, float], Audio]] = {
    "pad": pad,
    "drums": drums,
    "bass": bass,
    "bells": bells,
    "wind": wind,
}


def clips(per_class: int, seconds: float, seed: int) -> list[tuple[str, Audio]]:
    """``per_class`` clips of each class, as (label, audio), seeded."""
    rng = np.random.default_rng(seed)
    return [
        (label, make(rng, seconds)) for label, make in CLASSES.items() for _ in range(per_class)
    ]


def wav_bytes(audio: Audio) -> bytes:
    """A clip as a 16-bit mono WAV file at :data:`RATE`."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


@contextlib.asynccontextmanager
async def served(bodies: Sequence[bytes]) -> AsyncIterator[str]:
    """The files at ``http://127.0.0.1:PORT/<index>.wav``; yields the base URL."""

    async def one(request: web.Request) -> web.Response:
        index = int(request.match_info["i"])
        if not 0 <= index < len(bodies):
            raise web.HTTPNotFound()
        return web.Response(body=bodies[index], content_type="audio/wav")

    app = web.Application()
    app.router.add_get("/{i}.wav", one)
    runner = web.AppRunner(app)
    await runner.setup()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
