"""The model lessons fine-tune: a pretrained encoder with a new linear head, and its inputs.

* :class:`SentenceClassifier` -- ``logits = W · pool(h_1 … h_T) + b`` on MiniLM (or any encoder);
* :func:`load_classifier` -- it, with pretrained or random weights;
* :func:`make_loader` -- tokenised, per-batch padded sentences with checked labels.

Taught in lesson 05.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from transformers import AutoConfig, AutoModel, DataCollatorWithPadding, PreTrainedTokenizerBase

from labkit import features, models
from labkit.device import pick_device


class SentenceClassifier(nn.Module):
    """A pretrained encoder with a new linear head: ``logits = W · pool(encoder(x)) + b``.

    The encoder's own pooler (a dense + tanh layer on [CLS]) is not used by any of our poolings,
    so it is removed (``encoder.pooler = None``): parameters that never get a gradient would only
    confuse the parameter counts and multi-process training. Made by :func:`load_classifier`, which lessons 04 and 05 use.
    """

    def __init__(self, encoder: nn.Module, n_classes: int = 3, pooling: str = "mean",
                 dropout: float = 0.1) -> None:
        super().__init__()
        features.check_pooling(pooling)
        if n_classes < 2:
            raise ValueError(f"n_classes must be at least 2, got {n_classes}")
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None
        self.encoder = encoder
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, n_classes)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The pooled sentence vectors the head sees (batch, width)."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return features.pool(hidden, attention_mask, self.pooling)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.embed(input_ids, attention_mask)))


def load_classifier(n_classes: int = 3, pooling: str = "mean", pretrained: bool = True,
                    device: torch.device | str | None = None
                    ) -> tuple[PreTrainedTokenizerBase, SentenceClassifier]:
    """``(tokenizer, SentenceClassifier)`` on MiniLM: pretrained weights, or (``pretrained=False``)
    the same architecture with random weights (seed with ``device.seed_everything`` first), on
    ``device`` (default: :func:`labkit.device.pick_device`, where ``fit`` trains and predicts).

    Taught in lesson 05.
    """
    dev = pick_device(device)
    tokenizer, encoder = models.load_encoder("cpu")
    if not pretrained:
        encoder = _random_encoder()
    model = SentenceClassifier(encoder, n_classes=n_classes, pooling=pooling)
    return tokenizer, model.to(dev)


def _random_encoder() -> nn.Module:
    """MiniLM's architecture with freshly initialised weights (seed first)."""
    return AutoModel.from_config(AutoConfig.from_pretrained(models.encoder_path(), local_files_only=True))


class UpperLayers(nn.Module):
    """Transfer-layer learning (迁移层学习): transformer layers on top of frozen lower ones, and a head.

    The lower ``k`` layers are frozen, so their token states :math:`h^{(k)}` are computed once
    (:func:`labkit.features.token_states`); this module trains only what sits above them:
    ``logits = W · mean_pool(g_L(… g_{k+1}(h^{(k)}))) + b``. Made by :func:`upper_layers`.
    """

    def __init__(self, layers: Sequence[nn.Module], width: int, n_classes: int = 3, dropout: float = 0.1) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width, n_classes)

    def embed(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean-pooled output of the upper layers (batch, width)."""
        length = int(attention_mask.sum(1).max())  # drop the padding columns no sentence of the batch needs
        hidden, attention_mask = hidden[:, :length], attention_mask[:, :length]
        # additive attention bias: 0 for real tokens, -inf (the dtype's minimum) for padding
        bias = (1.0 - attention_mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
        for layer in self.layers:
            out = layer(hidden, bias)
            hidden = out[0] if isinstance(out, tuple) else out
        return features.pool(hidden, attention_mask, "mean")

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.embed(hidden, attention_mask)))


def upper_layers(k: int, fresh: bool, n_classes: int = 3) -> UpperLayers:
    """MiniLM's layers above layer ``k`` (``k`` = 0 … 6 layers reused below them) with a new head:
    the pretrained layers, or (``fresh=True``) the same architecture with random weights (seed with
    ``device.seed_everything`` first). Feed it ``features.token_states(texts, layer=k)``.

    Taught in lesson 04.
    """
    _, encoder = models.load_encoder("cpu")
    n = encoder.config.num_hidden_layers
    if not 0 <= k <= n:
        raise ValueError(f"k must be 0 … {n} (how many of MiniLM's {n} layers stay frozen below), got {k}")
    layers = (_random_encoder() if fresh else encoder).encoder.layer[k:]
    return UpperLayers(layers, encoder.config.hidden_size, n_classes)


def check_labels(labels: Sequence[int], n_classes: int) -> np.ndarray:
    """``labels`` as an int array, after checking they are whole numbers in ``0 .. n_classes-1``."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"labels must be a flat sequence of class ids, got shape {arr.shape}")
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"labels must be integer class ids 0..{n_classes - 1}, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
            bad = arr[~np.isfinite(arr) | (arr != np.round(arr))][:3].tolist()
            raise ValueError(f"labels must be whole class ids 0..{n_classes - 1}, got {bad}; "
                             "map scores to classes first (e.g. data.label_from_score)")
    arr = arr.astype(np.int64)
    if len(arr) and (arr.min() < 0 or arr.max() >= n_classes):
        raise ValueError(f"labels must be in 0..{n_classes - 1} for {n_classes} classes, got values "
                         f"from {arr.min()} to {arr.max()}; pass n_classes= if the model has more")
    return arr


def make_loader(texts: Sequence[str], labels: Sequence[int] | None, tokenizer: PreTrainedTokenizerBase,
                max_length: int = 64, batch_size: int = 32, shuffle: bool = False,
                seed: int = 0, n_classes: int = 3) -> DataLoader:
    """A DataLoader of tokenised sentences, padded per batch, yielding dicts with ``input_ids``,
    ``attention_mask`` and (if ``labels`` is given) ``labels`` -- checked to be class ids in
    ``0 .. n_classes-1``. Taught in lesson 05."""
    texts = features.check_texts(texts)
    features.check_sizes(max_length, batch_size)
    if labels is not None:
        labels = check_labels(labels, n_classes)
        if len(labels) != len(texts):
            raise ValueError(f"got {len(texts)} texts but {len(labels)} labels; they must match")
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    items = [{"input_ids": ids, "attention_mask": mask}
             for ids, mask in zip(enc["input_ids"], enc["attention_mask"])]
    if labels is not None:
        for item, y in zip(items, labels):
            item["labels"] = int(y)
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(items, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      collate_fn=DataCollatorWithPadding(tokenizer))
