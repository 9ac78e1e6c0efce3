"""The on-disk cache: where it lives, and how nothing damaged in it is ever trusted.

Everything fetched or computed once (assets, the converted LLM, embeddings, fine-tuned weights)
lives under ``cache_dir()``, outside the repository. Each cached thing is an *entry*: one file
(an ``.npy`` of embeddings) or one folder (an extracted asset, a saved model). Four rules hold for
every entry:

1. **A content hash is written with it.** A folder carries ``MANIFEST.json`` (size and SHA-256 of
   every file); a file carries a sidecar ``<name>.manifest.json`` in the same format. The entry is
   checked against it before it is trusted -- once per process, and again whenever a file's size
   or modification time changes; ``fetch`` and ``doctor`` always re-hash. Same-size corruption is
   caught because the hash, not the size, decides.
2. **Writes are atomic and replace-aside.** New content is written under a temporary name
   (``.<name>.tmp-XXXX``) and renamed into place; an old folder is first renamed aside, never
   deleted in front of a reader.
3. **One writer at a time.** A lock file per entry (``.<name>.lock``, via ``filelock``) is held
   around every fetch, conversion and write, so two processes sharing a cache (a class on a shared
   disk, a notebook and a test) never crash or corrupt each other. Temporaries left by a killed
   run are removed under that lock (:func:`remove_stale`) and listed by :func:`stale_temporaries`.
4. **Files honour the umask**, so a class-wide cache is readable by everyone it should be.

Lesson 00 shows it through ``python -m labkit doctor``; no lesson calls it directly.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import platformdirs
from filelock import FileLock, Timeout

MANIFEST = "MANIFEST.json"
SIDECAR = ".manifest.json"
TMP = ".tmp-"
LOCK_TIMEOUT_S = 1800.0

_TRUSTED: dict[Path, tuple] = {}  # entry -> stat signature it had when its hashes last matched


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


# --------------------------------------------------------------------------- permissions
@lru_cache(maxsize=1)
def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def honour_umask(path: Path) -> Path:
    """Give ``path`` (and, for a folder, everything in it) the mode a normal ``open``/``mkdir``
    would: ``mkstemp``/``mkdtemp`` create 0600/0700, which would lock a shared cache to its creator."""
    path = Path(path)
    for p in [path, *(path.rglob("*") if path.is_dir() else [])]:
        if not p.is_symlink():
            os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~_umask())
    return path


# --------------------------------------------------------------------------- locks and temporaries
def _lock_path(entry: Path) -> Path:
    return entry.parent / f".{entry.name}.lock"


@contextlib.contextmanager
def locked(entry: Path, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the lock of ``entry`` (a file or folder in the cache); stale temporaries of the entry
    are removed once it is held. The lock is released when the process dies, so a killed run never
    leaves it stuck; within one thread it is re-entrant (a nested ``locked`` of the same entry
    just counts up)."""
    entry = Path(entry)
    entry.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(_lock_path(entry)), mode=0o666 & ~_umask(), is_singleton=True)
    try:
        lock.acquire(timeout=1)
    except Timeout:
        warnings.warn(f"waiting for another process that is writing {entry} ...", stacklevel=3)
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise TimeoutError(f"another process has held the lock {lock.lock_file} for over "
                               f"{timeout:.0f} s; if no labkit process is running, delete that "
                               "file and try again") from None
    try:
        if lock.lock_counter == 1:  # outermost hold: no temporary of ours exists yet
            remove_stale(entry)
        yield
    finally:
        lock.release()


def _temporaries(entry: Path) -> list[Path]:
    return sorted(entry.parent.glob(f".{entry.name}{TMP}*"))


def remove_stale(entry: Path) -> list[Path]:
    """Delete the temporaries a killed writer of ``entry`` left behind. Call with the lock held."""
    gone = _temporaries(Path(entry))
    for tmp in gone:
        _delete(tmp)
    return gone


