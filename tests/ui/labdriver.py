"""Driving JupyterLab from the tests: start a real ``jupyter lab`` server, open pages, run commands."""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from playwright.sync_api import TimeoutError as PlaywrightTimeout

RESULTS = Path(__file__).resolve().parents[2] / "test-results"
PORT_ATTEMPTS = 3
STARTUP_S = 90


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    home: Path
    process: subprocess.Popen

    def api(self, path: str) -> str:
        return f"{self.url}/{path.lstrip('/')}?token={self.token}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(tmp: Path, notebooks: dict[str, dict] | None = None, autostart: bool = False) -> Lab:
    """``jupyter lab`` on a free port with a token, its own LUMI_HOME, settings and root dir. With
    ``autostart`` the server extension starts the local backend, as in ``./dev lab``; else the first
    ``%%remote`` does. Either way :func:`stop_lab` stops it."""
    import nbformat

    root, home, settings = tmp / "root", tmp / "lumi-home", tmp / "lab-settings"
    for d in (root, home, settings):
        d.mkdir(parents=True, exist_ok=True)
    write_notebooks(root, notebooks or {"empty.ipynb": nbformat.v4.new_notebook()})
    token = secrets.token_hex(16)
    env = dict(os.environ, LUMI_HOME=str(home), JUPYTERLAB_SETTINGS_DIR=str(settings),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
               LUMI_AUTOSTART="1" if autostart else "0", LUMI_HEAD_CPUS="2", LUMI_HEAD_GPUS="4")
    env.pop("LUMI_RAY_ADDRESS", None)
    env.pop("RAY_AUTH_MODE", None)  # as in `./dev lab`: Lumi picks Ray's auth mode (a token)
    log = tmp / "jupyter.log"
    for _ in range(PORT_ATTEMPTS):
        # a port free when picked can be taken before the server binds it (the backend the server extension
        # starts opens many): then the server exits saying so, and another port is tried
        port = _free_port()
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", f"--port={port}",
                 "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
                 f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
                 "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        lab = Lab(f"http://127.0.0.1:{port}", token, root, home, process)
        if _wait_until_up(lab, log):
            return lab
    stop_lab(lab)
    raise RuntimeError(f"jupyter lab found no free port in {PORT_ATTEMPTS} attempts: {log.read_text()[-3000:]}")


def write_notebooks(root: Path, notebooks: dict[str, dict]) -> None:
    """Put ``notebooks`` (name: notebook) in a lab's root dir (a running lab opens them from there)."""
    import nbformat

    for name, nb in notebooks.items():
        nbformat.write(nb, root / name)


def _wait_until_up(lab: Lab, log: Path) -> bool:
    """True once the server answers; False if it exited because its port was taken; raises otherwise."""
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if lab.process.poll() is not None:
            if "is already in use" in log.read_text():
                return False
            raise RuntimeError(f"jupyter lab exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(lab.api("api/status"), timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop_lab(lab)
    raise RuntimeError(f"jupyter lab did not start in {STARTUP_S} s: {log.read_text()[-3000:]}")


def stop_lab(lab: Lab) -> None:
    """SIGTERM lets the server shut its kernels down; then the local backend (it outlives them) is stopped."""
    from backends import stop_backend

    if lab.process.poll() is None:
        os.killpg(lab.process.pid, signal.SIGTERM)
        try:
            lab.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(lab.process.pid, signal.SIGKILL)
            lab.process.wait(10)
    stop_backend(lab.home)


def open_lab(browser, lab: Lab, path: str = "lab"):
    """A page showing JupyterLab (fresh workspace), ready for commands."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.goto(f"{lab.url}/{path}?reset&token={lab.token}")
    page.wait_for_selector("#jp-main-dock-panel", timeout=60_000)
    page.wait_for_function("window.jupyterapp && window.jupyterapp.started !== undefined", timeout=60_000)
    page.evaluate("() => window.jupyterapp.started")
    return page


def lab_command(page, command: str, args: dict | None = None):
    """Run a JupyterLab command in the page (the app is exposed as ``window.jupyterapp``)."""
    return page.evaluate("([c, a]) => window.jupyterapp.commands.execute(c, a)", [command, args or {}])


def open_panel(page):
    """Open the Lumi panel from its left-sidebar tab (a click on an open tab would close it)."""
    panel = page.locator("#lumi-panel")
    if not panel.is_visible():
        sidebar_tab(page, "lumi-panel").click()
    panel.wait_for(state="visible")
    return panel


def sidebar_tab(page, widget_id: str):
    """The left-sidebar tab of the widget with this id (``lumi-panel``, ``filebrowser``, …)."""
    return page.locator(f'.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="{widget_id}"]')


def widen_sidebar(page, width: int) -> None:
    """Drag the left sidebar's edge so that the panel is ``width`` pixels wide."""
    box = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] / 2, y)
    page.mouse.down()
    page.mouse.move(page.locator("#lumi-panel").bounding_box()["x"] + width, y, steps=5)
    page.mouse.up()


