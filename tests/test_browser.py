"""A real browser drives JupyterLab the way a student meets it (README.md, "The browser test").

JupyterLab is started by ``make serve-lab`` -- the recipe ``make lab`` and ``make lab-solutions`` run -- on
its own free port with its own token, and with the settings, workspaces, runtime and checkpoint folders in a
temporary folder, never in the repository or the user's home. Headless Chromium from the OS (Debian's
``chromium`` package), driven by ``playwright`` from the package index, then

1. opens lesson 00 from a freshly built student workspace (``python -m labkit workspace``): no modified
   marker, no dialog or pop-up; runs its code cells up to the first plot and checks that every cell that
   printed or drew in the committed run shows its output, every image has a nonzero size, no cell shows a
   traceback or a warning, and the page raised no error; saves, and the checkpoint lands outside the workspace;
2. opens lesson 03 as ``make lab-solutions`` serves it (on a copy of ``notebooks/``): no modified marker and
   every saved plot renders.

Screenshots of both go to the test's temporary folder (``pytest`` prints it on failure). Without Chromium
the test is skipped; under ``CI=true`` a missing browser is a failure.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
FIRST_LESSON = "00_start_here.ipynb"
PLOT_LESSON = "03_feature_extraction.ipynb"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
IN_CI = os.environ.get("CI", "").lower() == "true"
STDERR = 'application/vnd.jupyter.stderr'

# the notebook shown in the main area, and its cells by index (cells off screen may still be attached late)
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"
CELL = PANEL + ' .jp-Notebook .jp-Cell[data-windowed-list-index="{}"]'


def _missing(what: str) -> None:
    message = (f"{what}; the browser test needs Debian's/Ubuntu's `chromium` package (sudo apt-get install "
               "chromium) and playwright (make install), or set LABKIT_CHROMIUM to a Chromium executable")
    if IN_CI:
        pytest.fail(f"CI=true: {message}")
    pytest.skip(message)


def _chromium() -> str:
    for candidate in (os.environ.get("LABKIT_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    _missing("no Chromium found (looked for /usr/bin/chromium, chromium and chromium-browser on PATH)")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless Chromium with a fresh profile for the module (playwright's own browsers are not used)."""
    executable = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=executable, args=CHROMIUM_FLAGS, headless=True,
            viewport={"width": 1400, "height": 900})
        try:
            yield context
        finally:
            context.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _repo_state() -> list[str] | None:
    """What git sees in the working tree, ignored folders (a workspace, checkpoints) included but not Python's
    byte-code caches; None outside a git checkout."""
    if not shutil.which("git"):
        return None
    done = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        return None
    return [line for line in done.stdout.splitlines() if "__pycache__" not in line and ".pytest_cache" not in line]


class Lab:
    """JupyterLab started by ``make serve-lab`` on ``lab_dir``, everything it writes kept under ``home``."""

    def __init__(self, lab_dir: Path, home: Path):
        if not shutil.which("make"):
            _missing("`make` is not installed")
        self.lab_dir, self.home = lab_dir, home
        self.port, self.token = _free_port(), secrets.token_hex(16)
        self.state = home / "lab-state"
        # CI's MPLBACKEND=Agg would hide the plots; a `make test` around this run passes its own flags
        env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "MAKEFLAGS", "MFLAGS")}
        for var, sub in [("JUPYTERLAB_SETTINGS_DIR", "user-settings"), ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
                         ("JUPYTER_RUNTIME_DIR", "runtime"), ("JUPYTER_CONFIG_DIR", "config"),
                         ("JUPYTER_DATA_DIR", "data"), ("IPYTHONDIR", "ipython")]:
            env[var] = str(home / sub)
        lab_args = (f"--no-browser --ip=127.0.0.1 --IdentityProvider.token={self.token} "
                    "--ServerApp.port_retries=0")
        cmd = ["make", "--no-print-directory", "serve-lab", f"LAB_DIR={lab_dir}", f"LAB_STATE={self.state}",
               f"PORT={self.port}", f"BIN={Path(sys.executable).parent}", f"LAB_ARGS={lab_args}"]
        self.log = home / "jupyterlab.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 90
        while True:
            try:
                self._api("status")
                return
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    self.stop()
                    raise AssertionError(f"JupyterLab did not start; its log:\n{self.log_tail()}")
                time.sleep(0.5)

    def _api(self, path: str, method: str = "GET") -> dict:
        req = urllib.request.Request(f"{self.base}/api/{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            body = resp.read()
        return json.loads(body) if body else {}

    def url(self, notebook: str) -> str:
        return f"{self.base}/lab/tree/{notebook}?reset&token={self.token}"

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def stop(self) -> None:
        try:
            self._api("shutdown", method="POST")
            self.proc.wait(timeout=20)
        except Exception:
            pass
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)


