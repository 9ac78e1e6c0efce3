"""Calibration (概率校准) of predicted probabilities: measuring it and fixing it. Taught in lesson 11.

A classifier is *calibrated* when, of the sentences it labels with confidence about 0.8, about 80 % are right.
The confidence of a prediction is its top probability ``conf(x) = max_c p(c | x)``.

* :func:`reliability` bins the confidences and compares each bin's accuracy with its mean confidence (the
  reliability diagram, :func:`labkit.plots.reliability_diagram`);
* :func:`expected_calibration_error` (ECE) summarises the gaps in one number;
* :func:`fit_temperature` / :func:`temperature_scale` fix over- or under-confidence with one parameter
  (Guo et al. 2017) fitted on held-out predictions;
* :func:`ece_difference` is the paired bootstrap interval of a difference in ECE on the same test sentences
  (the evidence standard of docs/protocol.md, for ECE instead of F1).

scikit-learn's ``CalibratedClassifierCV`` (Platt's sigmoid or isotonic regression, fitted by cross-validation)
does the same job for one estimator; temperature scaling is written out here because it is the lesson.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from labkit.ensemble import check_labels, check_probabilities
from labkit.metrics import bootstrap_counts


def _bins(conf: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bin of each confidence: ``B_b = (b/n_bins, (b+1)/n_bins]``; a confidence of exactly 0 goes to bin 0."""
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive whole number, got {n_bins}")
    return np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, int(n_bins) - 1)


def reliability(P: np.ndarray, y: Sequence[int], n_bins: int = 10) -> pd.DataFrame:
    """The reliability table: the confidences ``conf_i = max_c P[i, c]`` in ``n_bins`` equal-width bins
    ``B_b = (b/n_bins, (b+1)/n_bins]``, and per bin::

        count = |B_b|,   confidence = conf(B_b) = mean_{i in B_b} conf_i,
        accuracy = acc(B_b) = mean_{i in B_b} [argmax_c P[i, c] = y_i]

    One row per bin (empty bins included, with NaN means), with its ``low`` and ``high`` edges. A calibrated
    model has ``accuracy ≈ confidence`` in every bin. Taught in lesson 11.
    """
    P = check_probabilities(P)
    y = check_labels(y, len(P), P.shape[1], "reliability")
    conf, correct = P.max(1), (P.argmax(1) == y).astype(float)
    b = _bins(conf, n_bins)
    count = np.bincount(b, minlength=n_bins)
    with np.errstate(invalid="ignore"):
        table = pd.DataFrame({"low": np.arange(n_bins) / n_bins, "high": np.arange(1, n_bins + 1) / n_bins,
                              "count": count,
                              "confidence": np.bincount(b, conf, minlength=n_bins) / count,
                              "accuracy": np.bincount(b, correct, minlength=n_bins) / count})
    table.index.name = "bin"
    return table


def expected_calibration_error(P: np.ndarray, y: Sequence[int], n_bins: int = 10) -> float:
    """Expected calibration error (Naeini et al. 2015; Guo et al. 2017) with ``n_bins`` equal-width confidence bins::

        ECE = sum_b |B_b| / n · |acc(B_b) − conf(B_b)|

    where ``B_b`` are the sentences whose confidence ``max_c P[i, c]`` falls in bin ``b``, ``acc(B_b)`` the share
    of them predicted right and ``conf(B_b)`` their mean confidence (:func:`reliability`). 0 is perfect; it is
    the gap between the reliability diagram's bars and its diagonal, weighted by how many sentences each bar
    holds. It depends on the number of bins and is biased upwards on small test sets. Taught in lesson 11.
    """
    P = check_probabilities(P)
    y = check_labels(y, len(P), P.shape[1], "expected_calibration_error")
    gap = (P.argmax(1) == y) - P.max(1)                          # correct_i - conf_i
    b = _bins(P.max(1), n_bins)
    return float(np.abs(np.bincount(b, gap, minlength=n_bins)).sum() / len(y))


def _logits(log_probs: np.ndarray, who: str) -> np.ndarray:
    Z = np.asarray(log_probs, dtype=float)
    if Z.ndim != 2 or Z.shape[0] == 0 or Z.shape[1] < 2:
        raise ValueError(f"{who} needs logits or log-probabilities of shape (sentences, classes), got {Z.shape}")
    if np.isnan(Z).any() or np.isposinf(Z).any():
        raise ValueError(f"{who}: the logits contain NaN or +inf")
    return Z


