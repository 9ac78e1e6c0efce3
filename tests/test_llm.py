"""labkit.llm (lesson 10) and labkit.bench: label-word scoring with prefix caching equals scoring each
whole prompt, calibration, hidden states, the LoRA classifier, bad input, and the leaderboard on a
tiny subset (resumed from its cache)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from labkit import bench, llm, models

TEXTS = ["I loved every minute of it.", "The service was slow and the food was cold, which was a shame.",
         "The report was published on Tuesday."]


@pytest.fixture(scope="module")
def smollm():
    return models.load_llm("cpu")


def _whole_prompt_probs(tok, lm, prompts: list[str], words=llm.LABELS) -> np.ndarray:
    ids = llm.label_token_ids(tok, words)
    out = []
    with torch.no_grad():
        for p in prompts:
            logits = lm(**tok(p, return_tensors="pt", add_special_tokens=False)).logits[0, -1]
            q = torch.softmax(logits.double(), -1)[ids]
            out.append((q / q.sum()).numpy())
    return np.array(out)


@pytest.mark.parametrize("template", [True, False])
@pytest.mark.parametrize("shots", [0, 2])
def test_prefix_cache_equals_whole_prompts(smollm, shots, template):
    tok, lm = smollm
    examples = [("Great phone, works well.", 2), ("Awful. Broke in a day.", 0)][:shots]
    prefix, suffixes = llm.prompt_parts(tok, TEXTS, examples=examples, template=template)
    enc = lambda t: tok(t, add_special_tokens=False).input_ids
    assert all(enc(prefix + s) == enc(prefix) + enc(s) for s in suffixes)   # the split is token-exact
    words = llm.LABELS if template else [" " + w for w in llm.LABELS]
    got = llm.label_probabilities(tok, lm, TEXTS, examples=examples, template=template, cache=False, batch_size=2)
    want = _whole_prompt_probs(tok, lm, [prefix + s for s in suffixes], words)
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert np.allclose(got.sum(1), 1)


def test_prompt_shows_template_and_examples(smollm):
    tok, _ = smollm
    prefix, suffixes = llm.prompt_parts(tok, TEXTS[:1], examples=[("Nice.", 2)])
    assert "<|im_start|>system" in prefix and "<|im_start|>assistant\npositive<|im_end|>" in prefix
    assert suffixes[0].endswith("<|im_start|>assistant\n") and TEXTS[0] in suffixes[0]
    plain, plain_suffixes = llm.prompt_parts(tok, TEXTS[:1], template=False)
    assert "<|im_start|>" not in plain + plain_suffixes[0] and plain_suffixes[0].endswith("Answer:")
    assert llm.prompt_parts(tok, TEXTS[:1], system=None, template=False) == ("", [plain_suffixes[0].lstrip("\n")])


def test_mass_and_memory_peak(smollm):
    tok, lm = smollm
    probs, mass = llm.label_probabilities(tok, lm, TEXTS, cache=False, return_mass=True)
    assert probs.shape == (3, 3) and ((0 < mass) & (mass <= 1)).all()
    with llm.MemoryPeak() as small:
        np.ones(1000)
    with llm.MemoryPeak() as big:
        block = np.ones(100_000_000)                 # 800 MB, touched
        del block
    assert big.mb > small.mb + 500


def test_label_classifier_matches_label_probabilities(smollm):
    """Left-padded training prompts (with position ids) score exactly like the cached-prefix path."""
    tok, lm = smollm
    net = llm.LabelWordClassifier(lm, llm.label_token_ids(tok))
    batch = next(iter(llm.prompt_loader(tok, TEXTS, [2, 0, 1], batch_size=3)))
    with torch.no_grad():
        probs = torch.softmax(net(batch["input_ids"], batch["attention_mask"]).double(), -1).numpy()
    np.testing.assert_allclose(probs, llm.label_probabilities(tok, lm, TEXTS, cache=False), atol=1e-4)
    assert batch["labels"].tolist() == [2, 0, 1]


def test_results_are_cached_and_a_damaged_cache_is_recomputed(smollm, fresh_cache):
    tok, lm = smollm
    first = llm.label_probabilities(tok, lm, TEXTS[:2])
    [path] = list((fresh_cache / "llm").glob("labelprobs_*.npy"))
    data = bytearray(path.read_bytes())
    data[-8:] = b"\x00" * 8                     # same size, different bytes
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="does not match its recorded hash"):
        again = llm.label_probabilities(tok, lm, TEXTS[:2])
    np.testing.assert_allclose(again, first)


def test_hidden_states_pool_each_sentence_alone(smollm):
    tok, lm = smollm
    H = llm.hidden_states(tok, lm, TEXTS, layers=[0, 30], cache=False)
    assert H.shape == (3, 2, 2, lm.config.hidden_size)
    with torch.no_grad():  # the first (shortest) sentence on its own, no padding
        states = lm(**tok(TEXTS[0], return_tensors="pt", add_special_tokens=False), output_hidden_states=True).hidden_states
    np.testing.assert_allclose(H[0, 1, 0], states[30][0, -1].numpy(), atol=1e-3)
    np.testing.assert_allclose(H[0, 1, 1], states[30][0].mean(0).numpy(), atol=1e-3)


def test_lora_trains_only_adapters(smollm):
    tok, _ = smollm
    _, lm = models.load_llm("cpu")
    wrapped = llm.add_lora(lm, r=8, targets=("q_proj", "v_proj"))
    n_layers, width = lm.config.num_hidden_layers, lm.config.hidden_size
    kv = lm.config.num_key_value_heads * (width // lm.config.num_attention_heads)
    assert models.count_parameters(wrapped, trainable_only=True) == n_layers * 8 * ((width + width) + (width + kv))
    with pytest.raises(ValueError, match="not layers of this model"):
        llm.add_lora(models.load_llm("cpu")[1], targets=("query",))


def test_bad_input_is_refused(smollm):
    tok, lm = smollm
    with pytest.raises(ValueError, match="empty"):
        llm.label_probabilities(tok, lm, ["fine", "  "])
    with pytest.raises(ValueError, match="same token"):
        llm.label_token_ids(tok, ["negative", "negative", "positive"])
    with pytest.raises(ValueError, match="exactly one"):
        llm.prompt_parts(tok, TEXTS, question="Sentiment?")
    with pytest.raises(ValueError, match="max_length"):
        llm.hidden_states(tok, lm, ["word " * 80], max_length=64)
    with pytest.raises(ValueError, match="0..2"):
        llm.prompt_parts(tok, TEXTS, examples=[("ok", 3)])
    with pytest.raises(ValueError, match="prior"):
        llm.calibrate(np.ones((2, 3)) / 3, np.array([0.5, 0.0, 0.5]))


def test_calibration_divides_out_the_prior():
    p = np.array([[0.6, 0.1, 0.3], [0.2, 0.2, 0.6]])
    np.testing.assert_allclose(llm.calibrate(p, np.ones(3) / 3), p)
    q = llm.calibrate(p, np.array([0.5, 0.1, 0.4]))
    want = p / [0.5, 0.1, 0.4]
    np.testing.assert_allclose(q, want / want.sum(1, keepdims=True))


@pytest.fixture
def bench_cache(tmp_path, monkeypatch):
    """An empty result cache that shares the real cache's assets and converted LLM (linked, not copied)."""
    from labkit.cache import cache_dir
    real, fresh = cache_dir(), tmp_path / "labkit-cache"
    fresh.mkdir()
    for name in ("assets", "downloads", models.LLM_CACHE):
        if (real / name).exists():
            (fresh / name).symlink_to(real / name, target_is_directory=True)
    monkeypatch.setenv("LABKIT_CACHE", str(fresh))
    return fresh


