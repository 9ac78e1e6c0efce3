"""The real pretrained models load from local files and work."""

from __future__ import annotations

import time

import pytest
import torch

from labkit import models


def test_encoder_output_shape():
    tokenizer, model = models.load_encoder("cpu")
    batch = tokenizer(["a short sentence", "another, slightly longer sentence here"],
                      padding=True, return_tensors="pt")
    with torch.inference_mode():
        out = model(**batch).last_hidden_state
    assert out.shape == (2, batch["input_ids"].shape[1], 384)
    assert model.config.num_hidden_layers == 6
    assert 22_000_000 < models.count_parameters(model) < 23_000_000


def test_llm_loads_from_cache_and_generates():
    models.llm_path()  # converts once if this cache has no copy yet
    start = time.perf_counter()
    tokenizer, model = models.load_llm("cpu")
    assert time.perf_counter() - start < 20, "the cached fp32 copy should reload in seconds"
    assert model.config.model_type == "llama"
    messages = [{"role": "user", "content": "Say hello."}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)
    out = model.generate(**ids, max_new_tokens=5, do_sample=False)
    new = tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert out.shape[1] > ids["input_ids"].shape[1] and new.strip()


def test_small_gpt2():
    model = models.small_gpt2(vocab_size=8000, device="cpu")
    n = models.count_parameters(model)
    assert 1_000_000 < n < 2_500_000
    logits = model(torch.randint(0, 8000, (2, 16))).logits
    assert logits.shape == (2, 16, 8000)
    with pytest.raises(ValueError, match="divisible"):
        models.small_gpt2(vocab_size=100, n_embd=130, n_head=4)


def test_loading_hides_the_weights_bar_and_restores_it():
    from transformers.utils import logging as hf_logging

    hf_logging.enable_progress_bar()
    models.load_encoder("cpu")
    assert hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    models.load_encoder("cpu")
    assert not hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()
