"""The evaluation protocol as experiments (docs/protocol.md): the paper's reference tables, the
cross-domain F1 matrix, the transfer gap and the learning curve.

Every lesson that compares models runs them through these functions, so the split, the metric and
the table layout are the same everywhere. Taught in lessons 01, 03 and 04.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from labkit.data import DOMAINS, subsample
from labkit.metrics import weighted_f1

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


def transfer_gap(matrix: pd.DataFrame) -> dict[str, float]:
    """How much a cross-domain matrix loses off its diagonal::

        in-domain = mean_i M[i, i],   cross-domain = mean_{i != j} M[i, j],
        drop = in-domain - cross-domain,   relative drop = 100 * drop / in-domain  (%)

    Taught in lesson 01.
    """
    values = np.asarray(matrix, dtype=float)
    if values.ndim != 2 or values.shape[0] != values.shape[1] or len(values) < 2:
        raise ValueError(f"transfer_gap needs a square matrix of 2+ domains, got shape {values.shape}")
    diag = float(np.diag(values).mean())
    off = float(values[~np.eye(len(values), dtype=bool)].mean())
    return {"in-domain (diagonal)": diag, "cross-domain (off-diagonal)": off, "drop": diag - off,
            "relative drop (%)": 100 * (diag - off) / diag}
