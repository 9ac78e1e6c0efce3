"""Benchmark: labkit.features.embed against sentence-transformers on the same model, texts and CPU.

Not part of CI. Both run in this process on all 23,703 sentences (or ``--limit N``), with the same
maximum length and batch size; labkit's cache is disabled. Prints sentences/s (wall clock and per
CPU-second, since other processes may share the machine), the throughput ratio, the load average
before and after, and checks that the embeddings agree: sentence-transformers' all-MiniLM pipeline
ends with an L2 normalisation, so labkit's mean-pooled vectors are normalised before comparing.

    python benchmarks/embed_speed.py                 # full run, a few minutes on 2 CPU cores
    python benchmarks/embed_speed.py --limit 1000    # quick run
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from labkit import data, features, models


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="use only the first N sentences")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--st-first", action="store_true", help="run sentence-transformers first")
    args = parser.parse_args()

    from sentence_transformers import SentenceTransformer

    texts = data.load()["text"].tolist()
    if args.limit:
        texts = texts[: args.limit]
    n = len(texts)
    print(f"{n:,} sentences, max_length {args.max_length}, batch {args.batch_size}, "
          f"torch {torch.__version__} with {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")

    st = SentenceTransformer(models.encoder_path(), device="cpu")
    st.max_seq_length = args.max_length
    features.encoder("cpu")  # load once, outside the timing

    def ours():
        return features.embed(texts, max_length=args.max_length, batch_size=args.batch_size,
                              cache=False, device="cpu")

    def theirs():
        return st.encode(texts, batch_size=args.batch_size, convert_to_numpy=True)

    # warm-up (first-call overheads of both) on a few sentences
    features.embed(texts[:64], max_length=args.max_length, cache=False, device="cpu")
    st.encode(texts[:64], batch_size=args.batch_size)

    load_before = os.getloadavg()
    runs = [("sentence-transformers", theirs), ("labkit.features.embed", ours)]
    if not args.st_first:
        runs.reverse()
    results = {}
    for name, fn in runs:
        results[name] = timed(fn)
        _, wall, cpu = results[name]
        print(f"{name:24s} {wall:7.1f} s wall  {n / wall:7.1f} sentences/s   "
              f"({cpu:7.1f} CPU-s, {n / cpu:6.1f} sentences per CPU-second)")
    load_after = os.getloadavg()

    mine, w_ours, c_ours = results["labkit.features.embed"]
    ref, w_st, c_st = results["sentence-transformers"]
    unit = mine / np.linalg.norm(mine, axis=1, keepdims=True)
    cos = (unit * ref).sum(1) / np.linalg.norm(ref, axis=1)
    print(f"cosine(labkit mean-pooled, normalised; sentence-transformers): min {cos.min():.6f}, "
          f"mean {cos.mean():.6f}")
    print(f"throughput ratio labkit / sentence-transformers: {w_st / w_ours:.3f} (wall), "
          f"{c_st / c_ours:.3f} (CPU time)")
    print(f"load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f} on "
          f"{os.cpu_count()} CPUs -- above the CPU count means other processes shared the machine")
    assert cos.min() >= 0.999, "labkit's embeddings disagree with sentence-transformers"


if __name__ == "__main__":
    main()
