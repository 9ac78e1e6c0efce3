"""The course leaderboard: ``python -m labkit.bench`` runs the course's systems on the full corpora
with the evaluation protocol (docs/protocol.md) and writes ``results/leaderboard.md`` and
``results/leaderboard.json``.

Every system is trained on the training half of a domain (seed 0 split) and tested on the test
half of every domain: the diagonal is in-domain, the rest is the cross-domain matrix. Systems that
need no training (VADER, zero-shot prompting) and the few-shot prompt are scored in-domain. Each
F1 has a 95% percentile-bootstrap interval over the test sentences. Beside them: the paper's
Table 4/5 figures and the individual-human-rater line computed from the rater files.

Runs by hand, not in CI (about an hour on a 2-core CPU; much less on a GPU, which it uses when
there is one). On a CPU the SmolLM2 rows use a stated, seeded subset of the test halves and of the
training labels. Every finished system is cached, so an interrupted run resumes from the first
system it had not finished. ``--quick`` runs everything on a tiny subset (the unit test does).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from labkit import baselines, data, device, features, llm, metrics, models
from labkit.cache import cache_dir, read_file, write_file
from labkit.protocol import PAPER_TABLE4, PAPER_TABLE5

DOMAINS = data.DOMAINS


@dataclass(frozen=True)
class Settings:
    """Sizes of a run (None = the whole half). ``llm_*`` apply to the SmolLM2 rows only."""

    test_n: int | None = None          # test sentences per domain for the non-LLM rows
    train_n: int | None = None         # training sentences per domain for the non-LLM rows
    llm_test_n: int | None = None      # test sentences per domain for the SmolLM2 rows
    llm_train_n: int | None = None     # training labels per domain for SmolLM2 probe and LoRA
    finetune_epochs: int = 2           # MiniLM fine-tuning (max length 64, batch 32, lr 5e-5)
    lora_epochs: int = 2               # SmolLM2 LoRA (r 8 on q_proj/v_proj, batch 8, lr 1e-3)
    shots: int = 4                     # few-shot examples drawn from the domain's training half
    prior_n: int = 100                 # unlabelled training sentences for the calibration prior
    probe_layers: tuple[int, ...] = tuple(range(0, 31, 3))  # SmolLM2 layers the probe chooses from
    n_boot: int = 1000

    @classmethod
    def for_device(cls, gpu: bool, quick: bool = False) -> "Settings":
        if quick:
            return cls(test_n=8, train_n=24, llm_test_n=4, llm_train_n=8, finetune_epochs=1, lora_epochs=1,
                       shots=2, prior_n=4, probe_layers=(15, 30), n_boot=200)
        return cls() if gpu else cls(llm_test_n=150, llm_train_n=200)


#: what a system returns: {train domain or "-": {test domain: predicted labels}}
Predictions = dict[str, dict[str, list[int]]]


def _part(df: pd.DataFrame, n: int | None) -> pd.DataFrame:
    return df if n is None else data.subsample(df, n, seed=0)


def _by_domain(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {d: df[df["domain"] == d] for d in DOMAINS}


# ---- the systems -------------------------------------------------------------------------------------
def vader(train: dict, test: dict, s: Settings) -> Predictions:
    return {"-": {d: baselines.vader_predict(t.text.tolist()).tolist() for d, t in test.items()}}


def tfidf(train: dict, test: dict, s: Settings) -> Predictions:
    out = {}
    for src, tr in train.items():
        model = baselines.fit_text(baselines.logistic_regression(C=10.0), tr)
        out[src] = {d: model.predict(t.text).tolist() for d, t in test.items()}
        out[src]["_trainable"] = int(model[-1].coef_.size + model[-1].intercept_.size)
    return out


def minilm_probe(train: dict, test: dict, s: Settings) -> Predictions:
    from sklearn.linear_model import LogisticRegression
    out = {}
    for src, tr in train.items():
        clf = LogisticRegression(max_iter=3000).fit(features.embed(tr.text.tolist()), tr.label)
        out[src] = {d: clf.predict(features.embed(t.text.tolist())).tolist() for d, t in test.items()}
        out[src]["_trainable"] = int(clf.coef_.size + clf.intercept_.size)
    return out


def stacked_ensemble(train: dict, test: dict, s: Settings) -> Predictions:
    """Lesson 11's stacking: logistic regressions on VADER's four scores, on TF-IDF (C = 10) and on frozen MiniLM
    embeddings, combined by a logistic regression fitted on their 5-fold out-of-fold probabilities."""
    from sklearn.linear_model import LogisticRegression
    from labkit import ensemble
    members = [(lambda: LogisticRegression(max_iter=2000), lambda df: baselines.vader_features(df.text)),
               (lambda: baselines.logistic_regression(C=10.0), lambda df: df.text.to_numpy()),
               (lambda: LogisticRegression(max_iter=3000), lambda df: features.embed(df.text.tolist()))]
    head = lambda model: model[-1] if hasattr(model, "steps") else model

    def three(P: np.ndarray, classes) -> np.ndarray:   # a domain may lack a class (e.g. --quick): its column is 0
        full = np.zeros((len(P), len(data.LABELS)))
        full[:, np.asarray(classes)] = P
        return full

    out = {}
    for src, tr in train.items():
        y = tr.label.to_numpy()
        oof = [three(ensemble.out_of_fold_proba(make(), X(tr), y, folds=5, seed=0), np.unique(y)) for make, X in members]
        fitted = [make().fit(X(tr), y) for make, X in members]
        meta = ensemble.fit_stacker(oof, y)
        out[src] = {d: meta.classes_[ensemble.stack(meta, [three(m.predict_proba(X(t)), m.classes_)
                                                           for m, (_, X) in zip(fitted, members)]).argmax(1)].tolist()
                    for d, t in test.items()}
        out[src]["_trainable"] = int(sum(head(m).coef_.size + head(m).intercept_.size for m in fitted + [meta]))
    return out


def minilm_finetuned(train: dict, test: dict, s: Settings) -> Predictions:
    from labkit import classifier, train as training
    out = {}
    for src, tr in train.items():
        device.seed_everything(0)
        tokenizer, net = classifier.load_classifier()
        loader = classifier.make_loader(tr.text, tr.label, tokenizer, max_length=64, batch_size=32,
                                        shuffle=True, seed=0)
        training.fit(net, loader, epochs=s.finetune_epochs, lr=5e-5, warmup=0.1, progress=True)
        out[src] = {d: training.predict(net, classifier.make_loader(t.text, None, tokenizer, max_length=64,
                                                                    batch_size=64), classes=True).tolist()
                    for d, t in test.items()}
        out[src]["_trainable"] = models.count_parameters(net, trainable_only=True)
    return out


def distilled_student(train: dict, test: dict, s: Settings) -> Predictions:
    """Lesson 12: MiniLM's first 2 layers (pretrained, new head) distilled on the domain's training half (its labels
    unused: soft targets only, T = 2, alpha = 1; 1 epoch, lr 2e-4, warm-up 0.1, batch 32, max length 64) from a
    teacher fine-tuned exactly as "MiniLM fine-tuned (all layers)", trained through ``runcache.fit_cached`` so a
    re-run reads the teacher (and the student) back."""
    from labkit import classifier, distill, runcache, train as training
    out = {}
    for src, tr in train.items():
        device.seed_everything(0)
        tokenizer, teacher = classifier.load_classifier()
        loader = classifier.make_loader(tr.text, tr.label, tokenizer, max_length=64, batch_size=32, shuffle=True, seed=0)
        runcache.fit_cached(teacher, loader, epochs=s.finetune_epochs, lr=5e-5, warmup=0.1, progress=True)
        logits = training.predict(teacher, classifier.make_loader(tr.text, None, tokenizer, max_length=64, batch_size=64))
        del teacher
        device.seed_everything(0)
        _, net = distill.student(2)
        transfer = distill.transfer_loader(tr.text, logits, tokenizer, max_length=64, batch_size=32, shuffle=True, seed=0)
        runcache.fit_cached(net, transfer, epochs=1, lr=2e-4, warmup=0.1, loss_fn=distill.DistillationLoss(T=2.0, alpha=1.0),
                            progress=True)
        out[src] = {d: training.predict(net, classifier.make_loader(t.text, None, tokenizer, max_length=64,
                                                                    batch_size=64), classes=True).tolist()
                    for d, t in test.items()}
        out[src]["_trainable"] = models.count_parameters(net, trainable_only=True)
    return out


def zero_shot(train: dict, test: dict, s: Settings) -> Predictions:
    tok, lm = models.load_llm()
    return {"-": {d: llm.label_probabilities(tok, lm, t.text.tolist(), progress=True).argmax(1).tolist()
                  for d, t in test.items()}}


def zero_shot_calibrated(train: dict, test: dict, s: Settings) -> Predictions:
    tok, lm = models.load_llm()
    out = {}
    for d, t in test.items():
        unlabelled = train[d].sample(min(s.prior_n, len(train[d])), random_state=0).text.tolist()
        prior = llm.label_probabilities(tok, lm, unlabelled).mean(0)
        out[d] = llm.calibrate(llm.label_probabilities(tok, lm, t.text.tolist(), progress=True), prior).argmax(1).tolist()
    return {"-": out}


def few_shot(train: dict, test: dict, s: Settings) -> Predictions:
    tok, lm = models.load_llm()
    out = {}
    for d, t in test.items():
        shots = train[d].sample(s.shots, random_state=0)
        probs = llm.label_probabilities(tok, lm, t.text.tolist(), examples=list(zip(shots.text, shots.label)),
                                        progress=True)
        out[d] = probs.argmax(1).tolist()
    return {"-": out}


def smollm_probe(train: dict, test: dict, s: Settings) -> Predictions:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    tok, lm = models.load_llm()
    layers = list(s.probe_layers)
    states = lambda df: llm.hidden_states(tok, lm, df.text.tolist(), layers=layers, max_length=256, progress=True)
    tests = {d: states(t) for d, t in test.items()}
    out = {}
    for src, tr in train.items():
        X, y = states(tr), tr.label.to_numpy()
        cv = max(2, min(5, int(np.bincount(y, minlength=3).min())))   # folds: at most the rarest class's count
        probe = lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))  # layers differ in scale
        score = lambda i, p: cross_val_score(probe(), X[:, i, p], y, cv=cv, scoring="f1_weighted").mean()
        i, p = max(((i, p) for i in range(len(layers)) for p in range(len(llm.POOLINGS))), key=lambda ip: score(*ip))
        clf = probe().fit(X[:, i, p], y)
        out[src] = {d: clf.predict(H[:, i, p]).tolist() for d, H in tests.items()}
        out[src]["_choice"] = [layers[i], llm.POOLINGS[p]]
        out[src]["_trainable"] = int(clf[-1].coef_.size + clf[-1].intercept_.size)
    return out


def smollm_lora(train: dict, test: dict, s: Settings) -> Predictions:
    from labkit import train as training
    out = {}
    for src, tr in train.items():
        device.seed_everything(0)
        tok, lm = models.load_llm()
        net = llm.LabelWordClassifier(llm.add_lora(lm), llm.label_token_ids(tok))
        loader = llm.prompt_loader(tok, tr.text.tolist(), tr.label, batch_size=8, shuffle=True, seed=0)
        training.fit(net, loader, epochs=s.lora_epochs, lr=1e-3, warmup=0.1, progress=True)
        trainable = models.count_parameters(net, trainable_only=True)
        merged = net.lm.merge_and_unload().eval()
        out[src] = {d: llm.label_probabilities(tok, merged, t.text.tolist(), progress=True).argmax(1).tolist()
                    for d, t in test.items()}
        out[src]["_trainable"] = trainable
    return out


#: name -> (function, uses the LLM subset); a system records its trainable parameters as "_trainable"
SYSTEMS: dict[str, tuple[Callable, bool]] = {
    "VADER 3.3.2 (rules, no training)": (vader, False),
    "TF-IDF + logistic regression": (tfidf, False),
    "MiniLM probe (frozen, mean-pooled)": (minilm_probe, False),
    "MiniLM fine-tuned (all layers)": (minilm_finetuned, False),
    "Stacked ensemble (VADER + TF-IDF + MiniLM probe)": (stacked_ensemble, False),
    "Distilled student (2-layer MiniLM)": (distilled_student, False),
    "SmolLM2 zero-shot": (zero_shot, True),
    "SmolLM2 zero-shot, calibrated prior": (zero_shot_calibrated, True),
    "SmolLM2 few-shot": (few_shot, True),
    "SmolLM2 probe (hidden states)": (smollm_probe, True),
    "SmolLM2 LoRA (r 8, q/v)": (smollm_lora, True),
}


# ---- running, caching, scoring ---------------------------------------------------------------------------
def _entry(name: str, settings: Settings, test: pd.DataFrame, train: pd.DataFrame) -> Path:
    key = json.dumps({"system": name, "settings": asdict(settings), "test": features.texts_hash(test.text.tolist()),
                      "train": features.texts_hash(train.text.tolist()), "device": str(device.pick_device()),
                      "version": 1}, sort_keys=True)
    return cache_dir() / "bench" / f"{features.texts_hash([key])}.json"


def run_system(name: str, settings: Settings, train: pd.DataFrame, test: pd.DataFrame) -> dict:
    """One system's predictions and wall time, read from the cache when this run already finished it."""
    path = _entry(name, settings, test, train)
    if (payload := read_file(path)) is not None:
        return {**json.loads(payload), "cached": True}
    fn = SYSTEMS[name][0]
    start = time.perf_counter()
    preds = fn(_by_domain(train), _by_domain(test), settings)
    result = {"predictions": preds, "seconds": time.perf_counter() - start}
    write_file(path, json.dumps(result).encode("utf-8"))
    return {**result, "cached": False}


