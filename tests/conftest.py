"""Shared fixtures. Tests that need a fresh asset cache get one in a temporary folder."""

from __future__ import annotations

import pytest


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """Point labkit at an empty cache folder for this test only."""
    root = tmp_path / "labkit-cache"
    monkeypatch.setenv("LABKIT_CACHE", str(root))
    return root
