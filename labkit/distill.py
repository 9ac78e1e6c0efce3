"""Knowledge distillation (知识蒸馏): a large fine-tuned teacher ("knowledge") taught to a small, fast
student ("task"), and what the student costs to run.

* :func:`soften` -- the teacher's *soft targets*, ``softmax(z / T)`` at a temperature ``T``;
* :func:`distillation_loss` / :class:`DistillationLoss` -- Hinton et al.'s (2015) loss, by hand, as a
  ``loss_fn`` for :func:`labkit.train.fit`; :func:`transfer_loader` carries the teacher's logits (and
  the labels where there are any) as the batch's ``labels``;
* :func:`student` / :func:`truncate` -- MiniLM cut to its first ``k`` transformer layers, starting from
  the pretrained weights (the DistilBERT-style initialisation);
* :func:`quantize` -- post-training dynamic int8 quantisation of the linear layers;
* :func:`saved_mb` and :func:`latency` -- model size on disk and CPU time per sentence.

Taught in lesson 12.
"""

from __future__ import annotations

import copy
import io
import statistics
import time
import warnings
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from labkit import features
from labkit.classifier import SentenceClassifier, check_labels, load_classifier

#: the label column's value for a sentence of the transfer set that has no label
UNLABELLED = -1


def _check_temperature(T: float) -> float:
    if isinstance(T, bool) or not isinstance(T, (int, float, np.floating, np.integer)) or not np.isfinite(T) or T <= 0:
        raise ValueError(f"the temperature T must be a positive number (T = 1 is the plain softmax), got {T!r}")
    return float(T)


def _check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating, np.integer)) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha weighs the soft term against the hard one and must be in [0, 1], got {alpha!r}")
    return float(alpha)


def soften(logits: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    """Soft targets: ``softmax(z / T)`` over the last axis. ``T = 1`` is the plain softmax; a larger
    ``T`` flattens the distribution and shows how the teacher ranks the *wrong* classes (the "dark
    knowledge"); ``T → ∞`` tends to uniform, ``T → 0`` to one-hot on the argmax.

    Taught in lesson 12.
    """
    return torch.softmax(torch.as_tensor(logits, dtype=torch.float32) / _check_temperature(T), dim=-1)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      labels: torch.Tensor | None = None, T: float = 2.0, alpha: float = 0.5) -> torch.Tensor:
    """Hinton, Vinyals & Dean (2015), averaged over the batch::

        L = α · T² · KL( softmax(z_t / T) ‖ softmax(z_s / T) ) + (1 − α) · CE(y, z_s)

        KL(p ‖ q) = Σ_c p_c (log p_c − log q_c),     CE(y, z) = −log softmax(z)_y

    ``z_s`` are the student's logits, ``z_t`` the teacher's (no gradient flows into them). The soft
    term's gradient with respect to ``z_s`` is ``(p_s − p_t) / T``, which shrinks about as ``1/T²`` for
    a large ``T`` (``p_s − p_t`` itself shrinks as ``1/T``); the factor ``T²`` keeps it comparable with
    the hard term's whatever the temperature. The hard term uses the labels at
    temperature 1; a label of ``-1`` (:data:`UNLABELLED`) marks a sentence without one and is left
    out, and a batch with no labels (or ``labels=None``) has a hard term of 0.

    Taught in lesson 12.
    """
    T, alpha = _check_temperature(T), _check_alpha(alpha)
    if student_logits.ndim != 2 or student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student and teacher logits must both be (batch, classes) and the same shape; got "
                         f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")
    log_p_s = F.log_softmax(student_logits.float() / T, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.detach().float() / T, dim=-1)
    soft = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1).mean()
    hard = student_logits.new_zeros((), dtype=torch.float32)
    if labels is not None:
        labels = torch.as_tensor(labels, device=student_logits.device).long().reshape(-1)
        if len(labels) != len(student_logits):
            raise ValueError(f"got {len(labels)} labels for {len(student_logits)} sentences; they must match")
        known = labels != UNLABELLED
        if known.any():
            hard = F.cross_entropy(student_logits[known].float(), labels[known])
    return alpha * T ** 2 * soft + (1 - alpha) * hard


