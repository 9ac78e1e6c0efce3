"""The evaluation protocol as experiments (docs/protocol.md): the paper's reference tables, the
cross-domain F1 matrix, the transfer gap, the learning curve, and :func:`compare` -- the evidence
standard every comparison of methods follows (seeds, mean ± sd, paired bootstrap intervals, the
majority-class line).

Every lesson that compares models runs them through these functions, so the split, the metric and
the table layout are the same everywhere. Taught in lessons 01, 03 and 04.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from labkit.data import DOMAINS, subsample
from labkit.metrics import paired_bootstrap, weighted_f1

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


@dataclass
class Comparison:
    """What :func:`compare` measured: per-seed scores, their summary, and every paired difference."""

    scores: pd.DataFrame       # rows: methods, columns: seeds -> weighted F1
    summary: pd.DataFrame      # per method: mean, sd, min, max over seeds
    differences: pd.DataFrame  # per pair (A, B): mean F1(A) - F1(B), the interval, the verdict
    majority: float            # F1 of always predicting the training set's most common class
    level: float

    def __str__(self) -> str:
        lines = [f"weighted F1 over {self.scores.shape[1]} seeds (mean ± sd); majority class {self.majority:.3f}"]
        lines += [f"  {m:<32s} {r['mean']:.3f} ± {r['sd']:.3f}" for m, r in self.summary.iterrows()]
        lines.append(f"paired bootstrap {self.level:.0%} interval of each difference (same test sentences):")
        lines += [f"  {a} − {b}: {r['difference']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}]  {r['verdict']}"
                  for (a, b), r in self.differences.iterrows()]
        return "\n".join(lines)


def compare(methods: Mapping[str, Callable[[int], Sequence[int]]], y_test: Sequence[int],
            y_train: Sequence[int], seeds: Sequence[int] = (0, 1, 2), pairs: Sequence[tuple[str, str]] | None = None,
            n_boot: int = 1000, level: float = 0.95) -> Comparison:
    """Run each method once per seed on the same test sentences and compare them fairly.

    ``methods[name](seed)`` trains (or loads) one run and returns its predicted class for every
    test sentence; a method without randomness may ignore the seed. For each method the weighted
    F1 is reported as mean ± sd over ``seeds`` (at least 3); for each pair ``(A, B)`` (default:
    every pair) the paired bootstrap interval of ``mean_s F1(A, s) - F1(B, s)``
    (:func:`labkit.metrics.paired_bootstrap`) decides the verdict: "A better" only when the whole
    interval is above 0, "B better" when below, otherwise "no clear difference". The majority-class
    F1 (always predicting ``y_train``'s most common class) is the line every method must clear.
    """
    seeds, y = list(seeds), np.asarray(y_test)
    if len(seeds) < 3 or len(set(seeds)) != len(seeds):
        raise ValueError(f"compare needs at least 3 different seeds (or label draws), got {seeds}")
    if len(methods) < 2:
        raise ValueError("compare needs at least two methods")
    preds = {}
    for name, run in methods.items():
        preds[name] = [np.asarray(run(s)) for s in seeds]
        for s, p in zip(seeds, preds[name]):
            if p.shape != y.shape:
                raise ValueError(f"method {name!r} with seed {s} returned {p.shape} predictions for "
                                 f"{y.shape} test sentences")
    scores = pd.DataFrame({s: {n: weighted_f1(y, p[i]) for n, p in preds.items()} for i, s in enumerate(seeds)})
    scores.columns.name, scores.index.name = "seed", "method"
    summary = pd.DataFrame({"mean": scores.mean(1), "sd": scores.std(1, ddof=1),
                            "min": scores.min(1), "max": scores.max(1)})
    rows = {}
    for a, b in pairs if pairs is not None else combinations(methods, 2):
        if a not in preds or b not in preds:
            raise ValueError(f"pair ({a!r}, {b!r}) names a method that was not run; methods: {list(preds)}")
        diff, low, high = paired_bootstrap(y, preds[a], preds[b], n_boot=n_boot, level=level)
        verdict = f"{a} better" if low > 0 else f"{b} better" if high < 0 else "no clear difference"
        rows[(a, b)] = {"difference": diff, "low": low, "high": high, "verdict": verdict}
    differences = pd.DataFrame.from_dict(rows, orient="index")
    differences.index.names = ["A", "B"]
    train = np.asarray(y_train)
    majority = weighted_f1(y, np.full_like(y, np.bincount(train).argmax()))
    return Comparison(scores, summary, differences, majority, level)
