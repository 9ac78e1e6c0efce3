"""A disk cache of training runs: :func:`fit_cached` is :func:`labkit.train.fit` whose result is
stored under one hash of everything that changes the weights it produces (:func:`run_key`).

A later call gets the stored weights only when it would have trained exactly the same thing:

* the model: its class, its structure (``repr``), the value of every parameter and buffer before
  training (pretrained or random, and which seed drew the head) and which ones are trainable;
* the data: every item of the training and validation loaders, the batch size, whether and with
  which generator seed they shuffle;
* the random state torch will draw dropout from;
* the loop: epochs, learning rate, clipping, patience, mixed precision, device, the loss (class and
  settings), the evaluation function, the optimizer (class, every hyper-parameter of every group,
  which parameters it holds) and the epoch callback.

A callable is keyed by its module, name and source code; one that cannot be keyed that way (a
``lambda`` or a function defined inside another, which may capture anything) is refused with a
``TypeError`` unless it has a ``cache_key()`` method. Taught in lesson 05.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import warnings
from typing import Any, Callable

import numpy as np
import pandas as pd
import safetensors
import safetensors.torch
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

from labkit import train
from labkit.cache import atomic_directory, cache_dir, locked, verify
from labkit.device import pick_device


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=_plain).encode()).hexdigest()


def _tensor_digest(t: torch.Tensor) -> str:
    t = t.detach().cpu().contiguous()
    raw = t.reshape(-1).view(torch.uint8).numpy().tobytes()
    return hashlib.sha256(str((t.dtype, tuple(t.shape))).encode() + raw).hexdigest()


def _plain(obj: Any) -> Any:
    """JSON stand-in for values that are not JSON (tensors, arrays, numbers of numpy types)."""
    if isinstance(obj, torch.Tensor):
        return _tensor_digest(obj)
    if isinstance(obj, np.ndarray):
        return _tensor_digest(torch.from_numpy(np.ascontiguousarray(obj)))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    raise TypeError(f"cannot key a value of type {type(obj).__name__}")


def callable_key(fn: Callable | None, what: str) -> Any:
    """A stable description of ``fn``: its ``cache_key()``, or module + name + source code."""
    if fn is None:
        return None
    if hasattr(fn, "cache_key"):
        return {"class": f"{type(fn).__module__}.{type(fn).__qualname__}", "key": fn.cache_key()}
    if isinstance(fn, nn.Module):  # a loss such as nn.CrossEntropyLoss(label_smoothing=0.1)
        settings = {k: v for k, v in vars(fn).items() if not k.startswith("_") and k != "training"}
        return {"class": type(fn).__qualname__, "settings": settings,
                "buffers": {k: _tensor_digest(v) for k, v in fn.state_dict().items()}}
    name = getattr(fn, "__qualname__", "")
    if not inspect.isfunction(fn) or "<" in name or fn.__closure__:
        raise TypeError(
            f"fit_cached cannot key the {what} {fn!r}: a lambda, a function defined inside another "
            "function or a closure may depend on anything. Define it at module level, or give it a "
            "cache_key() method that returns what it depends on (like freeze.GradualUnfreezing).")
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        source = None  # defined in an interactive session: name and defaults only
    return {"function": f"{fn.__module__}.{name}", "source": source, "defaults": fn.__defaults__}


def model_key(model: nn.Module) -> dict:
    """Class, structure, every tensor's value and which parameters train."""
    return {"class": f"{type(model).__module__}.{type(model).__qualname__}", "structure": repr(model),
            "state": {k: _tensor_digest(v) for k, v in model.state_dict().items()},
            "trainable": sorted(n for n, p in model.named_parameters() if p.requires_grad)}


def loader_key(loader: DataLoader | None) -> Any:
    """Every item of the loader's dataset, batch size, and its shuffling (generator seed)."""
    if loader is None:
        return None
    ds = loader.dataset
    if isinstance(ds, TensorDataset):
        items = [_tensor_digest(t) for t in ds.tensors]
    elif isinstance(ds, (list, tuple)):
        items = _digest(list(ds))
    else:
        raise TypeError(f"fit_cached cannot key a dataset of type {type(ds).__name__}; use "
                        "classifier.make_loader, a TensorDataset or a list of dicts")
    shuffled = isinstance(loader.sampler, RandomSampler)
    generator = getattr(loader.sampler, "generator", None) if shuffled else None
    if shuffled and generator is None:
        raise TypeError("fit_cached needs a shuffling loader to have its own seeded generator "
                        "(classifier.make_loader(..., shuffle=True, seed=...)); otherwise its order "
                        "depends on the global random state")
    return {"items": items, "batch_size": loader.batch_size, "drop_last": loader.drop_last,
            "shuffle": shuffled, "seed": generator.initial_seed() if generator is not None else None}


