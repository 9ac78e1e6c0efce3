"""The corpora, the label protocol and the split (data/README.md, docs/protocol.md)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from labkit import baselines, data


@pytest.fixture(scope="module")
def corpus() -> pd.DataFrame:
    return data.load()


def test_corpus_sizes(corpus):
    sizes = corpus.groupby("domain").size().to_dict()
    assert sizes == {"tweets": 4200, "movie": 10605, "amazon": 3708, "nyt": 5190}
    assert list(corpus.columns) == ["id", "domain", "text", "score", "label"]


def test_file_quirks_are_handled(corpus):
    amazon = corpus[corpus.domain == "amazon"]
    assert amazon.id.iloc[0] == "1_1"                       # byte-order mark stripped
    assert not corpus.text.str.contains("\r").any()         # CRLF handled
    assert not corpus.text.str.contains("&amp;").any()      # HTML entities decoded
    assert corpus.text.str.contains("&").any()
    assert not corpus.text.str.contains(r"&[a-z]+;").any()  # even the doubly escaped ones
    assert not corpus.duplicated(["domain", "id"]).any()    # ids are unique within a domain
    assert corpus.score.between(-4, 4).all()
    assert (corpus.text.str.len() > 0).all()


def test_label_thresholds():
    scores = np.array([-4, -0.21, -0.2, 0.0, 0.2, 0.21, 4])
    assert data.label_from_score(scores).tolist() == [0, 0, 1, 1, 1, 2, 2]
    assert data.label_from_score(np.array([-0.06, 0.05, 0.06]), scale=1).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="NaN"):
        data.label_from_score(np.array([np.nan]))


def test_labels_follow_scores(corpus):
    assert (corpus.label == data.label_from_score(corpus.score.to_numpy())).all()
    assert set(corpus.label) == {0, 1, 2}


def test_split_is_deterministic_disjoint_and_stratified(corpus):
    train, test = data.split(corpus, seed=0)
    train2, test2 = data.split(corpus, seed=0)
    assert train.index.equals(train2.index) and test.index.equals(test2.index)
    assert set(train.index).isdisjoint(test.index)
    assert len(train) + len(test) == len(corpus)
    for domain, part in corpus.groupby("domain"):
        n_train = (train.domain == domain).sum()
        assert abs(n_train - len(part) / 2) <= 1
        share_all = part.label.value_counts(normalize=True)
        share_train = train[train.domain == domain].label.value_counts(normalize=True)
        assert (share_all - share_train).abs().max() < 0.01
    other, _ = data.split(corpus, seed=1)
    assert not other.index.equals(train.index)


def test_unknown_domain_lists_valid_ones():
    with pytest.raises(ValueError, match="tweets, movie, amazon, nyt"):
        data.load("twitter")


def test_subsample_is_stratified_and_bounded(corpus):
    small = data.subsample(corpus, 300, seed=0)
    assert small.groupby("domain").size().max() == 300
    assert set(small.index) <= set(corpus.index)
    with pytest.raises(ValueError):
        data.subsample(corpus, 1)


def test_split_rejects_bad_input():
    with pytest.raises(ValueError, match="empty"):
        data.split(pd.DataFrame(columns=["domain", "label"]))
    with pytest.raises(ValueError, match="label"):
        data.split(pd.DataFrame({"domain": ["x"]}))


def test_rater_scores():
    r = data.ratings("nyt")
    assert len(r) == 5190
    assert r.ratings.map(len).min() >= 20
    merged = r.merge(data.load("nyt"), on=["id", "domain"])
    mean = merged.ratings.map(np.mean)
    assert np.allclose(mean, merged.score, atol=0.01)   # the ground truth is the raters' mean


def test_vader_scores():
    good, bad = baselines.vader_compound(["I love this, it is great!", "This is terrible and awful."])
    assert good > 0.5 and bad < -0.5
    with pytest.raises(ValueError, match="non-empty"):
        baselines.vader_compound(["fine", "  "])
