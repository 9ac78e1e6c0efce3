"""Feature extraction (特征提取): sentence embeddings from the frozen all-MiniLM-L6-v2 encoder.

A frozen encoder maps a sentence of ``T`` tokens to hidden states ``h_1 .. h_T`` (384 wide) at
every layer: layer 0 is the embedding output, layers 1..6 are the transformer blocks. Pooling
turns them into one vector per sentence, using the attention mask ``m_t`` (1 = real token,
0 = padding)::

    mean:  e = sum_t m_t h_t / sum_t m_t
    cls:   e = h_1                              (the first token, [CLS])
    max:   e_d = max_{t : m_t = 1} h_{t,d}      (per dimension)

The vectors feed a small head (e.g. logistic regression) -- the encoder is never trained.
Pooling only reads states the encoder already produced, so :func:`embed_poolings` gets all three
poolings, and :func:`embed_all_layers` every layer, from one forward pass.

Speed: texts are tokenised once, sorted by token length, cut into batches padded only to the
longest sentence of each batch, run under ``torch.inference_mode()``, and put back in the
caller's order. Results are cached under ``cache_dir()/embeddings/`` as ``.npy`` files keyed by
model, layer, pooling, max length and a hash of the texts, so a later lesson reuses them.

Taught in lesson 03 (and used by lessons 04, 06, 08, 09, 11).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from labkit import models
from labkit.cache import cache_dir, read_array, write_array
from labkit.device import pick_device

MODEL_ID = "all-MiniLM-L6-v2"
POOLINGS: tuple[str, ...] = ("mean", "cls", "max")
DIM = 384

_ENCODERS: dict[str, tuple] = {}  # device -> (tokenizer, model), loaded once per process


def encoder(device: torch.device | str | None = None):
    """``(tokenizer, model)`` of MiniLM on ``device``, loaded once per process and reused.

    Taught in lesson 03.
    """
    dev = pick_device(device)
    key = str(dev)
    if key not in _ENCODERS:
        _ENCODERS[key] = models.load_encoder(dev)
    return _ENCODERS[key]


@lru_cache(maxsize=1)
def _n_layers() -> int:
    """Number of transformer layers of the encoder (6), read from its config without loading weights."""
    from transformers import AutoConfig
    return int(AutoConfig.from_pretrained(models.encoder_path(), local_files_only=True).num_hidden_layers)


def check_layer(layer: int) -> int:
    """Return ``layer`` as an index in ``0..6`` (``-1`` = last), or raise a ValueError."""
    n = _n_layers()
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not -(n + 1) <= layer <= n:
        raise ValueError(f"layer must be an integer from 0 (embedding output) to {n} (last "
                         f"transformer layer), or negative from -1 to {-(n + 1)}; got {layer!r}")
    return int(layer) % (n + 1)


def check_pooling(pooling: str) -> str:
    """Return ``pooling`` if it is one of :data:`POOLINGS`, else raise a ValueError listing them."""
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; valid poolings are: {', '.join(POOLINGS)}")
    return pooling


def _unpack(texts: Sequence[str] | pd.DataFrame) -> tuple[list[str], pd.Index | None]:
    """``(texts, index)``: a table's ``text`` column and its index, or a plain list and ``None``."""
    if isinstance(texts, pd.DataFrame):
        if "text" not in texts.columns:
            raise ValueError("a table passed as texts needs a 'text' column (as data.load gives)")
        return check_texts(texts["text"].tolist()), texts.index
    return check_texts(texts), None


def _aligned(arr: np.ndarray, index: pd.Index | None) -> np.ndarray | pd.DataFrame:
    """``arr`` as is, or as a table indexed like the caller's (rows looked up with ``.loc``)."""
    return arr if index is None else pd.DataFrame(arr, index=index)


