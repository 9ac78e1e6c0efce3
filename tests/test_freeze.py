"""labkit.freeze: counts match hand counts, frozen means untouched, schedules and LR groups."""

import pytest
import torch

from labkit import classifier, freeze, train

# all-MiniLM-L6-v2 by hand: vocab 30,522, 512 positions, 2 token types, width 384, FFN 1,536
EMB = 30522 * 384 + 512 * 384 + 2 * 384 + 2 * 384
LAYER = 3 * (384 * 384 + 384) + (384 * 384 + 384 + 2 * 384) + (384 * 1536 + 1536) + (1536 * 384 + 384 + 2 * 384)
HEAD = 384 * 3 + 3  # 1,155


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return classifier.load_classifier(n_classes=3)[1]


def test_block_names():
    assert freeze.block_of("encoder.embeddings.word_embeddings.weight") == "embeddings"
    assert freeze.block_of("encoder.encoder.layer.11.output.dense.bias") == "layer 11"
    assert freeze.block_of("pooler.dense.weight") == "pooler"
    assert freeze.block_of("head.weight") == "head"


def test_trainable_table_matches_hand_counts(model):
    table = freeze.trainable_table(model)
    assert list(table.index) == ["embeddings"] + [f"layer {i}" for i in range(6)] + ["head", "all"]
    assert table.loc["embeddings", "total"] == EMB
    assert (table.loc[[f"layer {i}" for i in range(6)], "total"] == LAYER).all()
    assert table.loc["head", "total"] == HEAD == 1155
    assert table.loc["all", "total"] == EMB + 6 * LAYER + HEAD
    assert (table.trainable == table.total).all()


def test_freeze_patterns_and_layers(model):
    assert freeze.freeze(model, "*") == EMB + 6 * LAYER + HEAD
    assert freeze.unfreeze(model, "head.*") == HEAD
    assert freeze.unfreeze(model, r"layer\.[45]\.", regex=True) == 2 * LAYER
    assert freeze.freeze(model, r"layer\.4\.", regex=True) == LAYER
    assert freeze.trainable_table(model).loc["all", "trainable"] == LAYER + HEAD
    with pytest.raises(ValueError, match="no parameter name matches"):
        freeze.freeze(model, "decoder.*")


@pytest.mark.parametrize("k, expected", [(0, HEAD), (2, 2 * LAYER + HEAD), (6, 6 * LAYER + HEAD),
                                         (7, EMB + 6 * LAYER + HEAD)])
def test_unfreeze_top_k(model, k, expected):
    freeze.unfreeze_top_k(model, k)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expected
    if 0 < k < 7:
        assert model.encoder.encoder.layer[5].output.dense.weight.requires_grad
        assert not model.encoder.embeddings.word_embeddings.weight.requires_grad
    with pytest.raises(ValueError, match="k must be"):
        freeze.unfreeze_top_k(model, 8)


def test_frozen_params_get_no_grad_and_do_not_change(model):
    tokenizer = classifier.load_classifier()[0]
    freeze.unfreeze_top_k(model, 1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loader = classifier.make_loader(["great stuff", "awful", "it is a box"], [2, 0, 1], tokenizer,
                               max_length=8, batch_size=3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    batch = next(iter(loader))
    loss = torch.nn.functional.cross_entropy(model(batch["input_ids"], batch["attention_mask"]), batch["labels"])
    loss.backward()
    for n, p in model.named_parameters():
        assert (p.grad is None) == (not p.requires_grad), n
    opt.step()
    for n, p in model.named_parameters():
        changed = not torch.equal(before[n], p.detach())
        if not p.requires_grad:
            assert not changed, f"frozen {n} changed"
    assert not torch.equal(before["head.weight"], model.head.weight.detach())


def test_freezing_does_not_change_predictions(model):
    tokenizer = classifier.load_classifier()[0]
    loader = classifier.make_loader(["fine", "not fine at all"], None, tokenizer, max_length=8)
    freeze.unfreeze_top_k(model, 7)
    a = train.predict(model, loader)
    freeze.unfreeze_top_k(model, 0)
    assert (a == train.predict(model, loader)).all()


def test_gradual_unfreezing_order(model):
    schedule = freeze.GradualUnfreezing(model)
    assert schedule.order == ["head"] + [f"layer {i}" for i in range(5, -1, -1)] + ["embeddings"]
    trainable = lambda: sum(p.numel() for p in model.parameters() if p.requires_grad)  # noqa: E731
    assert schedule(0) == ["head"] and trainable() == HEAD
    assert schedule(1) == ["head", "layer 5"] and trainable() == HEAD + LAYER
    assert schedule(2)[-1] == "layer 4" and trainable() == HEAD + 2 * LAYER
    schedule(20)
    assert trainable() == HEAD + 6 * LAYER + EMB


def test_gradual_unfreezing_inside_fit():
    torch.manual_seed(0)
    tokenizer, model = classifier.load_classifier()
    loader = classifier.make_loader(["good", "bad"], [2, 0], tokenizer, max_length=6, batch_size=2)
    schedule = freeze.GradualUnfreezing(model)
    w5 = model.encoder.encoder.layer[5].output.dense.weight
    w4 = model.encoder.encoder.layer[4].output.dense.weight
    b5, b4 = w5.detach().clone(), w4.detach().clone()
    train.fit(model, loader, epochs=2, lr=1e-3, on_epoch_start=schedule, progress=False)
    assert not torch.equal(b5, w5.detach())  # unfrozen at epoch 1
    assert torch.equal(b4, w4.detach())  # still frozen


def test_gradual_unfreezing_per_step(model):
    schedule = freeze.GradualUnfreezing(model, every=4)
    assert schedule(3) == ["head"] and schedule(4) == ["head", "layer 5"]
    assert schedule(31)[-1] == "embeddings"
    assert schedule.cache_key() == {"order": schedule.order, "every": 4}
    with pytest.raises(ValueError, match="every"):
        freeze.GradualUnfreezing(model, every=0)


def test_discriminative_param_groups(model):
    freeze.unfreeze_top_k(model, 2)
    groups = freeze.discriminative_param_groups(model, base_lr=1e-3, decay=0.5)
    assert [g["block"] for g in groups] == ["layer 4", "layer 5", "head"]
    # blocks numbered bottom to top: embeddings 0, layer i -> i + 1, head L = 7
    assert [g["lr"] for g in groups] == pytest.approx([1e-3 * 0.5 ** 2, 1e-3 * 0.5, 1e-3])
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters() if p.requires_grad}
    every = freeze.discriminative_param_groups(model, 1e-3, 0.5, include_frozen=True)
    assert every[0]["block"] == "embeddings" and every[0]["lr"] == pytest.approx(1e-3 * 0.5 ** 7)
    assert sum(len(g["params"]) for g in every) == len(list(model.parameters()))
    torch.optim.AdamW(groups)  # accepted by an optimizer as is
    with pytest.raises(ValueError, match="decay"):
        freeze.discriminative_param_groups(model, 1e-3, 1.5)
