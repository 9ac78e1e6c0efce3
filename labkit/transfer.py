"""Supervised transfer (有监督迁移) with a linear head on frozen features: source, target, or both.

A labelled source domain gives a softmax head ``θ_s = (W_s, b_s)``. With only a few target labels,
*source-then-target* trains the target head with the source head as its prior (MAP adaptation,
Chelba & Acero 2006; L2-SP, Li et al. 2018)::

    θ_t = argmin_θ  (1/n) Σ_i −log softmax(W x_i + b)_{y_i}  +  λ/2 ‖θ − θ_prior‖²

``θ_prior = θ_s`` transfers; ``θ_prior = 0`` is ordinary L2 (target only). ``λ`` decides how far
the target data may pull the head away from the prior: ``λ → ∞`` keeps the source head
(source only), ``λ → 0`` ignores it. :func:`choose_lambda` picks ``λ`` by cross-validation on
the target labels alone, so no test sentence is used. The objective is convex; it is minimised
with full-batch L-BFGS in float64. Taught in lesson 06.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold

from labkit.derivatives import l2_sp_penalty
from labkit.metrics import weighted_f1


@dataclass
class Head:
    """A softmax head ``ŷ = argmax(W x + b)`` on (frozen) feature vectors."""

    W: torch.Tensor  # (classes, width)
    b: torch.Tensor  # (classes,)

    def logits(self, X: np.ndarray) -> np.ndarray:
        return (torch.from_numpy(np.array(X, dtype=np.float64)) @ self.W.T + self.b).numpy()

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.logits(X).argmax(1)


def _check(X: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y)
    if X.ndim != 2 or len(X) != len(y) or len(y) == 0:
        raise ValueError(f"need features (n, width) and n labels, got shapes {X.shape} and {y.shape}")
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"labels must be class ids 0 … {n_classes - 1}, got {sorted(set(y.tolist()))}")
    return torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))


def fit_head(X: np.ndarray, y: Sequence[int], prior: Head | None = None, lam: float = 1e-2,
             n_classes: int = 3, steps: int = 100) -> Head:
    """The head minimising mean cross-entropy + ``lam/2 ‖θ − θ_prior‖²`` (``prior=None``: toward 0).

    Starts from the prior (or zeros) and runs full-batch L-BFGS for at most ``steps`` iterations.
    Taught in lesson 06.
    """
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    X_t, y_t = _check(X, y, n_classes)
    width = X_t.shape[1]
    if prior is not None and tuple(prior.W.shape) != (n_classes, width):
        raise ValueError(f"the prior head has shape {tuple(prior.W.shape)}, expected {(n_classes, width)}")
    ref = [prior.W.detach(), prior.b.detach()] if prior is not None else \
        [torch.zeros(n_classes, width, dtype=torch.float64), torch.zeros(n_classes, dtype=torch.float64)]
    W, b = (r.clone().requires_grad_(True) for r in ref)
    opt = torch.optim.LBFGS([W, b], max_iter=steps, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(X_t @ W.T + b, y_t) + l2_sp_penalty([W, b], ref, lam)
        loss.backward()
        return loss

    opt.step(objective)
    return Head(W.detach(), b.detach())


def choose_lambda(X: np.ndarray, y: Sequence[int], prior: Head | None, grid: Sequence[float],
                  folds: int = 3, seed: int = 0) -> float:
    """The ``λ`` of ``grid`` with the best mean weighted F1 in stratified ``folds``-fold
    cross-validation of :func:`fit_head` on ``(X, y)`` -- the target labels only (ties: the larger
    ``λ``, the simpler model). Taught in lesson 06.
    """
    X, y = np.asarray(X), np.asarray(y)
    if len(y) < 2 * folds or not grid:
        raise ValueError(f"choose_lambda needs a grid and at least {2 * folds} labels for {folds} folds, got {len(y)}")
    split = StratifiedKFold(folds, shuffle=True, random_state=seed)
    scores = {}
    with warnings.catch_warnings():  # a rare class (2% neutral in movie) may have fewer members than folds
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        for lam in sorted(grid, reverse=True):
            scores[lam] = np.mean([weighted_f1(y[b], fit_head(X[a], y[a], prior, lam).predict(X[b]))
                                   for a, b in split.split(X, y)])
    return max(scores, key=scores.get)
