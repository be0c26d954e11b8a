"""Training a head (``head.py``): multinomial logistic regression on embeddings, in numpy.

Pure computation, no I/O: ``genres learn`` (``genres.cli.learn``: ``examples.py`` finds the
examples, the local classifier embeds them) calls :func:`train`. The L2 strength is chosen by
stratified k-fold cross-validation on the training examples alone; the held-out predictions of
the chosen strength give the reported top-1 and top-3 and the (top probability, agrees with the
teacher) pairs from which the cascade's threshold is chosen. Targets are rows of label
probabilities: one-hot for a label, or a teacher's score distribution (soft targets; the loss
and its gradient are the same).

Why numpy and not scikit-learn: the problem is small (hundreds to thousands of rows, 1,506
columns, tens of labels) and a full-batch accelerated gradient in the rows' span (``Reduced``)
takes seconds: 5.7 s for the cross-validation and fit of 500 clips (``python -m bench learn``),
so no new dependency is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from genres.classify.local.head import Head, softmax

Matrix = npt.NDArray[np.float64]

L2_GRID: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
"""L2 strengths tried by cross-validation (on the mean loss over examples)."""
ITERATIONS = 400
"""Accelerated-gradient steps per fit (warm-started along the grid, strongest first)."""
MAX_FOLDS = 5


class LearnError(ValueError):
    """Examples that a head cannot be trained on (the message says why, in one line)."""


@dataclass(frozen=True, slots=True)
class Fit:
    weights: Matrix
    bias: Matrix


@dataclass(frozen=True, slots=True)
class CrossValidation:
    """Held-out figures of the chosen L2 strength, and the held-out pairs for the cascade."""

    l2: float
    folds: int
    top1: float
    top3: float
    by_l2: dict[float, float]
    """Held-out top-1 of each L2 strength tried."""
    held_out: list[tuple[float, bool]]
    """Per example: the head's top probability, and whether its top label is the teacher's."""


def standardisation(x: Matrix, standardise: bool) -> tuple[Matrix, Matrix]:
    """Per-column mean and scale of ``x`` (zero and one when not standardising)."""
    if not standardise:
        return np.zeros(x.shape[1]), np.ones(x.shape[1])
    scale = x.std(axis=0)
    return x.mean(axis=0), np.where(scale > 1e-6, scale, 1.0)


@dataclass(frozen=True, slots=True)
class Reduced:
    """Training rows in the span of their own rows: ``z = x @ basis`` (N, min(N, D)).

    With L2 on the weights, the best weights lie in the span of the rows (the loss's gradient
    does, and the penalty shrinks any other part to zero), so fitting ``z`` and mapping back
    with ``basis`` gives the same head as fitting ``x``, exactly, at min(N, D) / D of the cost
    per step: with 500 clips of 1,506 features, a third.
    """

    z: Matrix
    basis: Matrix | None
    """(D, N) with orthonormal columns; None when N >= D (``z`` is ``x`` itself)."""
    curvature: float
    """Half the largest eigenvalue of [z 1]'[z 1] / N: the loss's gradient Lipschitz bound."""

    @classmethod
    def of(cls, x: Matrix) -> Reduced:
        n, d = x.shape
        basis: Matrix | None = None
        z = x
        if d > n:
            basis, r = np.linalg.qr(x.T)  # x = r' basis'
            z = r.T
        za = np.hstack([z, np.ones((n, 1))])
        return cls(z, basis, 0.5 * float(np.linalg.norm(za, 2)) ** 2 / n)


def fit(
    x: Matrix,
    targets: Matrix,
    l2: float,
    *,
    start: Fit | None = None,
    iterations: int = ITERATIONS,
    reduced: Reduced | None = None,
) -> Fit:
    """Minimise mean cross-entropy + ``l2``/2 * |W|^2 by Nesterov's accelerated gradient.

    ``x`` is already standardised (N, D); ``targets`` (N, K) rows sum to 1. The step is 1/L with
    L the gradient's Lipschitz bound (the softmax Hessian is at most 1/2 times X'X/N).
    ``reduced`` is ``Reduced.of(x)`` when the caller fits the same rows several times.
    """
    r = reduced if reduced is not None else Reduced.of(x)
    n, d = r.z.shape
    k = targets.shape[1]
    za = np.hstack([r.z, np.ones((n, 1))])
    lipschitz = r.curvature + l2
    step = 1.0 / lipschitz
    kappa = lipschitz / l2
    momentum = (np.sqrt(kappa) - 1) / (np.sqrt(kappa) + 1)
    w = np.zeros((d + 1, k))
    if start is not None:
        weights = start.weights if r.basis is None else r.basis.T @ start.weights
        w = np.vstack([weights, start.bias])
    ridge = np.full((d + 1, 1), l2)
    ridge[-1] = 0.0  # the bias is not penalised
    y = w.copy()
    for _ in range(iterations):
        gradient = za.T @ (softmax(za @ y) - targets) / n + ridge * y
        w_next = y - step * gradient
        y = w_next + momentum * (w_next - w)
        w = w_next
    weights = w[:-1] if r.basis is None else r.basis @ w[:-1]
    return Fit(weights=weights, bias=w[-1])


def predict(model: Fit, x: Matrix) -> Matrix:
    return softmax(x @ model.weights + model.bias)


def folds_of(label_index: npt.NDArray[np.intp], folds: int, seed: int = 0) -> list[Any]:
    """Stratified folds: each label's examples dealt round-robin after a seeded shuffle."""
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(label_index), np.intp)
    for label in np.unique(label_index):
        members = np.flatnonzero(label_index == label)
        rng.shuffle(members)
        fold_of[members] = np.arange(len(members)) % folds
    return [np.flatnonzero(fold_of == f) for f in range(folds)]