def temperature_scale(logits: np.ndarray, T: float) -> np.ndarray:
    """Temperature scaling: the probabilities ``softmax(z / T)`` of logits ``z`` (or log-probabilities
    ``log p``, which give the same result: softmax ignores a constant per row)::

        p_T(c | x) = exp(z_c / T) / sum_k exp(z_k / T)

    ``T > 1`` softens (less confident), ``T < 1`` sharpens, ``T = 1`` changes nothing. The argmax -- the
    predicted class, hence accuracy and F1 -- never changes. Taught in lesson 11.
    """
    Z = _logits(logits, "temperature_scale")
    if not np.isfinite(T) or T <= 0:
        raise ValueError(f"the temperature must be a positive number, got {T}")
    return softmax(np.nan_to_num(Z, neginf=-1e4) / T, axis=1)


def nll(P: np.ndarray, y: Sequence[int]) -> float:
    """Negative log-likelihood (cross-entropy) ``-(1/n) sum_i log P[i, y_i]``, with ``P`` clipped at 1e-12.
    Taught in lesson 11."""
    P = check_probabilities(P)
    y = check_labels(y, len(P), P.shape[1], "nll")
    return float(-np.mean(np.log(np.clip(P[np.arange(len(y)), y], 1e-12, None))))


def fit_temperature(logits: np.ndarray, y: Sequence[int], bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature that minimises the negative log-likelihood of held-out labels (Guo et al. 2017)::

        T* = argmin_{T > 0}  -(1/n) sum_i log softmax(z_i / T)_{y_i}

    ``logits`` are held-out logits or log-probabilities (e.g. ``np.log`` of out-of-fold probabilities from
    :func:`labkit.ensemble.out_of_fold_proba`) -- never the test sentences, and not the model's own training
    sentences, on which it is overconfident. One parameter, found by a bounded 1-D search over ``log T``.
    Taught in lesson 11.
    """
    Z = np.nan_to_num(_logits(logits, "fit_temperature"), neginf=-1e4)
    y = check_labels(y, len(Z), Z.shape[1], "fit_temperature")
    lo, hi = bounds
    if not 0 < lo < 1 < hi:
        raise ValueError(f"bounds must satisfy 0 < low < 1 < high, got {bounds}")
    loss = lambda t: -np.mean(log_softmax(Z / np.exp(t), axis=1)[np.arange(len(y)), y])
    return float(np.exp(minimize_scalar(loss, bounds=(np.log(lo), np.log(hi)), method="bounded",
                                        options={"xatol": 1e-6}).x))


def ece_difference(y: Sequence[int], probs_a: Sequence[np.ndarray], probs_b: Sequence[np.ndarray], n_bins: int = 10,
                   n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Paired bootstrap interval of ``ECE(A) − ECE(B)`` on the same test sentences.

    ``probs_a`` / ``probs_b`` hold one ``(n, K)`` probability array per seed (or one array). The difference is
    the mean over seeds of ``ECE(A, s) − ECE(B, s)``; each of ``n_boot`` resamples of the test sentences (the
    same draw for A and B, the same draws as :func:`labkit.metrics.paired_bootstrap`) recomputes it, a resampled
    sentence counting as often as it was drawn. Returns ``(difference, low, high)``: A is clearly better
    calibrated than B only where ``high < 0``. Taught in lesson 11.
    """
    y = np.asarray(y)
    A = [check_probabilities(p, "probs_a") for p in (probs_a if np.ndim(probs_a) == 3 else [probs_a])]
    B = [check_probabilities(p, "probs_b") for p in (probs_b if np.ndim(probs_b) == 3 else [probs_b])]
    for P in A + B:
        check_labels(y, len(P), P.shape[1], "ece_difference")
    if not 0 < level < 1 or n_boot < 100:
        raise ValueError(f"need 0 < level < 1 and n_boot >= 100, got level {level}, n_boot {n_boot}")
    counts = bootstrap_counts(len(y), n_boot, seed)

    def resampled(P: np.ndarray) -> np.ndarray:
        gap, b = (P.argmax(1) == y) - P.max(1), _bins(P.max(1), n_bins)
        per_bin = np.stack([counts[:, b == k] @ gap[b == k] for k in range(n_bins)], axis=1)
        return np.abs(per_bin).sum(1) / counts.sum(1)

    boot = np.mean([resampled(P) for P in A], axis=0) - np.mean([resampled(P) for P in B], axis=0)
    point = float(np.mean([expected_calibration_error(P, y, n_bins) for P in A])
                  - np.mean([expected_calibration_error(P, y, n_bins) for P in B]))
    tail = (1 - level) / 2
    return point, float(np.quantile(boot, tail)), float(np.quantile(boot, 1 - tail))