class DistillationLoss(nn.Module):
    """:func:`distillation_loss` as a ``loss_fn`` for :func:`labkit.train.fit`: ``loss(z_s, targets)``
    where each row of ``targets`` (the batch's ``labels``, made by :func:`transfer_loader`) is the
    teacher's ``n_classes`` logits followed by the hard label (``-1`` = none). ``T`` and ``alpha`` are
    plain attributes, so :func:`labkit.runcache.fit_cached` keys them.

    Taught in lesson 12.
    """

    def __init__(self, T: float = 2.0, alpha: float = 0.5, n_classes: int = 3) -> None:
        super().__init__()
        self.T, self.alpha, self.n_classes = _check_temperature(T), _check_alpha(alpha), int(n_classes)

    def forward(self, student_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if targets.ndim != 2 or targets.shape[1] != self.n_classes + 1:
            raise ValueError(f"targets must be (batch, {self.n_classes} teacher logits + 1 label), got "
                             f"{tuple(targets.shape)}; build the loader with distill.transfer_loader")
        return distillation_loss(student_logits, targets[:, :self.n_classes], targets[:, self.n_classes],
                                 T=self.T, alpha=self.alpha)


def transfer_loader(texts: Sequence[str], teacher_logits: np.ndarray, tokenizer: PreTrainedTokenizerBase,
                    labels: Sequence[int] | None = None, max_length: int = 64, batch_size: int = 32,
                    shuffle: bool = False, seed: int = 0) -> DataLoader:
    """The transfer set as a DataLoader for :class:`DistillationLoss`: tokenised sentences padded per
    batch, whose ``labels`` row is the teacher's logits and the hard label (``-1`` everywhere when
    ``labels`` is None: unlabelled text). Taught in lesson 12."""
    texts = features.check_texts(texts)
    features.check_sizes(max_length, batch_size)
    z = np.asarray(teacher_logits, dtype=np.float64)
    if z.ndim != 2 or len(z) != len(texts) or z.shape[1] < 2:
        raise ValueError(f"teacher_logits must be (sentences, classes) with one row per text ({len(texts)}); "
                         f"got shape {z.shape}")
    if not np.isfinite(z).all():
        raise ValueError("teacher_logits contain NaN or infinite values")
    y = np.full(len(texts), UNLABELLED) if labels is None else check_labels(labels, z.shape[1])
    if len(y) != len(texts):
        raise ValueError(f"got {len(texts)} texts but {len(y)} labels; they must match")
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    items = [{"input_ids": ids, "attention_mask": mask, "labels": [float(v) for v in row] + [float(label)]}
             for ids, mask, row, label in zip(enc["input_ids"], enc["attention_mask"], z, y)]
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(items, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      collate_fn=DataCollatorWithPadding(tokenizer))


def truncate(model: SentenceClassifier, k: int) -> SentenceClassifier:
    """Keep only the first ``k`` transformer layers of ``model``'s encoder (in place; returned): the
    embeddings, layers ``0 … k−1`` and the head stay as they are. Taught in lesson 12."""
    layers = model.encoder.encoder.layer
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= len(layers):
        raise ValueError(f"k must be a whole number of layers from 1 to {len(layers)}, got {k!r}")
    model.encoder.encoder.layer = nn.ModuleList(list(layers)[:k])
    model.encoder.config.num_hidden_layers = int(k)
    return model


def student(k: int = 2, device: torch.device | str | None = None
            ) -> tuple[PreTrainedTokenizerBase, SentenceClassifier]:
    """``(tokenizer, model)``: pretrained MiniLM cut to its first ``k`` of 6 layers, with a new head
    (seed with ``device.seed_everything`` first). Starting from the teacher's own pretrained layers, as
    DistilBERT did, rather than random weights. Taught in lesson 12."""
    tokenizer, model = load_classifier(device=device)
    return tokenizer, truncate(model, k)


def quantize(model: nn.Module) -> nn.Module:
    """A copy of ``model`` on the CPU whose ``nn.Linear`` layers run in int8: post-training *dynamic*
    quantisation (``torch.ao.quantization.quantize_dynamic``). Each weight matrix is stored as int8
    with one scale, ``W ≈ s · round(W / s)``, ``s = max|W| / 127``; activations are quantised on the
    fly, batch by batch. Embeddings and LayerNorms stay fp32. ``torch.ao.quantization`` is deprecated
    in favour of the separate ``torchao`` package (not installed here); its deprecation warnings are
    silenced. Taught in lesson 12."""
    cpu_copy = copy.deepcopy(model).cpu().eval()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions.*deprecated")
        return torch.ao.quantization.quantize_dynamic(cpu_copy, {nn.Linear}, dtype=torch.qint8)


def saved_mb(model: nn.Module) -> float:
    """Size in MB (2²⁰ bytes) of ``torch.save(model.state_dict())``: what the model costs on disk.
    Taught in lesson 12."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions.*deprecated")
        torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes / 2 ** 20


def latency(model: nn.Module, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], batch_size: int = 1,
            repeats: int = 5, warmup: int = 2, threads: int = 1, max_length: int = 64) -> float:
    """Median CPU seconds per sentence to run ``model`` on ``texts`` in batches of ``batch_size``.

    The sentences are tokenised (and padded per batch) before the clock starts; a pass runs every
    batch once under ``torch.no_grad()`` on the CPU with ``threads`` torch threads (restored after).
    ``warmup`` untimed passes come first, then ``repeats`` timed ones; the result is
    ``median(pass seconds) / len(texts)``. A model on a GPU is timed on a CPU copy.
    Taught in lesson 12.
    """
    texts = features.check_texts(texts)
    features.check_sizes(max_length, batch_size)
    if repeats < 1 or warmup < 0 or threads < 1:
        raise ValueError(f"need repeats >= 1, warmup >= 0 and threads >= 1; got {repeats}, {warmup}, {threads}")
    if any(p.device.type != "cpu" for p in model.parameters()):
        model = copy.deepcopy(model).cpu()
    model.eval()
    batches = [tokenizer(texts[i:i + batch_size], truncation=True, max_length=max_length, padding=True,
                         return_tensors="pt") for i in range(0, len(texts), batch_size)]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        seconds = []
        with torch.no_grad():
            for r in range(warmup + repeats):
                start = time.perf_counter()
                for b in batches:
                    model(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
                if r >= warmup:
                    seconds.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    return statistics.median(seconds) / len(texts)
