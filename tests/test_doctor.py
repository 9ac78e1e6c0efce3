"""`python -m labkit doctor` reports what is missing and how to fix it."""

from __future__ import annotations

import subprocess
import sys

from labkit import doctor


def test_report_on_an_empty_cache_names_the_fix(fresh_cache, capsys):
    assert doctor.print_report() is False
    out = capsys.readouterr().out
    assert "asset vader-corpora" in out and "missing" in out
    assert "python -m labkit fetch" in out
    assert str(fresh_cache) in out


def test_report_lists_versions_and_device():
    rows = {item: value for item, value, _ in doctor.report()}
    assert rows["torch"].startswith("2.13.0")
    assert rows["device"].startswith("cpu") or rows["device"].startswith(("cuda", "mps"))


def test_cli_runs_and_rejects_unknown_commands():
    ok = subprocess.run([sys.executable, "-m", "labkit", "doctor"], capture_output=True, text=True)
    assert "torch" in ok.stdout and ok.returncode in (0, 1)
    bad = subprocess.run([sys.executable, "-m", "labkit", "frobnicate"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
