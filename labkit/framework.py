"""The capstone's transfer framework: one configuration file describes a run, one command executes,
records and judges it::

    python -m labkit run configs/tfidf_tweets.toml        # 0 = promoted, 3 = rejected by the gate

The file (TOML or YAML) names the data, the transfer method, the evaluation, the budget and the
**gate** (the thresholds a model must clear before anyone deploys it). :func:`load_config` checks it
with pydantic and says what is wrong and where; :func:`run` trains the method once per seed through
the same ``labkit`` pieces the lessons taught (``baselines``, ``features``, ``classifier``,
``train``), scores every test domain with a bootstrap interval and the majority line, times one
sentence at a time, and :func:`gate` decides promote / reject and says why. ``labkit.tracking``
records the run in MLflow. Under ``accelerate launch --num_processes N`` the torch methods train data
parallel (each process a share of every batch, the gradients averaged) and give the metrics of one
process; only the first process records.

Taught in lesson 13.
"""

from __future__ import annotations

import os
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from labkit import baselines, data, device, features, metrics

METHODS = ("vader", "tfidf", "minilm_probe", "minilm_head", "minilm_finetune")


class ConfigError(ValueError):
    """A configuration file that cannot be read or does not describe a valid run."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)  # a misspelt key is an error, not a silent default


def _domains(value: list[str]) -> list[str]:
    if len(set(value)) != len(value):
        raise ValueError(f"a domain is listed twice: {value}")
    return [data.check_domain(d) for d in value]


class DataConfig(_Strict):
    train_domains: list[str] = Field(min_length=1, description="domains whose training halves give the labels")
    test_domains: list[str] = Field(min_length=1, description="domains whose test halves are scored")
    train_n: int | None = Field(None, ge=10, description="labelled sentences drawn per training domain (none = all)")
    test_n: int | None = Field(None, ge=10, description="test sentences per domain (none = the whole test half)")
    split_seed: int = Field(0, ge=0, description="the train/test split (0 = the course's split)")

    _check_domains = field_validator("train_domains", "test_domains")(_domains)


class ModelConfig(_Strict):
    method: Literal[METHODS]
    C: float = Field(10.0, gt=0, description="inverse regularisation of a logistic regression (tfidf, minilm_probe)")
    epochs: int = Field(2, ge=1, le=200, description="passes over the labels (minilm_head, minilm_finetune)")
    lr: float = Field(5e-5, gt=0, lt=1, description="learning rate (minilm_head, minilm_finetune)")
    batch_size: int = Field(32, ge=1, le=4096, description="sentences per optimizer step, over all processes")
    max_length: int = Field(64, ge=8, le=512, description="tokens kept per sentence (minilm_finetune)")


class EvaluationConfig(_Strict):
    seeds: list[int] = Field([0, 1, 2], description="one training draw and run per seed (at least 3)")
    n_boot: int = Field(1000, ge=100, description="bootstrap resamples of the test sentences")
    latency_sentences: int = Field(20, ge=1, le=1000, description="sentences timed one at a time")

    @field_validator("seeds")
    @classmethod
    def _three_seeds(cls, value: list[int]) -> list[int]:
        if len(set(value)) < 3:
            raise ValueError(f"the evidence standard needs at least 3 different seeds, got {value}")
        return value


class BudgetConfig(_Strict):
    max_minutes: float = Field(30.0, gt=0, description="stop starting new seeds after this; the gate then rejects")
    price_per_hour: float = Field(0.0, ge=0, description="what an hour of this device costs, for the cost figure")


class GateConfig(_Strict):
    min_f1: float = Field(0.0, ge=0, le=1, description="mean weighted F1 every test domain must reach")
    min_f1_per_domain: dict[str, float] = Field({}, description="stricter thresholds for some domains")
    on_lower_bound: bool = Field(False, description="apply the F1 thresholds to the interval's lower end")
    beat_majority: bool = Field(True, description="the interval of F1 − majority F1 must lie above 0 everywhere")
    max_latency_ms: float | None = Field(None, gt=0, description="median milliseconds for one sentence")

    @field_validator("min_f1_per_domain")
    @classmethod
    def _known(cls, value: dict[str, float]) -> dict[str, float]:
        for d, f1 in value.items():
            data.check_domain(d)
            if not 0 <= f1 <= 1:
                raise ValueError(f"threshold for {d} must be in [0, 1], got {f1}")
        return value


class RunConfig(_Strict):
    """One run: ``name`` and the five sections (every key has a default except the data's domains and
    the model's method)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    description: str = ""
    experiment: str = Field("transfer-lab", min_length=1, description="the tracker's experiment (a group of runs)")
    data: DataConfig
    model: ModelConfig
    evaluation: EvaluationConfig = EvaluationConfig()
    budget: BudgetConfig = BudgetConfig()
    gate: GateConfig = GateConfig()

    @model_validator(mode="after")
    def _gate_domains_are_tested(self) -> "RunConfig":
        extra = set(self.gate.min_f1_per_domain) - set(self.data.test_domains)
        if extra:
            raise ValueError(f"gate.min_f1_per_domain names {sorted(extra)}, which data.test_domains does not test")
        return self


def _explain(exc: ValidationError, source: str) -> ConfigError:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        got = "" if err["type"] == "missing" else f" (got {err['input']!r:.60})"
        lines.append(f"  {where}: {err['msg']}{got}")
    return ConfigError(f"{source} is not a valid run configuration:\n" + "\n".join(lines)
                       + "\nThe keys and their meaning: docs/framework.md; working examples: configs/.")


def parse_config(text: str, fmt: str = "toml", source: str = "the configuration") -> RunConfig:
    """A :class:`RunConfig` from TOML or YAML text, or a :class:`ConfigError` naming every problem."""
    try:
        if fmt == "toml":
            raw = tomllib.loads(text)
        elif fmt in ("yaml", "yml"):
            import yaml
            raw = yaml.safe_load(text)
        else:
            raise ConfigError(f"unknown configuration format {fmt!r}: use toml or yaml")
    except (tomllib.TOMLDecodeError, ImportError) as exc:
        raise ConfigError(f"{source} is not valid {fmt.upper()}: {exc}") from None
    except Exception as exc:  # yaml.YAMLError without importing yaml up front
        raise ConfigError(f"{source} is not valid {fmt.upper()}: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source} must be a table of keys (name, data, model, ...), got {type(raw).__name__}")
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise _explain(exc, source) from None


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a ``.toml``, ``.yaml`` or ``.yml`` run configuration."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no configuration file at {path}; the examples are in configs/ (e.g. configs/tfidf_tweets.toml)")
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("toml", "yaml", "yml"):
        raise ConfigError(f"{path}: a configuration is a .toml, .yaml or .yml file")
    return parse_config(path.read_text(encoding="utf-8"), fmt, source=str(path))