def check_texts(texts: Sequence[str]) -> list[str]:
    """``texts`` as a list after checking it holds one or more non-empty, valid strings."""
    if isinstance(texts, str):
        raise TypeError("expected a list of sentences, got one string; wrap it: [text]")
    texts = list(texts)
    if not texts:
        raise ValueError("got an empty list of texts; pass at least one sentence")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"text {i} is a {type(t).__name__}, not a string; convert or drop it "
                             "(e.g. df['text'].astype(str) or df.dropna(subset=['text']))")
        if not t.strip():
            raise ValueError(f"text {i} is empty or only whitespace; drop empty sentences first")
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"text {i} contains an unpaired surrogate character ({t[:40]!r}...), so it "
                             "is not valid Unicode; it was probably decoded with the wrong codec -- "
                             "re-read the file as UTF-8, or clean it with "
                             "t.encode('utf-8', 'replace').decode()") from None
    return texts


@lru_cache(maxsize=1)
def max_positions() -> int:
    """The longest input the encoder accepts, in tokens (512 for MiniLM), from its config."""
    from transformers import AutoConfig
    return int(AutoConfig.from_pretrained(models.encoder_path(), local_files_only=True).max_position_embeddings)


def check_sizes(max_length: int, batch_size: int) -> tuple[int, int]:
    """Validate ``max_length`` (2 .. the encoder's limit) and ``batch_size`` (>= 1)."""
    for name, value in (("max_length", max_length), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if not 2 <= max_length <= max_positions():
        raise ValueError(f"max_length must be from 2 ([CLS] and [SEP]) to {max_positions()} (the "
                         f"encoder's position limit), got {max_length}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    return int(max_length), int(batch_size)


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str = "mean") -> torch.Tensor:
    """Pool token states ``hidden`` (batch, T, d) with attention ``mask`` (batch, T) into (batch, d).

    ``mean``: ``sum_t m_t h_t / sum_t m_t``;  ``cls``: ``h_1``;  ``max``: ``max_{t: m_t=1} h_t``.
    Used by :func:`embed` and the fine-tuned classifier (:mod:`labkit.classifier`).
    """
    check_pooling(pooling)
    if hidden.ndim != 3 or mask.shape != hidden.shape[:2]:
        raise ValueError(f"pool needs hidden (batch, T, d) and mask (batch, T); got {tuple(hidden.shape)} "
                         f"and {tuple(mask.shape)}")
    if (mask.sum(1) == 0).any():
        rows = torch.nonzero(mask.sum(1) == 0).flatten().tolist()[:5]
        raise ValueError(f"rows {rows} of the attention mask have no real token (all zeros): there "
                         "is nothing to pool; drop empty sentences before encoding them")
    if pooling == "cls":
        return hidden[:, 0]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    if pooling == "mean":
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return hidden.masked_fill(m == 0, float("-inf")).max(1).values


def _batches(texts: list[str], tokenizer, max_length: int, batch_size: int):
    """Tokenise once, sort by token length (longest first), yield (positions, padded batch)."""
    enc = tokenizer(texts, truncation=True, max_length=max_length, padding=False)
    ids = enc["input_ids"]
    order = np.argsort([-len(x) for x in ids], kind="stable")
    for start in range(0, len(order), batch_size):
        pos = order[start:start + batch_size]
        feats = [{k: enc[k][i] for k in enc.keys()} for i in pos]
        yield pos, tokenizer.pad(feats, padding=True, return_tensors="pt")


def _forward(texts: list[str], layers: list[int], poolings: list[str], max_length: int,
             batch_size: int, device, progress: bool) -> np.ndarray:
    """Embeddings at each of ``layers`` (0..n) with each of ``poolings``, from one forward pass per
    batch: array (len(layers), len(poolings), n, DIM)."""
    check_sizes(max_length, batch_size)
    tokenizer, model = encoder(device)
    dev = next(model.parameters()).device
    out = np.empty((len(layers), len(poolings), len(texts), DIM), dtype=np.float32)
    need_all = layers != [_n_layers()]
    batches = _batches(texts, tokenizer, max_length, batch_size)
    if progress:
        from tqdm.auto import tqdm
        batches = tqdm(batches, total=-(-len(texts) // batch_size), desc="embedding", unit="batch")
    with torch.inference_mode():
        for pos, batch in batches:
            batch = {k: v.to(dev) for k, v in batch.items()}
            result = model(**batch, output_hidden_states=need_all)
            states = result.hidden_states if need_all else (result.last_hidden_state,)
            for j, layer in enumerate(layers):
                h = (states[layer] if need_all else states[0]).float()
                for q, pooling in enumerate(poolings):
                    out[j, q, pos] = pool(h, batch["attention_mask"], pooling).cpu().numpy()
    return out


def texts_hash(texts: Sequence[str]) -> str:
    """SHA-256 (first 16 hex digits) of the texts in order: part of every cache key.

    ``json.dumps`` escapes every non-ASCII character, so any Python string can be hashed."""
    return hashlib.sha256(json.dumps(list(texts)).encode("ascii")).hexdigest()[:16]


def cache_path(texts: Sequence[str], layer: int, pooling: str, max_length: int) -> Path:
    """The ``.npy`` file that holds (or will hold) these embeddings. Used by :func:`embed`."""
    layer = check_layer(layer)
    check_sizes(max_length, 1)
    name = f"{MODEL_ID}_L{layer}_{check_pooling(pooling)}_len{max_length}_{texts_hash(texts)}.npy"
    return cache_dir() / "embeddings" / name


def _load_cached(path: Path, n: int) -> np.ndarray | None:
    """The cached array if it matches its recorded SHA-256 and shape, else ``None`` (recomputed)."""
    return read_array(path, (n, DIM), np.float32)


def _save(path: Path, arr: np.ndarray) -> None:
    write_array(path, np.asarray(arr, dtype=np.float32))


def embed(texts: Sequence[str] | pd.DataFrame, layer: int = -1, pooling: str = "mean", max_length: int = 128,
          batch_size: int = 64, cache: bool = True, device: torch.device | str | None = None,
          progress: bool = False) -> np.ndarray | pd.DataFrame:
    """Sentence embeddings (float32, shape ``(n, 384)``) of the frozen MiniLM encoder.

    Given a table with a ``text`` column (as :func:`labkit.data.load` returns) instead of a list,
    the result is a table indexed like it, so the vectors of any subset of rows are
    ``E.loc[part.index]`` -- no row bookkeeping in the notebook.

    ``layer``: 0 = embedding output, 1..6 = transformer layers, -1 = last. ``pooling``:

    * ``"mean"``: ``e = sum_t m_t h_t / sum_t m_t`` (attention-masked mean; what
      sentence-transformers uses, before its final normalisation),
    * ``"cls"``: ``e = h_1``, the first token,
    * ``"max"``: ``e_d = max_{t: m_t = 1} h_{t,d}``.

    Texts longer than ``max_length`` tokens are truncated. With ``cache=True`` the result is read
    from / written to ``cache_dir()/embeddings/`` (a damaged file is ignored and recomputed).
    Taught in lesson 03.
    """
    texts, index = _unpack(texts)
    layer, pooling = check_layer(layer), check_pooling(pooling)
    path = cache_path(texts, layer, pooling, max_length) if cache else None
    if path is not None and (hit := _load_cached(path, len(texts))) is not None:
        return _aligned(hit, index)
    arr = _forward(texts, [layer], [pooling], max_length, batch_size, device, progress)[0, 0]
    if path is not None:
        _save(path, arr)
    return _aligned(arr, index)


def embed_all_layers(texts: Sequence[str] | pd.DataFrame, pooling: str = "mean", max_length: int = 128,
                     batch_size: int = 64, cache: bool = True,
                     device: torch.device | str | None = None,
                     progress: bool = False) -> np.ndarray | list[pd.DataFrame]:
    """Embeddings from every layer at once: float32 ``(n_layers + 1, n, 384)``, index = layer
    (for a table with a ``text`` column: one table per layer, indexed like it; see :func:`embed`).

    One forward pass per batch gives all hidden states; each layer is pooled as in :func:`embed`
    and cached under the same key, so ``embed(texts, layer=k)`` later reads it from disk.
    Taught in lesson 04 (to probe every layer).
    """
    texts, index = _unpack(texts)
    pooling = check_pooling(pooling)
    layers = list(range(_n_layers() + 1))
    paths = [cache_path(texts, k, pooling, max_length) for k in layers] if cache else None
    hits = [_load_cached(p, len(texts)) for p in paths] if paths is not None else [None]
    if all(h is not None for h in hits):
        arr = np.stack(hits)
    else:
        arr = _forward(texts, layers, [pooling], max_length, batch_size, device, progress)[:, 0]
        for k, p in zip(layers, paths or []):
            _save(p, arr[k])
    return arr if index is None else [_aligned(a, index) for a in arr]


def embed_poolings(texts: Sequence[str] | pd.DataFrame, poolings: Sequence[str] = POOLINGS, layer: int = -1,
                   max_length: int = 128, batch_size: int = 64, cache: bool = True,
                   device: torch.device | str | None = None,
                   progress: bool = False) -> dict[str, np.ndarray | pd.DataFrame]:
    """Embeddings with several poolings from ONE pass over the texts: ``{pooling: (n, 384) array}``
    (for a table with a ``text`` column: tables indexed like it; see :func:`embed`).

    Pooling only reads the token states ``h_1 .. h_T`` that the encoder already produced, so
    comparing mean, CLS and max pooling costs one forward pass, not three. Each result is cached
    under the same key as :func:`embed`, so ``embed(texts, pooling=p)`` later reads it from disk;
    only the poolings not already cached are computed. Taught in lesson 03.
    """
    texts, index = _unpack(texts)
    layer = check_layer(layer)
    if isinstance(poolings, str):
        poolings = [poolings]
    poolings = [check_pooling(p) for p in dict.fromkeys(poolings)]
    if not poolings:
        raise ValueError(f"embed_poolings needs at least one pooling; valid poolings are: {', '.join(POOLINGS)}")
    paths = {p: cache_path(texts, layer, p, max_length) for p in poolings} if cache else {}
    found = {p: _load_cached(paths[p], len(texts)) for p in paths}
    out = {p: a for p, a in found.items() if a is not None}
    missing = [p for p in poolings if p not in out]
    if missing:
        arr = _forward(texts, [layer], missing, max_length, batch_size, device, progress)[0]
        for q, p in enumerate(missing):
            out[p] = arr[q]
            if cache:
                _save(paths[p], arr[q])
    return {p: _aligned(out[p], index) for p in poolings}


def token_states(texts: Sequence[str], layer: int = -1, max_length: int = 128, batch_size: int = 64,
                 device: torch.device | str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Unpooled token states ``(n, T, 384)`` of layer ``layer`` and the attention mask ``(n, T)``,
    padded to the longest text (``T`` tokens at most ``max_length``), in batches of ``batch_size``.

    For looking inside pooling (lesson 03's exercise) and for training new layers on top of
    frozen lower ones (lesson 04); use :func:`embed` for pooled vectors. Taught in lesson 03.
    """
    texts = check_texts(texts)
    layer = check_layer(layer)
    check_sizes(max_length, batch_size)
    tokenizer, model = encoder(device)
    dev = next(model.parameters()).device
    batch = tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    states = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            part = {k: v[start:start + batch_size].to(dev) for k, v in batch.items()}
            states.append(model(**part, output_hidden_states=True).hidden_states[layer].float().cpu())
    return torch.cat(states).numpy(), batch["attention_mask"].numpy()