def set_theme(page, theme: str) -> None:
    """Switch to "JupyterLab Light" or "JupyterLab Dark" and wait until the page shows it."""
    lab_command(page, "apputils:change-theme", {"theme": theme})
    light = "false" if "Dark" in theme else "true"
    page.wait_for_function(f"document.body.dataset.jpThemeLight === '{light}'")
    page.wait_for_timeout(300)  # let the theme's stylesheet paint before a screenshot


def screenshot(page, name: str) -> Path:
    """Save the Lumi panel as ``test-results/<name>``."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / name
    page.locator("#lumi-panel").screenshot(path=str(path))
    return path


def open_notebook(page, path: str) -> None:
    """Open ``path`` (relative to the server's root) in the main area and wait for its kernel."""
    page.evaluate(
        """async path => {
            const widget = await window.jupyterapp.commands.execute('docmanager:open', {path, factory: 'Notebook'});
            await widget.context.ready;
            await widget.sessionContext.ready;
        }""",
        path,
    )


_NOTEBOOK = "[...window.jupyterapp.shell.widgets('main')].find(w => w.context && w.context.path === path)"


def run_cell(page, path: str, index: int, wait_s: float = 300) -> list[dict]:
    """Run cell ``index`` of the open notebook ``path`` (once: a finished cell counts as done) and return
    its outputs when it has finished."""
    start_cell(page, path, index)
    return cell_outputs(page, path, index, wait_s)


def start_cell(page, path: str, index: int) -> None:
    """Start running cell ``index`` of the open notebook ``path``; do not wait."""
    page.evaluate(
        f"""async ([path, index]) => {{
            const panel = {_NOTEBOOK};
            window.jupyterapp.shell.activateById(panel.id);
            while (window.jupyterapp.shell.currentWidget !== panel) {{  // with several notebooks open
                await new Promise(resolve => setTimeout(resolve, 50));
            }}
            panel.content.activeCellIndex = index;
            panel.content.deselectAll();
            void window.jupyterapp.commands.execute('notebook:run-cell');
        }}""",
        [path, index],
    )


def cell_outputs(page, path: str, index: int, wait_s: float = 300) -> list[dict]:
    """Cell ``index``'s outputs once it has finished; an error output fails the test with its traceback."""
    try:
        page.wait_for_function(
            f"""([path, index]) => {{
                const model = {_NOTEBOOK}.content.widgets[index].model;
                return model.executionCount !== null && model.executionState === 'idle';
            }}""",
            arg=[path, index], timeout=wait_s * 1000, polling=250,
        )
    except PlaywrightTimeout:
        raise AssertionError(f"cell {index} of {path} did not finish in {wait_s} s; so far it shows: "
                             f"{output_text(_outputs(page, path, index))[-2000:]!r}") from None
    outputs = _outputs(page, path, index)
    for out in outputs:
        if out["output_type"] == "error":
            raise AssertionError(f"cell {index} of {path} failed: {out['ename']}: {out['evalue']}\n"
                                 + re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(out["traceback"])))
    return outputs


def _outputs(page, path: str, index: int) -> list[dict]:
    return page.evaluate(f"([path, index]) => {_NOTEBOOK}.content.widgets[index].model.outputs.toJSON()",
                         [path, index])


def output_text(outputs: list[dict]) -> str:
    """The text a cell printed or returned."""
    parts = []
    for out in outputs:
        if out["output_type"] == "stream":
            parts.append(out["text"] if isinstance(out["text"], str) else "".join(out["text"]))
        elif "data" in out:
            parts.append(str(out["data"].get("text/plain", "")))
    return "".join(parts)
