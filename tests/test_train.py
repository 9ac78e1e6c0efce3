"""labkit.train: pooling, the classifier, loaders, the fit loop and data-parallel equivalence."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from labkit import train

HERE = Path(__file__).resolve().parent


def test_pool_mean_cls_last_ignore_padding():
    h = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert torch.allclose(train.pool(h, mask, "mean")[0], h[0, :2].mean(0))
    assert torch.allclose(train.pool(h, mask, "mean")[1], h[1].mean(0))
    assert torch.equal(train.pool(h, mask, "cls"), h[:, 0])
    assert torch.equal(train.pool(h, mask, "last"), torch.stack([h[0, 1], h[1, 2]]))
    with pytest.raises(ValueError, match="pooling"):
        train.pool(h, mask, "median")


@pytest.fixture(scope="module")
def classifier():
    torch.manual_seed(0)
    return train.load_classifier(n_classes=3, pooling="mean")


def test_classifier_shapes_and_head_size(classifier):
    tokenizer, model = classifier
    assert model.encoder.pooler is None
    assert sum(p.numel() for p in model.head.parameters()) == 384 * 3 + 3
    loader = train.make_loader(["good", "a much longer and rather bad sentence"], [2, 0], tokenizer,
                               max_length=8, batch_size=2)
    batch = next(iter(loader))
    assert batch["input_ids"].shape == batch["attention_mask"].shape
    assert batch["input_ids"].shape[1] <= 8
    assert batch["labels"].tolist() == [2, 0]
    logits = train.predict(model, loader)
    assert logits.shape == (2, 3)
    assert train.predict(model, loader, classes=True).tolist() == logits.argmax(-1).tolist()


def test_make_loader_rejects_mismatched_labels(classifier):
    tokenizer, _ = classifier
    with pytest.raises(ValueError, match="labels"):
        train.make_loader(["a", "b"], [0], tokenizer)


def _toy(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x @ torch.randn(4, 3, generator=g)).argmax(-1)
    return x, y


def test_fit_learns_and_records_history():
    torch.manual_seed(0)
    x, y = _toy()
    tr = DataLoader(TensorDataset(x[:64], y[:64]), batch_size=16, shuffle=True)
    va = DataLoader(TensorDataset(x[64:], y[64:]), batch_size=16)
    model = nn.Linear(4, 3)
    hist = train.fit(model, tr, va, epochs=15, lr=0.05, progress=False)
    assert list(hist.columns) == ["epoch", "train_loss", "val_loss", "val_weighted_f1", "seconds"]
    assert hist.train_loss.iloc[-1] < hist.train_loss.iloc[0]
    assert hist.val_weighted_f1.max() > 0.7
    # the best epoch's weights are restored: predicting again reproduces the best score
    pred = train.predict(model, va, classes=True)
    from labkit.metrics import weighted_f1
    assert weighted_f1(y[64:].numpy(), pred) == pytest.approx(hist.val_weighted_f1.max())


def test_fit_early_stopping_and_epoch_callback():
    torch.manual_seed(0)
    x, y = _toy()
    tr = DataLoader(TensorDataset(x, y), batch_size=32)
    model = nn.Linear(4, 3)
    seen = []
    # lr=0: nothing changes, so the metric never improves after epoch 1 -> stops after 1 + patience
    hist = train.fit(model, tr, tr, epochs=10, lr=0.0, patience=2, progress=False,
                     on_epoch_start=seen.append)
    assert len(hist) == 3 and seen == [0, 1, 2]
    with pytest.raises(ValueError, match="patience"):
        train.fit(model, tr, None, epochs=1, patience=1, progress=False)


def test_clip_bounds_the_update():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    before = model.weight.detach().clone(), model.bias.detach().clone()
    x = 100 * torch.randn(8, 4)
    y = torch.zeros(8, dtype=torch.long)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    train.fit(model, DataLoader(TensorDataset(x, y), batch_size=8), epochs=1, optimizer=opt,
              clip=0.1, progress=False)
    step = torch.cat([(model.weight - before[0]).flatten(), (model.bias - before[1]).flatten()])
    assert step.norm().item() == pytest.approx(0.1, rel=1e-4)  # ||g|| was clipped to c = 0.1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_cpu_processes_match_one_process(tmp_path):
    """Data parallel on 2 CPU processes (torchrun, gloo): each process gets half of every batch and
    the gradients are averaged, so the weights equal one process trained on the full batches."""
    sys.path.insert(0, str(HERE))
    try:
        import ddp_fit_script
    finally:
        sys.path.remove(str(HERE))
    two = tmp_path / "two.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                    "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
                    ddp_fit_script.__file__, str(two), "8"], check=True, env=env, timeout=120)
    one, b = ddp_fit_script.run(batch_size=16), torch.load(two)
    for name in one:
        assert torch.allclose(one[name], b[name], atol=1e-6), name
    # and the work really was split: one process with batches of 8 ends somewhere else
    assert not torch.allclose(one["weight"], ddp_fit_script.run(batch_size=8)["weight"], atol=1e-3)


def test_fit_cached_reuses_weights_and_freezing(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    x, y = _toy()
    loader = DataLoader(TensorDataset(x, y), batch_size=32)

    def build():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 3))

    def freeze_first(epoch):
        first.requires_grad_(False)

    a = build()
    first = a[0]
    hist_a = train.fit_cached(a, loader, key={"toy": 1}, epochs=2, lr=0.1, progress=False,
                              on_epoch_start=freeze_first)
    assert len([p for p in (tmp_path / "finetuned").iterdir() if p.is_dir()]) == 1
    b = build()
    hist_b = train.fit_cached(b, loader, key={"toy": 1}, epochs=2, lr=0.1, progress=False,
                              on_epoch_start=lambda e: (_ for _ in ()).throw(AssertionError("trained again")))
    assert hist_a.equals(hist_b)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb) and pa.requires_grad == pb.requires_grad
    assert not b[0].weight.requires_grad
    c = build()  # another key trains again
    train.fit_cached(c, loader, key={"toy": 2}, epochs=1, lr=0.1, progress=False)
    assert len([p for p in (tmp_path / "finetuned").iterdir() if p.is_dir()]) == 2
