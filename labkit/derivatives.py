"""The derivatives behind transfer learning, written out by hand (and checked against autograd).

The article's formula (0) is the regularised objective::

    f* = argmin_f  sum_i l(y_i, f(x_i)) + lambda R(f)

``l`` is the loss of one example, ``R(f)`` is the **regulariser** (正则项: it measures how complex
``f`` is) and ``lambda`` (正则化系数) is its **weight**. (The article calls ``R(f)`` the cost
function; the cost is the whole sum.) This module gives, for each piece, the value and the
gradient as formulas:

* binary cross-entropy ``l(y, p) = -[y log p + (1-y) log(1-p)]`` with ``p = sigmoid(z)``:
  ``dl/dz = p - y``,
* the softmax head ``p = softmax(W h + b)`` (the article's formula (2)) with cross-entropy:
  ``dL/dz = p - onehot(y)``, ``dL/dW = (p - onehot(y)) h^T``, ``dL/db = p - onehot(y)``,
* the L2 regulariser ``R(w) = 1/2 ||w||^2`` (gradient ``w``) and L2-SP
  ``lambda/2 ||w - w_source||^2`` (gradient ``lambda (w - w_source)``),
* a central finite-difference gradient checker.

Losses are averaged over the batch, so every batch gradient carries a factor ``1/n``.
Functions take and return torch tensors; use float64 when you compare gradients.

Taught in lesson 02.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import torch


def _check_logits_targets(z: torch.Tensor, y: torch.Tensor) -> None:
    if z.ndim != 1:
        raise ValueError(f"binary logits z must be a 1-D tensor (one logit per example), got shape "
                         f"{tuple(z.shape)}; use z.squeeze(-1) if it is (n, 1)")
    if y.shape != z.shape:
        raise ValueError(f"targets y must have the same shape as the logits z {tuple(z.shape)}, got "
                         f"{tuple(y.shape)}")


def bce_with_logits(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy computed from the logits ``z`` (targets ``y`` in {0, 1})::

        l(y, p) = -[y log p + (1 - y) log(1 - p)],   p = sigmoid(z)
                = max(z, 0) - z y + log(1 + exp(-|z|))      (the stable form used here)

    The stable form never takes ``log`` of a probability that rounds to 0 or 1.
    Taught in lesson 02.
    """
    _check_logits_targets(z, y)
    y = y.to(z.dtype)
    return (z.clamp(min=0) - z * y + torch.log1p(torch.exp(-z.abs()))).mean()


