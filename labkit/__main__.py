"""Command line: ``python -m labkit doctor | fetch | run | runs | student | workspace | grade``."""

from __future__ import annotations

import argparse
import sys
import warnings


def _plain_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _plain_warning  # the command line says what happened, not where in labkit
    parser = argparse.ArgumentParser(prog="python -m labkit", description="Transfer Learning Lab helper")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="report Python, packages, device, cache and asset status")
    fetch = sub.add_parser("fetch", help="fetch, verify and cache every asset (and convert the LLM)")
    fetch.add_argument("--no-convert", action="store_true", help="skip converting SmolLM2 to fp32")
    student = sub.add_parser("student", help="write the student notebooks (solutions removed, outputs cleared)")
    student.add_argument("src_dir", help="folder of instructor notebooks, e.g. notebooks")
    student.add_argument("dest_dir", help="where to write the student notebooks, e.g. build/student")
    workspace = sub.add_parser("workspace", help="add the student version of each new lesson to a workspace "
                               "(notebooks already there are kept as they are)")
    workspace.add_argument("src_dir", help="folder of instructor notebooks, e.g. notebooks")
    workspace.add_argument("dest_dir", help="the student's workspace, e.g. work")
    grade = sub.add_parser("grade", help="execute a submitted notebook and score each exercise")
    grade.add_argument("notebook", help="path of the submitted .ipynb")
    grade.add_argument("--exercises-only", action="store_true",
                       help="run only the exercise-setup cell and the exercise cells (fast)")
    grade.add_argument("--json", action="store_true", help="print the scores as JSON")
    grade.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell (default 600)")
    run = sub.add_parser("run", help="run a configuration file (TOML/YAML), record it in MLflow, apply its gate; "
                         "exit 0 = promoted, 3 = rejected, 2 = bad configuration (1: it crashed)")
    run.add_argument("config", help="the run's configuration, e.g. configs/tfidf_tweets.toml")
    run.add_argument("--tracking-uri", default=None, help="MLflow store (default: $LABKIT_TRACKING_URI, "
                     "$MLFLOW_TRACKING_URI, else a SQLite file in the labkit cache)")
    run.add_argument("--no-track", action="store_true", help="do not record the run")
    run.add_argument("--json", default=None, help="also write the run's metrics and decision to this JSON file")
    runs = sub.add_parser("runs", help="compare the recorded runs of an experiment")
    runs.add_argument("--experiment", default="transfer-lab")
    runs.add_argument("--tracking-uri", default=None)
    args = parser.parse_args(argv)

    if args.command == "run":
        return run_config(args.config, args.tracking_uri, not args.no_track, args.json)
    if args.command == "runs":
        from labkit import tracking
        with pd_options():
            print(tracking.runs(args.experiment, args.tracking_uri).to_string(index=False) or "no runs recorded yet")
        return 0

    if args.command in ("student", "workspace", "grade"):
        try:
            from labkit.instructor import grading
        except ImportError as exc:
            print(f"error: {exc}; the instructor tools need the lab extra: pip install -e '.[lab]'",
                  file=sys.stderr)
            return 2
        if args.command == "student":
            return grading.main_student(args.src_dir, args.dest_dir)
        if args.command == "workspace":
            return grading.main_workspace(args.src_dir, args.dest_dir)
        return grading.main_grade(args.notebook, args.exercises_only, args.json, args.timeout)

    if args.command == "doctor":
        from labkit.doctor import print_report

        return 0 if print_report() else 1

    return run_fetch(convert=not args.no_convert)


def pd_options():
    import pandas as pd
    return pd.option_context("display.width", 200, "display.max_columns", 30, "display.precision", 3)


def run_config(path: str, uri: str | None, track: bool, json_path: str | None) -> int:
    """``python -m labkit run CONFIG``: validate, run (data parallel under ``accelerate launch``), record
    in MLflow from the first process, print the result; exit 0 when the gate promotes, 3 when it rejects (1 stays Python's code for a crash)."""
    import json
    from pathlib import Path

    from labkit import framework

    try:
        config = framework.load_config(path)
        result = framework.run(config, log=lambda m: print(m, flush=True) if framework.is_main_process() else None)
    except framework.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if framework.is_main_process():
        if track:
            from labkit import tracking
            result.run_id = tracking.log_run(result, Path(path).read_text(encoding="utf-8"), uri)
        print(result)
        if result.run_id:
            print(f"recorded as MLflow run {result.run_id} (experiment {config.experiment!r}); "
                  f"compare runs: python -m labkit runs --experiment {config.experiment}")
        if json_path:
            Path(json_path).write_text(json.dumps({"run_id": result.run_id, "decision": result.decision,
                                                   "reasons": result.reasons, "metrics": result.metrics(),
                                                   "processes": result.processes, "data_hash": result.data_hash},
                                                  indent=1) + "\n")
    framework.leave_together()
    return 0 if result.decision == "promote" else 3


def run_fetch(convert: bool = True) -> int:
    """``python -m labkit fetch``: fetch and re-hash every asset, convert and re-hash the LLM copy,
    delete damaged computed results and stale temporaries -- everything ``doctor`` reports."""
    from labkit import assets, cache

    try:
        for name, folder in assets.fetch_all(progress=True, deep=True).items():
            print(f"{name}: verified, ready in {folder}")
        if convert:
            from labkit.models import llm_path

            print(f"smollm2 (fp32 copy): verified, ready in {llm_path(deep=True)}")
    except assets.AssetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for entry in cache.remove_damaged():
        print(f"deleted a damaged cached result (recomputed when next used): {entry}")
    for tmp in cache.remove_stale_temporaries():
        print(f"removed a temporary left by an interrupted run: {tmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
