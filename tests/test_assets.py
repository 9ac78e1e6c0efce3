"""Assets: pip fetch, SHA-256 verification, re-fetch after corruption, offline error, atomic writes."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from labkit import assets, cache

NAME = "vader-corpora"  # the small asset (2.5 MB) keeps these tests quick


def test_fetch_verifies_and_extracts(fresh_cache):
    folder = assets.fetch(NAME, progress=False)
    assert folder == fresh_cache / "assets" / NAME
    assert cache.verify(folder, deep=True) is None
    assert cache.sha256_file(assets.archive_path(NAME)) == assets.ASSETS[NAME].sha256
    assert (folder / "hutto_ICWSM_2014" / "tweets_GroundTruth.txt").is_file()
    assert assets.status(NAME, deep=True) == "ready"
    # nothing half-written is left behind
    assert cache.stale_temporaries() == []
    assert not [p for p in fresh_cache.rglob("*") if cache.TMP in p.name]


def test_corrupted_files_are_detected_and_refetched(fresh_cache):
    folder = assets.fetch(NAME, progress=False)
    archive = assets.archive_path(NAME)
    archive.write_bytes(archive.read_bytes()[:1000])  # truncated download
    extracted = folder / "hutto_ICWSM_2014" / "movieReviewSnippets_GroundTruth.txt"
    extracted.write_text("damaged")  # damaged extracted file
    assert assets.status(NAME) != "ready"
    with pytest.warns(UserWarning, match="corrupted or truncated"):
        folder = assets.fetch(NAME, progress=False)
    assert cache.sha256_file(archive) == assets.ASSETS[NAME].sha256
    assert cache.verify(folder, deep=True) is None


def test_incomplete_extraction_is_not_trusted(fresh_cache):
    folder = assets.fetch(NAME, progress=False)
    (folder / cache.MANIFEST).unlink()  # as if a run died before the manifest was written
    assert assets.status(NAME) != "ready"
    assert cache.verify(assets.fetch(NAME, progress=False)) is None


def test_a_file_with_the_wrong_hash_is_refused_by_pip(fresh_cache, monkeypatch):
    wrong = dataclasses.replace(assets.ASSETS[NAME], sha256="0" * 64)
    monkeypatch.setitem(assets.ASSETS, NAME, wrong)
    with pytest.raises(assets.AssetError, match="pip refused"):
        assets.fetch(NAME, progress=False)
    assert not assets.archive_path(NAME).exists()  # the bad file is not kept
    assert cache.stale_temporaries() == []


def test_offline_without_cache_says_what_to_run(fresh_cache, monkeypatch):
    for key in list(os.environ):
        if key.startswith("PIP_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)          # ignore this machine's pip config
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # a dead local index
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    with pytest.raises(assets.AssetError) as info:
        assets.fetch(NAME, progress=False)
    message = str(info.value)
    assert "no verified copy" in message
    assert "python -m labkit fetch" in message
    assert "vaderSentiment==3.3.2" in message


def test_unknown_asset_lists_the_valid_ones():
    with pytest.raises(assets.AssetError, match="smollm2"):
        assets.fetch("bert-base")


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "x.bin"
    cache.write_file(target, b"old")

    def boom(src, dst):
        raise KeyboardInterrupt  # the run is interrupted just before the rename

    monkeypatch.setattr(cache.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        cache.write_file(target, b"new" * 1000)
    monkeypatch.undo()
    assert cache.read_file(target) == b"old"
    assert not [p for p in tmp_path.iterdir() if cache.TMP in p.name]  # no temporary file left


def test_atomic_directory_keeps_old_folder_on_error(tmp_path):
    final = tmp_path / "model"
    with cache.atomic_directory(final) as tmp:
        (tmp / "a.txt").write_text("v1")
    with pytest.raises(RuntimeError):
        with cache.atomic_directory(final) as tmp:
            (tmp / "a.txt").write_text("v2 partial")
            raise RuntimeError("died half way")
    assert (final / "a.txt").read_text() == "v1"
    assert cache.verify(final) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_manifest_detects_truncation(tmp_path):
    (tmp_path / "w.bin").write_bytes(b"x" * 100)
    cache.write_manifest(tmp_path)
    (tmp_path / "w.bin").write_bytes(b"x" * 50)
    assert "expected 100" in cache.verify(tmp_path, deep=False)
    (tmp_path / "w.bin").write_bytes(b"y" * 100)
    assert "SHA-256" in cache.verify(tmp_path, deep=True)