class Watch:
    """Page errors, console errors and the open notebook of one browser tab."""

    def __init__(self, page):
        self.page, self.page_errors, self.console_errors = page, [], []
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))
        page.on("console", lambda msg: self.console_errors.append(msg.text) if msg.type == "error" else None)

    def open(self, url: str) -> None:
        self.page.goto(url)
        self.page.wait_for_selector(CELL.format(0), timeout=90_000)
        self.page.wait_for_selector("#jp-main-statusbar >> text=Idle", timeout=90_000)  # kernel started

    def tab_classes(self) -> str:
        return self.page.locator(".lm-TabBar-tab.jp-mod-current").first.get_attribute("class") or ""

    def pop_ups(self) -> list[str]:
        return self.page.evaluate("""() => [...document.querySelectorAll('.Toastify__toast, .jp-Dialog')]
                                        .map(e => e.textContent.trim().slice(0, 200))""")

    def code_cell_state(self, index: int) -> dict:
        return self.page.locator(CELL.format(index)).evaluate("""cell => ({
            prompt: cell.querySelector('.jp-InputPrompt')?.textContent ?? '',
            outputs: [...cell.querySelectorAll('.jp-OutputArea-output')].map(o => ({
                mime: o.dataset.mimeType ?? '', text: o.textContent.slice(0, 2000)})),
            images: cell.querySelectorAll('.jp-OutputArea-output img').length})""")

    def image_sizes(self) -> list[tuple[int, int, float, float, int]]:
        """(natural width, natural height, shown width, shown height, colours painted) of every output image.

        Each image is scrolled into view and photographed by the browser: a blank or unpainted image has one
        or two colours, a plot hundreds.
        """
        from PIL import Image

        sizes = []
        images = self.page.locator(PANEL + " .jp-OutputArea-output img")
        for i in range(images.count()):
            img = images.nth(i)
            img.scroll_into_view_if_needed(timeout=10_000)
            natural = img.evaluate("i => [i.naturalWidth, i.naturalHeight]")
            box = img.bounding_box() or {"width": 0, "height": 0}
            shot = Image.open(io.BytesIO(img.screenshot(timeout=10_000))).convert("RGB")
            colours = len(shot.getcolors(1 << 24) or [])
            sizes.append((natural[0], natural[1], round(box["width"]), round(box["height"]), colours))
        return sizes

    def problems(self) -> list[str]:
        """Error and warning outputs shown in the notebook, page errors, console errors."""
        shown = self.page.evaluate(f"""() => [...document.querySelectorAll(
            '{PANEL} .jp-OutputArea-output[data-mime-type="{STDERR}"]')].map(o => o.textContent)""")
        bad = [f"error/warning output: {t[:600]}" for t in shown
               if any(word in t for word in ("Traceback", "Error", "Warning"))]
        return (bad + [f"page error: {e}" for e in self.page_errors]
                + [f"console error: {e}" for e in self.console_errors])


def _code_cells_to_first_plot(nb) -> list[int]:
    """Indices of the code cells from the top down to the first that drew a plot in the committed run."""
    cells = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cells.append(index)
            if any("image/png" in o.get("data", {}) for o in cell.outputs):
                return cells
    raise AssertionError("the lesson draws no plot in its committed run")


