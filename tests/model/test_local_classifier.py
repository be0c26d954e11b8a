"""``LocalClassifier`` end to end on the packaged samples (no network)."""

from __future__ import annotations

import asyncio
import json
import threading
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import httpx
import numpy as np
import pytest
import pytest_asyncio

from genres.classify.local import LocalClassifier, MusicnnModel
from genres.classify.local.analysis import WINDOW_SAMPLES
from genres.classify.local.model import TAGS_PATH
from genres.classify.local.tags import genre_names
from genres.classify.port import Classifier
from genres.config import Settings
from genres.errors import AudioError
from genres_contracts import FailureKind

SAMPLES = Path(__file__).resolve().parents[2] / "service" / "genres" / "samples"
GENRES = genre_names(json.loads(TAGS_PATH.read_text()))


@pytest.fixture(scope="module")
def model() -> MusicnnModel:
    return MusicnnModel()


@pytest_asyncio.fixture
async def classifier(model: MusicnnModel) -> AsyncIterator[LocalClassifier]:
    async with httpx.AsyncClient() as client:
        local = LocalClassifier(http_client=client, model=model, top_n=7)
        yield local
        await local.aclose()


def test_it_is_a_classifier(classifier: LocalClassifier) -> None:
    port: Classifier = classifier
    assert port.model.name == "musicnn/msd+mtt"
    assert port.model.version.startswith("0.1.0+onnx-")


@pytest.mark.parametrize("sample", ["loop_garzul.flac", "ambi_drone.flac"])
async def test_a_sample_gets_seven_distinct_genres_sorted_and_the_same_twice(
    classifier: LocalClassifier, sample: str
) -> None:
    result = await classifier.classify(str(SAMPLES / sample))
    names = [p.name for p in result.predictions]
    confidences = [p.confidence for p in result.predictions]
    assert len(result.predictions) == 7
    assert set(names) <= GENRES
    assert len(set(names)) == len(names)
    assert all(0.0 <= c <= 1.0 for c in confidences)
    assert all(round(c, 4) == c for c in confidences)
    assert confidences == sorted(confidences, reverse=True)
    assert result.model == classifier.model
    assert result.timings.total > 0
    assert result.timings.predict is not None
    assert 0 < result.timings.predict <= result.timings.total
    assert result.extra["patches"] == (2 if sample == "loop_garzul.flac" else 1)
    again = await classifier.classify(str(SAMPLES / sample))
    assert again.predictions == result.predictions


async def test_the_samples_get_sensible_genres(classifier: LocalClassifier) -> None:
    loop = await classifier.classify(str(SAMPLES / "loop_garzul.flac"))
    drone = await classifier.classify(str(SAMPLES / "ambi_drone.flac"))
    assert loop.predictions[0].name == "electronic"
    assert drone.predictions[0].name == "ambient"


async def test_concurrent_classifications_agree(classifier: LocalClassifier) -> None:
    path = str(SAMPLES / "ambi_drone.flac")
    results = await asyncio.gather(*(classifier.classify(path) for _ in range(4)))
    assert len({r.predictions for r in results}) == 1


async def test_the_event_loop_stays_free(classifier: LocalClassifier) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    await classifier.classify(str(SAMPLES / "loop_garzul.flac"))
    task.cancel()
    assert ticks >= 3


async def test_non_audio_is_unreadable(classifier: LocalClassifier, tmp_path: Path) -> None:
    junk = tmp_path / "track.mp3"
    junk.write_bytes(b"ID3 but then nothing of an mp3 at all " * 50)
    with pytest.raises(AudioError) as info:
        await classifier.classify(str(junk))
    assert info.value.kind is FailureKind.AUDIO_UNREADABLE
    assert not info.value.retryable


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.com/a.mp3", "data:audio/mp3;base64,AAAA"]
)
async def test_other_schemes_are_refused(classifier: LocalClassifier, url: str) -> None:
    with pytest.raises(AudioError) as info:
        await classifier.classify(url)
    assert info.value.kind is FailureKind.AUDIO_URL_REFUSED