def _delete(path: Path) -> None:
    """Remove a file or a folder (never following a link into a folder)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _is_temporary(path: Path) -> bool:
    name = path.name
    legacy = name.startswith(".") and (name.endswith(".tmp") or name.startswith(".pip-"))
    return (name.startswith(".") and TMP in name) or legacy


def _entry_of(tmp: Path) -> Path:
    """The entry a temporary belongs to (``.x.npy.tmp-ab12`` -> ``x.npy``)."""
    name = tmp.name[1:]
    name = name.split(TMP)[0] if TMP in name else name
    return tmp.parent / name.removesuffix(SIDECAR)  # a record is written under its entry's lock


def stale_temporaries(root: Path | None = None) -> list[Path]:
    """Temporaries under ``root`` (default: the cache) that no running writer holds."""
    root = Path(root) if root is not None else cache_dir()
    found = []
    for path in sorted(root.rglob(".*")):
        if not _is_temporary(path) or any(_is_temporary(p) for p in path.relative_to(root).parents
                                          if p != Path(".")):
            continue
        lock = FileLock(str(_lock_path(_entry_of(path))))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue  # a live process is writing it
        lock.release()
        found.append(path)
    return found


def remove_stale_temporaries(root: Path | None = None) -> list[Path]:
    """Delete every stale temporary in the cache, each under its entry's lock (``fetch`` calls this)."""
    removed = []
    for tmp in stale_temporaries(root):
        with contextlib.suppress(Timeout):
            with FileLock(str(_lock_path(_entry_of(tmp))), timeout=0):
                _delete(tmp)
                removed.append(tmp)
    return removed


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def temporaries_size(paths: list[Path]) -> int:
    """Bytes held by ``paths`` (files or folders)."""
    return sum(_size(p) for p in paths if p.exists())


def new_temporary(entry: Path, directory: bool = False) -> Path:
    """A fresh temporary file or folder next to ``entry``, named so :func:`remove_stale` finds it."""
    entry = Path(entry)
    entry.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        return honour_umask(Path(tempfile.mkdtemp(prefix=f".{entry.name}{TMP}", dir=entry.parent)))
    fd, tmp = tempfile.mkstemp(prefix=f".{entry.name}{TMP}", dir=entry.parent)
    os.close(fd)
    return honour_umask(Path(tmp))


# --------------------------------------------------------------------------- records and checks
def _record_path(entry: Path) -> Path:
    return entry / MANIFEST if entry.is_dir() else entry.parent / f"{entry.name}{SIDECAR}"


def _files(entry: Path) -> dict[str, Path]:
    if entry.is_dir():
        return {str(p.relative_to(entry)): p for p in sorted(entry.rglob("*"))
                if p.is_file() and p.name != MANIFEST}
    return {entry.name: entry}


def _record(entry: Path, **extra: object) -> str:
    files = {rel: {"size": p.stat().st_size, "sha256": sha256_file(p)} for rel, p in _files(entry).items()}
    return json.dumps({"files": files, **extra}, indent=1)


def write_manifest(folder: Path, **extra: object) -> Path:
    """Record the size and SHA-256 of every file under ``folder`` in its ``MANIFEST.json`` (last)."""
    folder = Path(folder)
    return _write_atomic(folder / MANIFEST, _record(folder, **extra).encode("utf-8"))


def _signature(entry: Path, listed: dict) -> tuple:
    stats = [(rel, (entry / rel if entry.is_dir() else entry).stat()) for rel in listed]
    record = _record_path(entry).stat()
    return tuple((rel, s.st_size, s.st_mtime_ns, s.st_ino) for rel, s in stats) + (
        (record.st_size, record.st_mtime_ns, record.st_ino),)


