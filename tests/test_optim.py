"""labkit.optim: hand-written steps equal torch.optim; the article's formula (1) is not momentum."""

from __future__ import annotations

import pytest
import torch

from labkit import derivatives as D
from labkit import optim

STEPS = 25


def problem(seed: int = 0):
    """A small softmax head on random features, float64: loss(W) and its hand gradient."""
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(40, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=g)
    W0 = 0.5 * torch.randn(3, 5, generator=g, dtype=torch.float64)
    b = torch.zeros(3, dtype=torch.float64)
    loss = lambda W: D.softmax_cross_entropy(h, W, b, y)  # noqa: E731
    grad = lambda W: D.softmax_head_grads(h, W, b, y).dW  # noqa: E731
    return W0, loss, grad


def torch_run(W0, loss, make_opt, steps=STEPS):
    w = torch.nn.Parameter(W0.clone())
    opt = make_opt([w])
    out = []
    for _ in range(steps):
        opt.zero_grad()
        loss(w).backward()
        opt.step()
        out.append(w.detach().clone())
    return out


def test_heavy_ball_equals_torch_sgd_momentum_every_step():
    W0, loss, grad = problem()
    ref = torch_run(W0, loss, lambda p: torch.optim.SGD(p, lr=0.5, momentum=0.9))
    w, v = W0.clone(), torch.zeros_like(W0)
    for step in range(STEPS):
        w, v = optim.heavy_ball_step(w, grad(w), v, lr=0.5, momentum=0.9)
        assert torch.allclose(w, ref[step], atol=1e-6, rtol=0), f"differs at step {step + 1}"


def test_article_formula1_is_not_momentum():
    W0, loss, grad = problem()
    ref = torch_run(W0, loss, lambda p: torch.optim.SGD(p, lr=0.5, momentum=0.9))
    w, m = W0.clone(), torch.zeros_like(W0)
    for _ in range(STEPS):
        w, m = optim.article_formula1_step(w, grad(w), m, lr=0.5, beta=0.9)
    assert (w - ref[-1]).abs().max() > 1e-2
    # under a constant gradient its step shrinks to 0, where momentum's grows to lr g / (1 - mu)
    g = torch.ones(3, dtype=torch.float64)
    w, m, v, wh = torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64), \
        torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    for _ in range(200):
        w_new, m = optim.article_formula1_step(w, g, m, lr=0.1)
        wh_new, v = optim.heavy_ball_step(wh, g, v, lr=0.1, momentum=0.9)
        step_a, step_h, w, wh = (w - w_new).abs().max(), (wh - wh_new).abs().max(), w_new, wh_new
    assert step_a < 1e-6 and abs(float(step_h) - 1.0) < 1e-6


def test_first_article_step_is_plain_sgd():
    W0, _, grad = problem()
    w, _ = optim.article_formula1_step(W0, grad(W0), torch.zeros_like(W0), lr=0.5)
    assert torch.allclose(w, W0 - 0.5 * grad(W0))


@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_matches_torch(decoupled):
    W0, loss, grad = problem(1)
    lam, lr = 0.1, 0.05
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    ref = torch_run(W0, loss, lambda p: cls(p, lr=lr, weight_decay=lam))
    w, state = W0.clone(), optim.adam_init(W0)
    for step in range(STEPS):
        w, state = optim.adam_step(w, grad(w), state, lr=lr, weight_decay=lam, decoupled=decoupled)
        assert torch.allclose(w, ref[step], atol=1e-6, rtol=0), f"differs at step {step + 1}"
    assert state.t == STEPS


def test_adam_l2_and_adamw_differ():
    W0, _, grad = problem(2)
    runs = {}
    for decoupled in (False, True):
        w, state = W0.clone(), optim.adam_init(W0)
        for _ in range(STEPS):
            w, state = optim.adam_step(w, grad(w), state, lr=0.05, weight_decay=0.5,
                                       decoupled=decoupled)
        runs[decoupled] = w
    assert (runs[False] - runs[True]).abs().max() > 1e-3


def test_l2_sp_penalty_in_a_training_loop_pulls_toward_source():
    W0, loss, _ = problem(3)
    source = [torch.randn_like(W0)]
    dist = {}
    for lam in (0.0, 10.0):
        w = torch.nn.Parameter(W0.clone())
        opt = torch.optim.SGD([w], lr=0.05)
        for _ in range(100):
            opt.zero_grad()
            (loss(w) + D.l2_sp_penalty([w], source, lam)).backward()
            opt.step()
        dist[lam] = float((w.detach() - source[0]).norm())
    assert dist[10.0] < 0.1 * dist[0.0]
    w = W0.clone().requires_grad_(True)
    D.l2_sp_penalty([w], source, 0.7).backward()
    assert torch.allclose(w.grad, D.l2_sp_grad(W0, source[0], 0.7))


def test_bad_inputs_raise_clear_errors():
    w = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="one shape"):
        optim.heavy_ball_step(w, torch.zeros(2, 3), torch.zeros(3, 2), lr=0.1)
    with pytest.raises(ValueError, match="one shape"):
        optim.article_formula1_step(w, w, torch.zeros(3), lr=0.1)
    with pytest.raises(ValueError, match="one shape"):
        optim.adam_step(w, torch.zeros(3), optim.adam_init(w))
    with pytest.raises(ValueError, match="momentum"):
        optim.heavy_ball_step(w, w, w, lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="learning rate"):
        optim.heavy_ball_step(w, w, w, lr=0.0)
    with pytest.raises(ValueError, match="source"):
        D.l2_sp_penalty([w, w], [w], 0.1)
