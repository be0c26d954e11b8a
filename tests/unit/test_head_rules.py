"""The rules around a trained head, on made-up embeddings: its file, the labels' names, the
refusals of ``train`` and of the local classifier, and the sources' targets."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest

from genres.classify.local import LocalClassifier, MusicnnModel
from genres.classify.local.examples import (
    folder_examples,
    label_name,
    restrict,
    tag_examples,
    teacher_examples,
)
from genres.classify.local.head import Head, HeadFileError, base_model_id
from genres.classify.local.learn import LearnError, Reduced, cross_validate, fit, one_hot, train
from genres.classify.local.model import MODEL_NAME
from genres.errors import ConfigurationError


def blobs(per_label: int, labels: list[str], width: int = 12, seed: int = 0) -> np.ndarray:
    """Points around one centre per label, so a head can learn them."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (len(labels), width))
    return np.concatenate([c + rng.normal(0, 1, (per_label, width)) for c in centres])


def a_head(base_model: str = "m@1") -> Head:
    labels = ["a", "b", "c"]
    x = blobs(8, labels)
    head, _ = train(
        x,
        one_hot([name for name in labels for _ in range(8)], labels),
        labels,
        base_model=base_model,
    )
    return head


def test_the_file_round_trips_without_pickle_and_its_digest_is_its_bytes(tmp_path: Path) -> None:
    head = a_head()
    saved = head.save(tmp_path / "h.npz")
    loaded = Head.load(tmp_path / "h.npz")
    assert loaded.digest == hashlib.sha256((tmp_path / "h.npz").read_bytes()).hexdigest()
    assert saved.digest == loaded.digest
    assert loaded.labels == head.labels
    assert loaded.base_model == "m@1"
    assert loaded.meta["counts"] == {"a": 8, "b": 8, "c": 8}
    assert set(loaded.meta["cross_validation"]) >= {"folds", "top1", "top3"}
    x = blobs(8, ["a", "b", "c"])
    np.testing.assert_allclose(loaded.probabilities(x), head.probabilities(x), atol=1e-6)
    np.testing.assert_allclose(loaded.probabilities(x).sum(axis=1), 1.0, atol=1e-5)
    with np.load(tmp_path / "h.npz", allow_pickle=False) as npz:  # no object arrays in it
        assert all(npz[k].dtype != object for k in npz.files)


def test_top_is_ordered_by_probability() -> None:
    head = a_head()
    x = blobs(8, ["a", "b", "c"])[20]  # one of the "c" points
    top = head.top(x, 2)
    assert top[0][0] == "c"
    assert len(top) == 2
    assert top[0][1] >= top[1][1]


def test_a_file_that_is_not_a_head_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.npz").write_bytes(b"PK not really")
    with pytest.raises(HeadFileError, match="not a head file"):
        Head.load(tmp_path / "x.npz")
    np.savez(tmp_path / "y.npz", weights=np.zeros((2, 2)))
    with pytest.raises(HeadFileError):
        Head.load(tmp_path / "y.npz")


def test_a_head_for_another_model_version_is_refused_at_start_with_one_line() -> None:
    model = MusicnnModel()
    foreign = a_head(base_model=base_model_id(MODEL_NAME, "0.0.9+onnx-000000000000"))
    with pytest.raises(ConfigurationError) as refused:
        LocalClassifier(http_client=httpx.AsyncClient(), model=model, head=foreign, workers=1)
    assert "\n" not in str(refused.value)
    assert "genres learn" in str(refused.value)


def test_a_head_names_the_stored_model_by_its_digest() -> None:
    model = MusicnnModel()
    trained = a_head(base_model=base_model_id(MODEL_NAME, model.version))
    head = Head.from_bytes(trained.to_bytes())
    retrained = Head.from_bytes(replace(trained, meta={**trained.meta, "l2": 99}).to_bytes())
    client = httpx.AsyncClient()
    with_head = LocalClassifier(http_client=client, model=model, head=head, workers=1)
    with_other = LocalClassifier(http_client=client, model=model, head=retrained, workers=1)
    plain = LocalClassifier(http_client=client, model=model, workers=1)
    assert with_head.model.name == f"{MODEL_NAME}+head" != plain.model.name
    assert with_head.model.version == f"{model.version}+head-{head.digest[:16]}"
    assert with_other.model.version != with_head.model.version