def optimizer_key(optimizer: torch.optim.Optimizer | None, model: nn.Module) -> Any:
    """Class, every hyper-parameter of every group, and which named parameters each group holds."""
    if optimizer is None:
        return None
    names = {id(p): n for n, p in model.named_parameters()}
    groups = [{**{k: v for k, v in g.items() if k != "params"},
               "params": [names.get(id(p), "?") for p in g["params"]]} for g in optimizer.param_groups]
    return {"class": f"{type(optimizer).__module__}.{type(optimizer).__qualname__}", "groups": groups}


def run_key(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader | None,
            fit_kwargs: dict, extra: dict | None = None) -> str:
    """The hex key (24 digits) of ``fit(model, train_loader, val_loader, **fit_kwargs)`` as it
    would run now, including torch's random state; ``extra`` adds anything else you want keyed."""
    from labkit import metrics

    known = {"epochs", "lr", "optimizer", "loss_fn", "clip", "patience", "eval_fn", "on_epoch_start",
             "on_step_start", "warmup", "progress", "mixed_precision", "cpu"}
    unknown = set(fit_kwargs) - known
    if unknown:
        raise TypeError(f"fit got unexpected settings {sorted(unknown)}; valid ones are {sorted(known)}")
    settings = {k: fit_kwargs.get(k) for k in ("epochs", "lr", "clip", "patience", "warmup", "mixed_precision", "cpu")}
    device = "cpu" if fit_kwargs.get("cpu") else pick_device().type
    rng = [_tensor_digest(torch.get_rng_state())]
    if device == "cuda":
        rng.append(_tensor_digest(torch.cuda.get_rng_state()))
    payload = {
        "model": model_key(model), "train": loader_key(train_loader), "val": loader_key(val_loader),
        "settings": settings, "device": device, "rng": rng,
        "loss": callable_key(fit_kwargs.get("loss_fn", nn.CrossEntropyLoss()), "loss_fn"),
        "eval": callable_key(fit_kwargs.get("eval_fn", metrics.weighted_f1), "eval_fn"),
        "optimizer": optimizer_key(fit_kwargs.get("optimizer"), model),
        "callback": callable_key(fit_kwargs.get("on_epoch_start"), "on_epoch_start callback"),
        "step_callback": callable_key(fit_kwargs.get("on_step_start"), "on_step_start callback"),
        "extra": extra,
    }
    return _digest(payload)[:24]


def fit_cached(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader | None = None, *,
               key: dict | None = None, **fit_kwargs: Any) -> pd.DataFrame:
    """:func:`fit`, with the fine-tuned weights cached on disk (``cache_dir()/finetuned/``).

    The cache key (:func:`run_key`) is built from everything that changes the
    result -- the model's weights and trainable flags before training, every item of the loaders,
    torch's random state, and every setting of ``fit`` (loss, optimizer groups, callback, precision,
    device); ``key`` adds anything else you want keyed. What cannot be keyed is refused. On a hit
    the stored weights are loaded into ``model`` (with the ``requires_grad`` flags training left),
    the model is put on the device ``fit`` trains on, and the stored history (with the original
    ``seconds``) is returned. Only the tensors training changed are stored (as safetensors).
    Taught in lesson 05.
    """
    entry = cache_dir() / "finetuned" / run_key(model, train_loader, val_loader, fit_kwargs, key)
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
    history = train.fit(model, train_loader, val_loader, **fit_kwargs)
    changed, stored = {}, set()
    for k, v in model.state_dict().items():
        storage = v.untyped_storage().data_ptr()  # tied weights (GPT-2's input and output embedding)
        if storage not in stored and not torch.equal(before[k], v.cpu()):  # are stored once
            changed[k] = v.detach().cpu().contiguous()
        stored.add(storage)
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
