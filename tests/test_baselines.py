"""Traditional baselines (lesson 01) and the cross-domain F1 matrix."""

import numpy as np
import pandas as pd
import pytest

from labkit import metrics


def _toy(seed):
    rng = np.random.default_rng(seed)
    rows = [(d, int(rng.integers(3))) for d in ("tweets", "movie") for _ in range(30)]
    return pd.DataFrame(rows, columns=["domain", "label"])


def test_cross_domain_f1_fits_once_per_row_domain():
    train, test = _toy(0), _toy(1)
    calls = []

    def fit(part):
        calls.append(part["domain"].unique().tolist())
        majority = int(part["label"].mode()[0])
        if part["domain"].iloc[0] == "tweets":  # an oracle: perfect on every test domain
            return lambda p: p["label"].to_numpy()
        return lambda p: np.full(len(p), majority)

    m = metrics.cross_domain_f1(fit, train, test, domains=("tweets", "movie"))
    assert calls == [["tweets"], ["movie"]]
    assert m.index.name == "trained on" and m.columns.name == "tested on"
    assert m.shape == (2, 2) and np.allclose(m.loc["tweets"], 1.0)
    assert (m.loc["movie"] < 0.6).all()


def test_cross_domain_f1_rejects_missing_domain():
    with pytest.raises(ValueError, match="no rows for"):
        metrics.cross_domain_f1(lambda p: (lambda q: q["label"]), _toy(0), _toy(1))
