"""The metrics of the evaluation protocol (docs/protocol.md).

* weighted-average F1 over the three classes (the paper's "overall F1"),
* Pearson r between a predicted score and the mean human rating,
* the paired bootstrap interval of a difference in weighted F1 on the same test sentences.

The experiments that use them (cross-domain matrix, learning curve) live in :mod:`labkit.protocol`.
Taught in lesson 00.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.stats import pearsonr
from sklearn.metrics import f1_score

from labkit.data import LABELS


def weighted_f1(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int = len(LABELS)) -> float:
    """Weighted-average F1: ``sum_c (n_c / n) * F1_c`` over the classes present in ``y_true``.

    Both arguments are class ids in ``0 .. n_classes-1`` (0 negative, 1 neutral, 2 positive)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has shape {y_true.shape} but y_pred has shape {y_pred.shape}")
    if y_true.size == 0:
        raise ValueError("weighted_f1 got no items")
    for name, arr in (("y_true", y_true), ("y_pred", y_pred)):
        _check_ids(name, arr, n_classes)
    return float(f1_score(y_true, y_pred, average="weighted", zero_division=0))


def pearson(score_true: Sequence[float], score_pred: Sequence[float]) -> float:
    """Pearson correlation ``r = cov(x, y) / (sd(x) sd(y))`` between two score vectors."""
    x, y = np.asarray(score_true, float), np.asarray(score_pred, float)
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"pearson needs two equal-length vectors of 2+ items, got {x.shape} and {y.shape}")
    for name, v in (("score_true", x), ("score_pred", y)):
        if not np.isfinite(v).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        if np.ptp(v) == 0:
            raise ValueError(f"{name} is constant ({v[0]:g} everywhere), so r = cov/(sd sd) is undefined "
                             "(sd = 0); a model that outputs one score for every item has no correlation")
    return float(pearsonr(x, y).statistic)


def _check_ids(name: str, arr: np.ndarray, n_classes: int) -> None:
    if not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0 or arr.max() >= n_classes:
        odd = sorted(set(arr.ravel().tolist()) - set(range(n_classes)))[:5]
        raise ValueError(f"{name} must hold class ids 0..{n_classes - 1}; it holds {odd or arr.dtype}. "
                         "Map scores to classes with data.label_from_score, or logits with argmax")


def resampled_f1(y_true: np.ndarray, y_pred: np.ndarray, counts: np.ndarray, n_classes: int) -> np.ndarray:
    """Weighted F1 of each bootstrap resample at once. ``counts`` (B, n) says how often each test
    sentence is drawn in each of the B resamples; per class ``c``::

        tp_c = counts @ [y = c and p = c],   F1_c = 2 tp_c / (2 tp_c + fp_c + fn_c),
        F1 = sum_c support_c F1_c / n       (support_c = counts @ [y = c]; 0/0 counts as 0)

    Equal to :func:`weighted_f1` on every resample (tested), but one matrix product per class."""
    total = np.zeros(len(counts))
    for c in range(n_classes):
        true_c, pred_c = (y_true == c).astype(float), (y_pred == c).astype(float)
        tp = counts @ (true_c * pred_c)
        fp, fn = counts @ ((1 - true_c) * pred_c), counts @ (true_c * (1 - pred_c))
        denom = 2 * tp + fp + fn
        f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
        total += (counts @ true_c) * f1
    return total / counts.sum(1)


def bootstrap_counts(n: int, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """``(n_boot, n)`` draw counts: each row resamples ``n`` test sentences with replacement."""
    rng = np.random.default_rng(seed)
    return np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(n_boot)]).astype(float)


def paired_bootstrap(y_true: Sequence[int], preds_a: Sequence[Sequence[int]], preds_b: Sequence[Sequence[int]],
                     n_boot: int = 1000, level: float = 0.95, seed: int = 0,
                     n_classes: int = len(LABELS)) -> tuple[float, float, float]:
    """Paired bootstrap interval of ``F1(A) - F1(B)`` on the same test sentences.

    ``preds_a`` / ``preds_b`` hold one prediction vector per seed (or label draw) of each method.
    The difference is the mean over seeds of ``F1(A, s) - F1(B, s)``; resampling the test
    sentences (the same draw for both methods: *paired*) ``n_boot`` times gives its spread, and the
    ``level`` interval is its percentiles. Returns ``(difference, low, high)``: A beats B only where
    ``low > 0``. Used by :func:`labkit.protocol.compare`, the evidence standard of docs/protocol.md.
    """
    y = np.asarray(y_true)
    a, b = np.atleast_2d(np.asarray(preds_a)), np.atleast_2d(np.asarray(preds_b))
    if a.shape[1] != len(y) or b.shape[1] != len(y):
        raise ValueError(f"each prediction vector must have one label per test sentence ({len(y)}); "
                         f"got shapes {a.shape} and {b.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    if n_boot < 100:
        raise ValueError(f"n_boot must be at least 100 for a percentile interval, got {n_boot}")
    for name, arr in (("y_true", y), ("preds_a", a), ("preds_b", b)):
        _check_ids(name, arr, n_classes)
    counts = bootstrap_counts(len(y), n_boot, seed)
    diff = (np.mean([resampled_f1(y, p, counts, n_classes) for p in a], axis=0)
            - np.mean([resampled_f1(y, p, counts, n_classes) for p in b], axis=0))
    point = float(np.mean([weighted_f1(y, p, n_classes) for p in a]) - np.mean([weighted_f1(y, p, n_classes) for p in b]))
    tail = (1 - level) / 2
    return point, float(np.quantile(diff, tail)), float(np.quantile(diff, 1 - tail))
