"""The training loop, and what runs a trained model: one readable ``fit``, ``evaluate``,
``predict`` and ``embed``.

:func:`fit`'s body (forward, loss, backward, clip, step) is plain PyTorch; ``accelerate`` only
places things on the device, turns on mixed precision (bf16 on CUDA, none on CPU) and averages
gradients across processes, so the same loop runs on a CPU, a GPU, or several processes started
with ``accelerate launch`` / ``torchrun``. The model it trains is usually a
:class:`labkit.classifier.SentenceClassifier`; :func:`labkit.runcache.fit_cached` caches its result.

Taught in lesson 05.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from labkit import metrics
from labkit.classifier import SentenceClassifier


def _split_batch(batch: Any) -> tuple[Any, torch.Tensor | None]:
    """``(inputs, labels)`` from a dict batch (key ``labels``) or an ``(x, y)`` tuple batch."""
    if isinstance(batch, dict) or hasattr(batch, "keys"):
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return inputs, batch.get("labels")
    if isinstance(batch, (list, tuple)):
        return tuple(batch[:-1]), batch[-1]
    raise ValueError(f"a batch must be a dict with 'labels' or an (x, y) tuple, got {type(batch).__name__}")


def _forward(model: nn.Module, inputs: Any) -> torch.Tensor:
    return model(**inputs) if isinstance(inputs, dict) else model(*inputs)


def _mixed_precision(choice: str) -> str:
    if choice == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    if choice not in ("no", "bf16", "fp16"):
        raise ValueError(f"mixed_precision must be 'auto', 'no', 'bf16' or 'fp16', got {choice!r}")
    return choice


def _accelerator(mixed_precision: str, cpu: bool) -> Accelerator:
    """A fresh ``Accelerator`` for this call. Accelerate keeps one shared state per process and
    refuses a second ``Accelerator`` with other settings, so in a single-process run the state is
    cleared first and each ``fit`` may pick its own precision and device (in a multi-process run the
    launcher's state is kept). accelerate has no public call for this: ``_reset_state`` is what its
    own test-suite uses between configurations, so it is pinned by the tests here."""
    if not torch.distributed.is_initialized():
        AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(mixed_precision=_mixed_precision(mixed_precision), cpu=cpu)


def evaluate(model: nn.Module, loader: DataLoader, accelerator: Accelerator,
             loss_fn: Callable = nn.CrossEntropyLoss(),
             eval_fn: Callable = metrics.weighted_f1) -> dict[str, float]:
    """Validation loss and ``eval_fn(y_true, y_pred)`` (default weighted F1) over a whole loader,
    gathered from every process. Used by :func:`fit` for validation."""
    model.eval()
    all_logits, all_labels = [], []
    with torch.no_grad():
        for batch in loader:
            inputs, labels = _split_batch(batch)
            logits, labels = accelerator.gather_for_metrics((_forward(model, inputs), labels))
            all_logits.append(logits.float().cpu())
            all_labels.append(labels.cpu())
    logits, labels = torch.cat(all_logits), torch.cat(all_labels)
    name = getattr(eval_fn, "__name__", "score")
    return {"val_loss": float(loss_fn(logits, labels)),
            f"val_{name}": float(eval_fn(labels.numpy(), logits.argmax(-1).numpy()))}


def fit(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader | None = None, *,
        epochs: int, lr: float = 2e-5, optimizer: torch.optim.Optimizer | None = None,
        loss_fn: Callable = nn.CrossEntropyLoss(), clip: float | None = 1.0,
        patience: int | None = None, eval_fn: Callable = metrics.weighted_f1,
        on_epoch_start: Callable[[int], Any] | None = None,
        on_step_start: Callable[[int], Any] | None = None, warmup: float | None = None,
        progress: bool = True, mixed_precision: str = "auto", cpu: bool = False) -> pd.DataFrame:
    """Train ``model`` for ``epochs`` and return the history, one row per epoch
    (``epoch``, ``train_loss``, ``val_loss``, ``val_<eval_fn>``, ``seconds``).

    Each step: ``logits = model(x)``; ``loss = loss_fn(logits, y)``; backward; clip the gradient
    norm, ``g ← g · min(1, c / ‖g‖)`` with ``c = clip``; optimizer step. The default optimizer
    is AdamW over all parameters; frozen ones (``requires_grad=False``) get no gradient and are
    skipped, so a callback may unfreeze more of them later (gradual unfreezing).

    * ``val_loader``: evaluated after every epoch; ``eval_fn(y_true, y_pred)`` is the metric
      (higher is better). With ``patience``, training stops after that many epochs without
      improvement. The weights of the best epoch are restored at the end.
    * ``on_epoch_start(epoch)`` / ``on_step_start(step)``: called before each epoch / each batch
      (0-based), e.g. to unfreeze a block (:class:`labkit.freeze.GradualUnfreezing`).
    * ``warmup``: a learning-rate schedule, stepped every batch: each group's rate rises linearly
      from 0 over the first ``warmup`` fraction of the ``T`` steps, then falls linearly to 0,
      ``lr_t = lr · min(t / W, (T − t) / (T − W))`` with ``W = warmup · T`` (the schedule of BERT
      and the Hugging Face course). ``None`` keeps the rate constant.
    * ``mixed_precision``: ``"auto"`` = bf16 on CUDA, none on CPU. ``cpu=True`` forces the CPU.
    * Several processes (``torchrun --nproc_per_node 2`` or ``accelerate launch``): each process
      gets different batches and the gradients are averaged, exactly as one big batch.

    Taught in lesson 05 (part 1 writes this loop by hand and shows ``fit`` gives the same weights;
    lessons 04 and 05 also call it through :func:`labkit.runcache.fit_cached`).
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if warmup is not None and not 0 <= warmup < 1:
        raise ValueError(f"warmup is the fraction of steps spent warming up, in [0, 1); got {warmup}")
    if patience is not None and (val_loader is None or patience < 1):
        raise ValueError("patience needs a val_loader and must be >= 1 (or None for no early stopping)")
    accelerator = _accelerator(mixed_precision, cpu)
    if optimizer is None:
        optimizer = torch.optim.AdamW([p for p in model.parameters()], lr=lr)
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    if val_loader is not None:
        val_loader = accelerator.prepare(val_loader)
    total_steps = epochs * len(train_loader)
    schedule = None if warmup is None else get_linear_schedule_with_warmup(
        optimizer, num_warmup_steps=int(warmup * total_steps), num_training_steps=total_steps)
    bar = tqdm(total=total_steps, disable=not (progress and accelerator.is_main_process),
               desc="fine-tuning", unit="batch")
    history, best, best_state, waited, step = [], -np.inf, None, 0, 0
    for epoch in range(epochs):
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        start, total, steps = time.perf_counter(), 0.0, 0
        model.train()
        for batch in train_loader:
            if on_step_start is not None:
                on_step_start(step)
            inputs, labels = _split_batch(batch)
            logits = _forward(model, inputs)            # forward
            loss = loss_fn(logits, labels)               # loss
            optimizer.zero_grad()
            accelerator.backward(loss)                   # backward (averages gradients across processes)
            if clip is not None:
                accelerator.clip_grad_norm_(model.parameters(), clip)  # g <- g * min(1, c/||g||)
            optimizer.step()                             # step
            if schedule is not None:
                schedule.step()                          # next learning rate
            total, steps, step = total + loss.item(), steps + 1, step + 1
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
        mean_loss = accelerator.reduce(torch.tensor(total / max(steps, 1), device=accelerator.device), "mean")
        row = {"epoch": epoch + 1, "train_loss": float(mean_loss)}
        if val_loader is not None:
            row.update(evaluate(model, val_loader, accelerator, loss_fn, eval_fn))
        row["seconds"] = time.perf_counter() - start
        history.append(row)
        score = row.get(f"val_{getattr(eval_fn, '__name__', 'score')}")
        if score is not None and score > best:
            best, waited = score, 0
            best_state = copy.deepcopy(accelerator.unwrap_model(model).state_dict())
        elif score is not None:
            waited += 1
            if patience is not None and waited >= patience:
                break
    bar.close()
    model = accelerator.unwrap_model(model, keep_fp32_wrapper=False)  # drop autocast from forward
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return pd.DataFrame(history)


def predict(model: nn.Module, loader: DataLoader, classes: bool = False) -> np.ndarray:
    """Logits (n, n_classes) for every item of ``loader``, in order -- or, with ``classes=True``,
    the predicted class ids ``argmax_c logits``. Runs in eval mode without gradients.

    Taught in lesson 05.
    """
    model.eval()
    dev = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for batch in loader:
            inputs, _ = _split_batch(batch)
            if isinstance(inputs, dict):
                inputs = {k: v.to(dev) for k, v in inputs.items()}
            else:
                inputs = tuple(x.to(dev) for x in inputs)
            out.append(_forward(model, inputs).float().cpu())
    logits = torch.cat(out).numpy()
    return logits.argmax(-1) if classes else logits


def embed(model: SentenceClassifier, loader: DataLoader) -> np.ndarray:
    """Sentence vectors (n, width) of a :class:`SentenceClassifier`'s (fine-tuned) encoder, in order --
    e.g. to apply heads trained on the original encoder to a fine-tuned one. Taught in lesson 05."""
    model.eval()
    dev = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for batch in loader:
            out.append(model.embed(batch["input_ids"].to(dev), batch["attention_mask"].to(dev)).float().cpu())
    return torch.cat(out).numpy()
