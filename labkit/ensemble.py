"""Ensembles (集成): several models' predictions combined into one. Taught in lesson 11.

Every member gives, for each sentence, a row of class probabilities ``p_m(c | x)`` (or only a class).
The combiners here are the ones the lesson writes out:

* **soft voting** (averaging, 平均法): ``p(c | x) = sum_m w_m p_m(c | x)`` with ``w_m >= 0``, ``sum_m w_m = 1``
  (equal weights ``1/M`` unless given; :func:`simplex_weights` chooses them on out-of-fold probabilities);
* **hard (majority) voting** (投票法): the class with the most (weighted) votes ``argmax_c sum_m w_m [ŷ_m = c]``;
* **stacking** (堆叠法): a meta-model fitted on the members' *out-of-fold* probabilities
  (:func:`out_of_fold_proba`, scikit-learn's ``cross_val_predict``), so it learns how far to trust each member
  from predictions on sentences that member did not train on -- what scikit-learn's ``StackingClassifier`` does.

Whether combining helps depends on how differently the members err: :func:`error_correlation` and
:func:`disagreement` measure it. The members themselves (VADER features, TF-IDF, MiniLM embeddings, each with a
logistic regression) come from :mod:`labkit.baselines` and :mod:`labkit.features`; calibration of the combined
probabilities is in :mod:`labkit.calibration`.
"""

from __future__ import annotations

from itertools import product
from typing import Sequence

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from labkit.data import LABELS


def check_probabilities(P: np.ndarray, name: str = "P", n_classes: int | None = None) -> np.ndarray:
    """``P`` as a float array of shape ``(n, K)`` whose rows are probability vectors (>= 0, summing to 1
    within 1e-6), or a ValueError that says what is wrong. Used by every function here and in
    :mod:`labkit.calibration`."""
    P = np.asarray(P, dtype=float)
    if P.ndim != 2 or P.shape[0] == 0 or P.shape[1] < 2:
        raise ValueError(f"{name} must be a 2-D array (sentences × classes) with at least one row and two "
                         f"columns, got shape {P.shape}")
    if n_classes is not None and P.shape[1] != n_classes:
        raise ValueError(f"{name} has {P.shape[1]} columns, expected {n_classes} classes")
    if not np.isfinite(P).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if (P < 0).any():
        raise ValueError(f"{name} has negative entries ({P.min():g}); pass probabilities, not logits "
                         "(softmax them first)")
    worst = float(np.abs(P.sum(1) - 1).max())
    if worst > 1e-6:
        raise ValueError(f"the rows of {name} must sum to 1 (probabilities); one is off by {worst:.3g}. "
                         "Normalise each row, or softmax logits first")
    return P


def _check_members(arrays: Sequence[np.ndarray], weights: Sequence[float] | None, who: str) -> np.ndarray:
    if len(arrays) == 0:
        raise ValueError(f"{who} needs at least one member's predictions, got none")
    shapes = {np.shape(a) for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"{who}: every member must predict the same sentences; got shapes {sorted(shapes)}")
    if weights is None:
        return np.full(len(arrays), 1 / len(arrays))
    w = np.asarray(weights, dtype=float)
    if w.shape != (len(arrays),):
        raise ValueError(f"{who}: {len(arrays)} members but {w.size} weights")
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"{who}: weights must be non-negative and not all 0, got {w.tolist()}")
    return w / w.sum()