def interval(y: np.ndarray, pred: np.ndarray, n_boot: int) -> tuple[float, float, float]:
    """Weighted F1 and its 95% percentile-bootstrap interval over the test sentences."""
    f1 = metrics.weighted_f1(y, pred)
    boot = metrics.resampled_f1(y, pred, metrics.bootstrap_counts(len(y), n_boot, seed=0), 3)
    return f1, float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))


def human_rater(test: pd.DataFrame, n_boot: int, draws: int = 3) -> dict[str, tuple[float, float, float]]:
    """The individual human rater: for each test sentence one rater drawn at random, labelled from their
    own score, against the label of the mean of the OTHER raters; mean over ``draws`` draws, with a
    bootstrap interval over sentences (the same draw counts for every draw)."""
    ratings = data.ratings().set_index(["domain", "id"])["ratings"]
    out = {}
    for d, part in test.groupby("domain"):
        lists = [ratings.loc[(d, i)] for i in part.id]
        counts = metrics.bootstrap_counts(len(lists), n_boot, seed=0)
        f1s, boots = [], []
        for seed in range(draws):
            rng = np.random.default_rng(seed)
            pick = [int(rng.integers(len(r))) for r in lists]
            one = data.label_from_score(np.array([r[k] for r, k in zip(lists, pick)], dtype=float))
            rest = data.label_from_score(np.array([(sum(r) - r[k]) / (len(r) - 1) for r, k in zip(lists, pick)]))
            f1s.append(metrics.weighted_f1(rest, one))
            boots.append(metrics.resampled_f1(rest, one, counts, 3))
        boot = np.mean(boots, axis=0)
        out[d] = (float(np.mean(f1s)), float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975)))
    return out


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU"