# ---- the methods: each trains on one labelled table and returns (predict, trainable parameters) ----------
Predict = Callable[[list[str], bool], np.ndarray]   # (texts, use the embedding cache) -> class ids


def world_size() -> int:
    """How many processes train together (``accelerate launch`` / ``torchrun`` set ``WORLD_SIZE``)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _vader(train: pd.DataFrame, m: ModelConfig, seed: int) -> tuple[Predict, int]:
    return (lambda texts, cache=True: baselines.vader_predict(texts)), 0


def _tfidf(train: pd.DataFrame, m: ModelConfig, seed: int) -> tuple[Predict, int]:
    model = baselines.fit_text(baselines.logistic_regression(C=m.C), train)
    return (lambda texts, cache=True: model.predict(texts)), int(model[-1].coef_.size + model[-1].intercept_.size)


def _minilm_probe(train: pd.DataFrame, m: ModelConfig, seed: int) -> tuple[Predict, int]:
    from sklearn.linear_model import LogisticRegression
    clf = LogisticRegression(C=m.C, max_iter=3000).fit(features.embed(train.text.tolist()), train.label)
    return (lambda texts, cache=True: clf.predict(features.embed(texts, cache=cache))), int(clf.coef_.size + clf.intercept_.size)


def _share(m: ModelConfig) -> int:
    """Each process's batch: the configured batch split evenly, so N processes take the same steps as one."""
    if m.batch_size % world_size():
        raise ConfigError(f"model.batch_size {m.batch_size} does not split evenly over {world_size()} processes")
    return m.batch_size // world_size()


