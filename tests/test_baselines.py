"""Traditional baselines (lesson 01) and the cross-domain F1 matrix."""

import numpy as np
import pandas as pd
import pytest

from labkit import metrics, protocol


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

    m = protocol.cross_domain_f1(fit, train, test, domains=("tweets", "movie"))
    assert calls == [["tweets"], ["movie"]]
    assert m.index.name == "trained on" and m.columns.name == "tested on"
    assert m.shape == (2, 2) and np.allclose(m.loc["tweets"], 1.0)
    assert (m.loc["movie"] < 0.6).all()


def test_cross_domain_f1_rejects_missing_domain():
    with pytest.raises(ValueError, match="no rows for"):
        protocol.cross_domain_f1(lambda p: (lambda q: q["label"]), _toy(0), _toy(1))


# --- labkit.baselines on small real samples ------------------------------------------------

from labkit import baselines, data  # noqa: E402


@pytest.fixture(scope="module")
def amazon():
    train, test = data.load_split("amazon")
    return data.subsample(train, 600), data.subsample(test, 400)


@pytest.mark.parametrize("name", sorted(baselines.BASELINES))
def test_each_baseline_learns_amazon(amazon, name):
    train, test = amazon
    make = (lambda: baselines.random_forest(n_estimators=30)) if name == "random forest" \
        else baselines.BASELINES[name]
    model = baselines.fit_text(make(), train)
    f1 = metrics.weighted_f1(test["label"], model.predict(test["text"]))
    assert 0.40 < f1 < 0.80, f"{name}: weighted F1 {f1:.3f} is outside the plausible range"


def test_vader_features_help_logistic_regression(amazon):
    train, test = amazon
    plain = baselines.fit_text(baselines.logistic_regression(), train).predict(test["text"])
    rich = baselines.fit_text(baselines.logistic_regression(with_vader=True), train).predict(test["text"])
    assert metrics.weighted_f1(test["label"], rich) > metrics.weighted_f1(test["label"], plain)


def test_vader_features_and_predict():
    x = baselines.vader_features(["I love it!", "This is terrible.", "The box is brown."])
    assert x.shape == (3, 4) and (x >= 0).all() and (x <= 1).all()
    assert baselines.vader_predict(["I love it!", "This is terrible.", "The box is brown."]).tolist() == [2, 0, 1]


def test_fitter_works_with_cross_domain_f1():
    train, test = data.load_split(["movie", "amazon"])
    train, test = data.subsample(train, 300), data.subsample(test, 200)
    m = protocol.cross_domain_f1(baselines.fitter(baselines.naive_bayes), train, test,
                                domains=("movie", "amazon"))
    assert m.shape == (2, 2) and m.notna().all().all() and (m.to_numpy() > 0.3).all()


def test_unseen_ngram_share_counts_occurrences():
    share = baselines.unseen_ngram_share(["good movie"], ["good good book"], ngram_range=(1, 1))
    assert share == pytest.approx(1 / 3)  # "book" is unseen; "good" twice is seen
    assert baselines.unseen_ngram_share(["red big cat"], ["big cat"], ngram_range=(1, 1)) == 0.0


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match="kind"):
        baselines.naive_bayes("gaussian")
    with pytest.raises(ValueError, match="'text'"):
        baselines.fit_text(baselines.naive_bayes(), data.load("amazon").drop(columns="text"))
