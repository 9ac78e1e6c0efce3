"""Command line: ``python -m labkit doctor | fetch | student | workspace | grade``."""

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
    args = parser.parse_args(argv)

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
