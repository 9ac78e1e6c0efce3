"""The evaluation protocol's metrics (COURSE.md §5) and the paper's reference figures.

* weighted-average F1 over the three classes (the paper's "overall F1"),
* Pearson r between a predicted score and the mean human rating,
* the cross-domain F1 matrix (train on one domain, test on every domain; the paper's Table 5),
* the learning curve (F1 against the number of training labels, over several label draws).

Taught in lesson 00.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
from scipy.stats import pearsonr
from sklearn.metrics import f1_score

from labkit.data import DOMAINS, LABELS, subsample

#: Hutto & Gilbert (2014), Table 4: 3-class F1 on each whole corpus.
PAPER_TABLE4 = pd.DataFrame(
    {"individual human rater": [0.84, 0.92, 0.85, 0.65], "VADER (2014)": [0.96, 0.61, 0.63, 0.55]},
    index=list(DOMAINS),
)

#: Hutto & Gilbert (2014), Table 5: classic models trained on half of one corpus (rows), tested on
#: each corpus (columns). NB naive Bayes, ME maximum entropy (logistic regression), SVM-C / SVM-R.
PAPER_TABLE5 = pd.DataFrame(
    [[0.84, 0.53, 0.53, 0.42], [0.83, 0.56, 0.58, 0.45], [0.83, 0.56, 0.55, 0.46],
     [0.65, 0.49, 0.51, 0.46], [0.56, 0.75, 0.49, 0.44], [0.56, 0.75, 0.51, 0.45],
     [0.69, 0.55, 0.61, 0.48], [0.67, 0.55, 0.60, 0.43], [0.64, 0.55, 0.58, 0.42],
     [0.54, 0.49, 0.48, 0.44], [0.59, 0.56, 0.51, 0.49], [0.58, 0.55, 0.51, 0.50]],
    index=["NB (tweets)", "ME (tweets)", "SVM-C (tweets)", "SVM-R (tweets)", "NB (movie)",
           "ME (movie)", "NB (amazon)", "ME (amazon)", "SVM-C (amazon)", "SVM-R (amazon)",
           "NB (nyt)", "ME (nyt)"],
    columns=list(DOMAINS),
)


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


#: ``fit(train_part) -> predict`` where ``predict(test_part) -> labels``: one model per training domain.
Fit = Callable[[pd.DataFrame], Callable[[pd.DataFrame], Sequence[int]]]


def cross_domain_f1(fit: Fit, train: pd.DataFrame, test: pd.DataFrame,
                    domains: Iterable[str] = DOMAINS) -> pd.DataFrame:
    """Weighted F1 of a model trained on each domain (rows) and tested on each domain (columns).

    ``fit(train_part)`` is called ONCE per row domain with that domain's training rows and must
    return ``predict(test_part) -> labels``, which is called once per column domain. The diagonal is
    the in-domain score; the off-diagonal cells measure transfer (the paper's Table 5)::

        M[i, j] = F1_weighted(y_test_j, predict_i(x_test_j)),   predict_i = fit(train_i)

    Taught in lesson 01.
    """
    domains = list(domains)
    for name, df in (("train", train), ("test", test)):
        missing = {"domain", "label"} - set(df.columns)
        if missing:
            raise ValueError(f"cross_domain_f1: {name} needs the columns 'domain' and 'label'; "
                             f"missing {sorted(missing)}")
        absent = [d for d in domains if not (df["domain"] == d).any()]
        if absent:
            raise ValueError(f"cross_domain_f1: {name} has no rows for {absent}; pass "
                             f"domains=... to restrict the matrix to the domains you have")
    matrix = pd.DataFrame(index=pd.Index(domains, name="trained on"),
                          columns=pd.Index(domains, name="tested on"), dtype=float)
    for row in domains:
        predict = fit(train[train["domain"] == row])
        if not callable(predict):
            raise ValueError("cross_domain_f1: fit(train_part) must return a function "
                             "predict(test_part) -> labels, got " + type(predict).__name__)
        for col in domains:
            part = test[test["domain"] == col]
            matrix.loc[row, col] = weighted_f1(part["label"].to_numpy(), np.asarray(predict(part)))
    return matrix


def learning_curve(fit: Fit, train: pd.DataFrame, test: pd.DataFrame, sizes: Iterable[int | None],
                   seeds: Iterable[int] = range(5)) -> pd.DataFrame:
    """Weighted F1 on ``test`` of a model trained on ``n`` labelled rows of ``train``, for each ``n``.

    For each size ``n`` and seed ``s`` the training rows are ``data.subsample(train, n, seed=s)`` (at
    most ``n`` rows per domain, stratified by label), so different seeds draw different label
    subsets and the spread over seeds shows how much the score depends on *which* labels you got::

        F1(n, s) = F1_weighted(y_test, predict(x_test)),   predict = fit(subsample(train, n, s))

    ``fit`` follows :func:`cross_domain_f1`'s protocol. A size of ``None`` (or one that covers the
    whole training table) draws the same rows for every seed, so it is run once (with the first seed). Returns a long
    table with columns ``n`` (training rows per domain), ``seed`` and ``f1`` -- the format
    :func:`labkit.plots.learning_curves` plots. Taught in lesson 03.
    """
    sizes, seeds = list(sizes), list(seeds)
    if not sizes or not seeds:
        raise ValueError("learning_curve needs at least one size and one seed")
    for name, df in (("train", train), ("test", test)):
        missing = {"domain", "label"} - set(df.columns)
        if missing:
            raise ValueError(f"learning_curve: {name} needs the columns 'domain' and 'label'; "
                             f"missing {sorted(missing)}")
    largest = int(train.groupby("domain").size().max())
    rows = []
    for n in sorted({largest if n is None else min(int(n), largest) for n in sizes}):
        whole = n == largest
        for seed in seeds[:1] if whole else seeds:
            predict = fit(train if whole else subsample(train, n, seed=seed))
            rows.append({"n": n, "seed": seed,
                         "f1": weighted_f1(test["label"].to_numpy(), np.asarray(predict(test)))})
    return pd.DataFrame(rows)