def top_k_hits(probabilities: Matrix, truth: npt.NDArray[np.intp], k: int) -> int:
    best = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return int((best == truth[:, None]).any(axis=1).sum())


def cross_validate(
    x: Matrix,
    targets: Matrix,
    *,
    standardise: bool,
    grid: Sequence[float] = L2_GRID,
    folds: int = MAX_FOLDS,
    iterations: int = ITERATIONS,
) -> CrossValidation:
    """Held-out predictions of every strength in ``grid``; the best top-1 (then the strongest)
    wins. The truth of an example is its target's most probable label."""
    truth = targets.argmax(axis=1)
    splits = folds_of(truth, folds)
    held: dict[float, Matrix] = {l2: np.zeros_like(targets) for l2 in grid}
    for test in splits:
        train = np.setdiff1d(np.arange(len(x)), test)
        mean, scale = standardisation(x[train], standardise)
        xs_train, xs_test = (x[train] - mean) / scale, (x[test] - mean) / scale
        reduced = Reduced.of(xs_train)
        previous: Fit | None = None
        for l2 in sorted(grid, reverse=True):
            previous = fit(
                xs_train,
                targets[train],
                l2,
                start=previous,
                iterations=iterations,
                reduced=reduced,
            )
            held[l2][test] = predict(previous, xs_test)
    by_l2 = {l2: top_k_hits(p, truth, 1) / len(x) for l2, p in held.items()}
    best = max(sorted(grid, reverse=True), key=lambda l2: by_l2[l2])
    chosen = held[best]
    return CrossValidation(
        l2=best,
        folds=folds,
        top1=by_l2[best],
        top3=top_k_hits(chosen, truth, 3) / len(x),
        by_l2=by_l2,
        held_out=[
            (float(p.max()), bool(p.argmax() == t)) for p, t in zip(chosen, truth, strict=True)
        ],
    )


def check_examples(labels: Sequence[str], truth: Sequence[str], min_examples: int) -> None:
    """Refuse an empty source, a single label, or a label with fewer than ``min_examples``."""
    if not truth:
        raise LearnError("no examples: the source holds no readable labelled audio")
    counts = {label: 0 for label in labels}
    for label in truth:
        counts[label] += 1
    few = sorted(label for label, count in counts.items() if count < min_examples)
    if few:
        listed = ", ".join(f"{label!r} ({counts[label]})" for label in few)
        raise LearnError(
            f"too few examples (fewer than {min_examples}) for {listed}: add examples, drop "
            "the label, or lower --min-examples"
        )
    if len(labels) < 2:
        raise LearnError(f"a head needs at least two labels; the source has {len(labels)}")


def train(
    embeddings: Matrix,
    targets: Matrix,
    labels: Sequence[str],
    *,
    base_model: str,
    standardise: bool = False,
    grid: Sequence[float] = L2_GRID,
    min_examples: int = 5,
    iterations: int = ITERATIONS,
    meta: dict[str, Any] | None = None,
) -> tuple[Head, CrossValidation]:
    """A head trained on all the examples with the L2 strength that cross-validated best."""
    x = np.asarray(embeddings, np.float64)
    y = np.asarray(targets, np.float64)
    if x.ndim != 2 or y.shape != (len(x), len(labels)):
        raise ValueError("embeddings (N, D) and targets (N, labels) do not match")
    truth = [labels[i] for i in y.argmax(axis=1)] if len(y) else []
    check_examples(labels, truth, min_examples)
    counts = {label: truth.count(label) for label in labels}
    folds = min(MAX_FOLDS, min(counts.values()))
    cv = cross_validate(
        x, y, standardise=standardise, grid=grid, folds=folds, iterations=iterations
    )
    mean, scale = standardisation(x, standardise)
    model = fit((x - mean) / scale, y, cv.l2, iterations=iterations)
    head = Head(
        labels=tuple(labels),
        base_model=base_model,
        weights=model.weights.astype(np.float32),
        bias=model.bias.astype(np.float32),
        mean=mean.astype(np.float32),
        scale=scale.astype(np.float32),
        meta={
            **(meta or {}),
            "counts": counts,
            "standardised": standardise,
            "l2": cv.l2,
            "cross_validation": {
                "folds": cv.folds,
                "top1": round(cv.top1, 4),
                "top3": round(cv.top3, 4),
                "top1_by_l2": {str(k): round(v, 4) for k, v in cv.by_l2.items()},
            },
        },
    )
    return head, cv


def one_hot(truth: Sequence[str], labels: Sequence[str]) -> Matrix:
    index = {label: i for i, label in enumerate(labels)}
    y = np.zeros((len(truth), len(labels)))
    y[np.arange(len(truth)), [index[t] for t in truth]] = 1.0
    return y
