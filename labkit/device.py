"""Device choice and seeding. Taught in lesson 00."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def pick_device(prefer: torch.device | str | None = None) -> torch.device:
    """Return CUDA if available, else Apple MPS, else CPU.

    ``prefer`` (or the ``LABKIT_DEVICE`` environment variable) forces one, e.g. ``"cpu"`` or
    ``"cuda:1"``; a device this machine does not have is a ``ValueError`` that says so. Every
    ``labkit`` function that takes ``device=`` goes through here. Taught in lesson 00.
    """
    choice = prefer if prefer is not None else os.environ.get("LABKIT_DEVICE") or None
    if choice is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if not isinstance(choice, (str, torch.device)):
        raise TypeError(f"device must be a string such as 'cpu' or a torch.device, got {type(choice).__name__}")
    try:
        dev = torch.device(choice)
    except RuntimeError:
        raise ValueError(f"unknown device {choice!r}; use 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(choice)!r} was asked for, but torch sees no CUDA GPU on this "
                             "machine; use 'cpu' (or unset LABKIT_DEVICE to pick automatically).")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(choice)!r} was asked for, but this machine has "
                             f"{torch.cuda.device_count()} CUDA GPU(s)")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {str(choice)!r} was asked for, but Apple MPS is not available here; use 'cpu'.")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"labkit runs on 'cpu', 'cuda' or 'mps', not {dev.type!r}")
    return dev


def is_gpu(device: torch.device | str | None = None) -> bool:
    """True when the (picked) device is a GPU: notebooks use it to choose full-size runs."""
    dev = torch.device(device) if device is not None else pick_device()
    return dev.type in ("cuda", "mps")


def seed_everything(seed: int = 0) -> int:
    """Seed Python's ``random``, NumPy and torch (all devices) from one number. Taught in lesson 00."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds CUDA and MPS generators
    return seed
