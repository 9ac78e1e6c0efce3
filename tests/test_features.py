"""labkit.features: shapes, agreement with sentence-transformers, order, the disk cache, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from labkit import data, features, models


@pytest.fixture(scope="module")
def texts():
    """Two dozen real sentences of very different lengths (loaded before any cache is swapped)."""
    df = data.load("movie")
    longest = df.loc[df["text"].str.len().idxmax(), "text"]  # longer than 128 tokens: truncated
    return df["text"].iloc[:24].tolist() + [longest]


def test_shape_and_dtype(texts):
    emb = features.embed(texts, cache=False, device="cpu")
    assert emb.shape == (len(texts), 384) and emb.dtype == np.float32
    assert np.isfinite(emb).all()


def test_mean_pooling_matches_sentence_transformers_and_hand_computation(texts):
    from sentence_transformers import SentenceTransformer
    st = SentenceTransformer(models.encoder_path(), device="cpu")
    unnormalised = SentenceTransformer(modules=[st[0], st[1]], device="cpu")  # drop Normalize
    unnormalised.max_seq_length = 128
    ref = unnormalised.encode(texts, batch_size=8)
    emb = features.embed(texts, cache=False, device="cpu", batch_size=8)
    np.testing.assert_allclose(emb, ref, atol=1e-4)

    hidden, mask = features.token_states(texts[:3], device="cpu")
    by_hand = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    np.testing.assert_allclose(emb[:3], by_hand, atol=1e-4)


def test_order_is_restored_after_length_sorting(texts):
    forward = features.embed(texts, cache=False, device="cpu", batch_size=4, pooling="max")
    backward = features.embed(texts[::-1], cache=False, device="cpu", batch_size=4, pooling="max")
    np.testing.assert_allclose(forward, backward[::-1], atol=1e-4)
    alone = features.embed([texts[5]], cache=False, device="cpu", pooling="max")
    np.testing.assert_allclose(forward[5], alone[0], atol=1e-4)


def test_all_layers_in_one_pass_match_single_layers(texts):
    every = features.embed_all_layers(texts[:6], pooling="cls", cache=False, device="cpu")
    assert every.shape == (features._n_layers() + 1, 6, 384)
    for k in (0, 3, -1):
        one = features.embed(texts[:6], layer=k, pooling="cls", cache=False, device="cpu")
        np.testing.assert_allclose(every[k], one, atol=1e-5)


def test_cache_hit_is_identical_and_keyed(texts, fresh_cache, monkeypatch):
    first = features.embed(texts, device="cpu")
    files = list((fresh_cache / "embeddings").glob("*.npy"))
    assert len(files) == 1
    with monkeypatch.context() as m:
        m.setattr(features, "_forward", lambda *a, **k: pytest.fail("cache miss"))
        again = features.embed(texts, device="cpu")
        assert np.array_equal(first, again)
        assert np.array_equal(features.embed(texts, layer=6, device="cpu"), first)  # -1 is 6
    features.embed(texts, layer=2, device="cpu")
    features.embed(texts, pooling="cls", device="cpu")
    features.embed(texts, max_length=32, device="cpu")
    features.embed(texts[:-1], device="cpu")
    assert len(list((fresh_cache / "embeddings").glob("*.npy"))) == 5


def test_all_layers_cache_serves_single_layers(texts, fresh_cache, monkeypatch):
    every = features.embed_all_layers(texts[:8], device="cpu")
    monkeypatch.setattr(features, "_forward", lambda *a, **k: pytest.fail("cache miss"))
    assert np.array_equal(features.embed(texts[:8], layer=3, device="cpu"), every[3])
    assert np.array_equal(features.embed_all_layers(texts[:8], device="cpu"), every)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong shape"])
def test_damaged_cache_file_is_recomputed(texts, fresh_cache, damage):
    good = features.embed(texts[:8], device="cpu")
    path = features.cache_path(texts[:8], -1, "mean", 128)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "garbage":
        path.write_bytes(b"not a numpy file")
    else:
        np.save(path, np.zeros((3, 384), np.float32))
    again = features.embed(texts[:8], device="cpu")
    np.testing.assert_allclose(again, good, atol=1e-5)
    assert np.load(path).shape == (8, 384), "the damaged file should have been rewritten"


@pytest.mark.parametrize("bad, error, match", [([], ValueError, "empty list"),
                                               (["fine", ""], ValueError, "text 1 is empty"),
                                               (["fine", None], TypeError, "text 1 is a NoneType"),
                                               ("one string", TypeError, "list of sentences"),
                                               (["ok", "bad \ud800 half"], ValueError, "unpaired surrogate")])
def test_bad_texts(bad, error, match):
    with pytest.raises(error, match=match):
        features.embed(bad, cache=False)


def test_bad_layer_and_pooling():
    with pytest.raises(ValueError, match="from 0 .* to 6"):
        features.embed(["hello"], layer=7, cache=False)
    with pytest.raises(ValueError, match="mean, cls, max"):
        features.embed(["hello"], pooling="sum", cache=False)
    with pytest.raises(ValueError, match="mean, cls, max"):
        features.pool(torch.zeros(1, 2, 384), torch.ones(1, 2), "avg")


def test_embed_poolings_one_pass_matches_embed(texts, monkeypatch):
    calls = []
    forward = features._forward
    monkeypatch.setattr(features, "_forward", lambda *a, **k: calls.append(a[2]) or forward(*a, **k))
    every = features.embed_poolings(texts[:6], cache=False, device="cpu", batch_size=4)
    assert calls == [["mean", "cls", "max"]], "one forward pass for all three poolings"
    assert list(every) == ["mean", "cls", "max"]
    for p, arr in every.items():
        assert arr.shape == (6, 384) and arr.dtype == np.float32
        np.testing.assert_allclose(arr, features.embed(texts[:6], pooling=p, cache=False, device="cpu"),
                                   atol=1e-5)
    assert not np.allclose(every["mean"], every["cls"]) and not np.allclose(every["mean"], every["max"])
    # max pooling is an upper bound of mean pooling, dimension by dimension
    assert (every["max"] >= every["mean"] - 1e-5).all()


def test_embed_poolings_cache_serves_embed_and_computes_only_missing(texts, fresh_cache, monkeypatch):
    cls_first = features.embed(texts[:8], pooling="cls", device="cpu")
    calls = []
    forward = features._forward
    monkeypatch.setattr(features, "_forward", lambda *a, **k: calls.append(a[2]) or forward(*a, **k))
    every = features.embed_poolings(texts[:8], device="cpu")
    assert calls == [["mean", "max"]], "the cached CLS pooling must not be recomputed"
    assert np.array_equal(every["cls"], cls_first)
    monkeypatch.setattr(features, "_forward", lambda *a, **k: pytest.fail("cache miss"))
    assert np.array_equal(features.embed(texts[:8], pooling="max", device="cpu"), every["max"])
    again = features.embed_poolings(texts[:8], poolings=("max", "mean", "max"), device="cpu")
    assert list(again) == ["max", "mean"] and np.array_equal(again["mean"], every["mean"])
    assert list(features.embed_poolings(texts[:8], poolings="cls", device="cpu")) == ["cls"]


def test_embed_poolings_bad_input():
    with pytest.raises(ValueError, match="mean, cls, max"):
        features.embed_poolings(["hello"], poolings=("mean", "sum"), cache=False)
    with pytest.raises(ValueError, match="at least one pooling"):
        features.embed_poolings(["hello"], poolings=(), cache=False)
    with pytest.raises(ValueError, match="from 0 .* to 6"):
        features.embed_poolings(["hello"], layer=9, cache=False)


def test_a_table_in_gives_vectors_indexed_like_it(texts):
    table = pd.DataFrame({"text": texts[:6]}, index=[10, 3, 7, 1, 99, 5])
    aligned = features.embed(table, device="cpu")
    plain = features.embed(texts[:6], device="cpu")
    assert list(aligned.index) == [10, 3, 7, 1, 99, 5]
    np.testing.assert_array_equal(aligned.loc[[7, 99]].to_numpy(), plain[[2, 4]])
    layers = features.embed_all_layers(table, device="cpu")
    assert len(layers) == 7 and list(layers[6].index) == list(table.index)
    np.testing.assert_allclose(layers[6].to_numpy(), plain, atol=1e-5)
    pooled = features.embed_poolings(table, device="cpu")
    np.testing.assert_array_equal(pooled["mean"].loc[[1]].to_numpy(), plain[[3]])
    with pytest.raises(ValueError, match="'text' column"):
        features.embed(table.rename(columns={"text": "sentence"}))
