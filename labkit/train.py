"""Fine-tuning: a sentence classifier on MiniLM, and one readable training loop.

* :class:`SentenceClassifier` -- the pretrained encoder plus a new linear head,
  ``logits = W · pool(h_1 … h_T) + b``.
* :func:`fit` -- the training loop. Its body (forward, loss, backward, clip, step) is plain
  PyTorch; ``accelerate`` only places things on the device, turns on mixed precision (bf16 on
  CUDA, none on CPU) and averages gradients across processes, so the same loop runs on a CPU,
  a GPU, or several processes started with ``accelerate launch`` / ``torchrun``.
* :func:`predict`, :func:`make_loader` -- logits for a loader, and loaders of tokenised sentences.

Taught in lesson 05.
"""

from __future__ import annotations

import copy
import json
import time
import warnings
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import safetensors
import safetensors.torch
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModel, DataCollatorWithPadding, PreTrainedTokenizerBase

from labkit import features, metrics, models, runkey
from labkit.device import pick_device
from labkit.cache import atomic_directory, cache_dir, locked, verify

class SentenceClassifier(nn.Module):
    """A pretrained encoder with a new linear head: ``logits = W · pool(encoder(x)) + b``.

    The encoder's own pooler (a dense + tanh layer on [CLS]) is not used by any of our poolings,
    so it is removed (``encoder.pooler = None``): parameters that never get a gradient would only
    confuse the parameter counts and multi-process training. Taught in lesson 05.
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
    gathered from every process. Taught in lesson 05."""
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
        on_epoch_start: Callable[[int], Any] | None = None, progress: bool = True,
        mixed_precision: str = "auto", cpu: bool = False) -> pd.DataFrame:
    """Train ``model`` for ``epochs`` and return the history, one row per epoch
    (``epoch``, ``train_loss``, ``val_loss``, ``val_<eval_fn>``, ``seconds``).

    Each step: ``logits = model(x)``; ``loss = loss_fn(logits, y)``; backward; clip the gradient
    norm, ``g ← g · min(1, c / ‖g‖)`` with ``c = clip``; optimizer step. The default optimizer
    is AdamW over all parameters; frozen ones (``requires_grad=False``) get no gradient and are
    skipped, so a callback may unfreeze more of them later (gradual unfreezing).

    * ``val_loader``: evaluated after every epoch; ``eval_fn(y_true, y_pred)`` is the metric
      (higher is better). With ``patience``, training stops after that many epochs without
      improvement. The weights of the best epoch are restored at the end.
    * ``on_epoch_start(epoch)``: called before each epoch (0-based), e.g. to unfreeze a block.
    * ``mixed_precision``: ``"auto"`` = bf16 on CUDA, none on CPU. ``cpu=True`` forces the CPU.
    * Several processes (``torchrun --nproc_per_node 2`` or ``accelerate launch``): each process
      gets different batches and the gradients are averaged, exactly as one big batch.

    Taught in lesson 05.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if patience is not None and (val_loader is None or patience < 1):
        raise ValueError("patience needs a val_loader and must be >= 1 (or None for no early stopping)")
    accelerator = _accelerator(mixed_precision, cpu)
    if optimizer is None:
        optimizer = torch.optim.AdamW([p for p in model.parameters()], lr=lr)
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    if val_loader is not None:
        val_loader = accelerator.prepare(val_loader)
    bar = tqdm(total=epochs * len(train_loader), disable=not (progress and accelerator.is_main_process),
               desc="fine-tuning", unit="batch")
    history, best, best_state, waited = [], -np.inf, None, 0
    for epoch in range(epochs):
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        start, total, steps = time.perf_counter(), 0.0, 0
        model.train()
        for batch in train_loader:
            inputs, labels = _split_batch(batch)
            logits = _forward(model, inputs)            # forward
            loss = loss_fn(logits, labels)               # loss
            optimizer.zero_grad()
            accelerator.backward(loss)                   # backward (averages gradients across processes)
            if clip is not None:
                accelerator.clip_grad_norm_(model.parameters(), clip)  # g <- g * min(1, c/||g||)
            optimizer.step()                             # step
            total, steps = total + loss.item(), steps + 1
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


def fit_cached(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader | None = None, *,
               key: dict | None = None, **fit_kwargs: Any) -> pd.DataFrame:
    """:func:`fit`, with the fine-tuned weights cached on disk (``cache_dir()/finetuned/``).

    The cache key (:func:`labkit.runkey.run_key`) is built from everything that changes the
    result -- the model's weights and trainable flags before training, every item of the loaders,
    torch's random state, and every setting of ``fit`` (loss, optimizer groups, callback, precision,
    device); ``key`` adds anything else you want keyed. What cannot be keyed is refused. On a hit
    the stored weights are loaded into ``model`` (with the ``requires_grad`` flags training left),
    the model is put on the device ``fit`` trains on, and the stored history (with the original
    ``seconds``) is returned. Only the tensors training changed are stored (as safetensors).
    Taught in lesson 05.
    """
    entry = cache_dir() / "finetuned" / runkey.run_key(model, train_loader, val_loader, fit_kwargs, key)
    if (saved := _load_fit(entry)) is not None:
        tensors, meta = saved
        try:
            model.load_state_dict({k: v for k, v in tensors.items() if k != RNG}, strict=False)
        except RuntimeError as exc:
            warnings.warn(f"cached weights in {entry} do not fit this model ({exc}); training again", stacklevel=2)
        else:
            for name, p in model.named_parameters():  # leave it frozen as training left it
                p.requires_grad = name in meta["trainable"]
            model.to("cpu" if fit_kwargs.get("cpu") else pick_device()).eval()  # where fit leaves it
            torch.set_rng_state(tensors[RNG])  # as if it had trained: later runs key the same way
            return pd.DataFrame(meta["history"])
    before = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    history = fit(model, train_loader, val_loader, **fit_kwargs)
    changed = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
               if not torch.equal(before[k], v.cpu())}
    changed[RNG] = torch.get_rng_state()
    meta = {"trainable": [n for n, p in model.named_parameters() if p.requires_grad],
            "history": history.to_dict("list")}
    with locked(entry), atomic_directory(entry) as tmp:
        safetensors.torch.save_file(changed, str(tmp / WEIGHTS))
        (tmp / HISTORY).write_text(json.dumps(meta), encoding="utf-8")
    return history


WEIGHTS, HISTORY, RNG = "changed.safetensors", "history.json", "__torch_rng_state_after__"


def _load_fit(entry) -> tuple[dict[str, torch.Tensor], dict] | None:
    """Stored weights and metadata of a cached fit, or ``None`` if absent or failing its hashes.

    Weights are safetensors (plain tensors, nothing executable); the folder's manifest is checked first."""
    if not entry.exists():
        return None
    problem = verify(entry)
    if problem is None:
        try:
            meta = json.loads((entry / HISTORY).read_text("utf-8"))
            return safetensors.torch.load_file(str(entry / WEIGHTS)), meta
        except (OSError, ValueError, KeyError, safetensors.SafetensorError) as exc:
            problem = str(exc)
    warnings.warn(f"cached weights in {entry} are not usable ({problem}); training again", stacklevel=3)
    return None
