"""The numpy front end: mel filterbank, streaming equals one-shot, patching rules, tags."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genres.classify.local import frontend
from genres.classify.local.model import TAGS_PATH
from genres.classify.local.tags import DROPPED_TAGS, MTT_GENRES, genre_indices, genre_name


def test_mel_filterbank_shape_and_slaney_norm() -> None:
    fb = frontend.mel_filterbank()
    assert fb.shape == (96, 257)
    assert fb.dtype == np.float32
    assert np.all(fb >= 0)
    # Every band has some weight, and Slaney normalisation makes the area (in Hz) of each
    # triangle 1: sum(weights) * bin width == 1 for bands wide enough to be well sampled.
    assert np.all(fb.sum(axis=1) > 0)
    bin_hz = 16000 / 512
    areas = fb.sum(axis=1) * bin_hz
    np.testing.assert_allclose(areas[-40:], 1.0, rtol=0.05)


def test_mel_scale_round_trips() -> None:
    hz = np.array([0.0, 200.0, 999.0, 1000.0, 4000.0, 8000.0])
    np.testing.assert_allclose(frontend.mel_to_hz(frontend.hz_to_mel(hz)), hz, atol=1e-9)
    assert float(frontend.hz_to_mel(1000.0)) == pytest.approx(15.0)


@pytest.mark.parametrize("chunk", [1, 255, 256, 1000, 4096, 50_000])
def test_streaming_equals_one_shot(chunk: int) -> None:
    rng = np.random.default_rng(7)
    audio = rng.standard_normal(16_000 * 2 + 123).astype(np.float32) * 0.1
    expected = frontend.log_mel(audio)
    stream = frontend.LogMelStream()
    parts = [stream.push(audio[i : i + chunk]) for i in range(0, len(audio), chunk)]
    parts.append(stream.finish())
    got = np.concatenate(parts)
    assert got.shape == expected.shape == (1 + len(audio) // 256, 96)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_patches_drop_the_tail_like_musicnn() -> None:
    frames = np.arange(187 * 3 + 50, dtype=np.float32)[:, None].repeat(96, axis=1)
    patches = frontend.to_patches(frames)
    assert patches.shape == (3, 187, 96)
    np.testing.assert_array_equal(patches[1, :, 0], frames[187:374, 0])


def test_a_track_shorter_than_a_patch_is_repeated_to_fill_one() -> None:
    frames = np.arange(50, dtype=np.float32)[:, None].repeat(96, axis=1)
    patches = frontend.to_patches(frames)
    assert patches.shape == (1, 187, 96)
    np.testing.assert_array_equal(patches[0, :50], frames)
    np.testing.assert_array_equal(patches[0, 50:100], frames)


def test_no_frames_no_patches() -> None:
    assert frontend.to_patches(np.zeros((0, 96), np.float32)).shape == (0, 187, 96)


def test_iter_patches_matches_to_patches() -> None:
    rng = np.random.default_rng(3)
    audio = rng.standard_normal(16_000 * 7).astype(np.float32) * 0.1
    expected = frontend.to_patches(frontend.log_mel(audio))
    chunks = [audio[i : i + 3000] for i in range(0, len(audio), 3000)]
    got = np.concatenate(list(frontend.iter_patches(chunks)))
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_the_33_columns_are_msd_genres_then_mtt_classical_opera_choral() -> None:
    """The model's columns: MSD's 30 genre tags (stored names), then MTT's three."""
    tags = json.loads(TAGS_PATH.read_text())
    assert len(tags) == 33
    assert tags[30:] == list(MTT_GENRES) == ["classical", "opera", "choral"]
    genres = dict(genre_indices(tags)).values()
    assert len(genres) == 33  # every column is a genre
    assert {"rock", "jazz", "hip-hop", "house", "progressive rock", "electronic"} <= set(genres)
    assert not set(genres) & DROPPED_TAGS
    assert all(name == name.lower() == genre_name(name) for name in genres)
    assert genre_name("Hip-Hop") == "hip-hop"
    assert MTT_GENRES["classical"] == ("classical", "classic")
