"""Transfer with a decoder LLM (SmolLM2-135M-Instruct): prompting by label-word scoring, calibration,
few-shot prompts, hidden-state features and LoRA. Taught in lesson 10.

Label-word scoring turns the chat model into a 3-class classifier without parsing free text: the
prompt ends where the assistant's answer begins, and the class scores are the model's next-token
probabilities of the first token of each label word, renormalised over the three::

    p(c | x) = P(w_c | prompt(x)) / sum_k P(w_k | prompt(x))

Every prompt of a batch shares the same beginning (the system message and any few-shot examples):
it is run once and its keys/values are reused for every sentence (prefix caching), which gives the
same probabilities as running each whole prompt (tested) at a fraction of the cost.
"""

from __future__ import annotations

import copy
import json
import warnings
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from labkit.cache import cache_dir, read_array, write_array
from labkit.classifier import check_labels
from labkit.data import LABELS
from labkit.features import check_texts, texts_hash

SYSTEM = "You are a helpful assistant."
QUESTION = ("What is the sentiment of this text? Answer with one word: positive, negative or neutral.\n\n"
            "Text: {text}")
POOLINGS = ("last", "mean")


def check_question(question: str) -> str:
    """A prompt question must contain ``{text}`` exactly once (where the sentence goes)."""
    if not isinstance(question, str) or question.count("{text}") != 1:
        raise ValueError("the question must be a string with exactly one '{text}' where the sentence goes, "
                         f"got {question!r}")
    return question