def test_bench_on_a_tiny_subset_resumes_from_its_cache(bench_cache):
    """The leaderboard end to end on a tiny subset; a second run reads every system from the cache."""
    settings = bench.Settings.for_device(gpu=False, quick=True)
    names = ["VADER 3.3.2 (rules, no training)", "TF-IDF + logistic regression", "SmolLM2 zero-shot"]
    board = bench.run(settings, names, log=lambda m: None)
    again = bench.run(settings, names, log=lambda m: None)
    strip = lambda systems: {n: {k: v for k, v in r.items() if k != "from cache"} for n, r in systems.items()}
    assert strip(again["systems"]) == strip(board["systems"])   # resumed: the same predictions ...
    assert all(r["from cache"] for r in again["systems"].values())        # ... read from the cache
    assert not any(r["from cache"] for r in board["systems"].values())
    assert len([p for p in (bench_cache / "bench").glob("*.json") if p.name.count(".") == 1]) == len(names)
    tfidf = board["systems"]["TF-IDF + logistic regression"]["cells"]
    assert len(tfidf) == 16 and all(lo <= f1 <= hi for f1, lo, hi in tfidf.values())
    assert set(board["systems"]["SmolLM2 zero-shot"]["cells"]) == {f"-->{d}" for d in bench.DOMAINS}
    text = bench.markdown(board)
    for needle in ("individual human rater (computed here)", "paper Table 5", "majority class",
                   "seeded subset", "### TF-IDF + logistic regression", board["commit"]):
        assert needle in text
    with pytest.raises(ValueError, match="unknown systems"):
        bench.run(settings, ["GPT-5"], log=lambda m: None)


def test_human_rater_line_matches_the_paper_roughly():
    """One rater against the mean of the others, on amazon's whole test half: near the paper's 0.85."""
    from labkit import data
    _, test = data.load_split("amazon")
    f1, low, high = bench.human_rater(test, n_boot=200)["amazon"]
    assert 0.75 < f1 < 0.95 and low < f1 < high