def verify(entry: Path, deep: bool | None = None) -> str | None:
    """``None`` if ``entry`` matches its recorded hashes, else a sentence saying what is wrong.

    ``deep=None`` (the default) re-hashes only what this process has not yet verified, or whose
    size/modification time changed since; ``deep=True`` always re-hashes (``fetch``, ``doctor``);
    ``deep=False`` checks sizes only (a quick status).
    """
    entry = Path(entry)
    record = _record_path(entry) if entry.exists() else entry.parent / f"{entry.name}{SIDECAR}"
    if not entry.exists():
        return f"{entry} is missing"
    if not record.is_file():
        return f"{entry} is incomplete or was not written by labkit (no {record.name})"
    try:
        listed = json.loads(record.read_text("utf-8"))["files"]
        wanted = {rel: (int(v["size"]), str(v["sha256"])) for rel, v in listed.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"{record} is unreadable ({exc})"
    actual = _files(entry)
    if set(actual) != set(wanted):
        odd = sorted(set(actual) ^ set(wanted))[:3]
        return f"{entry} does not hold the files its record lists (differs in {odd})"
    for rel, (size, _) in wanted.items():
        if actual[rel].stat().st_size != size:
            return f"{actual[rel]} has {actual[rel].stat().st_size} bytes, expected {size} (truncated?)"
    if deep is False:
        return None
    signature = _signature(entry, wanted)
    if deep is None and _TRUSTED.get(entry.resolve()) == signature:
        return None
    for rel, (_, digest) in wanted.items():
        if sha256_file(actual[rel]) != digest:
            _TRUSTED.pop(entry.resolve(), None)
            return f"{actual[rel]} does not match its recorded SHA-256 (corrupted or changed)"
    _TRUSTED[entry.resolve()] = signature
    return None


# --------------------------------------------------------------------------- writing entries
def _write_atomic(path: Path, payload: bytes) -> Path:
    tmp = new_temporary(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_file(path: Path, payload: bytes) -> Path:
    """Write a one-file entry atomically, under its lock, with its hash record beside it."""
    path = Path(path)
    with locked(path):
        _write_atomic(path, payload)
        _write_atomic(_record_path(path), _record(path).encode("utf-8"))
    _TRUSTED.pop(path.resolve(), None)
    return path


def _read_checked(path: Path) -> bytes | None:
    try:
        payload = path.read_bytes()
        listed = json.loads(_record_path(path).read_text("utf-8"))["files"][path.name]
        if len(payload) == listed["size"] and hashlib.sha256(payload).hexdigest() == listed["sha256"]:
            return payload
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def read_file(path: Path) -> bytes | None:
    """The bytes of a one-file entry if they match their record, else ``None`` (missing or damaged:
    recompute and :func:`write_file` it again). The hash is taken of the bytes returned, so what
    was checked is exactly what is used."""
    path = Path(path)
    if not path.is_file():
        return None
    payload = _read_checked(path)
    if payload is None:  # perhaps a writer was between its two renames: look again under its lock
        with locked(path):
            payload = _read_checked(path)
    if payload is None:
        warnings.warn(f"cached file {path} has no hash record or does not match its recorded hash; "
                      "recomputing it", stacklevel=2)
    return payload


def read_array(path: Path, shape: tuple[int, ...], dtype: str | None = None):
    """A cached ``.npy`` array (no pickles) if it matches its recorded hash, ``shape`` (and ``dtype``)
    and holds only finite numbers, else ``None`` -- recompute it and :func:`write_array` it again."""
    import numpy as np
    payload = read_file(path)
    if payload is None:
        return None
    try:
        arr = np.load(io.BytesIO(payload), allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if arr.shape != tuple(shape) or (dtype is not None and arr.dtype != dtype) or not np.isfinite(arr).all():
        return None
    return arr


def write_array(path: Path, arr) -> Path:
    """Write ``arr`` as a ``.npy`` entry with :func:`write_file` (atomic, hash-recorded)."""
    import numpy as np
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return write_file(path, buf.getvalue())


@contextlib.contextmanager
def atomic_directory(final: Path, **record: object) -> Iterator[Path]:
    """Build a folder entry: yield an empty temporary folder next to ``final``; when the block ends
    without error its ``MANIFEST.json`` is written (with ``record`` as extra fields) and it replaces
    ``final`` (the old folder is renamed aside, then deleted). Hold :func:`locked` around it. If the
    block raises, the temporary folder is removed and ``final`` is left as it was."""
    final = Path(final)
    tmp = new_temporary(final, directory=True)
    try:
        yield tmp
        honour_umask(tmp)
        write_manifest(tmp, **record)
        if final.exists():
            aside = new_temporary(final, directory=True)
            os.replace(final, aside / "old")
            os.replace(tmp, final)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _TRUSTED.pop(final.resolve(), None)


# --------------------------------------------------------------------------- audit and repair
COMPUTED = ("embeddings", "finetuned")  # folders of results labkit computes (and can recompute)


def computed_entries(root: Path | None = None) -> list[Path]:
    """Every entry in the folders of computed results (embeddings, fine-tuned weights, ...)."""
    root = Path(root) if root is not None else cache_dir()
    found = []
    for sub in COMPUTED:
        if (root / sub).is_dir():
            found += [p for p in sorted((root / sub).iterdir())
                      if not p.name.startswith(".") and not p.name.endswith(SIDECAR)]
    return found


def audit(root: Path | None = None, deep: bool = True) -> list[tuple[Path, str]]:
    """``(entry, problem)`` for every computed entry that fails its record (``doctor`` lists them)."""
    return [(e, problem) for e in computed_entries(root) if (problem := verify(e, deep=deep))]


def remove_damaged(root: Path | None = None) -> list[Path]:
    """Delete every computed entry that fails its record, under its lock; labkit recomputes it
    when next asked (``fetch`` calls this)."""
    removed = []
    for entry, _ in audit(root):
        with locked(entry):
            if entry.exists() and verify(entry, deep=True) is not None:
                _delete(entry)
                (entry.parent / f"{entry.name}{SIDECAR}").unlink(missing_ok=True)
                removed.append(entry)
    return removed