def test_student_runs_lesson_00_in_the_workspace(browser, tmp_path):
    before = _repo_state()
    work = tmp_path / "work"
    built = subprocess.run([sys.executable, "-m", "labkit", "workspace", str(NOTEBOOKS), str(work)],
                           cwd=ROOT, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    solution = nbformat.read(NOTEBOOKS / FIRST_LESSON, as_version=4)
    to_run = _code_cells_to_first_plot(solution)
    assert len(to_run) >= 3

    lab = Lab(work, tmp_path)
    page = browser.new_page()
    try:
        watch = Watch(page)
        watch.open(lab.url(FIRST_LESSON))
        page.wait_for_timeout(1500)  # a pop-up or a metadata rewrite would show by now
        assert "jp-mod-dirty" not in watch.tab_classes(), \
            "the notebook is marked modified as soon as it opens (kernelspec or language_info differ?)"
        assert not watch.pop_ups(), f"a dialog or notification covers the notebook: {watch.pop_ups()}"

        # run from the top, cell by cell, as a student does with Shift+Enter, down to the first plot
        page.locator(CELL.format(0)).click()
        page.keyboard.press("Escape")
        for _ in range(to_run[-1] + 1):
            page.keyboard.press("Shift+Enter")
        start = time.time()
        for index in to_run:
            page.wait_for_function(
                """sel => /\\[\\d+\\]/.test(document.querySelector(sel)?.querySelector('.jp-InputPrompt')
                                            ?.textContent ?? '')""",
                arg=CELL.format(index), timeout=300_000)
        seconds = time.time() - start
        page.wait_for_timeout(500)

        for index in to_run:
            state = watch.code_cell_state(index)
            expected = solution.cells[index].outputs
            assert not expected or state["outputs"], \
                f"code cell {index} printed in the committed run but shows no output here: {state}"
            if any("image/png" in o.get("data", {}) for o in expected):
                assert state["images"], f"code cell {index} drew a plot in the committed run but shows none"
        sizes = watch.image_sizes()
        assert sizes and all(min(s[:4]) > 0 and s[4] > 8 for s in sizes), f"an image is empty or blank: {sizes}"
        assert not watch.problems(), "\n".join(watch.problems())
        assert not watch.pop_ups(), f"a dialog or notification appeared: {watch.pop_ups()}"
        page.locator(CELL.format(to_run[-1])).scroll_into_view_if_needed()
        page.wait_for_timeout(1000)  # let the cells scrolled into view paint
        page.screenshot(path=str(tmp_path / "lesson00-first-cells.png"))

        # the student saves: the checkpoint goes outside the workspace
        page.keyboard.press("Control+s")
        page.wait_for_function("() => !document.querySelector('.lm-TabBar-tab.jp-mod-current.jp-mod-dirty')",
                               timeout=30_000)
        print(f"lesson 00: {len(to_run)} code cells ran in {seconds:.1f} s; images {sizes}")
    finally:
        page.close()
        lab.stop()
    assert list((lab.state / "checkpoints" / "work").glob("00_start_here-checkpoint.ipynb")), \
        "no checkpoint in LAB_STATE"
    assert not (work / ".ipynb_checkpoints").exists(), "checkpoints were written into the workspace"
    saved = nbformat.read(work / FIRST_LESSON, as_version=4)
    assert any(c.get("outputs") for c in saved.cells if c.cell_type == "code"), "the save kept no outputs"
    assert _repo_state() == before, "the test changed the repository"


def test_solution_notebook_shows_its_plots(browser, tmp_path):
    before = _repo_state()
    solutions = tmp_path / "notebooks"  # a copy: make lab-solutions serves notebooks/ itself
    shutil.copytree(NOTEBOOKS, solutions, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    lab = Lab(solutions, tmp_path)
    page = browser.new_page()
    try:
        watch = Watch(page)
        watch.open(lab.url(PLOT_LESSON))
        page.wait_for_timeout(1500)
        assert "jp-mod-dirty" not in watch.tab_classes(), "the solution notebook is marked modified on open"
        sizes = watch.image_sizes()
        expected = sum("image/png" in o.get("data", {}) for c in nbformat.read(solutions / PLOT_LESSON, 4).cells
                       if c.cell_type == "code" for o in c.outputs)
        assert len(sizes) == expected, f"{len(sizes)} of the {expected} saved plots are shown"
        assert all(min(s[:4]) > 0 and s[4] > 8 for s in sizes), f"a plot is empty or blank: {sizes}"
        assert not watch.problems(), "\n".join(watch.problems())
        assert not watch.pop_ups(), f"a dialog or notification appeared: {watch.pop_ups()}"
        assert "jp-mod-dirty" not in watch.tab_classes(), "the solution notebook became modified"
        plot = page.locator(PANEL + " .jp-OutputArea-output img").first
        plot.scroll_into_view_if_needed()
        page.wait_for_timeout(1000)
        page.screenshot(path=str(tmp_path / "lesson03-plot.png"))
    finally:
        page.close()
        lab.stop()
    assert not (solutions / ".ipynb_checkpoints").exists(), "checkpoints were written next to the notebooks"
    assert _repo_state() == before, "the test changed the repository"
