"""Freezing (冻结) and unfreezing parameters, and per-layer learning rates, for fine-tuning (微调).

Freezing a parameter means ``p.requires_grad = False``: autograd computes no gradient for it, so
the optimizer never changes it. Nothing else changes -- the forward pass, and so the predictions,
are the same frozen or not.

Parameters are grouped into *blocks* from the bottom of a BERT-style model to the top:
``embeddings``, ``layer 0`` … ``layer L-1`` (names containing ``layer.N.``), ``pooler``, and
``head`` (everything else, e.g. the new classifier). Taught in lesson 05.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Iterable

import pandas as pd
from torch import nn

_LAYER = re.compile(r"(?:^|\.)layer\.(\d+)\.")


def block_of(name: str) -> str:
    """The block a parameter name belongs to: ``"embeddings"``, ``"layer N"``, ``"pooler"`` or
    ``"head"``. Used by :func:`blocks`."""
    if match := _LAYER.search(name):
        return f"layer {int(match.group(1))}"
    if re.search(r"(?:^|\.)embeddings\.", name):
        return "embeddings"
    if re.search(r"(?:^|\.)pooler\.", name):
        return "pooler"
    return "head"


def blocks(model: nn.Module) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """``{block: [(name, parameter), ...]}`` ordered bottom to top (embeddings, layer 0 …, pooler,
    head), covering every parameter once. Taught in lesson 05."""
    found: dict[str, list[tuple[str, nn.Parameter]]] = {}
    for name, p in model.named_parameters():
        found.setdefault(block_of(name), []).append((name, p))
    layers = sorted((b for b in found if b.startswith("layer ")), key=lambda b: int(b.split()[1]))
    order = [b for b in ["embeddings", *layers, "pooler", "head"] if b in found]
    return {b: found[b] for b in order}


def _set(model: nn.Module, patterns: Iterable[str], trainable: bool, regex: bool) -> int:
    patterns = list(patterns)
    if not patterns:
        raise ValueError("give at least one parameter-name pattern, e.g. 'encoder.embeddings.*'")
    hits = 0
    for name, p in model.named_parameters():
        if any(re.search(pat, name) if regex else fnmatch.fnmatchcase(name, pat) for pat in patterns):
            p.requires_grad = trainable
            hits += p.numel()
    if hits == 0:
        some = [n for n, _ in model.named_parameters()][:3]
        raise ValueError(f"no parameter name matches {patterns} (regex={regex}); names look like {some}")
    return hits


def freeze(model: nn.Module, *patterns: str, regex: bool = False) -> int:
    """Set ``requires_grad=False`` on parameters whose name matches a glob pattern (``fnmatch``,
    e.g. ``"encoder.embeddings.*"``; ``"*"`` = all) or, with ``regex=True``, a regular expression
    (``re.search``). Returns how many numbers were matched. Taught in lesson 05."""
    return _set(model, patterns, False, regex)


def unfreeze(model: nn.Module, *patterns: str, regex: bool = False) -> int:
    """Set ``requires_grad=True`` on matching parameters (patterns as in :func:`freeze`).
    Taught in lesson 05."""
    return _set(model, patterns, True, regex)


def n_layers(model: nn.Module) -> int:
    """Number of transformer layers (``layer N`` blocks) in ``model``. Taught in lesson 05."""
    return sum(b.startswith("layer ") for b in blocks(model))


def unfreeze_top_k(model: nn.Module, k: int) -> nn.Module:
    """Train only the head and the top ``k`` transformer layers; freeze the rest.

    ``k=0`` trains the head alone (a linear probe); ``k = n_layers`` trains every layer but the
    embeddings; ``k = n_layers + 1`` also trains the embeddings (full fine-tuning). An unused
    ``pooler`` stays frozen. Taught in lesson 05.
    """
    L = n_layers(model)
    if not 0 <= k <= L + 1:
        raise ValueError(f"k must be between 0 and {L + 1} (the model has {L} layers), got {k}")
    for p in model.parameters():
        p.requires_grad = False
    top = ["head"] + [f"layer {i}" for i in range(L - 1, L - 1 - min(k, L), -1)]
    if k == L + 1:
        top.append("embeddings")
    for b, params in blocks(model).items():
        if b in top:
            for _, p in params:
                p.requires_grad = True
    return model


def trainable_table(model: nn.Module) -> pd.DataFrame:
    """Trainable and total parameters per block (bottom to top), with an ``all`` row at the end.

    Taught in lesson 05.
    """
    rows = [{"block": b, "trainable": sum(p.numel() for _, p in ps if p.requires_grad),
             "total": sum(p.numel() for _, p in ps)} for b, ps in blocks(model).items()]
    table = pd.DataFrame(rows)
    table.loc[len(table)] = ["all", table.trainable.sum(), table.total.sum()]
    return table.set_index("block")


class GradualUnfreezing:
    """Gradual unfreezing (ULMFiT): at first only the head trains; every ``every`` calls one more
    block is unfrozen, top down (layer L-1, …, layer 0, embeddings).

    Call ``g(i)`` before stage ``i``: it leaves the blocks ``order[: i // every + 1]`` trainable and
    returns their names. Use it per epoch, ``fit(..., on_epoch_start=GradualUnfreezing(model))``
    (ULMFiT: one block per epoch), or per batch, ``fit(..., on_step_start=GradualUnfreezing(model,
    every=4))``, so that every block is unfrozen within the same number of epochs as another run.
    The optimizer must hold every parameter (fit's default, or ``include_frozen=True``), so blocks
    unfrozen later are updated too. Taught in lesson 05 (part 2).
    """

    def __init__(self, model: nn.Module, every: int = 1) -> None:
        if every < 1:
            raise ValueError(f"every must be at least 1 (calls per newly unfrozen block), got {every}")
        self.model, self.every = model, every
        self.order = ["head"] + [f"layer {i}" for i in reversed(range(n_layers(model)))] + ["embeddings"]
        self.order = [b for b in self.order if b in blocks(model)]

    def cache_key(self) -> dict:
        """What the schedule depends on (for :func:`labkit.runcache.fit_cached`)."""
        return {"order": self.order, "every": self.every}

    def __call__(self, i: int) -> list[str]:
        if i < 0:
            raise ValueError(f"the epoch or step number must be >= 0, got {i}")
        trainable = self.order[: i // self.every + 1]
        for b, params in blocks(self.model).items():
            for _, p in params:
                p.requires_grad = b in trainable
        return trainable


def discriminative_param_groups(model: nn.Module, base_lr: float, decay: float,
                                include_frozen: bool = False) -> list[dict]:
    """Optimizer parameter groups with per-layer learning-rate decay (discriminative fine-tuning):

    ``lr_l = base_lr · decay^(L − l)``, where the blocks are numbered bottom to top
    ``l = 0`` (embeddings) … ``L`` (the head, which gets ``base_lr``).

    Every trainable parameter (every parameter with ``include_frozen=True``) is in exactly one
    group; each group also carries its ``"block"`` name. Pass the list to an optimizer, e.g.
    ``torch.optim.AdamW(groups)``. Taught in lesson 05.
    """
    if base_lr <= 0 or not 0 < decay <= 1:
        raise ValueError(f"need base_lr > 0 and 0 < decay <= 1, got base_lr={base_lr}, decay={decay}")
    ordered = list(blocks(model).items())
    L = len(ordered) - 1
    groups = []
    for l, (b, params) in enumerate(ordered):
        chosen = [p for _, p in params if include_frozen or p.requires_grad]
        if chosen:
            groups.append({"params": chosen, "lr": base_lr * decay ** (L - l), "block": b})
    if not groups:
        raise ValueError("the model has no trainable parameters; unfreeze something first")
    return groups
