"""`make lab`'s main job: JupyterLab starts headless and lists the course notebooks, and the student's
workspace keeps their answers. tests/test_browser.py drives it in a real browser."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str, method: str = "GET") -> dict:
    req = urllib.request.Request(url, method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        body = resp.read()
    return json.loads(body) if body else {}


def test_jupyterlab_serves_the_notebooks(tmp_path):
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
           f"--port={port}", f"--IdentityProvider.token={token}", f"--notebook-dir={NOTEBOOKS}",
           "--ServerApp.port_retries=0", "--allow-root"]
    env_home = {"JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, **env_home})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        listing = None
        while time.time() < deadline:
            try:
                listing = _get(f"{base}/api/contents", token)
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
                time.sleep(0.5)
        assert listing is not None, "JupyterLab did not answer within 60 s"
        names = {item["name"] for item in listing["content"]}
        assert "00_start_here.ipynb" in names
        assert {p.name for p in NOTEBOOKS.glob("*.ipynb")} <= names
        lab = urllib.request.urlopen(urllib.request.Request(
            f"{base}/lab", headers={"Authorization": f"token {token}"}), timeout=5)
        assert lab.status == 200
        _get(f"{base}/api/shutdown", token, method="POST")
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_workspace_keeps_the_students_answers_and_adds_new_lessons(tmp_path):
    """`make lab`'s workspace: solution-free copies, created once, never overwritten; new lessons appear beside."""
    import shutil

    import nbformat

    from labkit.instructor.grading import BEGIN, build_workspace

    src, work = tmp_path / "notebooks", tmp_path / "work"
    src.mkdir()
    lessons = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    for path in lessons[:2]:
        shutil.copy(path, src)
    added, kept = build_workspace(src, work)
    assert [p.name for p in added] == [p.name for p in lessons[:2]] and kept == []
    first = work / lessons[0].name
    nb = nbformat.read(first, as_version=4)
    assert not any(BEGIN in c.source for c in nb.cells), "the workspace hands out a solution"
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "outputs were not cleared"
    nb.cells[-1].source = "my_answer = 42  # the student's work"
    nbformat.write(nb, first)
    answered = first.read_bytes()

    shutil.copy(lessons[2], src)  # a `git pull` brings a new lesson
    done = subprocess.run([sys.executable, "-m", "labkit", "workspace", str(src), str(work)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"new lesson: {work / lessons[2].name}" in done.stdout
    assert "kept your 2 notebooks" in done.stdout
    assert first.read_bytes() == answered, "the student's answers were overwritten"
    assert (work / lessons[2].name).exists()


def test_the_workspace_is_not_committed():
    import shutil

    import pytest

    root = NOTEBOOKS.parent
    if not shutil.which("git") or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(["git", "check-ignore", "-q", "work/00_start_here.ipynb"], cwd=root)
    assert ignored.returncode == 0, ".gitignore must ignore the student workspace work/"
