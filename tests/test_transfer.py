"""labkit.transfer: the MAP-adapted softmax head of supervised transfer (lesson 06)."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from labkit import transfer


def _blobs(n=90, shift=0.0, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    centres = np.array([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0]]) + shift
    return centres[y] + rng.normal(size=(n, 4)), y


def test_l2_toward_zero_agrees_with_scikit_learn_and_reaches_the_minimum():
    """prior=None is multinomial logistic regression with L2 on W and b. scikit-learn (C = 1/(n·λ)) leaves the
    bias unpenalised, so the two solutions differ slightly: they must agree on nearly every prediction, and
    ours must have the lower value of our own objective (it is the one that minimises it)."""
    X, y = _blobs()
    lam = 1e-3
    head = transfer.fit_head(X, y, lam=lam)
    ref = LogisticRegression(C=1 / (len(y) * lam), max_iter=5000, tol=1e-10).fit(X, y)
    assert (head.predict(X) == ref.predict(X)).mean() >= 0.95

    def objective(W, b):
        W, b = torch.as_tensor(W, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
        z = torch.as_tensor(X, dtype=torch.float64) @ W.T + b
        return float(torch.nn.functional.cross_entropy(z, torch.as_tensor(y)) + lam / 2 * ((W ** 2).sum() + (b ** 2).sum()))

    assert objective(head.W, head.b) <= objective(ref.coef_, ref.intercept_) + 1e-9


def test_strong_prior_keeps_the_source_head_and_weak_prior_forgets_it():
    Xs, ys = _blobs(seed=1)
    source = transfer.fit_head(Xs, ys, lam=0.1)
    Xt, yt = _blobs(n=12, shift=0.5, seed=2)
    kept = transfer.fit_head(Xt, yt, prior=source, lam=1e6)
    torch.testing.assert_close(kept.W, source.W, atol=1e-4, rtol=0)
    free = transfer.fit_head(Xt, yt, prior=source, lam=1e-6)
    alone = transfer.fit_head(Xt, yt, prior=None, lam=1e-6)
    assert (free.predict(Xt) == alone.predict(Xt)).all()   # both fit the target labels


def test_choose_lambda_uses_only_the_given_labels_and_picks_from_the_grid():
    X, y = _blobs(n=30)
    lam = transfer.choose_lambda(X, y, None, grid=[1e-3, 1e-1, 10.0])
    assert lam in (1e-3, 1e-1, 10.0)
    with pytest.raises(ValueError, match="grid"):
        transfer.choose_lambda(X, y, None, grid=[])


def test_bad_input_is_refused_clearly():
    X, y = _blobs(n=9)
    with pytest.raises(ValueError, match="class ids"):
        transfer.fit_head(X, y + 5)
    with pytest.raises(ValueError, match="shapes"):
        transfer.fit_head(X[:4], y)
    with pytest.raises(ValueError, match="lam"):
        transfer.fit_head(X, y, lam=-1)
    with pytest.raises(ValueError, match="prior head"):
        transfer.fit_head(X, y, prior=transfer.Head(torch.zeros(3, 7, dtype=torch.float64), torch.zeros(3)))
