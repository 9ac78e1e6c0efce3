"""Student build and grader for the exercises. Instructor tool (``docs/instructor.md``); students meet
the exercise format in lesson 00.

An exercise is one code cell tagged ``exercise``: the student's part sits between
``### BEGIN SOLUTION`` and ``### END SOLUTION`` (the nbgrader convention), followed in the same
cell by a :mod:`labkit.check` call whose first argument is the exercise id ``"LL.N"``.
One cell tagged ``exercise-setup`` before them prepares everything the exercises need.

* :func:`student_notebook` / :func:`build_student` write the student version: every solution
  region becomes ``# YOUR CODE HERE`` + ``raise NotImplementedError(...)``, outputs are cleared.
* :func:`build_workspace` adds the student version of each lesson a student's workspace (``make lab``'s
  ``work/``) does not have yet, and never overwrites one it has.
* :func:`grade` executes a submitted notebook with ``nbclient`` in a kernel of the current Python
  environment, with ``$LABKIT_GRADE_FILE`` set so every check records its result, and returns one
  :class:`Result` per exercise: ``passed``, ``failed`` (with the feedback) or ``not attempted``
  (the cell raised ``NotImplementedError`` or another error before its check ran).

Why not nbgrader? nbgrader 0.9 uses the same markers, and this module keeps them compatible, but it
does not fit cleanly: it adds nine packages to the course environment (notebook 7, SQLAlchemy,
alembic, Mako, RapidFuzz, ipywidgets, ...), needs a course directory layout
(``source/ release/ submitted/ autograded/``), a gradebook database and an ``nbgrader_config.py``,
and expects per-cell ``nbgrader`` metadata (``grade_id``, ``points``, locked cells) written with its
JupyterLab extension. Our checks already give the feedback and record their results, so the
student build and the grader are ~200 lines on ``nbformat`` + ``nbclient``, both already needed by
the tests. A course that wants nbgrader's gradebook can still add the metadata later.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import re
import sys
import tempfile
import textwrap
from dataclasses import asdict, dataclass
from pathlib import Path

import nbformat

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
EXERCISE_TAG = "exercise"
SETUP_TAG = "exercise-setup"
HEADING = "## Check your understanding"
PASSED, FAILED, NOT_ATTEMPTED = "passed", "failed", "not attempted"

# the first argument of a check call: check.close("03.1", ...), check.report('00.2', ...)
_CHECK_ID = re.compile(r"""\bcheck\.(\w+)\(\s*["']([^"']+)["']""")


# --------------------------------------------------------------------------- reading notebooks
def tags(cell) -> list[str]:
    """The cell's metadata tags (empty list when it has none)."""
    return list(cell.get("metadata", {}).get("tags", []))


def exercise_ids(source: str) -> list[str]:
    """Exercise ids named by the check calls in ``source``, in order, without repeats.

    >>> exercise_ids('x = 1\\ncheck.close("03.1", x, 1, what="x")')
    ['03.1']
    """
    return list(dict.fromkeys(m.group(2) for m in _CHECK_ID.finditer(source)))


def solution_regions(source: str, where: str = "cell") -> list[tuple[int, int]]:
    """Line ranges ``(begin, end)`` (0-based, inclusive) of the solution regions in ``source``.

    Raises ValueError for a BEGIN without END, an END without BEGIN, or nested regions.
    """
    regions, start = [], None
    for number, line in enumerate(source.splitlines()):
        text = line.strip()
        if text == BEGIN:
            if start is not None:
                raise ValueError(f"{where}: line {number + 1} opens '{BEGIN}' inside another solution "
                                 f"region opened on line {start + 1}; close the first with '{END}'")
            start = number
        elif text == END:
            if start is None:
                raise ValueError(f"{where}: line {number + 1} has '{END}' without a '{BEGIN}' before it")
            regions.append((start, number))
            start = None
    if start is not None:
        raise ValueError(f"{where}: '{BEGIN}' on line {start + 1} has no matching '{END}'; add "
                         f"'{END}' after the solution")
    return regions


def strip_solutions(source: str, exercise: str = "", where: str = "cell") -> str:
    """Replace each solution region (markers included) by the student stub, at the BEGIN marker's indentation::

        # YOUR CODE HERE
        raise NotImplementedError("Exercise 03.1: replace these two lines with your solution")
    """
    lines = source.splitlines()
    label = f"Exercise {exercise}" if exercise else "Exercise"
    for begin, end in reversed(solution_regions(source, where)):
        indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
        stub = [f"{indent}# YOUR CODE HERE",
                f'{indent}raise NotImplementedError("{label}: replace these two lines with your solution")']
        lines[begin:end + 1] = stub
    return "\n".join(lines)


# --------------------------------------------------------------------------- student build
def student_notebook(nb: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """A copy of ``nb`` with the solutions removed and every output and execution count cleared.

    Raises ValueError when a marker is unbalanced or an ``exercise`` cell has no solution region
    (its solution would be handed out).
    """
    out = copy.deepcopy(nb)
    for index, cell in enumerate(out.cells):
        for key in ("execution", "ExecuteTime", "collapsed", "scrolled"):
            cell.get("metadata", {}).pop(key, None)
        if cell.cell_type != "code":
            continue
        where = f"{name}, cell {index}"
        ids = exercise_ids(cell.source)
        if EXERCISE_TAG in tags(cell) and not solution_regions(cell.source, where):
            raise ValueError(f"{where} is tagged '{EXERCISE_TAG}' but has no '{BEGIN}' ... '{END}' region; "
                             "mark the student's part so the student build can remove it")
        cell.source = strip_solutions(cell.source, ids[0] if ids else "", where)
        cell.outputs = []
        cell.execution_count = None
    return out


def _sources(src_dir: str | Path, dest_dir: str | Path, what: str) -> tuple[Path, list[Path]]:
    """``(dest, notebooks of src)`` after checking src is a folder of notebooks and dest is another folder."""
    src, dest = Path(src_dir), Path(dest_dir)
    if not src.is_dir():
        raise ValueError(f"{src} is not a folder of notebooks")
    if dest.resolve() == src.resolve():
        raise ValueError(f"{what} would overwrite the instructor notebooks; choose another DEST_DIR")
    sources = sorted(p for p in src.glob("*.ipynb") if not p.name.startswith("."))
    if not sources:
        raise ValueError(f"no notebooks (*.ipynb) in {src}")
    return dest, sources


def build_student(src_dir: str | Path, dest_dir: str | Path) -> list[Path]:
    """Write the student version of every ``*.ipynb`` in ``src_dir`` to ``dest_dir``; return the paths.

    Every notebook is converted before anything is written, so a bad marker leaves ``dest_dir`` as it was.
    """
    dest, sources = _sources(src_dir, dest_dir, "the student build")
    converted = [(p.name, student_notebook(nbformat.read(p, as_version=4), p.name)) for p in sources]
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name, nb in converted:
        path = dest / name
        nbformat.write(nb, path)
        written.append(path)
    return written


def build_workspace(src_dir: str | Path, dest_dir: str | Path) -> tuple[list[Path], list[Path]]:
    """The student's workspace (``make lab``): the student version of each notebook of ``src_dir`` that
    ``dest_dir`` does not have yet. Return ``(added, kept)``.

    A notebook already in ``dest_dir`` is never touched, so the student's answers survive a ``git pull``
    and a new lesson appears beside them (delete a file to get a fresh copy of that lesson). Files are
    created exclusively: even a file that appears meanwhile is not overwritten.
    """
    dest, sources = _sources(src_dir, dest_dir, "the workspace")
    kept = [dest / p.name for p in sources if (dest / p.name).exists()]
    missing = [p for p in sources if not (dest / p.name).exists()]
    converted = [(p.name, student_notebook(nbformat.read(p, as_version=4), p.name)) for p in missing]
    dest.mkdir(parents=True, exist_ok=True)
    added = []
    for name, nb in converted:
        path = dest / name
        try:
            with open(path, "x", encoding="utf-8") as handle:
                nbformat.write(nb, handle)
        except FileExistsError:
            kept.append(path)
            continue
        added.append(path)
    return added, sorted(kept)


# --------------------------------------------------------------------------- grading
@dataclass
class Result:
    """One exercise's grade: ``status`` is passed, failed or not attempted; ``feedback`` says why."""

    exercise: str
    status: str
    feedback: str

    @property
    def passed(self) -> bool:
        return self.status == PASSED


def exercise_cells(nb: nbformat.NotebookNode) -> list[tuple[int, str]]:
    """``(cell index, exercise id)`` of every cell tagged ``exercise``, in notebook order."""
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and EXERCISE_TAG in tags(cell):
            ids = exercise_ids(cell.source)
            if not ids:
                raise ValueError(f"cell {index} is tagged '{EXERCISE_TAG}' but has no check call such as "
                                 'check.close("03.1", ...); the grader finds exercises by that id')
            found.append((index, ids[0]))
    return found


def exercises_only(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` keeping only the ``exercise-setup`` cell and the ``exercise`` cells."""
    out = copy.deepcopy(nb)
    keep = [c for c in out.cells if c.cell_type == "code" and ({SETUP_TAG, EXERCISE_TAG} & set(tags(c)))]
    if not any(SETUP_TAG in tags(c) for c in keep):
        raise ValueError(f"no cell is tagged '{SETUP_TAG}', so the exercises cannot run on their own")
    out.cells = keep
    return out


def _current_env_kernel_manager():
    """A kernel manager that starts ipykernel with this interpreter (like nbval's --nbval-current-env)."""
    import ipykernel.kernelspec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    class CurrentEnv(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            return self.kernel_spec_class(resource_dir=ipykernel.kernelspec.RESOURCES,
                                          **ipykernel.kernelspec.get_kernel_dict())

    # async: a blocking manager would let nbclient block its event loop on IOPub and never time out
    return AsyncKernelManager(kernel_name="python3", kernel_spec_manager=CurrentEnv())


def execute(nb: nbformat.NotebookNode, cwd: str | Path, timeout: int = 600,
            env: dict[str, str] | None = None) -> dict[int, dict]:
    """Run every code cell of ``nb`` in place (errors allowed); return ``{cell index: execute_reply content}``.

    A cell that runs past ``timeout`` seconds is interrupted and recorded as a ``CellTimeoutError``;
    if the kernel dies, the cells after it are missing and key ``-1`` holds the error and the kernel's log.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    replies: dict[int, dict] = {}

    def on_cell_executed(cell, cell_index, execute_reply):
        replies[cell_index] = execute_reply.get("content", {})

    client = NotebookClient(
        nb, km=_current_env_kernel_manager(), timeout=timeout, allow_errors=True,
        interrupt_on_timeout=True,
        error_on_timeout={"ename": "CellTimeoutError", "evalue": f"the cell ran past {timeout} s",
                          "traceback": []},
        resources={"metadata": {"path": str(cwd)}}, on_cell_executed=on_cell_executed)
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as log:
        try:  # the kernel's own chatter goes to a log, shown only if it dies
            client.execute(env={**os.environ, **(env or {})}, stdout=log, stderr=log)
        except DeadKernelError as exc:
            log.seek(0)
            tail = log.read()[-1500:]
            replies[-1] = {"status": "error", "ename": "DeadKernelError", "evalue": f"{exc}\n{tail}".strip()}
    return replies


def _error_of(cell, reply: dict | None) -> tuple[str, str] | None:
    """``(ename, evalue)`` when the cell ended in an error, else None."""
    if reply and reply.get("ename") == "CellTimeoutError":  # the interrupt's KeyboardInterrupt hides why
        return reply["ename"], reply.get("evalue", "")
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return output.get("ename", ""), output.get("evalue", "")
    if reply and reply.get("status") == "error":
        return reply.get("ename", ""), reply.get("evalue", "")
    return None


def _judge(exercise: str, cell, reply: dict | None, records: list[dict]) -> Result:
    mine = [r for r in records if r.get("exercise") == exercise]
    error = _error_of(cell, reply)
    if error and error[0] == "NotImplementedError":
        return Result(exercise, NOT_ATTEMPTED, "the solution is still `raise NotImplementedError`")
    failures = [r for r in mine if not r.get("passed")]
    if failures:
        # the raised message carries the hint as well; the record has the feedback alone
        feedback = error[1] if error and error[0] == "ExerciseFailed" else failures[0].get("feedback", "")
        feedback = re.sub(r"^✘ \[[^\]]*\] ", "", feedback)
        return Result(exercise, FAILED, feedback)
    if mine and error:
        return Result(exercise, FAILED, f"the check passed, then the cell raised {error[0]}: {error[1]}")
    if mine:
        return Result(exercise, PASSED, "; ".join(r.get("feedback", "") for r in mine))
    if error:
        return Result(exercise, NOT_ATTEMPTED, f"the cell raised {error[0]} before its check ran: {error[1]}")
    if reply is None:
        return Result(exercise, NOT_ATTEMPTED, "the cell did not run (the kernel stopped before it)")
    return Result(exercise, NOT_ATTEMPTED, "the check did not run")


@dataclass
class Report:
    """Grades of one notebook: per-exercise results, plus errors of the non-exercise cells."""

    notebook: str
    mode: str
    results: list[Result]
    errors: list[str]

    @property
    def score(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def total(self) -> int:
        return len(self.results)

    def to_json(self) -> str:
        return json.dumps({"notebook": self.notebook, "mode": self.mode, "score": self.score,
                           "total": self.total, "exercises": [asdict(r) for r in self.results],
                           "errors": self.errors}, ensure_ascii=False, indent=2)

    def __str__(self) -> str:
        width = max([len(r.exercise) for r in self.results] + [8])
        lines = [f"Grading {self.notebook} ({self.mode})"]
        pad = "\n" + " " * (width + 19)
        lines += [f"  {r.exercise:<{width}}  {r.status:<13}  {pad.join(r.feedback.splitlines())}".rstrip()
                  for r in self.results]
        lines += [f"  note: {e}" for e in self.errors]
        lines.append(f"Total: {self.score}/{self.total} exercises passed")
        return "\n".join(lines)


def grade(path: str | Path, only_exercises: bool = False, timeout: int = 600,
          cwd: str | Path | None = None) -> Report:
    """Execute the notebook at ``path`` and grade each exercise it contains. Nothing is written to ``path``.

    ``only_exercises`` runs just the ``exercise-setup`` cell and the ``exercise`` cells (fast);
    ``timeout`` is per cell, in seconds; ``cwd`` defaults to the notebook's folder.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} does not exist; pass the path of a submitted .ipynb file")
    nb = nbformat.read(path, as_version=4)
    if only_exercises:
        nb = exercises_only(nb)
    cells = exercise_cells(nb)
    if not cells:
        raise ValueError(f"{path.name} has no cell tagged '{EXERCISE_TAG}': nothing to grade")
    with tempfile.TemporaryDirectory(prefix="labkit-grade-") as tmp:
        grade_file = Path(tmp) / "results.jsonl"
        grade_file.touch()
        replies = execute(nb, cwd or path.resolve().parent, timeout, {"LABKIT_GRADE_FILE": str(grade_file)})
        records = [json.loads(line) for line in grade_file.read_text(encoding="utf-8").splitlines() if line]
    results = [_judge(ex, nb.cells[i], replies.get(i), records) for i, ex in cells]
    graded = {i for i, _ in cells}
    errors = [f"the kernel died: {replies[-1]['evalue']}"] if -1 in replies else []
    for index, cell in enumerate(nb.cells):
        error = _error_of(cell, replies.get(index)) if cell.cell_type == "code" else None
        if error and index not in graded:
            errors.append(f"cell {index} raised {error[0]}: {error[1]}"[:300])
    return Report(path.name, "exercises only" if only_exercises else "whole notebook", results, errors)


# --------------------------------------------------------------------------- static check
def _bound_and_loaded(source: str) -> tuple[set[str], set[str], set[str]]:
    """Names a piece of code binds, deletes and reads (IPython magics are translated first)."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        tree = ast.parse(TransformerManager().transform_cell(source))
    except SyntaxError:
        return set(), set(), set()
    bound, deleted, loaded, local = set(), set(), set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.comprehension):  # [f(k) for k in ...]: k is local to the comprehension
            local.update(n.id for n in ast.walk(node.target) if isinstance(n, ast.Name))
        elif isinstance(node, ast.Name):
            {ast.Store: bound, ast.Del: deleted, ast.Load: loaded}[type(node.ctx)].add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
    return bound - local, deleted, loaded - local


def stale_names(nb: nbformat.NotebookNode) -> dict[str, set[str]]:
    """``{exercise id: names}`` a blank solution could inherit from an earlier cell.

    A name is stale when the solution region binds it, the code after the region reads it (the
    check), and an earlier cell already bound it: a student who deletes the ``raise`` line would
    then be graded on the lesson's value instead of their own.
    """
    defined: set[str] = set()
    stale: dict[str, set[str]] = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if EXERCISE_TAG in tags(cell) and exercise_ids(cell.source):
            lines = cell.source.splitlines()
            regions = solution_regions(cell.source)
            inside = "\n".join(l for b, e in regions for l in lines[b + 1:e])
            after = "\n".join(lines[regions[-1][1] + 1:]) if regions else ""
            solved = _bound_and_loaded(_parseable(inside))[0]
            read = _bound_and_loaded(after)[2]
            hits = solved & read & defined
            if hits:
                stale[exercise_ids(cell.source)[0]] = hits
        bound, deleted, _ = _bound_and_loaded(cell.source)
        defined = (defined | bound) - deleted
    return stale


def _parseable(code: str) -> str:
    """Dedent a solution region so it parses on its own (regions may sit inside a function)."""
    code = textwrap.dedent(code)
    return code if not code.startswith((" ", "\t")) else "if True:\n" + textwrap.indent(code, "    ")


def main_student(src: str, dest: str) -> int:
    """``python -m labkit student SRC_DIR DEST_DIR``."""
    try:
        written = build_student(src, dest)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        n = len(exercise_cells(nbformat.read(path, as_version=4)))
        print(f"wrote {path} ({n} exercise{'s' if n != 1 else ''})")
    return 0


def main_workspace(src: str, dest: str) -> int:
    """``python -m labkit workspace SRC_DIR DEST_DIR``."""
    try:
        added, kept = build_workspace(src, dest)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in added:
        print(f"new lesson: {path}")
    if kept:
        print(f"kept your {len(kept)} notebook{'s' if len(kept) != 1 else ''} in {dest} as they are")
    return 0


def main_grade(notebook: str, only_exercises: bool, as_json: bool, timeout: int) -> int:
    """``python -m labkit grade NOTEBOOK [--exercises-only] [--json]``."""
    try:
        report = grade(notebook, only_exercises=only_exercises, timeout=timeout)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.to_json() if as_json else report)
    return 0