def check_examples(examples: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    """Few-shot examples as ``[(text, label), ...]`` with non-empty texts and labels 0..2."""
    examples = list(examples)
    if examples:
        texts = check_texts([e[0] if isinstance(e, (tuple, list)) and len(e) == 2 else None for e in examples])
        labels = check_labels([e[1] for e in examples], len(LABELS))
        examples = list(zip(texts, labels.tolist()))
    return examples


def label_token_ids(tokenizer, words: Sequence[str] = LABELS) -> list[int]:
    """The first token of each label word; they must differ, or the words cannot be told apart."""
    ids = []
    for w in words:
        tokens = tokenizer.encode(w, add_special_tokens=False) if isinstance(w, str) and w else []
        if not tokens:
            raise ValueError(f"label word {w!r} has no tokens; give a non-empty word per class")
        ids.append(tokens[0])
    if len(set(ids)) != len(ids):
        raise ValueError(f"label words {list(words)} start with the same token; choose words whose first "
                         "tokens differ (e.g. 'negative', 'neutral', 'positive')")
    return ids


def prompt_parts(tokenizer, texts: Sequence[str], question: str = QUESTION, system: str | None = SYSTEM,
                 examples: Sequence[tuple[str, int]] = (), template: bool = True) -> tuple[str, list[str]]:
    """``(prefix, suffixes)``: every prompt is ``prefix + suffixes[i]``.

    With ``template=True`` the prompt is the model's chat template: the system message, each
    few-shot example as a user turn and the assistant's one-word answer, then the sentence as a user
    turn, ending with the assistant's turn opening (``add_generation_prompt``). With
    ``template=False`` it is plain text ending in ``Answer:`` -- what the chat template adds is then
    visible by comparing the two (lesson 10).
    """
    texts, question = check_texts(texts), check_question(question)
    examples = check_examples(examples)
    if not template:  # separators open each part, so the shared prefix ends on a word, not on whitespace
        head = (system or "") + "".join(f"\n\n{question.format(text=t)}\nAnswer: {LABELS[y]}" for t, y in examples)
        suffixes = [f"\n\n{question.format(text=t)}\nAnswer:" for t in texts]
        return head, suffixes if head else [x.lstrip("\n") for x in suffixes]
    turns = [{"role": "system", "content": system}] if system else []
    for t, y in examples:
        turns += [{"role": "user", "content": question.format(text=t)}, {"role": "assistant", "content": LABELS[y]}]
    head = tokenizer.apply_chat_template(turns, tokenize=False) if turns else ""
    full = [tokenizer.apply_chat_template(turns + [{"role": "user", "content": question.format(text=t)}],
                                          add_generation_prompt=True, tokenize=False) for t in texts]
    if not all(f.startswith(head) for f in full):
        raise ValueError("the chat template does not render the shared turns as a common prefix; "
                         "prefix caching cannot be used with this tokenizer")
    return head, [f[len(head):] for f in full]


@torch.no_grad()
def _next_token_logits(lm, tokenizer, prefix: str, suffixes: list[str], batch_size: int,
                       progress: bool) -> torch.Tensor:
    """Next-token logits after ``prefix + s`` for each suffix; the prefix is run once (its cache reused)."""
    dev = next(lm.parameters()).device
    cache, n_prefix = None, 0
    if prefix:
        ids = tokenizer(prefix, return_tensors="pt", add_special_tokens=False).input_ids.to(dev)
        cache, n_prefix = lm(input_ids=ids, use_cache=True).cache, ids.shape[1]
    side, tokenizer.padding_side = tokenizer.padding_side, "right"
    order = np.argsort([len(s) for s in suffixes], kind="stable")   # similar lengths together: less padding
    out = []
    try:
        for i in tqdm(range(0, len(suffixes), batch_size), disable=not progress, desc="prompts", unit="batch"):
            enc = tokenizer([suffixes[j] for j in order[i:i + batch_size]], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(dev)
            b, length = enc.input_ids.shape
            mask = torch.cat([enc.attention_mask.new_ones(b, n_prefix), enc.attention_mask], 1)
            kwargs = {"position_ids": (n_prefix + torch.arange(length, device=dev)).expand(b, length)}
            if cache is not None:
                kwargs["cache"] = copy.deepcopy(cache)      # the forward pass appends to it
                kwargs["cache"].batch_repeat_interleave(b)
            logits = lm(input_ids=enc.input_ids, attention_mask=mask, **kwargs).logits
            last = enc.attention_mask.sum(1) - 1          # right padding: the last real token
            out.append(logits[torch.arange(b, device=dev), last].float().cpu())
    finally:
        tokenizer.padding_side = side
    logits = torch.empty(len(suffixes), out[0].shape[-1])
    logits[torch.as_tensor(order)] = torch.cat(out)
    return logits


def label_probabilities(tokenizer, lm, texts: Sequence[str], question: str = QUESTION,
                        system: str | None = SYSTEM, examples: Sequence[tuple[str, int]] = (),
                        template: bool = True, words: Sequence[str] | None = None, batch_size: int = 8,
                        cache: bool = True, progress: bool = False, return_mass: bool = False):
    """``(n, 3)`` class probabilities from label-word scoring (the module docstring's formula).

    Column ``c`` is class ``LABELS[c]``; ``words`` are the answer words scored for each class
    (default: the labels, after a space in a plain-text prompt, where the answer follows "Answer:").
    With ``return_mass=True`` also the total probability the model puts on the three words,
    ``sum_k P(w_k | prompt)`` -- how much it "wants" to answer with a label at all.
    Results are cached on disk, keyed by the model, the whole prompt and the texts."""
    words = words if words is not None else LABELS if template else [" " + w for w in LABELS]
    ids = label_token_ids(tokenizer, words)
    prefix, suffixes = _split_checked(tokenizer, *prompt_parts(tokenizer, texts, question, system, examples, template))
    key = {"model": lm.config.name_or_path, "prefix": prefix, "suffixes": texts_hash(suffixes), "ids": ids, "v": 2,
           "weights": _weights_digest(lm)}
    path = cache_dir() / "llm" / f"labelprobs_{texts_hash([json.dumps(key, sort_keys=True)])}.npy"
    if not (cache and (raw := read_array(path, (len(suffixes), len(ids)))) is not None):
        logits = _next_token_logits(lm, tokenizer, prefix, suffixes, batch_size, progress)
        raw = torch.softmax(logits.double(), -1)[:, ids].numpy()     # P(w_c | prompt), not renormalised
        if cache:
            write_array(path, raw)
    mass = raw.sum(1)
    return (raw / mass[:, None], mass) if return_mass else raw / mass[:, None]


def _split_checked(tokenizer, prefix: str, suffixes: list[str]) -> tuple[str, list[str]]:
    """Keep the shared prefix only if tokenising it separately gives the same tokens as tokenising
    each whole prompt (a tokenizer may merge across the boundary); otherwise run whole prompts."""
    if not prefix:
        return prefix, suffixes
    enc = lambda t: tokenizer(t, add_special_tokens=False).input_ids
    head = enc(prefix)
    for s in suffixes:
        if enc(prefix + s) != head + enc(s):
            return "", [prefix + x for x in suffixes]
    return prefix, suffixes


def calibrate(probs: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Divide out the prompt's own preference for each label and renormalise, as in contextual
    calibration (Zhao et al. 2021)::

        q(c | x) = (p(c | x) / pi_c) / sum_k (p(k | x) / pi_k)

    Zhao et al. estimate ``pi`` from a content-free input ("N/A"); estimating it as the mean of ``p``
    over unlabelled sentences of the task, as lesson 10 does, is batch calibration (Zhou et al. 2024).
    That ``pi`` also contains the task's real class shares, which calibration then flattens."""
    probs, prior = np.asarray(probs, dtype=float), np.asarray(prior, dtype=float)
    if probs.ndim != 2 or prior.shape != (probs.shape[1],):
        raise ValueError(f"calibrate needs probs of shape (n, k) and a prior of shape (k,), got "
                         f"{probs.shape} and {prior.shape}")
    if not (prior > 0).all():
        raise ValueError(f"every prior probability must be > 0, got {prior}")
    q = probs / prior
    return q / q.sum(1, keepdims=True)


def _weights_digest(model: nn.Module) -> str:
    """A cheap fingerprint of the weights (shapes and a few values of every tensor), so that a
    fine-tuned or LoRA-adapted model never reuses a base model's cached results."""
    parts = [(n, tuple(p.shape), p.detach().flatten()[:: max(1, p.numel() // 16)][:16].float().cpu().tolist())
             for n, p in model.state_dict().items()]
    return texts_hash([json.dumps(parts)])


@torch.no_grad()
def hidden_states(tokenizer, lm, texts: Sequence[str], layers: Sequence[int] | None = None,
                  max_length: int = 64, batch_size: int = 16, cache: bool = True,
                  progress: bool = False) -> np.ndarray:
    """Sentence features from the LLM's hidden states: an array ``(n, layers, 2, width)`` where
    axis 2 is the pooling, ``POOLINGS = ("last", "mean")``:

    * ``last``: the state of the last token, ``e = h_T`` -- in a causal model the only position
      that has seen the whole sentence;
    * ``mean``: the mean over the sentence's tokens, ``e = (1/T) sum_t h_t``.

    ``layers`` index ``output_hidden_states`` (0 = embeddings, L = last layer); default all. The raw
    sentence is fed (no prompt). Sentences longer than ``max_length`` tokens are refused. Note that
    transformers returns the LAST layer after the model's final normalisation and the others as the
    raw residual stream, so their scales differ: standardise features before a probe."""
    texts = check_texts(texts)
    n_layers = lm.config.num_hidden_layers
    layers = list(range(n_layers + 1)) if layers is None else [int(i) for i in layers]
    if not layers or any(not 0 <= i <= n_layers for i in layers):
        raise ValueError(f"layers must be in 0..{n_layers} (0 = embeddings), got {layers}")
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False).input_ids]
    if max(lengths) > max_length:
        i = int(np.argmax(lengths))
        raise ValueError(f"text {i} has {lengths[i]} tokens, more than max_length={max_length}; raise "
                         "max_length or shorten the text (nothing is truncated silently)")
    key = {"model": lm.config.name_or_path, "texts": texts_hash(texts), "layers": layers,
           "weights": _weights_digest(lm)}
    path = cache_dir() / "llm" / f"hidden_{texts_hash([json.dumps(key, sort_keys=True)])}.npy"
    shape = (len(texts), len(layers), len(POOLINGS), lm.config.hidden_size)
    if cache and (hit := read_array(path, shape)) is not None:
        return hit
    dev = next(lm.parameters()).device
    side, tokenizer.padding_side = tokenizer.padding_side, "right"
    order = np.argsort(lengths, kind="stable")                      # similar lengths together: less padding
    out = []
    try:
        for i in tqdm(range(0, len(texts), batch_size), disable=not progress, desc="hidden states", unit="batch"):
            enc = tokenizer([texts[j] for j in order[i:i + batch_size]], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(dev)
            states = lm(**enc, output_hidden_states=True).hidden_states
            m = enc.attention_mask.unsqueeze(-1).float()
            last = enc.attention_mask.sum(1) - 1
            rows = torch.arange(len(last), device=dev)
            out.append(torch.stack([torch.stack([states[j][rows, last], (states[j] * m).sum(1) / m.sum(1)], 1)
                                    for j in layers], 1).float().cpu())
    finally:
        tokenizer.padding_side = side
    arr = np.empty(shape, dtype=np.float32)
    arr[order] = torch.cat(out).numpy()
    if cache:
        write_array(path, arr)
    return arr


class LabelWordClassifier(nn.Module):
    """A causal LM used as a 3-class classifier: the logits of the label words' first tokens at the
    last prompt position (left-padded batches), ``z_c = logit(w_c | prompt)``. Trained with
    cross-entropy over these three logits, it starts from the zero-shot classifier; with LoRA only
    the adapters learn. Works with :func:`labkit.train.fit` and :func:`labkit.runcache.fit_cached`."""

    def __init__(self, lm: nn.Module, label_ids: Sequence[int]) -> None:
        super().__init__()
        self.lm = lm
        self.register_buffer("label_ids", torch.tensor(list(label_ids), dtype=torch.long), persistent=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        positions = (attention_mask.long().cumsum(1) - 1).clamp(min=0)  # left padding: count real tokens only
        logits = self.lm(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                         logits_to_keep=1).logits
        return logits[:, -1, self.label_ids]


def add_lora(lm: nn.Module, r: int = 8, alpha: int = 16, targets: Sequence[str] = ("q_proj", "v_proj"),
             dropout: float = 0.05) -> nn.Module:
    """Wrap ``lm`` with LoRA adapters (Hu et al. 2021) on the named linear layers with ``peft``:
    each frozen weight ``W`` becomes ``W + (alpha / r) B A`` with ``A (r x d_in)``, ``B (d_out x r)``
    trainable and ``B = 0`` at the start, so training begins from the unchanged model."""
    from peft import LoraConfig, get_peft_model
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(f"the LoRA rank r must be a positive int, got {r!r}")
    names = {n.rsplit(".", 1)[-1] for n, _ in lm.named_modules()}
    unknown = [t for t in targets if t not in names]
    if not targets or unknown:
        raise ValueError(f"target modules {unknown or list(targets)} are not layers of this model; "
                         f"choose from e.g. q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj")
    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets), lora_dropout=dropout,
                        bias="none")
    with warnings.catch_warnings():  # peft 0.21 calls a transformers method renamed in v5; harmless
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(lm, config)


def prompt_loader(tokenizer, texts: Sequence[str], labels: Sequence[int] | None = None,
                  question: str = QUESTION, system: str | None = SYSTEM, batch_size: int = 8,
                  shuffle: bool = False, seed: int = 0) -> DataLoader:
    """A DataLoader of whole zero-shot prompts (left-padded, so the answer position is the last one)
    yielding ``input_ids``, ``attention_mask`` and ``labels``, for :class:`LabelWordClassifier`."""
    prefix, suffixes = prompt_parts(tokenizer, texts, question, system)
    enc = tokenizer([prefix + s for s in suffixes], add_special_tokens=False)
    items = [{"input_ids": torch.tensor(i), "attention_mask": torch.tensor(m)}
             for i, m in zip(enc["input_ids"], enc["attention_mask"])]
    if labels is not None:
        labels = check_labels(labels, len(LABELS))
        if len(labels) != len(items):
            raise ValueError(f"got {len(items)} texts but {len(labels)} labels; they must match")
        for item, y in zip(items, labels):
            item["labels"] = torch.tensor(int(y))
    pad = tokenizer.pad_token_id

    def collate(batch: list[dict]) -> dict:
        width = max(len(b["input_ids"]) for b in batch)
        out = {"input_ids": torch.stack([nn.functional.pad(b["input_ids"], (width - len(b["input_ids"]), 0), value=pad)
                                         for b in batch]),
               "attention_mask": torch.stack([nn.functional.pad(b["attention_mask"], (width - len(b["attention_mask"]), 0))
                                              for b in batch])}
        if "labels" in batch[0]:
            out["labels"] = torch.stack([b["labels"] for b in batch])
        return out

    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(items, batch_size=batch_size, shuffle=shuffle, generator=generator, collate_fn=collate)


class MemoryPeak:
    """``with MemoryPeak() as m: ...`` then ``m.mb``: the peak memory while the block ran.

    On CUDA the peak GPU memory allocated (the counter is reset on entry); on Linux the peak resident
    memory of the process (``VmHWM``, reset on entry through ``/proc/self/clear_refs``) -- everything the
    process holds, including models loaded before the block; elsewhere the process's lifetime peak."""

    def __enter__(self) -> "MemoryPeak":
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        else:
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                pass
        self.mb = float("nan")
        return self

    def __exit__(self, *exc) -> None:
        self.mb = _current_peak_mb()


def _current_peak_mb() -> float:
    """The peak since the last reset: CUDA memory allocated, else Linux's VmHWM, else ``ru_maxrss``."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    import sys
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss        # the lifetime peak: cannot be reset
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024
