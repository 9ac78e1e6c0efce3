"""Back-links cannot drift: every "Taught in lesson NN" in ``labkit`` names a lesson that uses it.

A public function or class of a ``labkit`` module says which lesson teaches it ("Taught in lesson
05", "Taught in lessons 00, 03 and 10"). For every claimed lesson whose notebook exists
(``notebooks/NN_*.ipynb``), the name must appear in that notebook's code cells: as
``module.name`` (however the module was imported, ``from labkit import derivatives as D``
included) or, after ``from labkit.module import name``, as ``name``. A method counts through its
class. A module docstring's claim says where the module is taught: that lesson must use at least
one of the module's public names; a helper without a claim of its own (``cache.write_manifest``)
is not held to it. Lessons not written yet are skipped until their notebook lands. The instructor
tools (``grading``, ``labkit.instructor``, ``__main__``) make no lesson claims and are not checked;
``check`` is "taught in every lesson" and names no number. The convention is in ``docs/design.md``.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import json
import pkgutil
import re
from functools import lru_cache
from pathlib import Path

import pytest

import labkit

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
NOT_CHECKED = {"__main__", "grading", "instructor"}  # instructor tools, no lesson claims

# "Taught in lesson 05", "Taught in lessons 00, 03 and 10", "Taught in lessons 00 and 05".
# Only the claim itself is read: a trailing "(and used by lessons 04, 06)" is not a claim.
_CLAIM = re.compile(r"Taught\s+in\s+lessons?\s+(\d{2}(?:\s*(?:,|,?\s*and)\s*\d{2})*)")


def lessons_claimed(doc: str | None) -> list[str]:
    """The lesson numbers of every "Taught in lesson(s) …" phrase in ``doc`` (in order, no repeats)."""
    found: list[str] = []
    for match in _CLAIM.finditer(doc or ""):
        for number in re.findall(r"\d{2}", match.group(1)):
            if number not in found:
                found.append(number)
    return found


def test_claim_parser():
    assert lessons_claimed("Taught in lesson 05.") == ["05"]
    assert lessons_claimed("Taught in lessons 00, 03 and 10.") == ["00", "03", "10"]
    assert lessons_claimed("Taught in lessons 00 and 05.") == ["00", "05"]
    assert lessons_claimed("Taught in lesson\n    03 (and used by lessons 04, 06, 08).") == ["03"]
    assert lessons_claimed("Taught in every lesson.") == []
    assert lessons_claimed(None) == []


def _modules() -> list[str]:
    return sorted(info.name for info in pkgutil.iter_modules(labkit.__path__)
                  if info.name not in NOT_CHECKED)


def _public(module) -> list[str]:
    """Public functions and classes defined in ``module`` (not those it imports)."""
    return [name for name, obj in vars(module).items()
            if not name.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))
            and getattr(obj, "__module__", None) == module.__name__]


def _claims() -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """``(module, name, lesson)`` per lesson a function or class claims; ``(module, lesson)`` per module claim."""
    names, modules = [], []
    for modname in _modules():
        module = importlib.import_module(f"labkit.{modname}")
        modules += [(modname, lesson) for lesson in lessons_claimed(module.__doc__)]
        for name in _public(module):
            doc = vars(module)[name].__doc__  # the object's own, never an inherited one
            names += [(modname, name, lesson) for lesson in lessons_claimed(doc if isinstance(doc, str) else None)]
    return names, modules


def _notebooks(lesson: str) -> list[Path]:
    """The lesson's notebooks: ``NN_*.ipynb`` (a long lesson is split into parts, e.g. lesson 05's three)."""
    return sorted(NOTEBOOKS.glob(f"{lesson}_*.ipynb"))


def _notebook(lesson: str) -> Path | None:
    found = _notebooks(lesson)
    return found[0] if found else None


def _code(path: Path) -> str:
    """The notebook's code cells, with IPython magics and shell lines blanked so ``ast`` parses them."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    sources = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
               for c in cells if c["cell_type"] == "code"]
    lines = []
    for source in sources:
        lines += ["" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
        lines.append("")
    return "\n".join(lines)


@lru_cache(maxsize=None)
def used_names(lesson: str) -> frozenset[tuple[str, str]]:
    """``(module, name)`` for every ``labkit`` name the lesson's code cells use (in any of its parts)."""
    tree = ast.parse("\n".join(_code(path) for path in _notebooks(lesson)))
    modules: dict[str, str] = {}  # local name -> labkit module ("data", "derivatives", ...)
    direct: dict[str, tuple[str, str]] = {}  # local name -> (module, name) from "from labkit.m import n"
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "labkit":
            for alias in node.names:
                modules[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("labkit."):
            modname = node.module.split(".")[1]
            for alias in node.names:
                direct[alias.asname or alias.name] = (modname, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("labkit.") and alias.asname:
                    modules[alias.asname] = alias.name.split(".")[1]
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
            used.add((modules[node.value.id], node.attr))
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
              and isinstance(node.value.value, ast.Name) and node.value.value.id == "labkit"):
            used.add((node.value.attr, node.attr))  # import labkit.data; labkit.data.load()
        elif isinstance(node, ast.Name) and node.id in direct:
            used.add(direct[node.id])
    return frozenset(used)


CLAIMS, MODULE_CLAIMS = _claims()


def _users(modname: str, name: str) -> str:
    found = sorted({p.name[:2] for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb") if (modname, name) in used_names(p.name[:2])})
    return ", ".join(found) or "none"


def test_claims_found():
    """The parser sees the package's claims (an empty list would make the checks below vacuous)."""
    assert len(CLAIMS) > 50 and len(MODULE_CLAIMS) > 10


@pytest.mark.parametrize("modname,name,number", CLAIMS, ids=[f"{m}.{n}->{n_}" for m, n, n_ in CLAIMS])
def test_claimed_lesson_uses_it(modname, name, number):
    notebook = _notebook(number)
    if notebook is None:
        pytest.skip(f"lesson {number} is not written yet")
    assert (modname, name) in used_names(number), (
        f"labkit.{modname}.{name} says it is taught in lesson {number}, but no notebook of it ({notebook.name} …) uses it "
        f"(lessons that do: {_users(modname, name)}); fix the docstring's 'Taught in' claim")


@pytest.mark.parametrize("modname,number", MODULE_CLAIMS, ids=[f"{m}->{n}" for m, n in MODULE_CLAIMS])
def test_claimed_lesson_uses_the_module(modname, number):
    notebook = _notebook(number)
    if notebook is None:
        pytest.skip(f"lesson {number} is not written yet")
    module = importlib.import_module(f"labkit.{modname}")
    used = sorted(name for name in _public(module) if (modname, name) in used_names(number))
    assert used, (f"labkit.{modname}'s docstring says it is taught in lesson {number}, but its notebooks ({notebook.name} …) "
                  f"uses none of its names; fix the module docstring's 'Taught in' claim")
