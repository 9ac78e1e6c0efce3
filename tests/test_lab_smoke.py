"""`make lab`'s main job: JupyterLab starts headless and lists the course notebooks."""

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
