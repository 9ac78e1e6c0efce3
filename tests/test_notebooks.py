"""The committed notebooks: small, executed top to bottom, and safe to compare on another machine.

nbval re-runs every notebook (``make notebooks``); these checks guard what nbval cannot see: that
the outputs in git come from one real run, and that a ``# NBVAL_CHECK_OUTPUT`` cell prints nothing
that differs between machines (a path, a warning on stderr) -- such a cell once failed CI only
because a library warning printed the path of the virtual environment.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat

MACHINE_SPECIFIC = re.compile(r"(/work/|/root/|/home/|/Users/|/tmp/|site-packages|\.venv|[A-Z]:\\\\)")
# where this machine keeps the course and its Python (a checkout outside the usual places too)
THIS_MACHINE = sorted({str(Path(__file__).resolve().parents[1]), sys.prefix, str(Path.home())} - {"/"})
# lesson 00 shows the student where the asset cache lives (labkit doctor, the fetch cell); the default cache
# folder is the one machine path an output may name
DEFAULT_CACHE = re.compile(r"(/root|/home/[^/\s]+|/Users/[^/\s]+)/\.cache/labkit(/[^\s'\"]*)?")
WARNING = re.compile(r"warn", re.IGNORECASE)


def code_cells(path: Path):
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def text_of(output) -> str:
    if output.get("output_type") == "stream":
        return output.get("text", "")
    return str(output.get("data", {}).get("text/plain", "")) + output.get("evalue", "")


def all_text_of(output) -> str:
    """Everything an output shows as text: a stream, every text/* representation, an error's traceback."""
    if output.get("output_type") == "stream":
        return output.get("text", "")
    data = output.get("data", {})
    parts = [str(v) for k, v in data.items() if k.startswith("text/")]
    return "\n".join(parts + [output.get("evalue", "")] + list(output.get("traceback", [])))


def test_no_warnings_or_machine_paths_in_outputs(lesson):
    """What a reader sees in the committed outputs (and JupyterLab shows before anything runs) has no pink
    stderr warning box and names no folder of the machine that ran it, such as the developer's .venv."""
    for index, cell in enumerate(code_cells(lesson)):
        for output in cell.outputs:
            text = all_text_of(output)
            if output.get("name") == "stderr":
                assert not WARNING.search(text), \
                    f"{lesson.name}, code cell {index}: a warning on stderr was saved: {text[:300]!r}"
            shown = DEFAULT_CACHE.sub("<cache>", text)
            found = [p for p in THIS_MACHINE if p in shown] or MACHINE_SPECIFIC.findall(shown)
            assert not found, (f"{lesson.name}, code cell {index}: an output names a folder of the machine that "
                               f"ran it ({found[0]}): {text[:300]!r}")


def test_kernelspec_is_what_ipykernel_writes(lesson):
    """JupyterLab rewrites a kernelspec that differs from the kernel's and marks the notebook modified on open."""
    import ipykernel.kernelspec

    spec = ipykernel.kernelspec.get_kernel_dict()
    saved = nbformat.read(lesson, as_version=4).metadata.get("kernelspec", {})
    assert (saved.get("name"), saved.get("display_name"), saved.get("language")) == \
        ("python3", spec["display_name"], spec["language"]), \
        f"{lesson.name}: kernelspec {saved}; the current ipykernel writes display_name {spec['display_name']!r}"


def test_notebook_is_small(lesson):
    assert lesson.stat().st_size < 2_000_000, f"{lesson.name} is {lesson.stat().st_size:,} bytes; keep it under 2 MB"


def test_outputs_come_from_one_top_to_bottom_run(lesson):
    counts = [c.execution_count for c in code_cells(lesson)]
    assert None not in counts, f"{lesson.name}: cell {counts.index(None)} was never run; run `make execute`"
    assert counts == sorted(counts) and len(set(counts)) == len(counts), \
        f"{lesson.name}: execution counts {counts} are not one run in order; run `make execute`"
    errors = [o.get("ename") for c in code_cells(lesson) for o in c.outputs if o.get("output_type") == "error"]
    assert not errors, f"{lesson.name} has error outputs: {errors}"


def test_checked_outputs_are_machine_independent(lesson):
    for index, cell in enumerate(code_cells(lesson)):
        if not cell.source.startswith("# NBVAL_CHECK_OUTPUT"):
            assert "NBVAL_CHECK_OUTPUT" not in cell.source, f"{lesson.name}: the marker must be the first line"
            continue
        for output in cell.outputs:
            assert output.get("name") != "stderr", \
                f"{lesson.name}, code cell {index}: a checked cell writes to stderr: {text_of(output)[:200]!r}"
            found = MACHINE_SPECIFIC.search(text_of(output))
            assert not found, f"{lesson.name}, code cell {index}: a checked output names a lesson ({found.group()})"


def test_lesson_conventions(lesson):
    cells = code_cells(lesson)
    assert sum("parameters" in c.metadata.get("tags", []) for c in cells) == 1, \
        f"{lesson.name}: one cell tagged 'parameters' chooses the sizes"
    assert not any(re.search(r"from labkit(\.\w+)? import \*", c.source) for c in cells), "import labkit explicitly"


def test_every_plot_was_drawn(lesson):
    """Executed with a non-inline backend (MPLBACKEND=Agg), plt.show() draws nothing into the notebook."""
    cells = code_cells(lesson)
    images = [any("image/png" in o.get("data", {}) for o in c.outputs) for c in cells]
    assert any(images), f"{lesson.name} has no plot; every lesson has at least one"
    blank = [i for i, (c, img) in enumerate(zip(cells, images)) if "plt.show()" in c.source and not img]
    assert not blank, f"{lesson.name}: code cells {blank} call plt.show() but kept no image; run `make execute`"
