"""Shared fixtures. Tests that need a fresh asset cache get one in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """Point labkit at an empty cache folder for this test only."""
    root = tmp_path / "labkit-cache"
    monkeypatch.setenv("LABKIT_CACHE", str(root))
    return root


LESSONS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture
def lessons() -> list[Path]:
    """Every lesson notebook, in course order."""
    return LESSONS


def pytest_generate_tests(metafunc):
    """A test that takes ``lesson`` runs once per lesson notebook (ids: the notebook's stem)."""
    if "lesson" in metafunc.fixturenames:
        metafunc.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
