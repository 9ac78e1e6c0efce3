"""The instructor guide and the glossary keep up with the notebooks.

* every notebook has a section in ``docs/instructor.md`` whose heading names its file,
* every exercise id a notebook checks (``check.close("02.1", ...)``) is mentioned in the guide,
* the glossary is a table of at least 60 terms, each with a Chinese rendering, sorted by the English term,
  and every relative link in either document points to a file that exists.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
INSTRUCTOR = DOCS / "instructor.md"
GLOSSARY = DOCS / "glossary.md"

EXERCISE_ID = re.compile(r"""check\.\w+\(\s*["'](\d\d\.\d+)["']""")
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _exercise_ids(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    ids = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            ids += EXERCISE_ID.findall(cell.source)
    return list(dict.fromkeys(ids))


def _headings(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("#")]


def _glossary_rows() -> list[list[str]]:
    """The cells of every body row of the glossary's table (header and separator dropped)."""
    lines = [line.strip() for line in GLOSSARY.read_text(encoding="utf-8").splitlines()]
    table = [line for line in lines if line.startswith("|")]
    assert len(table) >= 2 and set(table[1].replace("|", "").strip()) <= set("-: "), \
        "the glossary should be one Markdown table: a header row, a separator row, then one row per term"
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header == ["English", "中文", "lesson", "definition"], header
    return [[c.strip() for c in line.strip("|").split("|")] for line in table[2:]]


def test_every_notebook_has_a_section_in_the_instructor_guide(lesson):
    headings = _headings(INSTRUCTOR.read_text(encoding="utf-8"))
    assert any(lesson.name in h for h in headings), (
        f"docs/instructor.md has no section heading naming {lesson.name}; add one "
        f"(e.g. '### Lesson {lesson.name[:2]} — ... · `{lesson.name}`') with goals, timing, exercises, "
        "common mistakes and discussion questions")


def test_every_exercise_id_is_in_the_instructor_guide(lesson):
    text = INSTRUCTOR.read_text(encoding="utf-8")
    missing = [i for i in _exercise_ids(lesson) if not re.search(rf"(?<![\d.]){re.escape(i)}(?![\d])", text)]
    assert not missing, f"docs/instructor.md does not mention exercise(s) {missing} of {lesson.name}"


def test_glossary_has_enough_bilingual_rows():
    rows = _glossary_rows()
    assert len(rows) >= 60, f"the glossary has {len(rows)} terms; expected at least 60"
    for row in rows:
        assert len(row) == 4, f"a glossary row should have 4 cells (English | 中文 | lesson | definition): {row}"
        english, chinese, lesson, definition = row
        assert english and definition and lesson, f"empty cell in glossary row {row}"
        assert CJK.search(chinese), f"the Chinese cell of '{english}' has no Chinese characters: {chinese!r}"


def test_glossary_is_sorted_by_english_term():
    keys = [re.sub(r"[^a-z0-9 ]", "", row[0].lower()) for row in _glossary_rows()]
    out_of_order = [(a, b) for a, b in zip(keys, keys[1:]) if a > b]
    assert not out_of_order, f"glossary rows out of alphabetical order: {out_of_order[:3]}"


def test_glossary_lesson_links_point_to_existing_notebooks():
    for english, _, lesson, _ in _glossary_rows():
        for target in LINK.findall(lesson):
            assert target.startswith("../notebooks/") and target.endswith(".ipynb"), \
                f"lesson link of '{english}' should point to a notebook: {target}"
            assert (DOCS / target).resolve().is_file(), f"lesson link of '{english}' points to a missing file: {target}"


@pytest.mark.parametrize("doc", [INSTRUCTOR, GLOSSARY], ids=lambda p: p.name)
def test_relative_links_resolve(doc):
    for target in LINK.findall(doc.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue  # a web address or an anchor
        path = (doc.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{doc.name} links to {target}, which does not exist"