def test_too_few_examples_an_empty_source_and_one_label_are_refused() -> None:
    labels = ["a", "b"]
    x = blobs(6, labels)
    truth = ["a"] * 6 + ["b"] * 4 + ["a"] * 2
    with pytest.raises(LearnError, match=r"fewer than 5\) for 'b' \(4\)"):
        train(x, one_hot(truth, labels), labels, base_model="m")
    with pytest.raises(LearnError, match="no examples"):
        train(np.zeros((0, 3)), np.zeros((0, 2)), labels, base_model="m")
    with pytest.raises(LearnError, match="at least two labels"):
        train(x, one_hot(["a"] * 12, ["a"]), ["a"], base_model="m")


def test_cross_validation_learns_separable_labels_and_not_shuffled_ones() -> None:
    labels = ["a", "b", "c", "d"]
    x = blobs(10, labels, seed=1)
    truth = [name for name in labels for _ in range(10)]
    learnt = cross_validate(x, one_hot(truth, labels), standardise=False, folds=5)
    shuffled = list(np.random.default_rng(2).permutation(truth))
    chance = cross_validate(x, one_hot(shuffled, labels), standardise=False, folds=5)
    assert learnt.top1 >= 0.9
    assert chance.top1 <= 0.6
    assert len(learnt.held_out) == 40
    assert all(0 <= p <= 1 for p, _ in learnt.held_out)


def test_labels_are_named_as_the_replicate_backend_stores_them(tmp_path: Path) -> None:
    assert label_name("Electronic---Drum n Bass") == "drum n bass electronic"
    assert label_name("  Hip  Hop ") == "hip hop"
    for folder in ("Rock---Punk", "jazz", ".hidden"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "1.mp3").write_bytes(b"")
        (tmp_path / folder / "cover.jpg").write_bytes(b"")
    (tmp_path / "loose.mp3").write_bytes(b"")
    examples, ignored = folder_examples(str(tmp_path), {".mp3"})
    assert sorted(e.label for e in examples) == ["jazz", "punk rock"]
    assert sorted(Path(p).name for p in ignored) == ["cover.jpg", "cover.jpg", "loose.mp3"]


def test_teacher_targets_top_label_or_soft_and_rare_labels_dropped() -> None:
    stored = [
        {"name": "ambient electronic", "confidence": 0.6},
        {"name": "Electronic---Techno", "confidence": 0.2},
    ]
    [top] = teacher_examples([("u1", stored)], soft=False)
    [soft] = teacher_examples([("u1", stored)], soft=True)
    assert top.target == {"ambient electronic": 1.0}
    assert soft.target == pytest.approx({"ambient electronic": 0.75, "techno electronic": 0.25})
    assert teacher_examples([("u2", [{"name": "x", "confidence": "high"}])], soft=False) == []
    kept, dropped = restrict([soft, top, top], min_examples=3)
    assert dropped == ["techno electronic"]
    assert all(e.target == {"ambient electronic": 1.0} for e in kept)


def test_tags_on_too_few_tracks_are_not_labels() -> None:
    rows = [("u1", ["Jazz", "live"]), ("u2", ["jazz"]), ("u3", ["rock"]), ("u4", ["rock", "jazz"])]
    examples = tag_examples(rows, min_tracks=2)
    assert [(e.audio, dict(e.target)) for e in examples] == [
        ("u1", {"jazz": 1.0}),
        ("u2", {"jazz": 1.0}),
        ("u3", {"rock": 1.0}),
        ("u4", {"jazz": 0.5, "rock": 0.5}),
    ]


def test_fitting_the_rows_span_gives_the_same_head_as_fitting_every_column() -> None:
    labels = ["a", "b", "c"]
    x = blobs(5, labels, width=40, seed=3)  # 15 rows, 40 columns: the span is smaller
    targets = one_hot([name for name in labels for _ in range(5)], labels)
    whole = Reduced(x, None, Reduced.of(x).curvature)
    spanned = fit(x, targets, 0.1, iterations=300)
    direct = fit(x, targets, 0.1, iterations=300, reduced=whole)
    assert Reduced.of(x).z.shape == (15, 15)
    np.testing.assert_allclose(spanned.weights, direct.weights, atol=1e-6)
    np.testing.assert_allclose(spanned.bias, direct.bias, atol=1e-6)