def soft_vote(probas: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """Soft voting (averaging): the weighted mean of the members' probability rows::

        p(c | x) = sum_m w_m p_m(c | x),   w_m >= 0,  sum_m w_m = 1   (w_m = 1/M by default)

    ``probas`` is one ``(n, K)`` array per member; weights are normalised to sum to 1. The predicted
    class is ``soft_vote(...).argmax(1)``. Taught in lesson 11.
    """
    P = [check_probabilities(p, f"probas[{m}]") for m, p in enumerate(probas)] if len(probas) else []
    w = _check_members(P, weights, "soft_vote")
    return np.tensordot(w, np.stack(P), axes=1)


def hard_vote(labels: Sequence[np.ndarray], weights: Sequence[float] | None = None,
              n_classes: int = len(LABELS)) -> np.ndarray:
    """Hard (majority) voting: the class with the most (weighted) votes::

        ŷ(x) = argmax_c sum_m w_m [ŷ_m(x) = c]

    A tie goes to the tied class voted by the earliest member in ``labels`` -- list the member you
    trust most first. ``labels`` is one vector of class ids per member. Taught in lesson 11.
    """
    L = [np.asarray(l) for l in labels]
    w = _check_members(L, weights, "hard_vote")
    L = np.stack(L)
    if L.ndim != 2 or L.shape[1] == 0:
        raise ValueError(f"hard_vote needs one non-empty vector of class ids per member, got shape {L.shape}")
    if not np.issubdtype(L.dtype, np.integer) or L.min() < 0 or L.max() >= n_classes:
        raise ValueError(f"hard_vote: labels must be class ids 0..{n_classes - 1}; take argmax of probabilities first")
    votes = np.zeros((L.shape[1], n_classes))
    for m in range(len(L)):
        votes[np.arange(L.shape[1]), L[m]] += w[m]
    best = votes.max(1, keepdims=True)
    tied = np.isclose(votes, best)
    out = votes.argmax(1)
    for m in range(len(L)):                     # the earliest member's vote wins a tie it is part of
        undecided = tied.sum(1) > 1
        take = undecided & tied[np.arange(L.shape[1]), L[m]]
        out[take] = L[m][take]
        tied[take] = np.eye(n_classes, dtype=bool)[L[m][take]]
    return out


def simplex_weights(probas: Sequence[np.ndarray], y: Sequence[int], step: float = 0.1) -> np.ndarray:
    """Weights for :func:`soft_vote` chosen on held-out (out-of-fold) probabilities: every point of the grid
    ``{w : w_m in {0, step, 2 step, ..., 1}, sum_m w_m = 1}`` is tried and the one with the lowest negative
    log-likelihood of the weighted average wins::

        w* = argmin_w  -(1/n) sum_i log( sum_m w_m p_m(y_i | x_i) )

    Use probabilities of sentences the members did not train on (:func:`out_of_fold_proba`): on their own
    training sentences every member looks better than it is. Ties go to the first grid point found (more
    weight on earlier members). Taught in lesson 11.
    """
    P = [check_probabilities(p, f"probas[{m}]") for m, p in enumerate(probas)] if len(probas) else []
    _check_members(P, None, "simplex_weights")
    y = check_labels(y, len(P[0]), P[0].shape[1], "simplex_weights")
    ticks = round(1 / step)
    if not 0 < step <= 1 or not np.isclose(ticks * step, 1):
        raise ValueError(f"step must divide 1 into equal parts (0.1, 0.05, 0.25, ...), got {step}")
    picked = np.stack([p[np.arange(len(y)), y] for p in P])          # members × sentences: p_m(y_i | x_i)
    best, best_nll = None, np.inf
    for k in product(range(ticks, -1, -1), repeat=len(P) - 1):
        if sum(k) > ticks:
            continue
        w = np.array([*k, ticks - sum(k)]) / ticks
        nll = -np.mean(np.log(np.clip(w @ picked, 1e-12, None)))
        if nll < best_nll - 1e-12:
            best, best_nll = w, nll
    return best


def out_of_fold_proba(model: BaseEstimator, X, y: Sequence[int], folds: int = 5, seed: int = 0) -> np.ndarray:
    """Out-of-fold probabilities: each sentence's ``predict_proba`` row from a copy of ``model`` trained on
    the OTHER folds (scikit-learn's ``cross_val_predict`` with a shuffled ``StratifiedKFold``).

    These are what stacking, weight choice and temperature scaling are fitted on: honest held-out
    predictions for every training sentence, without setting sentences aside. The number of folds is
    reduced to the rarest class's count when that is smaller (at least 2). Taught in lesson 11.
    """
    y = np.asarray(y)
    if y.ndim != 1 or len(y) == 0:
        raise ValueError(f"out_of_fold_proba needs a non-empty vector of labels, got shape {y.shape}")
    counts = np.bincount(y)
    rarest = int(counts[counts > 0].min())
    if rarest < 2:
        raise ValueError("out_of_fold_proba: every class present needs at least 2 examples for 2 folds; "
                         f"class counts {counts.tolist()}")
    cv = StratifiedKFold(n_splits=max(2, min(folds, rarest)), shuffle=True, random_state=seed)
    return cross_val_predict(clone(model), X, y, cv=cv, method="predict_proba")


def fit_stacker(probas: Sequence[np.ndarray], y: Sequence[int], C: float = 1.0) -> LogisticRegression:
    """Stacking's meta-model: a multinomial logistic regression on the members' probabilities side by side::

        z = [p_1(· | x), ..., p_M(· | x)]  (M·K features),   p(c | x) = softmax(W z + b)_c

    fitted on OUT-OF-FOLD probabilities of the training sentences (:func:`out_of_fold_proba`); at test time
    feed it the probabilities of the members refitted on all training sentences, in the same order
    (:func:`stack`). Taught in lesson 11.
    """
    P = [check_probabilities(p, f"probas[{m}]") for m, p in enumerate(probas)] if len(probas) else []
    _check_members(P, None, "fit_stacker")
    y = check_labels(y, len(P[0]), P[0].shape[1], "fit_stacker")
    return LogisticRegression(C=C, max_iter=2000).fit(np.hstack(P), y)


def stack(meta: LogisticRegression, probas: Sequence[np.ndarray]) -> np.ndarray:
    """The stacked ensemble's probabilities: ``meta.predict_proba`` of the members' probabilities side by side
    (the meta-model from :func:`fit_stacker`, the members in the same order). Taught in lesson 11."""
    P = [check_probabilities(p, f"probas[{m}]") for m, p in enumerate(probas)] if len(probas) else []
    _check_members(P, None, "stack")
    Z = np.hstack(P)
    if Z.shape[1] != meta.n_features_in_:
        raise ValueError(f"stack: the meta-model was fitted on {meta.n_features_in_} columns "
                         f"(members × classes), got {Z.shape[1]}")
    return meta.predict_proba(Z)


def check_labels(y: Sequence[int], n: int, n_classes: int, who: str) -> np.ndarray:
    """``y`` as an array of ``n`` class ids in ``0 .. n_classes-1``, or a ``ValueError`` naming ``who``."""
    y = np.asarray(y)
    if y.shape != (n,):
        raise ValueError(f"{who}: {n} rows of predictions but labels of shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"{who}: labels must be class ids 0..{n_classes - 1}")
    return y


def error_correlation(predictions: Sequence[np.ndarray], y: Sequence[int]) -> np.ndarray:
    """Pairwise correlation of the members' mistakes: with ``e_m(i) = [ŷ_m(i) != y_i]``,
    ``R[a, b] = Pearson r(e_a, e_b)`` (the phi coefficient of the two error indicators).

    1 means the two members err on exactly the same sentences (combining them cannot fix anything),
    0 that their errors are unrelated, below 0 that one tends to be right where the other is wrong --
    the diversity an ensemble needs. A member that is never (or always) wrong has no defined
    correlation: NaN. Taught in lesson 11.
    """
    L = [np.asarray(p) for p in predictions]
    _check_members(L, None, "error_correlation")
    y = np.asarray(y)
    if L[0].shape != y.shape or y.size < 2:
        raise ValueError(f"error_correlation: predictions of shape {L[0].shape} for labels of shape {y.shape} "
                         "(need the same length, at least 2)")
    E = np.stack([(p != y).astype(float) for p in L])
    sd = E.std(1)
    centred = E - E.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        R = (centred @ centred.T) / len(y) / np.outer(sd, sd)
    R[np.outer(sd, sd) == 0] = np.nan
    return R


def disagreement(predictions: Sequence[np.ndarray]) -> np.ndarray:
    """Pairwise disagreement: ``D[a, b] = (1/n) sum_i [ŷ_a(i) != ŷ_b(i)]``, the share of sentences on which
    two members predict different classes (0 on the diagonal). Needs no labels. Taught in lesson 11."""
    L = [np.asarray(p) for p in predictions]
    _check_members(L, None, "disagreement")
    if L[0].ndim != 1 or L[0].size == 0:
        raise ValueError(f"disagreement needs one non-empty vector of classes per member, got shape {L[0].shape}")
    L = np.stack(L)
    return (L[:, None, :] != L[None, :, :]).mean(2)
