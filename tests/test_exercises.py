"""Every lesson's exercises: well formed, and every check is real.

Static tests (fast, part of ``make unit``): each lesson ends with "Check your understanding", one
``exercise-setup`` cell and 2-4 ``exercise`` cells with solution markers and a check for that lesson,
and no blank solution can inherit the answer from an earlier cell.

Executed tests (marker ``exercises``, run by ``make exercises`` after the notebooks): through the
real grader, in a fresh kernel, with only the setup and exercise cells,

* the instructor version passes every exercise,
* the student version (``make student``) passes none -- each is "not attempted",
* a blank version -- the solution deleted, nothing written -- passes none either, so each check
  reads what the student's code produces rather than something the lesson already computed.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from labkit.instructor import grading


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def blank_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student's notebook after deleting the stub and writing nothing: each region becomes ``pass``."""
    out = grading.student_notebook(nb)
    for c in out.cells:
        if c.cell_type == "code":
            c.source = re.sub(r"(?m)^([ \t]*)raise NotImplementedError\(.*\)$", r"\1pass", c.source)
    return out


def test_every_lesson_is_found(lessons):
    assert len(lessons) >= 5 and lessons[0].name == "00_start_here.ipynb"


def test_exercise_block_is_well_formed(lesson):
    nb = read(lesson)
    number = lesson.name[:2]
    headings = [i for i, c in enumerate(nb.cells)
                if c.cell_type == "markdown" and re.search(rf"(?m)^{grading.HEADING}\s*$", c.source)]
    assert headings, f"{lesson.name}: no '{grading.HEADING}' section"
    setup = [i for i, c in enumerate(nb.cells) if grading.SETUP_TAG in grading.tags(c)]
    assert len(setup) == 1, f"{lesson.name}: expected one '{grading.SETUP_TAG}' cell, found {len(setup)}"
    cells = grading.exercise_cells(nb)
    assert 2 <= len(cells) <= 4, f"{lesson.name}: {len(cells)} exercises; a lesson has 2-4"
    assert headings[-1] < setup[0] < cells[0][0], "heading, then setup, then the exercises"
    ids = [ex for _, ex in cells]
    # a lesson split into parts (05_fine_tuning, 05_fine_tuning_2_…) numbers its exercises on across the parts
    earlier = [p for p in sorted(lesson.parent.glob(f"{number}_*.ipynb")) if p.name < lesson.name]
    first = 1 + sum(len(grading.exercise_cells(read(p))) for p in earlier)
    assert ids == [f"{number}.{k}" for k in range(first, first + len(ids))], f"{lesson.name}: ids {ids}"
    for index, ex in cells:
        source = nb.cells[index].source
        (begin, end), *more = grading.solution_regions(source, f"{lesson.name}, cell {index}")
        after = "\n".join(source.splitlines()[end + 1:])
        assert f'"{ex}"' in after or f"'{ex}'" in after, f"{ex}: the check must follow the solution region"
    assert grading.stale_names(nb) == {}, "a blank solution would be graded on the lesson's own values"


def test_student_version_has_no_solution_left(lesson):
    nb = read(lesson)
    student = grading.student_notebook(nb, lesson.name)
    for (index, ex), (s_index, s_ex) in zip(grading.exercise_cells(nb), grading.exercise_cells(student)):
        assert (index, ex) == (s_index, s_ex)
        source, stub = nb.cells[index].source, student.cells[index].source
        lines = source.splitlines()
        solution = [l.strip() for b, e in grading.solution_regions(source) for l in lines[b + 1:e]]
        assert f"Exercise {ex}: replace these two lines" in stub
        left = [l for l in solution if l and not l.startswith("#") and l in stub.splitlines()]
        assert not left, f"{ex}: solution lines still in the student version: {left}"


@pytest.mark.exercises
def test_solutions_pass_and_blanks_fail(lesson, tmp_path):
    nb = read(lesson)
    versions = {"instructor": nb, "student": grading.student_notebook(nb, lesson.name),
                "blank": blank_notebook(nb)}
    reports = {}
    for name, version in versions.items():
        copy = tmp_path / f"{name}_{lesson.name}"
        nbformat.write(version, copy)
        reports[name] = grading.grade(copy, only_exercises=True, timeout=300, cwd=lesson.parent)
    instructor = reports["instructor"]
    assert instructor.score == instructor.total, f"the solutions must pass:\n{instructor}"
    assert not instructor.errors, instructor.errors
    assert all(r.status == grading.NOT_ATTEMPTED for r in reports["student"].results), str(reports["student"])
    blank = reports["blank"]
    assert blank.score == 0, f"a blank solution must not pass any check:\n{blank}"
