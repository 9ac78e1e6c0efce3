"""Unsupervised domain adaptation (无监督领域自适应): labelled source, unlabelled target.

Two ideas, each a few lines, for when the target domain has text but no labels:

* **CORAL** (Sun, Feng & Saenko 2016) aligns the *features*: on features standardised with the
  source-and-target mean and standard deviation, whiten the source with its own covariance and
  re-colour it with the target's, then train on them::

      Z_s' = Z_s · C_s^{-1/2} · C_t^{1/2},     C = cov(Z) + ε I

  This is what the literature means by *feature matching* (aligning feature distributions).
* **Prior re-estimation by EM** (Saerens, Latinne & Decaestecker 2002) corrects *label shift*: the
  class shares differ between domains but p(x | y) is assumed the same. With source posteriors
  p_s(y | x) and source priors π_s, iterate on the unlabelled target sentences::

      p(y | x) ∝ p_s(y | x) · π(y) / π_s(y),      π(y) ← mean_x p(y | x)

  and predict with the adjusted posteriors.

Taught in lesson 07.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import sqrtm


def _matrix_power_half(C: np.ndarray, inverse: bool) -> np.ndarray:
    root = np.real(sqrtm(C))
    return np.linalg.inv(root) if inverse else root


def coral(X_source: np.ndarray, X_target: np.ndarray, eps: float = 1.0) -> np.ndarray:
    """The source features re-coloured to the target's covariance (CORAL, Sun et al. 2016), returned
    on the original scale so that a classifier trained on them applies to raw target features.

    Both sides are first standardised with the mean and standard deviation of source and target
    together (the paper's ``ε = 1`` assumes unit-variance features), then ``Z_s C_s^{-1/2} C_t^{1/2}``
    with ``C = cov(Z) + ε I``, then mapped back. Taught in lesson 07.
    """
    Xs, Xt = np.asarray(X_source, dtype=np.float64), np.asarray(X_target, dtype=np.float64)
    if Xs.ndim != 2 or Xt.ndim != 2 or Xs.shape[1] != Xt.shape[1]:
        raise ValueError(f"coral needs two feature tables of the same width, got {Xs.shape} and {Xt.shape}")
    if len(Xs) < 2 or len(Xt) < 2 or eps <= 0:
        raise ValueError("coral needs at least 2 rows on each side and eps > 0")
    both = np.vstack([Xs, Xt])
    mean, scale = both.mean(0), both.std(0) + 1e-12
    Zs, Zt = (Xs - mean) / scale, (Xt - mean) / scale
    eye = eps * np.eye(Xs.shape[1])
    whiten = _matrix_power_half(np.cov(Zs, rowvar=False) + eye, inverse=True)
    colour = _matrix_power_half(np.cov(Zt, rowvar=False) + eye, inverse=False)
    return (Zs @ whiten @ colour) * scale + mean


def adjust_priors(P: np.ndarray, source_priors: np.ndarray, target_priors: np.ndarray) -> np.ndarray:
    """Posteriors re-weighted to new class priors: ``p(y|x) ∝ p_s(y|x) π_t(y) / π_s(y)``, rows
    normalised. Taught in lesson 07."""
    P, ps, pt = (np.asarray(a, dtype=np.float64) for a in (P, source_priors, target_priors))
    if P.ndim != 2 or ps.shape != (P.shape[1],) or pt.shape != ps.shape:
        raise ValueError(f"need posteriors (n, k) and two prior vectors of length k, got {P.shape}, {ps.shape}, {pt.shape}")
    if (ps <= 0).any():
        raise ValueError("every source prior must be > 0 (a class never seen in the source cannot be re-weighted)")
    Q = P * (pt / ps)
    return Q / Q.sum(1, keepdims=True)


def em_priors(P: np.ndarray, source_priors: np.ndarray, iterations: int = 1000,
              tol: float = 1e-8) -> np.ndarray:
    """Target class priors estimated by EM from source posteriors ``P`` of unlabelled target
    sentences (Saerens et al. 2002). Taught in lesson 07."""
    prior = np.asarray(source_priors, dtype=np.float64)
    for _ in range(iterations):
        new = adjust_priors(P, source_priors, prior).mean(0)
        if np.abs(new - prior).max() < tol:
            return new
        prior = new
    return prior
