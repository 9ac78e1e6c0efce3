"""The on-disk cache: where it lives, and writes that never leave a half-written file behind.

Everything fetched or computed once (assets, the converted LLM, embeddings) lives under
``cache_dir()``, outside the repository. Every write goes to a temporary name first and is then
renamed into place (``os.replace`` is atomic on one file system), so an interrupted run leaves
either the old complete file or nothing -- never a truncated file that a later run would trust.
Taught in lesson 00.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import platformdirs

MANIFEST = "MANIFEST.json"


def cache_dir() -> Path:
    """The cache root: ``$LABKIT_CACHE`` if set, else the user cache dir (``~/.cache/labkit`` on Linux)."""
    root = os.environ.get("LABKIT_CACHE") or platformdirs.user_cache_dir("labkit")
    path = Path(root).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: Path, payload: bytes) -> Path:
    """Write ``payload`` to ``path`` via a temporary file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    """Text version of :func:`atomic_write_bytes` (UTF-8)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield a temporary folder next to ``final``; on success it replaces ``final`` whole.

    Write the folder's files, then its manifest (:func:`write_manifest`) last. If the block raises,
    the temporary folder is removed and ``final`` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_manifest(folder: Path, **extra: object) -> Path:
    """Record the size and SHA-256 of every file under ``folder`` (written atomically, last)."""
    folder = Path(folder)
    files = {
        str(p.relative_to(folder)): {"size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    return atomic_write_text(folder / MANIFEST, json.dumps({"files": files, **extra}, indent=1))


def verify_manifest(folder: Path, deep: bool = True) -> str | None:
    """Return ``None`` if ``folder`` matches its manifest, else a sentence saying what is wrong.

    ``deep=False`` checks sizes only (fast); ``deep=True`` also re-hashes every file.
    """
    folder = Path(folder)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return f"{folder} is missing or incomplete (no {MANIFEST})"
    try:
        files = json.loads(manifest.read_text("utf-8"))["files"]
    except (ValueError, KeyError) as exc:
        return f"{manifest} is unreadable ({exc})"
    for rel, want in files.items():
        path = folder / rel
        if not path.is_file():
            return f"{path} is missing"
        if path.stat().st_size != want["size"]:
            return f"{path} has {path.stat().st_size} bytes, expected {want['size']} (truncated?)"
        if deep and sha256_file(path) != want["sha256"]:
            return f"{path} does not match its recorded SHA-256 (corrupted?)"
    return None
