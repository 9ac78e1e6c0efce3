"""Experiment tracking with MLflow: every framework run is recorded -- settings, data hash, commit,
device, metrics with intervals, time, cost, the gate's decision and the configuration file itself --
in an MLflow tracking store, the tool engineers already use, so runs can be searched and compared
(:func:`runs`) long after the notebook that made them is closed.

The store is a local SQLite database beside the labkit cache (``<cache>/tracking/mlflow.db``, artifacts
in ``<cache>/tracking/artifacts``) unless ``LABKIT_TRACKING_URI`` or ``MLFLOW_TRACKING_URI`` names
another one (a team's tracking server: ``http://mlflow.internal:5000``). Browse it with the full
``mlflow`` package: ``mlflow ui --backend-store-uri sqlite:///<cache>/tracking/mlflow.db``.

Taught in lesson 13.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import warnings
from pathlib import Path

import pandas as pd

from labkit.cache import cache_dir

ROOT = Path(__file__).resolve().parents[1]


def commit() -> str:
    """The git commit the code came from, marked when the checkout differs from it -- changed or new
    files, ``results/`` aside -- or ``"unknown"`` outside a git checkout."""
    git = lambda *args: subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT, timeout=10).stdout.strip()
    try:
        head = git("rev-parse", "--short", "HEAD") or "unknown"
        dirty = git("status", "--porcelain", "--", ".", ":(exclude)results")
        return head + (" with uncommitted changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def tracking_uri(uri: str | None = None) -> str:
    """``uri``, else ``$LABKIT_TRACKING_URI``, else ``$MLFLOW_TRACKING_URI``, else the local SQLite store."""
    uri = uri or os.environ.get("LABKIT_TRACKING_URI") or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    folder = cache_dir() / "tracking"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def _mlflow(uri: str | None):
    """mlflow, quiet (its INFO lines and a SQLAlchemy deprecation notice are not the reader's business)
    and pointed at the store."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mlflow
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    resolved = tracking_uri(uri)
    mlflow.set_tracking_uri(resolved)
    return mlflow, resolved


def _experiment(mlflow, name: str, uri: str) -> str:
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):  # keep the artifacts beside the database, not in the current folder
        location = (Path(uri[len("sqlite:///"):]).parent / "artifacts" / name).as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for name in ("torch", "transformers", "scikit-learn", "accelerate", "mlflow-skinny"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def log_run(result, config_text: str | None = None, uri: str | None = None) -> str:
    """Record a :class:`labkit.framework.RunResult` as one MLflow run and return its id: the settings as
    params, the measurements as metrics, commit / data hash / device / decision as tags, the gate's
    reasons and the configuration (its file text when given) as artifacts."""
    mlflow, resolved = _mlflow(uri)
    c = result.config
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exp = _experiment(mlflow, c.experiment, resolved)
        with mlflow.start_run(experiment_id=exp, run_name=c.name) as active:
            params = {"method": c.model.method, "train_domains": ",".join(c.data.train_domains),
                      "test_domains": ",".join(c.data.test_domains), "train_n": c.data.train_n,
                      "test_n": c.data.test_n, "seeds": ",".join(map(str, c.evaluation.seeds)),
                      **{f"model.{k}": v for k, v in c.model.model_dump().items() if k != "method"},
                      "gate.min_f1": c.gate.min_f1, "gate.max_latency_ms": c.gate.max_latency_ms,
                      "gate.beat_majority": c.gate.beat_majority, "gate.on_lower_bound": c.gate.on_lower_bound}
            mlflow.log_params(params)
            mlflow.log_metrics(result.metrics())
            mlflow.set_tags({"commit": commit(), "data_hash": result.data_hash, "device": result.device,
                             "processes": result.processes, "decision": result.decision,
                             "python": platform.python_version(), **_versions(),
                             "mlflow.note.content": c.description or c.name})
            mlflow.log_text("\n".join(result.reasons) + "\n", "gate.txt")
            mlflow.log_text(config_text if config_text is not None else json.dumps(c.model_dump(), indent=1),
                            "config.toml" if config_text is not None else "config.json")
            return active.info.run_id


def runs(experiment: str = "transfer-lab", uri: str | None = None) -> pd.DataFrame:
    """Every run of ``experiment``, newest first, one row each: name, decision, method, data, the
    per-domain F1 and its interval, latency, training time, cost, commit and data hash."""
    mlflow, _ = _mlflow(uri)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if mlflow.get_experiment_by_name(experiment) is None:
            return pd.DataFrame()
        df = mlflow.search_runs(experiment_names=[experiment], order_by=["attributes.start_time DESC"])
    if df.empty:
        return df
    keep = {"run_id": "run_id", "tags.mlflow.runName": "name", "tags.decision": "decision",
            "params.method": "method", "params.train_domains": "train", "params.train_n": "train_n"}
    out = df[[k for k in keep if k in df]].rename(columns=keep)
    for col in sorted(c for c in df.columns if c.startswith(("metrics.f1.", "metrics.f1_low.", "metrics.f1_high."))):
        out[col[len("metrics."):]] = df[col]
    for col in ("latency_ms", "train_seconds", "cost"):
        if f"metrics.{col}" in df:
            out[col] = df[f"metrics.{col}"]
    for tag in ("commit", "data_hash", "processes"):
        if f"tags.{tag}" in df:
            out[tag] = df[f"tags.{tag}"]
    return out.reset_index(drop=True)
