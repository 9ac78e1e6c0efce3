"""The metrics of the evaluation protocol (docs/protocol.md).

* weighted-average F1 over the three classes (the paper's "overall F1"),
* Pearson r between a predicted score and the mean human rating.

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
        if not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0 or arr.max() >= n_classes:
            odd = sorted(set(arr.ravel().tolist()) - set(range(n_classes)))[:5]
            raise ValueError(f"{name} must hold class ids 0..{n_classes - 1}; it holds {odd or arr.dtype}. "
                             "Map scores to classes with data.label_from_score, or logits with argmax")
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
