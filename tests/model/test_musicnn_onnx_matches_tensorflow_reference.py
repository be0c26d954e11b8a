"""The ONNX port (MSD and MTT heads, merged genres) and the numpy front end against musicnn's own
TensorFlow graphs and librosa.

The reference file is made by ``scripts/make_musicnn_reference.py`` (see ``data/README.md``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genres.classify.local import frontend
from genres.classify.local.model import MusicnnModel
from genres.classify.local.tags import genre_name, is_genre

# musicnn 0.1.0's configuration.py (the TensorFlow reference's output order).
MSD_LABELS = [
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists",
    "classic rock", "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill",
    "instrumental", "punk", "oldies", "blues", "hard rock", "ambient", "acoustic", "experimental",
    "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country", "easy listening", "sexy",
    "catchy", "funk", "electro", "heavy metal", "Progressive rock", "60s", "rnb", "indie pop",
    "sad", "House", "happy",
]  # fmt: skip
MTT_LABELS = [
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast",
    "piano", "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male",
    "singing", "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman",
    "male vocal", "no vocal", "pop", "soft", "sitar", "solo", "man", "classic", "choir", "voice",
    "new age", "dance", "male voice", "female vocal", "beats", "harp", "cello", "no voice",
    "weird", "country", "metal", "female voice", "choral",
]  # fmt: skip
MSD_GENRES = [tag for tag in MSD_LABELS if is_genre(tag)]

REFERENCE = Path(__file__).parent / "data" / "musicnn_reference.npz"
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as data:
        return {name: data[name] for name in data.files}


@pytest.fixture(scope="module")
def model() -> MusicnnModel:
    return MusicnnModel(batch_size=2)


@pytest.mark.parametrize(("output", "expected"), [("msd_tags", "tags"), ("mtt_tags", "mtt_tags")])
def test_onnx_matches_tensorflow_on_random_patches(
    reference: dict[str, np.ndarray], model: MusicnnModel, output: str, expected: str
) -> None:
    out = model.outputs(reference["patches"], output)
    assert out.shape == reference[expected].shape == (2, 50)
    assert float(np.abs(out - reference[expected]).max()) <= TOLERANCE


def test_genre_output_is_msd_genres_then_mtt_classical_opera_choral(
    reference: dict[str, np.ndarray], model: MusicnnModel
) -> None:
    """Each genre column is its TensorFlow tag's score; classical is the max of two MTT tags."""
    msd, mtt = reference["tags"], reference["mtt_tags"]
    columns = [msd[:, MSD_LABELS.index(name)] for name in MSD_GENRES]
    columns.append(
        np.maximum(mtt[:, MTT_LABELS.index("classical")], mtt[:, MTT_LABELS.index("classic")])
    )
    columns += [mtt[:, MTT_LABELS.index("opera")], mtt[:, MTT_LABELS.index("choral")]]
    assert model.tags == (*[genre_name(t) for t in MSD_GENRES], "classical", "opera", "choral")
    out = model.predict(reference["patches"])
    assert out.shape == (2, 33)
    assert float(np.abs(out - np.stack(columns, axis=1)).max()) <= TOLERANCE


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
    for output, expected in (("msd_tags", "wave_tags"), ("mtt_tags", "mtt_wave_tags")):
        out = model.outputs(patches, output)[0]
        assert float(np.abs(out - reference[expected]).max()) <= TOLERANCE


def test_log_is_taken_in_float32_not_float16() -> None:
    """musicnn 0.1.0's float16 log overflows for mel values above ~6.55; ours must not."""
    loud = np.array([[1.0, 7.0, 1e3, 1e6]], dtype=np.float32)
    out = frontend.log_compress(loud)
    assert out.dtype == np.float32
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, np.log10(10000 * loud.astype(np.float64) + 1), rtol=1e-6)
