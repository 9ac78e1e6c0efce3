"""The four human-rated sentiment corpora of Hutto & Gilbert (2014) and the course's protocol.

Tidy table, one row per sentence: ``id``, ``domain``, ``text``, ``score`` (mean human rating in
[-4, 4]) and ``label`` (0 negative, 1 neutral, 2 positive), with the paper's thresholds::

    positive if s/4 > 0.05,   negative if s/4 < -0.05,   neutral otherwise.

Each domain is split 50/50, stratified by label, with seed 0 (docs/protocol.md). Taught in lesson 00.
"""

from __future__ import annotations

import ast
import html
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from labkit import assets

DOMAINS: tuple[str, ...] = ("tweets", "movie", "amazon", "nyt")
LABELS: tuple[str, ...] = ("negative", "neutral", "positive")
SIZES: dict[str, int] = {"tweets": 4200, "movie": 10605, "amazon": 3708, "nyt": 5190}
_FILES = {"tweets": "tweets", "movie": "movieReviewSnippets",
          "amazon": "amazonReviewSnippets", "nyt": "nytEditorialSnippets"}
THRESHOLD = 0.05


def check_domain(domain: str) -> str:
    """Return ``domain`` if it is one of :data:`DOMAINS`, else raise a ValueError listing them."""
    if not isinstance(domain, str):
        raise TypeError(f"a domain is a string (one of {', '.join(DOMAINS)}), got {type(domain).__name__}")
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; valid domains are: {', '.join(DOMAINS)}")
    return domain


def _domains(domains: str | Iterable[str] | None) -> list[str]:
    if domains is None:
        return list(DOMAINS)
    if isinstance(domains, str):
        domains = [domains]
    chosen = [check_domain(d) for d in domains]
    if not chosen:
        raise ValueError(f"no domain given; choose from: {', '.join(DOMAINS)}")
    repeated = sorted({d for d in chosen if chosen.count(d) > 1})
    if repeated:
        raise ValueError(f"domain(s) {repeated} given more than once; each sentence must appear once "
                         "(duplicated rows would land on both sides of a split)")
    return chosen


def label_from_score(score: float | np.ndarray, scale: float = 4.0) -> np.ndarray:
    """3-class label from a sentiment score on ``[-scale, scale]`` (``scale=1`` for VADER's compound).

    ``2`` (positive) if ``score/scale > 0.05``, ``0`` (negative) if ``< -0.05``, else ``1`` (neutral).
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.number)):
        raise TypeError(f"scale must be a number, got {type(scale).__name__}")
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive number (4 for human ratings, 1 for VADER), got {scale}")
    s = np.asarray(score, dtype=float) / scale
    if np.isnan(s).any():
        raise ValueError("label_from_score got NaN scores; every item needs a numeric score")
    return np.where(s > THRESHOLD, 2, np.where(s < -THRESHOLD, 0, 1))


def _read_lines(path: Path) -> list[str]:
    """Read a corpus file: strip a UTF-8 byte-order mark, accept CRLF and a missing final newline."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; run `python -m labkit fetch` to (re)fetch the corpora")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not valid UTF-8 ({exc.reason} at byte {exc.start}): the file is "
                         "damaged; run `python -m labkit fetch` to repair the cache") from None
    return [line for line in text.splitlines() if line.strip()]


def _unescape(text: str) -> str:
    """Decode HTML entities; some sentences are escaped twice (``&amp;amp;``), so repeat until stable."""
    for _ in range(3):
        decoded = html.unescape(text)
        if decoded == text:
            break
        text = decoded
    return text


def corpus_dir() -> Path:
    """The folder with the ``*_GroundTruth.txt`` and ``*_anonDataRatings.txt`` files (fetched if needed)."""
    return assets.fetch("vader-corpora", progress=True) / "hutto_ICWSM_2014"


@lru_cache(maxsize=None)
def _load_domain(domain: str) -> pd.DataFrame:
    rows = []
    path = corpus_dir() / f"{_FILES[domain]}_GroundTruth.txt"
    for n, line in enumerate(_read_lines(path), 1):
        parts = line.split("\t", 2)
        if len(parts) != 3:
            raise ValueError(f"{path}:{n}: expected 'id<TAB>score<TAB>text', got {line[:60]!r}")
        rows.append((parts[0].strip(), domain, _unescape(parts[2].strip()), float(parts[1])))
    df = pd.DataFrame(rows, columns=["id", "domain", "text", "score"])
    df["label"] = label_from_score(df["score"].to_numpy())
    if len(df) != SIZES[domain]:
        raise ValueError(f"{path} has {len(df)} sentences, expected {SIZES[domain]}: the file is "
                         "damaged; delete the cache folder and run `python -m labkit fetch`")
    return df


def load(domains: str | Iterable[str] | None = None) -> pd.DataFrame:
    """The corpora as one tidy table (``id, domain, text, score, label``). Taught in lesson 00.

    >>> load("amazon").shape
    (3708, 5)
    """
    frames = [_load_domain(d) for d in _domains(domains)]
    return pd.concat(frames, ignore_index=True).copy()


def split(df: pd.DataFrame, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The protocol's 50/50 split, stratified by label within each domain. Returns ``(train, test)``."""
    if df.empty:
        raise ValueError("cannot split an empty table")
    missing = {"domain", "label"} - set(df.columns)
    if missing:
        raise ValueError(f"split needs the columns 'domain' and 'label'; missing {sorted(missing)}")
    train, test = [], []
    for _, part in df.groupby("domain", sort=False):
        a, b = train_test_split(part, test_size=0.5, stratify=part["label"], random_state=seed)
        train.append(a)
        test.append(b)
    return (pd.concat(train).sort_index(), pd.concat(test).sort_index())


def load_split(domains: str | Iterable[str] | None = None, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``split(load(domains))``: the train and test halves of the chosen domains."""
    return split(load(domains), seed=seed)


def subsample(df: pd.DataFrame, n: int | None, seed: int = 0) -> pd.DataFrame:
    """At most ``n`` rows per domain, stratified by label (``None`` or too large keeps all rows).

    Lessons use it to size CPU runs; the sizes used are printed by the lesson.
    """
    if n is None:
        return df
    if n < 3:
        raise ValueError(f"subsample needs n >= 3 (one per class), got {n}")
    parts = []
    for _, part in df.groupby("domain", sort=False):
        if len(part) <= n:
            parts.append(part)
        else:
            keep, _ = train_test_split(part, train_size=n, stratify=part["label"], random_state=seed)
            parts.append(keep)
    return pd.concat(parts).sort_index()


@lru_cache(maxsize=None)
def _load_ratings(domain: str) -> pd.DataFrame:
    path = corpus_dir() / f"{_FILES[domain]}_anonDataRatings.txt"
    rows = []
    for n, line in enumerate(_read_lines(path), 1):
        parts = line.split("\t")
        if len(parts) != 4:
            raise ValueError(f"{path}:{n}: expected 'id<TAB>mean<TAB>sd<TAB>[ratings]'")
        rows.append((parts[0].strip(), domain, [int(r) for r in ast.literal_eval(parts[3])]))
    return pd.DataFrame(rows, columns=["id", "domain", "ratings"])


def ratings(domains: str | Iterable[str] | None = None) -> pd.DataFrame:
    """Each item's individual rater scores (a list of ints in [-4, 4]; 15 to 20+ raters an item)."""
    return pd.concat([_load_ratings(d) for d in _domains(domains)], ignore_index=True).copy()