def bce_grad(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gradient of :func:`bce_with_logits` with respect to the logits::

        dl/dz_i = p_i - y_i   for one example  (p = sigmoid(z)),
        dL/dz_i = (p_i - y_i) / n   for the batch mean L.

    Taught in lesson 02.
    """
    _check_logits_targets(z, y)
    return (torch.sigmoid(z) - y.to(z.dtype)) / z.shape[0]


def softmax(z: torch.Tensor) -> torch.Tensor:
    """Row-wise ``softmax(z)_k = exp(z_k - max z) / sum_j exp(z_j - max z)`` (shifted: stable).

    Used by :func:`softmax_cross_entropy` and :func:`softmax_head_grads`.
    """
    e = torch.exp(z - z.max(dim=-1, keepdim=True).values)
    return e / e.sum(dim=-1, keepdim=True)


def one_hot(y: torch.Tensor, k: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``onehot(y)``: an (n, k) matrix with a 1 in column ``y_i`` of row ``i``. Used by :func:`softmax_head_grads`."""
    if y.ndim != 1:
        raise ValueError(f"class labels y must be a 1-D tensor of integers, got shape {tuple(y.shape)}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= k):
        raise ValueError(f"class labels must lie in 0..{k - 1}, got values from {int(y.min())} "
                         f"to {int(y.max())}")
    return torch.nn.functional.one_hot(y.long(), k).to(dtype)


def _check_head(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor, y: torch.Tensor) -> None:
    if h.ndim != 2:
        raise ValueError(f"features h must be (n, d): one row per example; got shape {tuple(h.shape)}")
    if W.ndim != 2 or W.shape[1] != h.shape[1]:
        raise ValueError(f"W must be (k, d) with d = {h.shape[1]} (the feature width of h), got "
                         f"shape {tuple(W.shape)}")
    if b.shape != (W.shape[0],):
        raise ValueError(f"b must be ({W.shape[0]},): one bias per class (rows of W), got shape "
                         f"{tuple(b.shape)}")
    if y.shape != (h.shape[0],):
        raise ValueError(f"labels y must be ({h.shape[0]},): one class index per row of h, got "
                         f"shape {tuple(y.shape)}")


def head_logits(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Logits of the linear head, one row per example: ``z_i = W h_i + b``, i.e. ``Z = H W^T + b``.

    Used by :func:`softmax_cross_entropy`.
    """
    if h.ndim != 2 or W.ndim != 2 or W.shape[1] != h.shape[1] or b.shape != (W.shape[0],):
        raise ValueError(f"head_logits needs h (n, d), W (k, d), b (k,); got h {tuple(h.shape)}, "
                         f"W {tuple(W.shape)}, b {tuple(b.shape)}")
    return h @ W.T + b


def softmax_cross_entropy(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor,
                          y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the softmax head ``p = softmax(W h + b)`` (the article's formula (2))::

        L = -(1/n) sum_i log p_{i, y_i} = (1/n) sum_i [logsumexp(z_i) - z_{i, y_i}]

    Taught in lesson 02.
    """
    _check_head(h, W, b, y)
    z = head_logits(h, W, b)
    return (torch.logsumexp(z, dim=1) - z.gather(1, y.long()[:, None]).squeeze(1)).mean()


class HeadGrads(NamedTuple):
    """Gradients of the softmax head's mean cross-entropy: ``dz`` (n, k), ``dW`` (k, d), ``db`` (k,).

    Returned by :func:`softmax_head_grads` (lesson 02).
    """

    dz: torch.Tensor
    dW: torch.Tensor
    db: torch.Tensor


def softmax_head_grads(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor,
                       y: torch.Tensor) -> HeadGrads:
    """Gradients of :func:`softmax_cross_entropy`, batch-averaged::

        dL/dz_i = (softmax(z_i) - onehot(y_i)) / n
        dL/dW   = sum_i dL/dz_i h_i^T  = (P - Y)^T H / n      (one example: (p - y) h^T)
        dL/db   = sum_i dL/dz_i        = column sums of (P - Y) / n   (one example: p - y)

    Taught in lesson 02.
    """
    _check_head(h, W, b, y)
    z = head_logits(h, W, b)
    dz = (softmax(z) - one_hot(y, W.shape[0], z.dtype)) / h.shape[0]
    return HeadGrads(dz=dz, dW=dz.T @ h, db=dz.sum(dim=0))


def l2_regulariser(w: torch.Tensor) -> torch.Tensor:
    """The regulariser ``R(w) = 1/2 ||w||^2`` of formula (0) (its weight lambda is applied outside).

    Used by :func:`l2_penalty` and :func:`l2_sp_penalty`.
    """
    return 0.5 * (w * w).sum()


def l2_penalty(w: torch.Tensor, lam: float) -> torch.Tensor:
    """The weighted term ``lambda R(w) = lambda/2 ||w||^2`` added to the loss. Taught in lesson 02."""
    _check_lam(lam)
    return lam * l2_regulariser(w)


def l2_grad(w: torch.Tensor, lam: float) -> torch.Tensor:
    """Gradient of :func:`l2_penalty`: ``d/dw [lambda/2 ||w||^2] = lambda w``. Taught in lesson 02."""
    _check_lam(lam)
    return lam * w


def _check_lam(lam: float) -> None:
    if not lam >= 0:
        raise ValueError(f"the regularisation weight lambda must be >= 0, got {lam}")


def _check_source(w: torch.Tensor, w_source: torch.Tensor) -> None:
    if w.shape != w_source.shape:
        raise ValueError(f"w has shape {tuple(w.shape)} but w_source has shape "
                         f"{tuple(w_source.shape)}; L2-SP needs the source weights of the same tensor")


def l2_sp_penalty(w: torch.Tensor | Sequence[torch.Tensor], w_source: torch.Tensor | Sequence[torch.Tensor],
                  lam: float) -> torch.Tensor:
    """L2-SP (Li et al., 2018): pull the weights toward the source model's, not toward 0::

        Omega(w) = lambda/2 ||w - w_source||^2       (summed over the tensors when given lists)

    ``w_source`` holds the starting (pretrained) weights, e.g. ``[p.detach().clone() for p in
    params]`` taken before training. The result keeps the autograd graph, so
    ``(loss + l2_sp_penalty(params, source, lam)).backward()`` adds the pull inside a training loop.
    Taught in lesson 02.
    """
    if isinstance(w, (list, tuple)) or isinstance(w_source, (list, tuple)):
        ws, ss = list(w), list(w_source)
        if len(ws) != len(ss):
            raise ValueError(f"got {len(ws)} parameter tensors but {len(ss)} source tensors; "
                             "pass one source copy per parameter, in the same order")
        if not ws:
            raise ValueError("l2_sp_penalty got no parameters")
        return sum(l2_sp_penalty(p, s.detach(), lam) for p, s in zip(ws, ss))
    _check_source(w, w_source)
    _check_lam(lam)
    return lam * l2_regulariser(w - w_source)


def l2_sp_grad(w: torch.Tensor, w_source: torch.Tensor, lam: float) -> torch.Tensor:
    """Gradient of :func:`l2_sp_penalty`: ``lambda (w - w_source)``. Taught in lesson 02."""
    _check_source(w, w_source)
    _check_lam(lam)
    return lam * (w - w_source)


def numerical_gradient(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                       eps: float = 1e-6) -> torch.Tensor:
    """Central finite differences, one coordinate at a time::

        df/dx_j ~ (f(x + eps e_j) - f(x - eps e_j)) / (2 eps)      (error O(eps^2))

    ``f`` maps a tensor shaped like ``x`` to a scalar. Needs float64 (in float32 the rounding
    error ``~1e-7 |f| / eps`` swamps the result). Used by :func:`gradient_check`.
    """
    if x.dtype != torch.float64:
        raise ValueError(f"finite differences need float64 inputs, got {x.dtype}; pass x.double() "
                         "(and make f compute in float64)")
    x = x.detach().clone()
    grad = torch.empty_like(x)
    flat, gflat = x.view(-1), grad.view(-1)
    for j in range(flat.numel()):
        old = flat[j].item()
        flat[j] = old + eps
        up = float(f(x))
        flat[j] = old - eps
        down = float(f(x))
        flat[j] = old
        gflat[j] = (up - down) / (2 * eps)
    return grad


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference relative to the gradient's scale::

        err = max_j |a_j - b_j| / max_j max(|a_j|, |b_j|)

    (scaled by the largest entry rather than entry by entry, so tiny entries whose finite
    difference is pure rounding noise do not dominate). Used by :func:`gradient_check`.
    """
    if a.shape != b.shape:
        raise ValueError(f"cannot compare gradients of shapes {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a.detach().double(), b.detach().double()
    if a.numel() == 0:
        return 0.0
    scale = float(torch.maximum(a.abs(), b.abs()).max())
    diff = float((a - b).abs().max())
    return diff / scale if scale > 0 else diff


def gradient_check(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                   grad: torch.Tensor, eps: float = 1e-6) -> float:
    """Max relative error (see :func:`relative_error`) between an analytic gradient ``grad`` of
    ``f`` at ``x`` and central finite differences (see :func:`numerical_gradient`). Below ~1e-6
    in float64 means the formula is right; a wrong formula gives errors near 1.
    Taught in lesson 02.
    """
    if grad.shape != x.shape:
        raise ValueError(f"the gradient must have the shape of x {tuple(x.shape)}, got "
                         f"{tuple(grad.shape)}")
    return relative_error(grad, numerical_gradient(f, x, eps))
