"""Device choice, seeding, mixed precision."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from labkit import device


def test_picks_cpu_without_accelerator(monkeypatch):
    monkeypatch.delenv("LABKIT_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert device.pick_device() == torch.device("cpu")
    assert not device.is_gpu()


def test_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.delenv("LABKIT_DEVICE", raising=False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device.pick_device().type == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device.pick_device().type == "cuda"


def test_forcing_a_missing_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("LABKIT_DEVICE", "cuda")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        device.pick_device()
    monkeypatch.setenv("LABKIT_DEVICE", "cpu")
    assert device.pick_device().type == "cpu"


def test_one_seed_call_makes_python_numpy_torch_repeatable():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    device.seed_everything(123)
    first = draw()
    device.seed_everything(123)
    assert draw() == first