async def test_local_paths_can_be_refused(model: MusicnnModel) -> None:
    async with httpx.AsyncClient() as client:
        local = LocalClassifier(http_client=client, model=model, allow_local_paths=False)
        with pytest.raises(AudioError) as info:
            await local.classify(str(SAMPLES / "ambi_drone.flac"))
    assert info.value.kind is FailureKind.AUDIO_URL_REFUSED


async def test_from_settings_takes_top_n_and_caps_the_audio_seconds(model: MusicnnModel) -> None:
    settings = Settings(replicate_top_n=3, audio_max_seconds=3.0)
    async with httpx.AsyncClient() as client:
        local = LocalClassifier.from_settings(settings, client, model=model)
        result = await local.classify(str(SAMPLES / "loop_garzul.flac"))
    assert len(result.predictions) == 3
    assert result.extra["audio_seconds"] == 3.0
    assert local.model.version == model.version


async def test_from_settings_takes_top_n_and_classifies_a_path() -> None:
    async with httpx.AsyncClient() as client:
        local = LocalClassifier.from_settings(Settings(replicate_top_n=2), client)
        result = await local.classify(str(SAMPLES / "ambi_drone.flac"))
    assert [p.name for p in result.predictions][:1] == ["ambient"]
    assert len(result.predictions) == 2


def test_model_version_is_stable(model: MusicnnModel) -> None:
    assert MusicnnModel().version == model.version


def write_noise_wav(path: Path, seconds: float) -> Path:
    rng = np.random.default_rng(1)
    samples = (rng.standard_normal(int(seconds * 16_000)) * 3000).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16_000)
        out.writeframes(samples.tobytes())
    return path


class _HeldModel:
    """The model, holding its first batch until told to go on (to cancel mid-track)."""

    def __init__(self, model: MusicnnModel) -> None:
        self._model = model
        self.calls = 0
        self.entered = threading.Event()
        self.proceed = threading.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self._model, name)

    def predict_with_embedding(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.calls += 1
        self.entered.set()
        self.proceed.wait(30)
        return self._model.predict_with_embedding(patches)


async def test_a_cancelled_classification_stops_at_its_next_chunk_and_frees_its_slot(
    model: MusicnnModel, tmp_path: Path
) -> None:
    # Whole-track analysis (no windows): 4 minutes are many batches for the model.
    long_track = write_noise_wav(tmp_path / "long.wav", 240.0)
    held = _HeldModel(model)
    async with httpx.AsyncClient() as client:
        classifier = LocalClassifier(
            http_client=client, model=cast(MusicnnModel, held), windows=None
        )
        task = asyncio.create_task(classifier.classify(str(long_track)))
        assert await asyncio.to_thread(held.entered.wait, 30)
        task.cancel()
        for _ in range(3):  # the task handles its cancellation: it tells the thread to stop
            await asyncio.sleep(0)
        held.proceed.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The abandoned work stopped at its next chunk, not after the whole 4 minutes.
        assert held.calls == 1
        result = await asyncio.wait_for(classifier.classify(str(SAMPLES / "ambi_drone.flac")), 30)
        assert result.predictions
        await classifier.aclose()


async def test_long_audio_is_capped(model: MusicnnModel, tmp_path: Path) -> None:
    track = write_noise_wav(tmp_path / "long.wav", 30.0)
    async with httpx.AsyncClient() as client:
        local = LocalClassifier(http_client=client, model=model, max_seconds=6.5, windows=None)
        result = await local.classify(str(track))
    assert result.extra["audio_seconds"] == 6.5
    assert result.extra["patches"] == 2


async def test_long_audio_is_sampled_by_default(model: MusicnnModel, tmp_path: Path) -> None:
    track = write_noise_wav(tmp_path / "long.wav", 120.0)
    async with httpx.AsyncClient() as client:
        local = LocalClassifier.from_settings(Settings(local_windows=3), client, model=model)
        result = await local.classify(str(track))
    assert result.extra["patches"] == 3
    assert result.extra["audio_seconds"] == round(3 * WINDOW_SAMPLES / 16_000, 3)
