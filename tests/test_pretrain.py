"""Self-supervised pre-training helpers: the tokenizer, the windows, the loss and perplexity."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader

from labkit import device, models, pretrain, runcache

TEXTS = ["the film was good and the actors were good", "the phone is bad, the battery is bad",
         "a good day", "the news said the vote was close"] * 20


@pytest.fixture(scope="module")
def tokenizer():
    return pretrain.train_tokenizer(TEXTS, vocab_size=300)


def test_tokenizer_round_trips_and_ends_sentences(tokenizer):
    assert len(tokenizer) <= 300 and tokenizer.eos_token == pretrain.END == tokenizer.pad_token
    ids = tokenizer("the film was good")["input_ids"]
    assert tokenizer.decode(ids) == "the film was good"
    assert len(ids) < len("the film was good")  # frequent pieces were merged


def test_windows_are_inputs_and_next_tokens(tokenizer):
    blocks = pretrain.lm_blocks(TEXTS, tokenizer, block=8)
    x, y = blocks.tensors
    assert x.shape == y.shape and x.shape[1] == 8
    assert torch.equal(x[:, 1:], y[:, :-1])          # targets are the inputs shifted by one
    assert torch.equal(x[1:, 0], y[:-1, -1])         # stride = block: windows follow each other
    stream = [i for t in TEXTS for i in tokenizer(t)["input_ids"] + [tokenizer.eos_token_id]]
    assert x[0].tolist() == stream[:8] and len(blocks) == (len(stream) - 1) // 8


def test_bad_input_is_refused(tokenizer):
    with pytest.raises(ValueError, match="vocab_size"):
        pretrain.train_tokenizer(TEXTS, vocab_size=100)
    with pytest.raises(ValueError, match="fewer than one block"):
        pretrain.lm_blocks(["a"], tokenizer, block=64)
    with pytest.raises(ValueError, match="block"):
        pretrain.lm_blocks(TEXTS, tokenizer, block=1)


def test_loss_matches_transformers_own_causal_lm_loss(tokenizer):
    device.seed_everything(0)
    lm = models.small_gpt2(len(tokenizer), n_positions=16, eos_token_id=tokenizer.eos_token_id, device="cpu").eval()
    x, y = pretrain.lm_blocks(TEXTS, tokenizer, block=8)[:4]
    full = torch.cat([x, y[:, -1:]], dim=1)            # the 9-token windows
    with torch.no_grad():
        ours = pretrain.next_token_loss(pretrain.NextTokenLogits(lm)(x), y)
        theirs = lm(input_ids=full, labels=full).loss   # shifts inside, but also sees the 9th token's logits
        logits = lm(input_ids=full).logits[:, :-1]
    assert torch.allclose(ours, pretrain.next_token_loss(logits, y), atol=1e-5)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    class Uniform(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, ids):
            return torch.zeros(*ids.shape, 50) + self.w

    blocks = torch.utils.data.TensorDataset(torch.randint(0, 50, (5, 7)), torch.randint(0, 50, (5, 7)))
    assert math.isclose(pretrain.perplexity(Uniform(), blocks), 50, rel_tol=1e-5)


def test_pretraining_lowers_perplexity_and_its_cache_restores_tied_weights(tokenizer, fresh_cache):
    blocks = pretrain.lm_blocks(TEXTS, tokenizer, block=8)

    def run():
        device.seed_everything(0)
        lm = models.small_gpt2(len(tokenizer), n_positions=8, n_embd=32, n_head=2,
                               eos_token_id=tokenizer.eos_token_id, device="cpu")
        model = pretrain.NextTokenLogits(lm)
        before = pretrain.perplexity(model, blocks)
        loader = DataLoader(blocks, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(0))
        runcache.fit_cached(model, loader, epochs=3, lr=3e-3, loss_fn=pretrain.next_token_loss, cpu=True,
                            progress=False)
        return lm, before, pretrain.perplexity(model, blocks)

    lm, before, after = run()
    assert after < before / 2
    assert lm.lm_head.weight.data_ptr() == lm.transformer.wte.weight.data_ptr()  # still tied
    again, _, after_again = run()                                                # a cache hit
    assert after_again == after
    assert torch.equal(again.lm_head.weight, lm.lm_head.weight)
    assert again.lm_head.weight.data_ptr() == again.transformer.wte.weight.data_ptr()
