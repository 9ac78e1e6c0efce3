"""The student build and the grader (labkit.grading), on small synthetic notebooks: fast, no models."""

from __future__ import annotations

import json

import nbformat
import pytest

from labkit.instructor import grading
from labkit.__main__ import main


def cell(source: str, *tags: str, outputs: list | None = None):
    c = nbformat.v4.new_code_cell(source)
    if tags:
        c.metadata["tags"] = list(tags)
    if outputs:
        c.outputs = outputs
        c.execution_count = 1
    return c


SETUP = cell("from labkit import check\nimport time", "exercise-setup")
PASSES = cell("### BEGIN SOLUTION\nanswer = 6 * 7\n### END SOLUTION\n"
              "check.equal('99.1', answer, 42, what='the answer')", "exercise",
              outputs=[nbformat.v4.new_output("stream", name="stdout", text="✔ [99.1] ...\n")])
WRONG = cell("### BEGIN SOLUTION\nhead = 384 * 3\n### END SOLUTION\n"
             "check.equal('99.2', head, 1155, what='trainable parameters', hint='count the biases too')",
             "exercise")
STUB = cell("def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n"
            "check.close('99.3', f(2.0), 4.0, what='f(2)')", "exercise")
SLOW = cell("### BEGIN SOLUTION\ntime.sleep(60)\nslow = 1\n### END SOLUTION\n"
            "check.equal('99.4', slow, 1, what='slow')", "exercise")


def notebook(*cells) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# A lesson")] + [c.copy() for c in cells]
    return nb


def write(nb, path):
    nbformat.write(nb, path)
    return path


# ----------------------------------------------------------------------------- markers
def test_solution_regions_and_stub_keep_indentation():
    source = STUB.source
    assert grading.solution_regions(source) == [(1, 3)]
    student = grading.strip_solutions(source, "99.3")
    assert "return 2 * x" not in student
    assert '    raise NotImplementedError("Exercise 99.3: replace these two lines with your solution")' in student
    assert student.splitlines()[0] == "def f(x):" and "check.close('99.3'" in student


@pytest.mark.parametrize("source, message", [
    ("### BEGIN SOLUTION\nx = 1", "has no matching '### END SOLUTION'"),
    ("x = 1\n### END SOLUTION", "without a '### BEGIN SOLUTION'"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "inside another solution region"),
])
def test_unbalanced_markers_are_named(source, message):
    with pytest.raises(ValueError, match=message):
        grading.solution_regions(source, "lesson.ipynb, cell 3")


def test_exercise_ids_come_from_the_check_calls():
    assert grading.exercise_ids(WRONG.source) == ["99.2"]
    assert grading.exercise_ids("check.report(\"00.2\", True, 'x')\ncheck.equal('00.2', 1, 1, what='y')") == ["00.2"]


# ----------------------------------------------------------------------------- student build
def test_student_notebook_removes_solutions_and_outputs():
    nb = notebook(SETUP, PASSES, WRONG, cell("print('hello')", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="hello\n")]))
    student = grading.student_notebook(nb)
    sources = "\n".join(c.source for c in student.cells)
    assert "6 * 7" not in sources and "384 * 3" not in sources and "### BEGIN SOLUTION" not in sources
    assert sources.count("raise NotImplementedError") == 2
    assert all(c.outputs == [] and c.execution_count is None for c in student.cells if c.cell_type == "code")
    assert nb.cells[2].outputs, "the instructor notebook itself is left untouched"


def test_an_exercise_without_markers_would_leak_its_solution():
    leaky = cell("answer = 42\ncheck.equal('99.9', answer, 42, what='x')", "exercise")
    with pytest.raises(ValueError, match="no '### BEGIN SOLUTION' ... '### END SOLUTION' region"):
        grading.student_notebook(notebook(SETUP, leaky), "leaky.ipynb")


def test_build_student_writes_every_notebook(tmp_path):
    src, dest = tmp_path / "notebooks", tmp_path / "build" / "student"
    src.mkdir()
    write(notebook(SETUP, PASSES), src / "01_a.ipynb")
    write(notebook(SETUP, WRONG, STUB), src / "02_b.ipynb")
    assert main(["student", str(src), str(dest)]) == 0
    assert sorted(p.name for p in dest.iterdir()) == ["01_a.ipynb", "02_b.ipynb"]
    assert "NotImplementedError" in (dest / "02_b.ipynb").read_text()


