"""The local backend's process pool: same predictions as in-process, bounded, closed cleanly."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from genres.classify.local import LocalClassifier, MusicnnModel
from genres.classify.local.pool import ModelPool, available_cores
from genres.config import Settings
from genres.errors import AudioError
from genres_contracts import FailureKind

SAMPLES = Path(__file__).resolve().parents[2] / "service" / "genres" / "samples"


async def test_workers_predict_what_this_process_predicts(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"not audio at all " * 100)
    paths = [str(SAMPLES / "loop_garzul.flac"), str(SAMPLES / "ambi_drone.flac")]
    async with httpx.AsyncClient() as client:
        here = LocalClassifier(http_client=client, model=MusicnnModel(), top_n=5)
        pooled = LocalClassifier(http_client=client, top_n=5, workers=2)
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
    with pytest.raises(RuntimeError):
        await pooled.classify(paths[0])


def test_the_pool_defaults_to_the_cores_and_the_setting_caps_it() -> None:
    assert ModelPool().workers == available_cores()
    assert ModelPool(1).workers == 1
    with pytest.raises(ValueError, match="workers"):
        ModelPool(0)
    assert Settings(local_workers=3).local_workers == 3
    assert Settings().local_workers is None


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
