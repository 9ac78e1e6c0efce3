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

from labkit import classifier, runcache, train

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def minilm():
    torch.manual_seed(0)
    return classifier.load_classifier(n_classes=3, pooling="mean")


def test_classifier_shapes_and_head_size(minilm):
    tokenizer, model = minilm
    assert model.encoder.pooler is None
    assert sum(p.numel() for p in model.head.parameters()) == 384 * 3 + 3
    loader = classifier.make_loader(["good", "a much longer and rather bad sentence"], [2, 0], tokenizer,
                               max_length=8, batch_size=2)
    batch = next(iter(loader))
    assert batch["input_ids"].shape == batch["attention_mask"].shape
    assert batch["input_ids"].shape[1] <= 8
    assert batch["labels"].tolist() == [2, 0]
    logits = train.predict(model, loader)
    assert logits.shape == (2, 3)
    assert train.predict(model, loader, classes=True).tolist() == logits.argmax(-1).tolist()


def test_make_loader_rejects_mismatched_labels(minilm):
    tokenizer, _ = minilm
    with pytest.raises(ValueError, match="labels"):
        classifier.make_loader(["a", "b"], [0], tokenizer)


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


def _build(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 3))


def freeze_first_layer(epoch):
    """A module-level callback (keyable)."""


def also_a_function(epoch):
    """Another module-level callback: same type as the one above, different code."""
    return epoch


def _cached(model, **kwargs):
    x, y = _toy()
    loader = DataLoader(TensorDataset(x, y), batch_size=32)
    torch.manual_seed(123)
    return runcache.fit_cached(model, loader, **{"epochs": 2, "lr": 0.1, "progress": False, **kwargs})


def _entries(root):
    return sorted(p.name for p in (root / "finetuned").iterdir() if p.is_dir())


def test_fit_cached_reuses_weights_freezing_and_random_state(fresh_cache):
    a = _build()
    a[0].requires_grad_(False)
    hist_a = _cached(a, on_epoch_start=freeze_first_layer)
    rng_after_training = torch.get_rng_state()
    assert len(_entries(fresh_cache)) == 1
    b = _build()
    b[0].requires_grad_(False)
    hist_b = _cached(b, on_epoch_start=freeze_first_layer)
    assert len(_entries(fresh_cache)) == 1, "the same run should be a cache hit"
    assert hist_a.equals(hist_b)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb) and pa.requires_grad == pb.requires_grad
    assert torch.equal(torch.get_rng_state(), rng_after_training)  # as if it had trained


@pytest.mark.parametrize("change", ["callback", "loss", "weight decay", "init", "rng", "data", "trainable",
                                    "warmup", "step callback"])
def test_fit_cached_keys_everything_that_changes_the_result(fresh_cache, change):
    _cached(_build(), on_epoch_start=freeze_first_layer)
    model = _build(seed=1 if change == "init" else 0)
    kwargs = {"on_epoch_start": also_a_function if change == "callback" else freeze_first_layer}
    if change == "warmup":
        kwargs["warmup"] = 0.1
    if change == "step callback":
        kwargs["on_step_start"] = also_a_function
    if change == "loss":
        kwargs["loss_fn"] = nn.CrossEntropyLoss(label_smoothing=0.1)
    if change == "weight decay":
        kwargs["optimizer"] = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.5)
    if change == "trainable":
        model[1].bias.requires_grad_(False)
    if change == "rng":
        x, y = _toy()
        loader = DataLoader(TensorDataset(x, y), batch_size=32)
        torch.manual_seed(7)
        runcache.fit_cached(model, loader, epochs=2, lr=0.1, progress=False, **kwargs)
    elif change == "data":
        x, y = _toy(seed=3)
        torch.manual_seed(123)
        runcache.fit_cached(model, DataLoader(TensorDataset(x, y), batch_size=32), epochs=2, lr=0.1,
                         progress=False, **kwargs)
    else:
        _cached(model, **kwargs)
    assert len(_entries(fresh_cache)) == 2, f"a change of {change} must not return the first run's weights"


def test_fit_cached_refuses_what_it_cannot_key(fresh_cache):
    with pytest.raises(TypeError, match="cannot key the on_epoch_start"):
        _cached(_build(), on_epoch_start=lambda epoch: None)
    x, y = _toy()
    unseeded = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    with pytest.raises(TypeError, match="seeded generator"):
        runcache.fit_cached(_build(), unseeded, epochs=1, progress=False)
    with pytest.raises(TypeError, match="unexpected settings"):
        _cached(_build(), learning_rate=0.1)


def test_fit_leaves_no_autocast_wrapper_on_the_model():
    x, y = _toy()
    loader = DataLoader(TensorDataset(x, y), batch_size=32)
    model = _build()
    before = model(x)
    forward = model.forward
    train.fit(model, loader, epochs=1, lr=0.0, progress=False, mixed_precision="bf16", cpu=True)
    assert model.forward == forward, "fit must give back the model's own forward"
    assert torch.equal(model(x), before), "lr=0: the logits must not move (no bf16 left on)"
    assert next(model.parameters()).dtype == torch.float32


def test_the_accelerate_reset_fit_relies_on_exists():
    """accelerate has no public reset of its per-process state; fit uses the private one its own
    test-suite uses. If a release removes it, this names the reason."""
    from accelerate.state import AcceleratorState

    assert callable(AcceleratorState._reset_state)


def test_warmup_schedule_rises_then_falls_linearly():
    """lr_t = lr · min(t / W, (T − t) / (T − W)): seen by the optimizer at every step."""
    torch.manual_seed(0)
    x, y = torch.randn(40, 4), torch.randint(0, 2, (40,))
    model = nn.Linear(4, 2)
    seen = []
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    record = lambda step: seen.append(optimizer.param_groups[0]["lr"])  # noqa: E731
    train.fit(model, DataLoader(TensorDataset(x, y), batch_size=4), epochs=1, optimizer=optimizer,
              warmup=0.2, on_step_start=record, progress=False)
    T, W = 10, 2
    assert seen == pytest.approx([min(t / W, (T - t) / (T - W)) for t in range(T)])
    with pytest.raises(ValueError, match="warmup"):
        train.fit(model, DataLoader(TensorDataset(x, y), batch_size=4), epochs=1, warmup=1.5, progress=False)


def test_upper_layers_on_frozen_lower_states_reproduce_the_encoder():
    """Pretrained layers k.. on layer-k token states give exactly MiniLM's mean-pooled output."""
    from labkit import features

    texts = ["a short one", "a somewhat longer sentence about a phone that broke", "ok"]
    expected = features.embed(texts, max_length=16, cache=False)
    for k in (0, 3, 6):
        hidden, mask = features.token_states(texts, layer=k, max_length=16, batch_size=2)
        upper = classifier.upper_layers(k, fresh=False).eval()
        with torch.no_grad():
            got = upper.embed(torch.tensor(hidden), torch.tensor(mask)).numpy()
        np.testing.assert_allclose(got, expected, atol=1e-5)
        assert len(upper.layers) == 6 - k
    torch.manual_seed(0)
    fresh = classifier.upper_layers(4, fresh=True)
    pretrained = classifier.upper_layers(4, fresh=False)
    assert not torch.equal(fresh.layers[0].output.dense.weight, pretrained.layers[0].output.dense.weight)
    with pytest.raises(ValueError, match="k must be"):
        classifier.upper_layers(7, fresh=True)
