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
        config = AutoConfig.from_pretrained(models.encoder_path(), local_files_only=True)
        encoder = AutoModel.from_config(config)
    model = SentenceClassifier(encoder, n_classes=n_classes, pooling=pooling)
    return tokenizer, model.to(dev)


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
