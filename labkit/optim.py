"""Optimiser steps written by hand, so lesson 02 can compare them with ``torch.optim``.

* :func:`heavy_ball_step` -- SGD with momentum, PyTorch's form (``v <- mu v + g``, ``w <- w - lr v``),
* :func:`article_formula1_step` -- the article's formula (1) ``delta w = alpha (g - m)``, taken
  literally, to show that it is *not* momentum,
* :func:`adam_step` -- Adam with L2 in the loss (``g + lambda w`` enters the moments, as
  ``torch.optim.Adam(weight_decay=lambda)``) or with decoupled weight decay (AdamW),
* :func:`l2_sp_penalty` -- the L2-SP term ``lambda/2 sum ||w - w_source||^2`` to add to a loss.

Every step is a pure function: it returns the new weights and the new optimiser state and leaves
its inputs untouched. Taught in lesson 02.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch

from labkit import derivatives


def _check_same_shape(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{k} {v}" for k, v in shapes.items())
        raise ValueError(f"the weights, gradient and optimiser state must have one shape; got {listed}")


def _check_rate(lr: float) -> None:
    if not lr > 0:
        raise ValueError(f"the learning rate must be > 0, got {lr}")


def heavy_ball_step(w: torch.Tensor, g: torch.Tensor, v: torch.Tensor, lr: float,
                    momentum: float = 0.9) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of SGD with heavy-ball momentum, exactly as ``torch.optim.SGD(momentum=mu)``::

        v <- mu v + g          (the velocity: a running sum of past gradients, decayed by mu)
        w <- w - lr v

    Start with ``v = 0`` (PyTorch starts its buffer at ``g`` on the first step: the same thing).
    PyTorch's ``dampening`` (``v <- mu v + (1 - dampening) g``) and ``nesterov`` options are off
    here, as they are by default. Under a constant gradient the step grows to ``lr g / (1 - mu)``:
    momentum accumulates the consistent direction. Returns ``(w, v)``. Taught in lesson 02.
    """
    _check_same_shape(w=w, g=g, v=v)
    _check_rate(lr)
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum mu must be in [0, 1), got {momentum}")
    v = momentum * v + g
    return w - lr * v, v


def article_formula1_step(w: torch.Tensor, g: torch.Tensor, m: torch.Tensor, lr: float,
                          beta: float = 0.9) -> tuple[torch.Tensor, torch.Tensor]:
    """The article's formula (1), ``delta w^t = alpha (g^t - m^t)``, implemented as written.

    The article calls ``m^t`` "the momentum of w^{t-1} before step t" and never defines it. The
    most charitable concrete reading, used here:

    * ``m^t`` is the usual "momentum" of deep-learning optimisers, the exponential moving average
      of the *past* gradients, ``m^{t+1} = beta m^t + (1 - beta) g^t``, starting from ``m^1 = 0``;
    * ``delta w`` is the step taken *down* the gradient, ``w <- w - alpha (g - m)`` (adding it,
      as "change of w" suggests literally, would climb the loss).

    Subtracting the average gradient cancels the consistent direction instead of accumulating it:
    under a constant gradient ``g - m -> 0`` and learning stalls, the opposite of momentum. (The
    other concrete reading, ``m = mu v`` with the heavy-ball buffer ``v``, is worse: the step tends
    to ``(1 - 2 mu)/(1 - mu) g``, which points uphill for ``mu > 1/2``.) Returns ``(w, m)``.
    Taught in lesson 02.
    """
    _check_same_shape(w=w, g=g, m=m)
    _check_rate(lr)
    if not 0 <= beta < 1:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    w = w - lr * (g - m)
    return w, beta * m + (1 - beta) * g


class AdamState(NamedTuple):
    """Adam's state for one tensor: first moment ``m``, second moment ``v``, steps taken ``t``.

    Returned by :func:`adam_init` and :func:`adam_step` (lesson 02).
    """

    m: torch.Tensor
    v: torch.Tensor
    t: int


def adam_init(w: torch.Tensor) -> AdamState:
    """Fresh Adam state for ``w``: zero moments, ``t = 0``. Taught in lesson 02."""
    return AdamState(torch.zeros_like(w), torch.zeros_like(w), 0)


def adam_step(w: torch.Tensor, g: torch.Tensor, state: AdamState, lr: float = 1e-3,
              betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
              weight_decay: float = 0.0, decoupled: bool = False
              ) -> tuple[torch.Tensor, AdamState]:
    """One Adam step, with weight decay ``lambda`` applied in one of two ways.

    ``decoupled=False`` -- L2 in the loss, as ``torch.optim.Adam(weight_decay=lambda)``::

        g <- g + lambda w                        (the gradient of lambda/2 ||w||^2 joins g)
        m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g^2,   t <- t + 1
        w <- w - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

    so the decay is divided by ``sqrt(v)`` like the rest of the gradient: weights with large
    gradients are barely decayed.

    ``decoupled=True`` -- AdamW (Loshchilov & Hutter), as ``torch.optim.AdamW(weight_decay=lambda)``::

        w <- w - lr lambda w                     (decay the weights directly, never rescaled)
        then the Adam update above with g unchanged.

    Returns ``(w, state)``. Taught in lesson 02.
    """
    _check_same_shape(w=w, g=g, m=state.m, v=state.v)
    _check_rate(lr)
    b1, b2 = betas
    if not (0 <= b1 < 1 and 0 <= b2 < 1):
        raise ValueError(f"betas must both be in [0, 1), got {betas}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    if decoupled:
        w = w * (1 - lr * weight_decay)
    else:
        g = g + weight_decay * w
    t = state.t + 1
    m = b1 * state.m + (1 - b1) * g
    v = b2 * state.v + (1 - b2) * g * g
    denom = (v.sqrt() / (1 - b2 ** t) ** 0.5) + eps
    w = w - (lr / (1 - b1 ** t)) * m / denom
    return w, AdamState(m, v, t)