def test_build_student_refuses_bad_input_and_writes_nothing(tmp_path, capsys):
    src, dest = tmp_path / "notebooks", tmp_path / "out"
    src.mkdir()
    with pytest.raises(ValueError, match="no notebooks"):
        grading.build_student(src, dest)
    with pytest.raises(ValueError, match="overwrite the instructor notebooks"):
        grading.build_student(src, src)
    write(notebook(SETUP, PASSES), src / "01_good.ipynb")
    write(notebook(cell("### BEGIN SOLUTION\nx = 1")), src / "02_broken.ipynb")
    assert main(["student", str(src), str(dest)]) == 2
    assert "02_broken.ipynb, cell 1" in capsys.readouterr().err
    assert not dest.exists(), "a bad marker in one notebook must not leave a half-written build"


# ----------------------------------------------------------------------------- static checks
def test_exercises_only_needs_a_setup_cell():
    with pytest.raises(ValueError, match="exercise-setup"):
        grading.exercises_only(notebook(PASSES))
    kept = grading.exercises_only(notebook(cell("x = 1"), SETUP, PASSES))
    assert [c.source for c in kept.cells] == [SETUP.source, PASSES.source]


def test_an_exercise_cell_needs_a_check_id():
    with pytest.raises(ValueError, match="has no check call"):
        grading.exercise_cells(notebook(cell("### BEGIN SOLUTION\n### END SOLUTION", "exercise")))


def test_stale_names_finds_a_blank_that_would_pass():
    earlier = cell("answer = 42")
    assert grading.stale_names(notebook(earlier, SETUP, PASSES)) == {"99.1": {"answer"}}
    assert grading.stale_names(notebook(SETUP, PASSES, WRONG)) == {}
    deleted = cell("answer = 42\ndel answer")
    assert grading.stale_names(notebook(deleted, SETUP, PASSES)) == {}
    loop = cell("for k in range(3):\n    pass")
    comprehension = cell("### BEGIN SOLUTION\nbest = 2\n### END SOLUTION\n"
                         "check.choice('99.5', best, {k for k in range(3)}, what='best')", "exercise")
    assert grading.stale_names(notebook(loop, SETUP, comprehension)) == {}, "k is local to the set comprehension"


# ----------------------------------------------------------------------------- grading
def test_grade_reports_passed_failed_not_attempted_and_timeouts(tmp_path):
    student_stub = grading.student_notebook(notebook(STUB)).cells[1]
    broken = cell("1 / 0")
    path = write(notebook(SETUP, broken, PASSES, WRONG, student_stub, SLOW), tmp_path / "sub.ipynb")
    before = path.read_text()
    report = grading.grade(path, timeout=4)
    got = {r.exercise: r for r in report.results}
    assert [r.exercise for r in report.results] == ["99.1", "99.2", "99.3", "99.4"]
    assert got["99.1"].status == grading.PASSED and "42" in got["99.1"].feedback
    assert got["99.2"].status == grading.FAILED
    assert "expected 1155, got 1152" in got["99.2"].feedback and "count the biases too" in got["99.2"].feedback
    assert got["99.3"].status == grading.NOT_ATTEMPTED and "NotImplementedError" in got["99.3"].feedback
    assert got["99.4"].status == grading.NOT_ATTEMPTED and "ran past 4 s" in got["99.4"].feedback
    assert (report.score, report.total) == (1, 4)
    assert any("ZeroDivisionError" in e for e in report.errors)
    assert "Total: 1/4 exercises passed" in str(report)
    assert path.read_text() == before, "grading must not write into the submission"


def test_grade_exercises_only_json_from_the_command_line(tmp_path, capsys):
    path = write(notebook(cell("raise SystemExit('the lesson body is not run')"), SETUP, PASSES, WRONG),
                 tmp_path / "sub.ipynb")
    assert main(["grade", str(path), "--exercises-only", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mode"] == "exercises only" and (out["score"], out["total"]) == (1, 2)
    assert [e["status"] for e in out["exercises"]] == ["passed", "failed"]
    assert out["errors"] == []


def test_grade_survives_a_dying_kernel(tmp_path):
    path = write(notebook(SETUP, PASSES, cell("import os\nos._exit(1)"), WRONG), tmp_path / "sub.ipynb")
    report = grading.grade(path, timeout=30)
    assert [r.status for r in report.results] == [grading.PASSED, grading.NOT_ATTEMPTED]
    assert "did not run" in report.results[1].feedback
    assert any("kernel died" in e for e in report.errors)


def test_grade_rejects_missing_or_empty_submissions(tmp_path, capsys):
    assert main(["grade", str(tmp_path / "nope.ipynb")]) == 2
    assert "does not exist" in capsys.readouterr().err
    path = write(notebook(cell("x = 1")), tmp_path / "plain.ipynb")
    with pytest.raises(ValueError, match="nothing to grade"):
        grading.grade(path)
