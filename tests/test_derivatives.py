"""labkit.derivatives: every hand-written gradient equals torch.autograd (float64)."""

from __future__ import annotations

import pytest
import torch

from labkit import derivatives as D

N, DIM, K = 17, 6, 3


@pytest.fixture
def head():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(N, DIM, generator=g, dtype=torch.float64)
    W = torch.randn(K, DIM, generator=g, dtype=torch.float64)
    b = torch.randn(K, generator=g, dtype=torch.float64)
    y = torch.randint(0, K, (N,), generator=g)
    return h, W, b, y


def autograd(f, *xs):
    xs = [x.detach().clone().requires_grad_(True) for x in xs]
    f(*xs).backward()
    return [x.grad for x in xs]


def test_bce_value_and_gradient_match_autograd():
    g = torch.Generator().manual_seed(1)
    z = 3 * torch.randn(N, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (N,), generator=g).double()
    p = torch.sigmoid(z)
    textbook = -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()
    assert torch.allclose(D.bce_with_logits(z, y), textbook, atol=1e-12)
    assert torch.allclose(D.bce_with_logits(z, y),
                          torch.nn.functional.binary_cross_entropy_with_logits(z, y), atol=1e-12)
    (dz,) = autograd(lambda z: D.bce_with_logits(z, y), z)
    assert torch.allclose(D.bce_grad(z, y), dz, atol=1e-12)
    assert torch.allclose(D.bce_grad(z, y) * N, p - y)  # per example: p - y


def test_bce_is_stable_for_huge_logits():
    z = torch.tensor([800.0, -800.0, 800.0], dtype=torch.float64)
    y = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    loss = D.bce_with_logits(z, y)
    assert torch.isfinite(loss) and abs(float(loss) - 800 / 3) < 1e-9


def test_softmax_head_loss_and_gradients_match_autograd(head):
    h, W, b, y = head
    ref = torch.nn.functional.cross_entropy(D.head_logits(h, W, b), y)
    assert torch.allclose(D.softmax_cross_entropy(h, W, b, y), ref, atol=1e-12)
    dW, db = autograd(lambda W, b: D.softmax_cross_entropy(h, W, b, y), W, b)
    grads = D.softmax_head_grads(h, W, b, y)
    assert torch.allclose(grads.dW, dW, atol=1e-12)
    assert torch.allclose(grads.db, db, atol=1e-12)
    z = D.head_logits(h, W, b).detach()
    (dz,) = autograd(lambda z: (torch.logsumexp(z, 1) - z.gather(1, y[:, None]).squeeze(1)).mean(), z)
    assert torch.allclose(grads.dz, dz, atol=1e-12)
    assert torch.allclose(D.softmax(z), torch.softmax(z, 1), atol=1e-12)


def test_single_example_head_gradient_is_outer_product(head):
    h, W, b, y = head
    grads = D.softmax_head_grads(h[:1], W, b, y[:1])
    p = torch.softmax(D.head_logits(h[:1], W, b), 1)[0]
    e = torch.zeros(K, dtype=torch.float64)
    e[y[0]] = 1
    assert torch.allclose(grads.dW, torch.outer(p - e, h[0]))
    assert torch.allclose(grads.db, p - e)


def test_l2_and_l2_sp_gradients_match_autograd(head):
    _, W, _, _ = head
    source = torch.randn_like(W)
    lam = 0.3
    assert torch.allclose(D.l2_regulariser(W), 0.5 * W.pow(2).sum())
    (gw,) = autograd(lambda W: D.l2_penalty(W, lam), W)
    assert torch.allclose(D.l2_grad(W, lam), gw)
    (gw,) = autograd(lambda W: D.l2_sp_penalty(W, source, lam), W)
    assert torch.allclose(D.l2_sp_grad(W, source, lam), gw)
    assert float(D.l2_sp_penalty(source, source, lam)) == 0.0


def test_finite_differences_on_a_known_function():
    x = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    f = lambda x: (x ** 3).sum() + torch.sin(x[0] * x[1])  # noqa: E731
    exact = 3 * x ** 2 + torch.tensor([x[1] * torch.cos(x[0] * x[1]),
                                       x[0] * torch.cos(x[0] * x[1]), 0.0], dtype=torch.float64)
    assert torch.allclose(D.numerical_gradient(f, x), exact, atol=1e-8)
    assert D.gradient_check(f, x, exact) < 1e-8
    assert D.gradient_check(f, x, 2 * exact) > 0.4  # a wrong formula is caught


def test_gradient_check_on_the_head(head):
    h, W, b, y = head
    grads = D.softmax_head_grads(h, W, b, y)
    assert D.gradient_check(lambda W: D.softmax_cross_entropy(h, W, b, y), W, grads.dW) < 1e-7
    assert D.gradient_check(lambda b: D.softmax_cross_entropy(h, W, b, y), b, grads.db) < 1e-7
    wrong = (grads.dW * N)  # forgetting the batch average
    assert D.gradient_check(lambda W: D.softmax_cross_entropy(h, W, b, y), W, wrong) > 0.5


def test_bad_shapes_raise_clear_errors(head):
    h, W, b, y = head
    with pytest.raises(ValueError, match="W must be"):
        D.softmax_head_grads(h, W[:, :-1], b, y)
    with pytest.raises(ValueError, match="b must be"):
        D.softmax_cross_entropy(h, W, b[:-1], y)
    with pytest.raises(ValueError, match="labels y"):
        D.softmax_head_grads(h, W, b, y[:-1])
    with pytest.raises(ValueError, match="features h"):
        D.softmax_head_grads(h[0], W, b, y)
    with pytest.raises(ValueError, match="same shape"):
        D.bce_grad(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="1-D"):
        D.bce_with_logits(torch.zeros(3, 1), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="source"):
        D.l2_sp_grad(W, W[:, :2], 0.1)
    with pytest.raises(ValueError, match="lambda"):
        D.l2_penalty(W, -1.0)
    with pytest.raises(ValueError, match="0..2"):
        D.one_hot(torch.tensor([0, 3]), 3)
    with pytest.raises(ValueError, match="float64"):
        D.numerical_gradient(lambda x: x.sum(), torch.zeros(3))
    with pytest.raises(ValueError, match="shape of x"):
        D.gradient_check(lambda x: x.sum(), torch.zeros(3, dtype=torch.float64), torch.zeros(2))
