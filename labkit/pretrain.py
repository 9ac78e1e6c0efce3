"""Self-supervised pre-training (自监督预训练) of a small GPT-2 on unlabelled text.

Causal language modelling needs no labels: every next token is a target. With token ids
``t_1 … t_T`` of a block of text, the model predicts each token from the ones before it and
minimises the mean cross-entropy ::

    L = -(1 / (T-1)) · Σ_{i=1}^{T-1} log p_θ(t_{i+1} | t_1 … t_i),      perplexity = exp(L)

A perplexity of ``V`` (the vocabulary size) is a uniform guess; lower is better.

This module holds only what the lesson is about and no library does in one call:

* :func:`train_tokenizer` -- a byte-level BPE vocabulary learned from the text (``tokenizers``);
* :func:`lm_blocks` -- the text as fixed-length ``(input, next-token)`` blocks;
* :class:`NextTokenLogits` and :func:`next_token_loss` -- so that :func:`labkit.train.fit` (the
  same loop that fine-tunes) pre-trains: the only change is the target;
* :func:`perplexity` -- ``exp`` of the held-out next-token loss.

Taught in lesson 07 (part 2).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from tokenizers import ByteLevelBPETokenizer
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset
from transformers import PreTrainedTokenizerFast

from labkit import features

END = "<|endoftext|>"


def train_tokenizer(texts: Sequence[str], vocab_size: int = 2000) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (GPT-2's kind) learned from ``texts``: start from the 256 bytes
    and repeatedly merge the most frequent adjacent pair until ``vocab_size`` tokens exist.
    ``<|endoftext|>`` ends every sentence and pads batches."""
    texts = features.check_texts(texts)
    if vocab_size < 257 + 1:
        raise ValueError(f"vocab_size must exceed the 256 bytes plus {END}, got {vocab_size}")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=[END],
                            show_progress=False)
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token=END, pad_token=END)


def lm_blocks(texts: Sequence[str], tokenizer: PreTrainedTokenizerFast,
              block: int = 64) -> TensorDataset:
    """All sentences, each followed by ``<|endoftext|>``, concatenated and cut into windows of
    ``block + 1`` tokens (stride ``block``): inputs ``w[:-1]``, targets ``w[1:]`` (the next tokens).
    The last incomplete window is dropped."""
    texts = features.check_texts(texts)
    if block < 2:
        raise ValueError(f"block must be at least 2 tokens, got {block}")
    ids = [i for row in tokenizer(list(texts))["input_ids"] for i in row + [tokenizer.eos_token_id]]
    n = (len(ids) - 1) // block
    if n < 1:
        raise ValueError(f"the texts give {len(ids)} tokens, fewer than one block of {block + 1}")
    stream = torch.tensor(ids[: n * block + 1], dtype=torch.long)
    windows = stream.unfold(0, block + 1, block)
    return TensorDataset(windows[:, :-1].contiguous(), windows[:, 1:].contiguous())


class NextTokenLogits(nn.Module):
    """A causal LM (``GPT2LMHeadModel``) as ``fit`` expects a model: ids ``(b, T)`` → logits
    ``(b, T, V)``, the prediction for every next token."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=input_ids).logits


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over every position: ``-(1/N) Σ log softmax(logits)[target]``."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))


def next_token_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share of positions whose most likely next token is the true one (``fit``'s ``eval_fn``)."""
    return float((np.asarray(y_true) == np.asarray(y_pred)).mean())


def perplexity(model: nn.Module, blocks: TensorDataset, batch_size: int = 64) -> float:
    """``exp`` of the mean next-token cross-entropy over ``blocks`` (held-out text)."""
    dev = next(model.parameters()).device
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for x, y in DataLoader(blocks, batch_size=batch_size):
            logits = model(x.to(dev))
            total += float(next_token_loss(logits, y.to(dev))) * y.numel()
            count += y.numel()
    return float(np.exp(total / count))
