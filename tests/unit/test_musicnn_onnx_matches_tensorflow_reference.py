"""The ONNX port and the numpy front end against musicnn's own TensorFlow graph and librosa.

The reference file is made by ``scripts/make_musicnn_reference.py`` (see ``data/README.md``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genres.classify.local import frontend
from genres.classify.local.model import MusicnnModel

REFERENCE = Path(__file__).parent / "data" / "musicnn_reference.npz"
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as data:
        return {name: data[name] for name in data.files}


@pytest.fixture(scope="module")
def model() -> MusicnnModel:
    return MusicnnModel(batch_size=2)


def test_onnx_matches_tensorflow_on_random_patches(
    reference: dict[str, np.ndarray], model: MusicnnModel
) -> None:
    out = model.predict(reference["patches"])
    assert out.shape == reference["tags"].shape == (2, 50)
    assert float(np.abs(out - reference["tags"]).max()) <= TOLERANCE


def test_batching_does_not_change_the_outputs(
    reference: dict[str, np.ndarray], model: MusicnnModel
) -> None:
    one_by_one = np.concatenate([model.predict(p[None]) for p in reference["patches"]])
    np.testing.assert_allclose(one_by_one, model.predict(reference["patches"]), atol=1e-6)


def test_mel_spectrogram_matches_librosa(reference: dict[str, np.ndarray]) -> None:
    audio = reference["waveform"].astype(np.float32) / 32768.0
    mel = frontend.mel_spectrogram(audio)
    expected = reference["mel"]
    assert mel.shape == expected.shape == (1 + len(audio) // frontend.HOP, frontend.N_MELS)
    np.testing.assert_allclose(mel, expected, rtol=1e-4, atol=1e-6 * float(expected.max()))
    log_diff = np.abs(frontend.log_compress(mel) - frontend.log_compress(expected)).max()
    assert float(log_diff) <= TOLERANCE


def test_waveform_through_front_end_and_onnx_matches_tensorflow(
    reference: dict[str, np.ndarray], model: MusicnnModel
) -> None:
    audio = reference["waveform"].astype(np.float32) / 32768.0
    patches = frontend.to_patches(frontend.log_mel(audio))
    assert patches.shape == (1, frontend.PATCH_FRAMES, frontend.N_MELS)
    out = model.predict(patches)[0]
    assert float(np.abs(out - reference["wave_tags"]).max()) <= TOLERANCE


def test_log_is_taken_in_float32_not_float16() -> None:
    """musicnn 0.1.0's float16 log overflows for mel values above ~6.55; ours must not."""
    loud = np.array([[1.0, 7.0, 1e3, 1e6]], dtype=np.float32)
    out = frontend.log_compress(loud)
    assert out.dtype == np.float32
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, np.log10(10000 * loud.astype(np.float64) + 1), rtol=1e-6)