def _commit() -> str:
    """The commit the code came from, marked when the working tree differs from it (results/ aside:
    rewriting the leaderboard is what this command does)."""
    git = lambda *args: subprocess.run(["git", *args], capture_output=True, text=True,
                                       cwd=Path(__file__).resolve().parents[1], timeout=10).stdout.strip()
    try:
        head = git("rev-parse", "--short", "HEAD") or "unknown"
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results")
        return head + (" with uncommitted changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run(settings: Settings, systems: list[str] | None = None, log: Callable[[str], None] = print) -> dict:
    """Run (or resume) every system and return the leaderboard as a plain dict (see :func:`markdown`)."""
    train_all, test_all = data.load_split()
    plain_train, plain_test = _part(train_all, settings.train_n), _part(test_all, settings.test_n)
    llm_train, llm_test = _part(train_all, settings.llm_train_n), _part(test_all, settings.llm_test_n)
    names = list(SYSTEMS) if systems is None else systems
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown:
        raise ValueError(f"unknown systems {unknown}; choose from {list(SYSTEMS)}")
    board = {"settings": asdict(settings), "systems": {}, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    start = time.perf_counter()
    for k, name in enumerate(names, 1):
        fn, uses_llm = SYSTEMS[name]
        tr, te = (llm_train, llm_test) if uses_llm else (plain_train, plain_test)
        log(f"[{k}/{len(names)}] {name}: training on {len(tr)} sentences, testing on {len(te)} ...")
        result = run_system(name, settings, tr, te)
        cells = {}
        for src, by_test in result["predictions"].items():
            for d, pred in by_test.items():
                if d.startswith("_"):
                    continue
                y = te[te["domain"] == d].label.to_numpy()
                cells[f"{src}->{d}"] = interval(y, np.asarray(pred), settings.n_boot)
        choices = {src: v["_choice"] for src, v in result["predictions"].items() if "_choice" in v}
        params = sorted({v.get("_trainable", 0) for v in result["predictions"].values()})
        board["systems"][name] = {"cells": cells, "seconds": result["seconds"], "trainable": params,
                                  "test_per_domain": te.groupby("domain").size().to_dict(),
                                  "train_per_domain": tr.groupby("domain").size().to_dict(),
                                  "llm_subset": uses_llm, "from cache": result["cached"],
                                  **({"probe_choice": choices} if choices else {})}
        log(f"      done in {result['seconds']:.0f} s (as first computed)")
    board["human rater"] = human_rater(plain_test, settings.n_boot)
    dev = device.pick_device()
    board["machine"] = {"platform": platform.platform(), "python": platform.python_version(),
                        "torch": torch.__version__, "device": str(dev),
                        "device name": torch.cuda.get_device_name(0) if dev.type == "cuda" else _cpu_name(),
                        "cpu threads": torch.get_num_threads()}
    board["commit"], board["wall seconds"] = _commit(), time.perf_counter() - start
    board["majority"] = {d: metrics.weighted_f1(t.label, np.full(len(t), np.bincount(_by_domain(plain_train)[d].label).argmax()))
                         for d, t in _by_domain(plain_test).items()}
    return board


def _params(counts: list[int]) -> str:
    """Trainable parameters: one number, or the range over training domains (TF-IDF's vocabulary differs)."""
    return f"{counts[0]:,}" if counts[0] == counts[-1] else f"{counts[0]:,}–{counts[-1]:,}"


def _cell(c) -> str:
    return f"{c[0]:.3f} [{c[1]:.2f}, {c[2]:.2f}]"


def markdown(board: dict) -> str:
    """The leaderboard as Markdown: in-domain table with the paper and human lines, each trainable
    system's cross-domain matrix beside the paper's best Table 5 cell, and the gaps."""
    s = board["settings"]
    L = ["# Leaderboard", "",
         "Written by `python -m labkit.bench` (do not edit by hand). Weighted F1 on the test half of each domain "
         "(seed-0 50/50 split), with a 95% percentile-bootstrap interval over the test sentences. One run per "
         "system (seed 0); the intervals cover which test sentences were drawn, not training randomness.", ""]
    llm_n = s["llm_test_n"]
    L += [f"Machine: {board['machine']['device name']} ({board['machine']['device']}, {board['machine']['cpu threads']} "
          f"threads), Python {board['machine']['python']}, torch {board['machine']['torch']}; commit `{board['commit']}`; "
          f"started {board['started']}; wall time of this invocation {board['wall seconds'] / 60:.1f} min "
          f"({sum(r.get('from cache', False) for r in board['systems'].values())} of {len(board['systems'])} systems "
          f"read back from the cache); the systems' "
          f"own times (the seconds column, kept from when each was first computed) add up to "
          f"{sum(r['seconds'] for r in board['systems'].values()) / 60:.1f} min." + (f" Note: {board['note']}" if board.get("note") else ""), "",
          "Sizes: " + (f"**the SmolLM2 rows use a seeded subset: {llm_n} test sentences per domain and "
                       f"{s['llm_train_n']} training labels per domain** (`data.subsample(..., seed=0)`, stratified); "
                       if llm_n is not None else "all rows use the whole halves; ")
          + f"other rows use {'the whole halves' if s['test_n'] is None else str(s['test_n']) + ' test sentences per domain'}. "
          f"Settings: {json.dumps(s)}.", ""]
    header = "| system | " + " | ".join(DOMAINS) + " | trainable parameters | seconds |"
    L += ["## In-domain (trained and tested on the same domain)", "", header, "|" + "---|" * (len(DOMAINS) + 3)]
    for name, r in board["systems"].items():
        cells = [r["cells"].get(f"{d}->{d}") or r["cells"].get(f"-->{d}") for d in DOMAINS]
        mark = " *" if r["llm_subset"] and llm_n is not None else ""
        L.append(f"| {name}{mark} | " + " | ".join(_cell(c) if c else "–" for c in cells)
                 + f" | {_params(r['trainable'])} | {r['seconds']:.0f} |")
    L.append("| majority class | " + " | ".join(f"{board['majority'][d]:.3f}" for d in DOMAINS) + " | – | – |")
    L.append("| individual human rater (computed here) | "
             + " | ".join(_cell(board["human rater"][d]) for d in DOMAINS) + " | – | – |")
    for col in PAPER_TABLE4.columns:
        L.append(f"| paper Table 4: {col} (whole corpus) | " + " | ".join(f"{PAPER_TABLE4.loc[d, col]:.2f}" for d in DOMAINS) + " | – | – |")
    paper = {(src, d): float(PAPER_TABLE5.loc[[i for i in PAPER_TABLE5.index if f"({src})" in i], d].max())
             for src in DOMAINS for d in DOMAINS}        # the paper's best Table 5 model per (trained on, tested on)
    best5 = {d: paper[(d, d)] for d in DOMAINS}
    L.append("| paper Table 5: best classic model trained on that domain | " + " | ".join(f"{best5[d]:.2f}" for d in DOMAINS) + " | – | – |")
    if llm_n is not None:
        L += ["", f"\\* F1 and seconds on the SmolLM2 subset ({llm_n} test sentences and {s['llm_train_n']} training "
              "labels per domain); the majority row is the whole half's. Compare these rows with the others only "
              "through their intervals."]
    L += ["", "The individual human rater (computed here): for each test sentence one rater drawn at random, scored "
          "against the label of the mean of the *other* raters; mean of 3 draws, interval over sentences. The systems "
          "are scored against the label of the mean of all raters, so the two use slightly different references.",
          "", "Systems: VADER with the paper's thresholds on its compound score; TF-IDF (1–2-grams) + logistic "
          "regression (C = 10); MiniLM probe = logistic regression on frozen mean-pooled MiniLM embeddings; MiniLM "
          f"fine-tuned = all layers, {s['finetune_epochs']} epochs, lr 5e-5, max length 64; SmolLM2 zero-shot = "
          "label-word scoring with the chat template (lesson 10); calibrated = divided by the mean label "
          f"probability over {s['prior_n']} unlabelled training sentences of the domain; few-shot = ONE draw "
          f"(seed 0) of {s['shots']} examples from the domain's training half, uncalibrated (lesson 10 shows such "
          "draws vary a lot); SmolLM2 probe = standardised logistic regression on the hidden state of a layer and "
          "pooling chosen by 5-fold cross-validation on the training labels; LoRA = r 8 on q_proj/v_proj, "
          f"{s['lora_epochs']} epochs, lr 1e-3, batch 8, label-word loss."
          + (" Distilled student = MiniLM's first 2 layers (pretrained, new head) trained for 1 epoch (lr 2e-4) on the "
             "soft targets (T = 2, no hard labels) of a teacher fine-tuned like the MiniLM row, over the training half "
             "(lesson 12)." if "Distilled student (2-layer MiniLM)" in board["systems"] else "")
          + (" Stacked ensemble = logistic regressions on VADER's four scores, on TF-IDF and on frozen MiniLM "
             "embeddings, combined by a logistic regression fitted on their 5-fold out-of-fold probabilities "
             "(lesson 11)." if "Stacked ensemble (VADER + TF-IDF + MiniLM probe)" in board["systems"] else "")]
    paper_best = {d: max(best5[d], float(PAPER_TABLE4.loc[d, "VADER (2014)"])) for d in DOMAINS}
    L += ["", "## Gaps", "", "The paper's best system per domain is the better of its VADER (Table 4) and its best classic "
          "model trained on that domain (Table 5). " + ("Only rows scored on the whole test halves are ranked here; "
          "the SmolLM2 rows (subset) are in the table above." if llm_n is not None else ""), "",
          "| domain | our best in-domain system | F1 | − paper's best system | whole interval above it? "
          "| − human rater (point estimates, no test) |", "|---|---|---|---|---|---|"]
    for d in DOMAINS:
        scored = [(r["cells"].get(f"{d}->{d}") or r["cells"].get(f"-->{d}"), n) for n, r in board["systems"].items()]
        scored = [(c, n) for c, n in scored if c and not (board["systems"][n]["llm_subset"] and llm_n is not None)]
        if scored:
            c, n = max(scored, key=lambda cn: cn[0][0])
            L.append(f"| {d} | {n} | {_cell(c)} | {c[0] - paper_best[d]:+.3f} | {'yes' if c[1] > paper_best[d] else 'no'} "
                     f"| {c[0] - board['human rater'][d][0]:+.3f} |")
    L += ["", "## Cross-domain (rows: trained on; columns: tested on)", ""]
    for name, r in board["systems"].items():
        if not any(k.split("->")[0] in DOMAINS and k.split("->")[0] != k.split("->")[1] for k in r["cells"]):
            continue
        L += [f"### {name}" + (" *" if r["llm_subset"] and llm_n is not None else ""), "",
              "| trained on | " + " | ".join(DOMAINS) + " |", "|" + "---|" * (len(DOMAINS) + 1)]
        beats = 0
        for src in DOMAINS:
            row = [r["cells"][f"{src}->{d}"] for d in DOMAINS]
            beats += sum(c[1] > paper[(src, d)] for c, d in zip(row, DOMAINS))
            L.append(f"| {src} | " + " | ".join(_cell(c) for c in row) + " |")
        L += ["", f"Cells whose whole interval is above the paper's best Table 5 model for that cell: {beats} of "
              f"{len(DOMAINS) ** 2}" + (" (on the subset: wider intervals, so not comparable with the whole-half "
                                        "rows' counts)." if r["llm_subset"] and llm_n is not None else ".") + (f" Probe choice (layer, pooling) per training domain, by cross-validation: "
                                         f"{r['probe_choice']}." if "probe_choice" in r else ""), ""]
    L += ["## The paper's best Table 5 model per cell (for comparison)", "",
          "| trained on | " + " | ".join(DOMAINS) + " |", "|" + "---|" * (len(DOMAINS) + 1)]
    L += [f"| {src} | " + " | ".join(f"{paper[(src, d)]:.2f}" for d in DOMAINS) + " |" for src in DOMAINS]
    return "\n".join(L) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny seeded subset (minutes), e.g. to test the bench")
    parser.add_argument("--out", default="results", help="folder for leaderboard.md and leaderboard.json")
    parser.add_argument("--system", action="append", choices=list(SYSTEMS), help="run only these (repeatable)")
    parser.add_argument("--note", default="", help="a sentence about this run for the table (e.g. other load on the machine)")
    args = parser.parse_args(argv)
    settings = Settings.for_device(device.is_gpu(), args.quick)
    board = run(settings, args.system, log=lambda m: print(m, flush=True))
    board["note"] = args.note
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "leaderboard.json").write_text(json.dumps(board, indent=1) + "\n", encoding="utf-8")
    (out / "leaderboard.md").write_text(markdown(board), encoding="utf-8")
    print(f"wrote {out / 'leaderboard.md'} and {out / 'leaderboard.json'} in {board['wall seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