def _minilm_head(train: pd.DataFrame, m: ModelConfig, seed: int) -> tuple[Predict, int]:
    """A linear softmax head on frozen MiniLM sentence vectors, trained by ``train.fit`` (data parallel
    under a launcher). The rows are shuffled once by the seed and cut to whole batches, so every
    process count sees the same batches in the same order."""
    from torch.utils.data import DataLoader, TensorDataset
    from labkit import train as training
    order = np.random.default_rng(seed).permutation(len(train))
    order = order[: len(order) // m.batch_size * m.batch_size]
    if len(order) == 0:
        raise ConfigError(f"model.batch_size {m.batch_size} is larger than the {len(train)} labelled sentences")
    X = torch.tensor(features.embed(train.text.tolist()), dtype=torch.float32)[order]
    y = torch.tensor(train.label.to_numpy()[order])
    torch.manual_seed(seed)
    head = torch.nn.Linear(X.shape[1], 3)
    loader = DataLoader(TensorDataset(X, y), batch_size=_share(m), shuffle=False)
    training.fit(head, loader, epochs=m.epochs, lr=m.lr, progress=False, cpu=True)  # 1,155 weights: the CPU is enough
    head = head.cpu().eval()

    def predict(texts: list[str], cache: bool = True) -> np.ndarray:
        with torch.no_grad():
            return head(torch.tensor(features.embed(texts, cache=cache, device="cpu"))).argmax(1).numpy()
    return predict, sum(p.numel() for p in head.parameters())


def _minilm_finetune(train: pd.DataFrame, m: ModelConfig, seed: int) -> tuple[Predict, int]:
    from labkit import classifier, models, train as training
    device.seed_everything(seed)
    tokenizer, net = classifier.load_classifier()
    loader = classifier.make_loader(train.text, train.label, tokenizer, max_length=m.max_length,
                                    batch_size=_share(m), shuffle=True, seed=seed)
    training.fit(net, loader, epochs=m.epochs, lr=m.lr, warmup=0.1, progress=False)

    def predict(texts: list[str], cache: bool = True) -> np.ndarray:
        return training.predict(net, classifier.make_loader(texts, None, tokenizer, max_length=m.max_length,
                                                            batch_size=64), classes=True)
    return predict, models.count_parameters(net, trainable_only=True)


TRAINERS: dict[str, Callable[[pd.DataFrame, ModelConfig, int], tuple[Predict, int]]] = {
    "vader": _vader, "tfidf": _tfidf, "minilm_probe": _minilm_probe,
    "minilm_head": _minilm_head, "minilm_finetune": _minilm_finetune,
}


# ---- running, scoring, judging ------------------------------------------------------------------------
@dataclass
class RunResult:
    """What :func:`run` measured. ``domains[d]``: mean F1 over seeds, its 95% interval, the majority
    F1 and the paired interval of F1 − majority; ``decision``/``reasons``: the gate's verdict."""

    config: RunConfig
    domains: dict[str, dict[str, float]]
    seeds_done: list[int]
    latency_ms: float
    train_seconds: float
    total_seconds: float
    trainable: int
    data_hash: str
    device: str
    processes: int
    cost: float
    decision: str = ""
    reasons: list[str] = field(default_factory=list)
    run_id: str | None = None
    predictions: dict[str, list[np.ndarray]] = field(default_factory=dict, repr=False)  # domain -> one per seed
    test_labels: dict[str, np.ndarray] = field(default_factory=dict, repr=False)         # domain -> true classes
    test_ids: dict[str, np.ndarray] = field(default_factory=dict, repr=False)            # domain -> sentence ids

    def metrics(self) -> dict[str, float]:
        """Flat numbers for a tracker: ``f1.<domain>``, ``f1_low.<domain>``, ... and the costs."""
        flat = {f"{k}.{d}": v for d, row in self.domains.items() for k, v in row.items()}
        flat.update(latency_ms=self.latency_ms, train_seconds=self.train_seconds, total_seconds=self.total_seconds,
                    trainable_parameters=float(self.trainable), cost=self.cost, seeds_done=float(len(self.seeds_done)))
        return flat

    def __str__(self) -> str:
        c = self.config
        lines = [f"run {c.name!r}: {c.model.method}, trained on {'+'.join(c.data.train_domains)}, "
                 f"{len(self.seeds_done)} seeds, {self.processes} process(es) on {self.device}"]
        for d, r in self.domains.items():
            lines.append(f"  {d:<7s} F1 {r['f1']:.3f} [{r['f1_low']:.3f}, {r['f1_high']:.3f}]   majority {r['majority']:.3f}"
                         f"   F1 − majority {r['vs_majority']:+.3f} [{r['vs_majority_low']:+.3f}, {r['vs_majority_high']:+.3f}]")
        lines.append(f"  latency {self.latency_ms:.2f} ms a sentence · training {self.train_seconds:.1f} s · "
                     f"{self.trainable:,} trainable parameters · cost {self.cost:.6f} (hours × budget.price_per_hour)")
        lines.append(f"  gate: {self.decision.upper()}")
        lines += [f"    - {r}" for r in self.reasons]
        return "\n".join(lines)


def _interval(y: np.ndarray, preds: list[np.ndarray], n_boot: int) -> tuple[float, float, float]:
    """Mean over seeds of the weighted F1, and the 95% percentile-bootstrap interval of that mean
    (the same resamples of the test sentences for every seed)."""
    counts = metrics.bootstrap_counts(len(y), n_boot, seed=0)
    dist = np.mean([metrics.resampled_f1(y, p, counts, 3) for p in preds], axis=0)
    point = float(np.mean([metrics.weighted_f1(y, p) for p in preds]))
    return point, float(np.quantile(dist, 0.025)), float(np.quantile(dist, 0.975))


def latency_ms(predict: Predict, texts: list[str]) -> float:
    """Median wall-clock milliseconds to classify one sentence (batch of 1, no cache, one CPU thread for
    torch: a serving process per core, and a timing that other busy processes on the machine distort
    far less), after 2 warm-ups."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for t in texts[:2]:
            predict([t], False)
        times = []
        for t in texts:
            start = time.perf_counter()
            predict([t], False)
            times.append((time.perf_counter() - start) * 1000)
    finally:
        torch.set_num_threads(threads)
    return float(np.median(times))


def prepare_data(config: RunConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The run's pool of labelled training sentences and its fixed test sentences."""
    d = config.data
    train_all, test_all = data.load_split(sorted(set(d.train_domains) | set(d.test_domains)), seed=d.split_seed)
    train = train_all[train_all.domain.isin(d.train_domains)]
    test = data.subsample(test_all[test_all.domain.isin(d.test_domains)], d.test_n, seed=0)
    return train, test


def data_hash(train: pd.DataFrame, test: pd.DataFrame) -> str:
    """A 16-hex digest of every training sentence the run drew (over all seeds) and every test sentence,
    each with its label: two runs with the same hash learned from and were scored on the same data."""
    rows = [f"{t}\t{y}" for t, y in zip(pd.concat([train.text, test.text]), pd.concat([train.label, test.label]))]
    return features.texts_hash(rows)


def run(config: RunConfig, log: Callable[[str], None] = print) -> RunResult:
    """Train ``config.model.method`` once per seed, score every test domain, time it and apply the gate.

    Per seed ``s``: draw ``train_n`` labelled sentences per training domain (seed ``s``), train,
    predict the fixed test sentences. Per test domain: the mean F1 over seeds with a 95% bootstrap
    interval, the majority-class F1 (the training labels' most common class) and the paired interval
    of F1 − majority. Seeds stop being started once ``budget.max_minutes`` has passed.
    """
    start = time.perf_counter()
    pool, test = prepare_data(config)
    trainer, preds, seeds_done, train_seconds = TRAINERS[config.model.method], [], [], 0.0
    draws = []
    for s in config.evaluation.seeds:
        if seeds_done and (time.perf_counter() - start) / 60 > config.budget.max_minutes:
            log(f"budget of {config.budget.max_minutes} min spent: seed {s} and later not run")
            break
        drawn = data.subsample(pool, config.data.train_n, seed=s)
        draws.append(drawn)
        t0 = time.perf_counter()
        predict, trainable = trainer(drawn, config.model, s)
        train_seconds += time.perf_counter() - t0
        preds.append(np.asarray(predict(test.text.tolist(), True)))
        seeds_done.append(s)
        log(f"seed {s}: trained on {len(drawn)} labelled sentences in {time.perf_counter() - t0:.1f} s")
    majority_class = int(np.bincount(pool.label, minlength=3).argmax())
    domains, by_domain, labels, ids = {}, {}, {}, {}
    for d in config.data.test_domains:
        mask = (test.domain == d).to_numpy()
        y, per_seed = test.label.to_numpy()[mask], [p[mask] for p in preds]
        maj = np.full_like(y, majority_class)
        f1, low, high = _interval(y, per_seed, config.evaluation.n_boot)
        diff, dlow, dhigh = metrics.paired_bootstrap(y, per_seed, [maj], n_boot=config.evaluation.n_boot)
        domains[d] = {"f1": f1, "f1_low": low, "f1_high": high, "majority": metrics.weighted_f1(y, maj),
                      "vs_majority": diff, "vs_majority_low": dlow, "vs_majority_high": dhigh}
        by_domain[d], labels[d], ids[d] = per_seed, y, test.id.to_numpy()[mask]
    lat = latency_ms(predict, test.text.tolist()[: config.evaluation.latency_sentences])
    total = time.perf_counter() - start
    result = RunResult(config=config, domains=domains, seeds_done=seeds_done, latency_ms=lat,
                       train_seconds=train_seconds, total_seconds=total, trainable=trainable,
                       data_hash=data_hash(pd.concat(draws), test), device=str(device.pick_device()), processes=world_size(),
                       cost=total / 3600 * config.budget.price_per_hour, predictions=by_domain, test_labels=labels,
                       test_ids=ids)
    result.decision, result.reasons = gate(result)
    return result


def gate(result: RunResult) -> tuple[str, list[str]]:
    """``("promote" | "reject", reasons)``: promote only when every check passes. The checks: enough
    seeds finished inside the budget; every test domain's mean F1 (with ``on_lower_bound``: the lower
    end of its interval) reaches ``min_f1`` (or its own threshold); with ``beat_majority``, the interval of F1 − majority lies above 0 on every domain;
    the median latency is at most ``max_latency_ms``. Each reason says what was measured and the limit."""
    g, reasons, ok = result.config.gate, [], True

    def check(passed: bool, text: str) -> None:
        nonlocal ok
        ok &= passed
        reasons.append(("pass: " if passed else "FAIL: ") + text)

    need = len(result.config.evaluation.seeds)
    check(len(result.seeds_done) == need,
          f"{len(result.seeds_done)} of {need} seeds finished within the budget of {result.config.budget.max_minutes} min")
    for d, r in result.domains.items():
        limit = g.min_f1_per_domain.get(d, g.min_f1)
        value, what = (r["f1_low"], "F1 interval's lower end") if g.on_lower_bound else (r["f1"], "F1")
        check(value >= limit, f"{d}: {what} {value:.3f} {'≥' if value >= limit else '<'} {limit:.3f}")
        if g.beat_majority:
            check(r["vs_majority_low"] > 0, f"{d}: F1 − majority {r['vs_majority']:+.3f}, interval "
                  f"[{r['vs_majority_low']:+.3f}, {r['vs_majority_high']:+.3f}] "
                  f"{'above 0' if r['vs_majority_low'] > 0 else 'not above 0'}")
    if g.max_latency_ms is not None:
        check(result.latency_ms <= g.max_latency_ms,
              f"latency {result.latency_ms:.2f} ms {'≤' if result.latency_ms <= g.max_latency_ms else '>'} "
              f"{g.max_latency_ms:g} ms")
    return ("promote" if ok else "reject"), reasons


def leave_together() -> None:
    """In a multi-process run, wait for every process and close the process group (a process leaving
    while gloo still talks to another can abort the run at exit)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def paired(a: RunResult, b: RunResult, domain: str, n_boot: int = 1000) -> tuple[float, float, float]:
    """``(difference, low, high)``: the paired bootstrap 95% interval of F1(a) − F1(b) on ``domain``'s test
    sentences (both runs must have scored the same ones: same data section apart from the training side)."""
    ia, ib = a.test_ids.get(domain), b.test_ids.get(domain)
    if ia is None or ib is None or len(ia) != len(ib) or not np.array_equal(ia, ib):
        raise ValueError(f"runs {a.config.name!r} and {b.config.name!r} did not score the same {domain} test sentences")
    return metrics.paired_bootstrap(a.test_labels[domain], a.predictions[domain], b.predictions[domain], n_boot=n_boot)
