"""The local backend's process pool: same predictions as in-process, bounded, closed cleanly."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import tempfile
from pathlib import Path

import httpx
import pytest

from genres.classify.local import LocalClassifier, MusicnnModel
from genres.classify.local import classifier as classifier_module
from genres.classify.local.analysis import Analysis
from genres.classify.local.pool import ModelPool, analyse_in_worker, available_cores
from genres.config import Settings
from genres.errors import AudioError
from genres_contracts import FailureKind

SAMPLES = Path(__file__).resolve().parents[2] / "service" / "genres" / "samples"


async def test_workers_predict_what_this_process_predicts(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"not audio at all " * 100)
    paths = [str(SAMPLES / "loop_garzul.flac"), str(SAMPLES / "ambi_drone.flac")]
    named = MusicnnModel()
    async with httpx.AsyncClient() as client:
        here = LocalClassifier(http_client=client, model=MusicnnModel(), top_n=5)
        pooled = LocalClassifier(http_client=client, model=named, top_n=5, workers=2)
        try:
            expected = [await here.classify(p) for p in paths]
            got = await asyncio.gather(*(pooled.classify(p) for p in paths * 2))
            # A failing file fails alone, with its kind, and the workers go on.
            with pytest.raises(AudioError) as info:
                await pooled.classify(str(junk))
            assert info.value.kind is FailureKind.AUDIO_UNREADABLE
            again = await pooled.classify(paths[0])
        finally:
            await here.aclose()
            await pooled.aclose()
    assert [g.predictions for g in got] == [e.predictions for e in expected] * 2
    assert again.predictions == expected[0].predictions
    assert got[0].model == expected[0].model
    # The workers ran the model; this process only named it, and never loaded it.
    assert not named.loaded
    with pytest.raises(RuntimeError):
        await pooled.classify(paths[0])


async def test_a_model_whose_tags_do_not_match_its_outputs_fails_when_loaded(
    tmp_path: Path,
) -> None:
    tags = tmp_path / "tags.json"
    tags.write_text('["rock"]')
    model = MusicnnModel(tags_path=tags)  # naming it loads nothing
    assert model.tags == ("rock",)
    assert not model.loaded
    with pytest.raises(ValueError, match="names 1 tags; the model has 33"):
        model.load()
    # In-process analyses load it at once: a broken model fails at start, not on a track.
    async with httpx.AsyncClient() as client:
        with pytest.raises(ValueError, match="names 1 tags"):
            LocalClassifier(http_client=client, model=MusicnnModel(tags_path=tags))


def test_the_pool_defaults_to_the_cores_and_the_setting_caps_it() -> None:
    assert ModelPool().workers == available_cores()
    assert ModelPool(1).workers == 1
    with pytest.raises(ValueError, match="workers"):
        ModelPool(0)
    assert Settings(local_workers=3).local_workers == 3
    assert Settings().local_workers is None
    assert Settings(local_workers=0).local_workers == 0  # the model in the process itself


async def test_a_download_crosses_to_the_worker_as_bytes() -> None:
    sample = SAMPLES / "ambi_drone.flac"
    pool = ModelPool(1)
    try:
        from_bytes = await pool.analyse(sample.read_bytes(), max_seconds=None)
        from_path = await pool.analyse(str(sample), max_seconds=None)
    finally:
        await pool.aclose()
    assert from_bytes.patches == from_path.patches == 1
    assert from_bytes.scores.tolist() == from_path.scores.tolist()


def dies_on_request(
    source: str | bytes, max_seconds: float | None, windows: int | None, min_seconds: float
) -> Analysis:
    """A worker's task that kills its process when asked to (a decoder crashing)."""
    if source == "crash":
        os._exit(3)
    return analyse_in_worker(source, max_seconds, windows, min_seconds)


async def test_a_worker_that_dies_fails_its_track_and_the_pool_goes_on() -> None:
    sample = str(SAMPLES / "ambi_drone.flac")
    pool = ModelPool(1, task=dies_on_request)
    try:
        first = await pool.analyse(sample, max_seconds=None)
        with pytest.raises(AudioError) as info:
            await pool.analyse("crash", max_seconds=None)
        assert info.value.kind is FailureKind.INTERNAL
        after = await pool.analyse(sample, max_seconds=None)
    finally:
        await pool.aclose()
    assert after.scores.tolist() == first.scores.tolist()


async def test_a_pool_broken_while_idle_is_replaced_before_the_next_track() -> None:
    sample = str(SAMPLES / "ambi_drone.flac")
    pool = ModelPool(1)
    try:
        first = await pool.analyse(sample, max_seconds=None)
        broken = pool._executor
        [worker] = list(broken._processes.values())
        os.kill(worker.pid, signal.SIGKILL)
        for _ in range(3000):  # its manager thread notices the death
            if broken._broken:
                break
            await asyncio.sleep(0.01)
        assert broken._broken
        after = await pool.analyse(sample, max_seconds=None)
    finally:
        await pool.aclose()
    assert pool._executor is not broken
    assert after.scores.tolist() == first.scores.tolist()


def test_downloads_cross_as_bytes_when_small_and_as_a_file_when_large(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = bytes(range(256)) * 64  # 16 KiB
    small, none = classifier_module._handover(io.BytesIO(body))
    assert (small, none) == (body, None)
    monkeypatch.setattr(classifier_module, "HANDOVER_BYTES", 1024)
    spooled = tempfile.SpooledTemporaryFile(max_size=1024)  # noqa: SIM115
    spooled.write(body)
    path, spilled = classifier_module._handover(spooled)
    try:
        assert isinstance(path, str)
        assert spilled == Path(path)
        assert spilled.read_bytes() == body
    finally:
        if spilled is not None:
            spilled.unlink()
        spooled.close()
