"""labkit.distill (lesson 12): soft targets, the distillation loss against a NumPy version and its gradient, the
loader that carries the teacher's logits through ``train.fit``, truncated students, int8 quantisation, size,
latency, and bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from labkit import check, classifier, distill, models, runcache, train

TEXTS = ["I loved every minute of it.", "The food was cold and the service slow.", "It opened on Tuesday.",
         "Not bad at all!", "Worst purchase ever.", "The committee met at noon."]


@pytest.fixture(scope="module")
def tiny_student():
    torch.manual_seed(0)
    return distill.student(1, device="cpu")


def _numpy_loss(zs, zt, y, T, alpha):
    def log_softmax(z):
        z = z - z.max(1, keepdims=True)
        return z - np.log(np.exp(z).sum(1, keepdims=True))
    log_pt, log_ps = log_softmax(zt / T), log_softmax(zs / T)
    kl = (np.exp(log_pt) * (log_pt - log_ps)).sum(1).mean()
    known = y >= 0
    ce = -log_softmax(zs[known])[np.arange(known.sum()), y[known]].mean() if known.any() else 0.0
    return alpha * T ** 2 * kl + (1 - alpha) * ce


def test_soften_is_a_softmax_that_flattens_with_temperature():
    z = torch.tensor([[3.0, 1.0, -1.0], [0.0, 0.0, 5.0]])
    assert torch.allclose(distill.soften(z, 1.0), torch.softmax(z, -1))
    entropy = lambda p: -(p * p.log()).sum(-1)
    h = [entropy(distill.soften(z, T)) for T in (0.5, 1, 2, 8)]
    assert all((a < b).all() for a, b in zip(h, h[1:]))
    assert torch.allclose(distill.soften(z, 1e4), torch.full((2, 3), 1 / 3), atol=1e-3)
    for bad in (0, -1.0, float("nan"), True):
        with pytest.raises(ValueError, match="temperature"):
            distill.soften(z, bad)


@pytest.mark.parametrize("T, alpha", [(1.0, 0.5), (2.0, 0.7), (4.0, 1.0), (3.0, 0.0)])
def test_loss_matches_numpy(T, alpha):
    rng = np.random.default_rng(0)
    zs, zt = rng.normal(size=(5, 3)), rng.normal(size=(5, 3)) * 3
    y = np.array([0, 2, -1, 1, 2])
    got = distill.distillation_loss(torch.tensor(zs), torch.tensor(zt), torch.tensor(y), T=T, alpha=alpha)
    assert float(got) == pytest.approx(_numpy_loss(zs, zt, y, T, alpha), rel=1e-5)


def test_loss_special_cases():
    z = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    y = torch.tensor([0, 1])
    assert float(distill.distillation_loss(z, z, None, T=3.0, alpha=1.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(distill.distillation_loss(z, z * 5, y, alpha=0.0)) == pytest.approx(float(nn.functional.cross_entropy(z, y)))
    none = distill.distillation_loss(z, z * 2, torch.tensor([-1, -1]), T=2.0, alpha=0.5)
    assert float(none) == pytest.approx(float(distill.distillation_loss(z, z * 2, None, T=2.0, alpha=0.5)))


def test_soft_gradient_is_T_times_the_probability_gap():
    """d/dz_s of T² KL(p_t || p_s), averaged over B rows, is T (p_s − p_t) / B: the T² keeps it O(1/T)·T²."""
    zs = torch.tensor([[1.0, -0.5, 0.2], [0.3, 0.3, 2.0]], requires_grad=True)
    zt = torch.tensor([[2.0, 0.0, -1.0], [-1.0, 1.0, 0.0]])
    T = 3.0
    distill.distillation_loss(zs, zt, None, T=T, alpha=1.0).backward()
    expected = T * (distill.soften(zs.detach(), T) - distill.soften(zt, T)) / len(zs)
    assert torch.allclose(zs.grad, expected, atol=1e-6)


def test_loss_rejects_bad_input():
    z = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="same shape"):
        distill.distillation_loss(z, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="alpha"):
        distill.distillation_loss(z, z, alpha=1.5)
    with pytest.raises(ValueError, match="temperature"):
        distill.distillation_loss(z, z, T=0)
    with pytest.raises(ValueError, match="labels"):
        distill.distillation_loss(z, z, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="alpha"):
        distill.DistillationLoss(alpha=-0.1)
    with pytest.raises(ValueError, match="targets must be"):
        distill.DistillationLoss()(z, torch.zeros(2, 3))


def test_module_loss_unpacks_targets_and_is_keyed_by_its_settings():
    zs, zt = torch.randn(4, 3), torch.randn(4, 3)
    y = torch.tensor([0, -1, 2, 1.0])
    packed = torch.cat([zt, y[:, None]], 1)
    got = distill.DistillationLoss(T=2.0, alpha=0.3)(zs, packed)
    assert torch.allclose(got, distill.distillation_loss(zs, zt, y, T=2.0, alpha=0.3))
    keys = {str(runcache.callable_key(distill.DistillationLoss(T=t, alpha=a), "loss_fn")) for t, a in [(2, 1), (4, 1), (2, 0.5)]}
    assert len(keys) == 3


def test_transfer_loader_carries_logits_and_labels(tiny_student):
    tok, _ = tiny_student
    z = np.arange(len(TEXTS) * 3, dtype=float).reshape(-1, 3)
    batch = next(iter(distill.transfer_loader(TEXTS, z, tok, batch_size=4)))
    assert batch["labels"].shape == (4, 4) and batch["labels"].dtype == torch.float32
    assert torch.equal(batch["labels"][:, :3], torch.tensor(z[:4], dtype=torch.float32))
    assert (batch["labels"][:, 3] == distill.UNLABELLED).all()
    labelled = next(iter(distill.transfer_loader(TEXTS, z, tok, labels=[0, 1, 2, 0, 1, 2], batch_size=6)))
    assert labelled["labels"][:, 3].tolist() == [0, 1, 2, 0, 1, 2]
    with pytest.raises(ValueError, match="one row per text"):
        distill.transfer_loader(TEXTS, z[:3], tok)
    with pytest.raises(ValueError, match="NaN"):
        distill.transfer_loader(TEXTS, np.full((len(TEXTS), 3), np.nan), tok)
    with pytest.raises(ValueError, match="0..2"):
        distill.transfer_loader(TEXTS, z, tok, labels=[0, 1, 2, 3, 1, 2])


def test_fit_trains_a_student_on_soft_targets(tiny_student):
    tok, _ = tiny_student
    torch.manual_seed(0)
    _, net = distill.student(1, device="cpu")
    z = np.tile([[3.0, 0.0, -3.0]], (len(TEXTS), 1))         # a teacher that always says "negative"
    loader = distill.transfer_loader(TEXTS, z, tok, batch_size=3, shuffle=True, seed=0)
    history = train.fit(net, loader, epochs=6, lr=1e-3, loss_fn=distill.DistillationLoss(T=1.0, alpha=1.0),
                        progress=False, cpu=True)
    assert history.train_loss.iloc[-1] < history.train_loss.iloc[0]
    pred = train.predict(net, classifier.make_loader(TEXTS, None, tok), classes=True)
    assert (pred == 0).all()


def test_truncate_and_student_sizes():
    _, net = classifier.load_classifier(device="cpu")
    full = models.count_parameters(net)
    dims = {"vocab": 30522, "width": 384, "ffn": 1536, "positions": 512, "token_types": 2, "classes": 3}
    assert full == check._ref_12_3(6, dims)
    distill.truncate(net, 2)
    assert len(net.encoder.encoder.layer) == 2 and net.encoder.config.num_hidden_layers == 2
    assert models.count_parameters(net) == check._ref_12_3(2, dims)
    tok, st = distill.student(3, device="cpu")
    assert models.count_parameters(st) == check._ref_12_3(3, dims)
    with torch.no_grad():
        enc = tok(TEXTS[:2], return_tensors="pt", padding=True)
        out = st(enc["input_ids"], enc["attention_mask"])
    assert out.shape == (2, 3)
    for bad in (0, 7, True, 2.5):
        with pytest.raises(ValueError, match="k must be"):
            distill.truncate(classifier.load_classifier(device="cpu")[1], bad)


def test_quantize_is_quiet_and_keeps_predictions(tiny_student):
    tok, st = tiny_student
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q = distill.quantize(st)
        size = distill.saved_mb(q)
    assert any("quantized" in type(m).__module__ for m in q.modules())
    assert isinstance(st.head, nn.Linear)                     # the original is untouched
    assert size < distill.saved_mb(st)
    loader = classifier.make_loader(TEXTS, None, tok)
    a, b = train.predict(st, loader), train.predict(q, loader)
    assert np.abs(a - b).max() < 0.3            # int8 rounding moves the logits a little, not far


def test_saved_mb_and_latency():
    layer = nn.Linear(1000, 1000)
    assert distill.saved_mb(layer) == pytest.approx(1001 * 1000 * 4 / 2 ** 20, rel=0.01)
    tok, st = distill.student(1, device="cpu")
    threads = torch.get_num_threads()
    seconds = distill.latency(st, tok, TEXTS, batch_size=2, repeats=2, warmup=1, threads=1)
    assert 0 < seconds < 1 and torch.get_num_threads() == threads
    with pytest.raises(ValueError, match="repeats"):
        distill.latency(st, tok, TEXTS, repeats=0)
    with pytest.raises(ValueError, match="batch_size"):
        distill.latency(st, tok, TEXTS, batch_size=0)
