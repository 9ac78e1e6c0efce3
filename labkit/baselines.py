"""Traditional sentiment baselines: hand-built word n-gram features and VADER's rules. Taught in lesson 01.

Each classifier is a scikit-learn pipeline ``text -> TF-IDF(1-2-grams) -> model``. TF-IDF weights a
term ``t`` in a sentence ``d`` by ``tf(t, d) * idf(t)`` with ``idf(t) = ln((1 + n) / (1 + df(t))) + 1``
and scales each sentence's vector to unit length. The vocabulary is whatever n-grams the training
domain contains: a feature the training domain never saw is simply dropped at test time, which is
why these models transfer poorly across domains (:func:`unseen_ngram_share` measures it).

VADER (Hutto & Gilbert 2014) needs no training: a lexicon of rated words plus rules (negation,
intensifiers, "but", capitals, punctuation) give a compound score in [-1, 1].
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import ComplementNB, MultinomialNB
from sklearn.pipeline import FeatureUnion, Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.svm import LinearSVC

from labkit import data


def tfidf(ngram_range: tuple[int, int] = (1, 2), min_df: int = 1) -> TfidfVectorizer:
    """TF-IDF over word 1- and 2-grams, with sublinear ``1 + ln(tf)`` counts. Used by every baseline below."""
    return TfidfVectorizer(ngram_range=ngram_range, min_df=min_df, sublinear_tf=True)


@lru_cache(maxsize=1)
def _vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


@lru_cache(maxsize=100_000)  # a cross-domain matrix scores each test sentence once per model
def _vader_scores(text: str) -> tuple[float, float, float, float]:
    s = _vader().polarity_scores(text)
    return s["neg"], s["neu"], s["pos"], s["compound"]


def vader_features(texts: Iterable[str]) -> np.ndarray:
    """VADER's scores as four features in [0, 1]: ``neg, neu, pos, (compound + 1) / 2``.

    All non-negative, so naive Bayes can use them too. Used by the ``with_vader=True`` pipelines.
    """
    rows = [_vader_scores(str(t)) for t in texts]
    return np.array([(neg, neu, pos, (c + 1) / 2) for neg, neu, pos, c in rows], dtype=float).reshape(-1, 4)


def _features(with_vader: bool, min_df: int = 1):
    if not with_vader:
        return tfidf(min_df=min_df)
    return FeatureUnion([("tfidf", tfidf(min_df=min_df)),
                         ("vader", FunctionTransformer(vader_features))])


def naive_bayes(kind: str = "complement", with_vader: bool = False) -> Pipeline:
    """TF-IDF + naive Bayes. Taught in lesson 01.

    ``kind="multinomial"`` (MultinomialNB): ``p(c | x) ∝ p(c) ∏_t p(t | c)^{x_t}``.
    ``kind="complement"`` (ComplementNB, Rennie et al. 2003; steadier on unbalanced classes): each
    term's share ``θ_{c̄,t}`` is estimated from the *other* classes' text and
    ``ĉ = argmax_c −∑_t x_t log θ_{c̄,t}`` (no class prior).
    """
    models = {"complement": ComplementNB, "multinomial": MultinomialNB}
    if kind not in models:
        raise ValueError(f"naive_bayes kind must be one of {sorted(models)}, got {kind!r}")
    return make_pipeline(_features(with_vader), models[kind]())


def logistic_regression(C: float = 10.0, with_vader: bool = False) -> Pipeline:
    """TF-IDF + multinomial logistic regression (the paper's "maximum entropy", ME).

    ``p(c | x) = softmax(W x + b)_c``, fitted by minimising the summed cross-entropy
    ``∑_i −log p(y_i | x_i) + ||W||² / (2C)`` (scikit-learn's convention).
    Taught in lesson 01.
    """
    return make_pipeline(_features(with_vader), LogisticRegression(C=C, solver="newton-cg", max_iter=1000))


def linear_svm(C: float = 1.0, with_vader: bool = False) -> Pipeline:
    """TF-IDF + linear support-vector classifier (the paper's SVM-C): ``LinearSVC`` minimises the
    one-vs-rest squared hinge loss ``C ∑_i max(0, 1 − y_i (w·x_i + b))² + ||w||² / 2``.

    Taught in lesson 01.
    """
    return make_pipeline(_features(with_vader), LinearSVC(C=C))


def majority_class() -> Pipeline:
    """The floor every model must clear: always predict the training labels' most common class
    (scikit-learn's ``DummyClassifier``). Taught in lesson 01."""
    return make_pipeline(DummyClassifier(strategy="most_frequent"))


def random_forest(n_estimators: int = 100, seed: int = 0, with_vader: bool = False) -> Pipeline:
    """TF-IDF (n-grams seen at least twice) + a random forest of ``n_estimators`` trees.

    Trees split on single features, so they need many trees on sparse text. Taught in lesson 01.
    """
    return make_pipeline(_features(with_vader, min_df=2),
                         RandomForestClassifier(n_estimators=n_estimators, random_state=seed, n_jobs=-1))


#: The lesson's classic models by name: ``BASELINES[name]()`` makes an unfitted pipeline.
BASELINES: dict[str, Callable[[], Pipeline]] = {
    "naive Bayes": naive_bayes,
    "logistic regression": logistic_regression,
    "linear SVM": linear_svm,
    "random forest": random_forest,
}


def _texts(df: pd.DataFrame, who: str) -> pd.Series:
    if "text" not in df.columns:
        raise ValueError(f"{who} needs a table with a 'text' column (from data.load), got {list(df.columns)}")
    return df["text"]


def fit_text(model: Pipeline, train: pd.DataFrame) -> Pipeline:
    """Fit a text pipeline on ``train.text`` -> ``train.label``. Taught in lesson 01."""
    if train.empty:
        raise ValueError("fit_text got an empty training table")
    return model.fit(_texts(train, "fit_text"), train["label"].to_numpy())


def fitter(make: Callable[[], Pipeline]) -> Callable[[pd.DataFrame], Callable[[pd.DataFrame], np.ndarray]]:
    """Adapter for :func:`labkit.protocol.cross_domain_f1`: ``fit(train_part) -> predict(test_part)``.

    ``make()`` builds a fresh, unfitted pipeline. Taught in lesson 01.
    """
    def fit(train_part: pd.DataFrame) -> Callable[[pd.DataFrame], np.ndarray]:
        model = fit_text(make(), train_part)
        return lambda test_part: model.predict(_texts(test_part, "predict"))
    return fit


def vader_compound(texts: Sequence[str]) -> np.ndarray:
    """VADER's compound score in [-1, 1] for each text (the rule-based, no-training baseline).

    Taught in lesson 00."""
    if isinstance(texts, str):
        raise TypeError("vader_compound expects a list of texts, got one string (it would score each "
                        "character); wrap it: vader_compound([text])")
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    if bad:
        raise ValueError(f"vader_compound needs non-empty strings; items {bad[:5]} are empty or not text")
    return np.array([_vader_scores(t)[3] for t in texts], dtype=float)


def vader_predict(texts: Sequence[str]) -> np.ndarray:
    """VADER's 3-class label: compound ``> 0.05`` positive, ``< -0.05`` negative, else neutral.

    No training at all: the same rules for every domain. Taught in lesson 01.
    """
    return data.label_from_score(vader_compound(texts), scale=1)


def unseen_ngram_share(train_texts: Iterable[str], test_texts: Iterable[str],
                       ngram_range: tuple[int, int] = (1, 2)) -> float:
    """Share of the test texts' n-gram occurrences whose n-gram never occurs in the training texts.

    ``unseen = Σ_{g ∉ V_train} count_test(g) / Σ_g count_test(g)``, with the tokenizer TF-IDF uses.
    A TF-IDF model sees those n-grams as zeros. Taught in lesson 01.
    """
    seen = set(CountVectorizer(ngram_range=ngram_range).fit(list(train_texts)).vocabulary_)
    test = CountVectorizer(ngram_range=ngram_range)
    counts = np.asarray(test.fit_transform(list(test_texts)).sum(axis=0)).ravel()
    if counts.sum() == 0:
        raise ValueError("unseen_ngram_share: the test texts contain no words")
    vocabulary = test.get_feature_names_out()
    unseen = np.array([g not in seen for g in vocabulary])
    return float(counts[unseen].sum() / counts.sum())
