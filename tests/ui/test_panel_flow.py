"""The whole flow in a real JupyterLab: a notebook's ``%%remote`` job shows in the panel's queue,
finishes and is billed; a long job is cancelled from the panel; a ``%%deploy`` endpoint shows
under deployments and is rolled back from the panel. Saves the panel in light and dark."""

from __future__ import annotations

import json
import re

import httpx
import nbformat
import pytest
from labdriver import (
    cell_outputs,
    open_lab,
    open_notebook,
    open_panel,
    output_text,
    run_cell,
    screenshot,
    set_theme,
    start_cell,
    widen_sidebar,
    write_notebooks,
)
from lumi.runtime.cluster import cuda_device_count
from playwright.sync_api import TimeoutError as PlaywrightTimeout

NOTEBOOK = "flow.ipynb"
CELLS = [
    # what a user types: no explicit connect; the first %%remote starts the local backend and its gateway
    "%load_ext lumi_magics\nimport numpy as np\nx = np.linspace(-1, 1, 256 * 256, dtype=np.float32).reshape(256, 256)",
    "%%remote --timeout 120 --tenant alice --tier enterprise\ny = np.tanh(x) @ x",
    "print(float(abs(y).sum()) > 0)",
    "%%remote --timeout 90 --python --tenant bob\nimport time\ntime.sleep(60)",
    "w = np.arange(12, dtype=np.float32).reshape(4, 3)",
    "%%deploy demo --input x:float32[batch,4]\ndef predict(x):\n    return x @ w",
    "w = w * 2",
    "%%deploy demo --input x:float32[batch,4]\ndef predict(x):\n    return x @ w",
    "print(demo(np.ones((2, 4), np.float32)).tolist())",
]


@pytest.fixture(scope="module")
def lab(plain_lab):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    write_notebooks(plain_lab.root, {NOTEBOOK: nb})
    return plain_lab


@pytest.fixture(scope="module")
def page(browser, lab):
    page = open_lab(browser, lab)
    open_notebook(page, NOTEBOOK)
    yield page
    page.context.close()


@pytest.fixture(scope="module")
def remote_works() -> list:
    """Holds True once a %%remote cell has run (the cancel test needs a working %%remote)."""
    return []


def _gateway(lab) -> tuple[str, dict]:
    info = json.loads((lab.home / "gateway.json").read_text())
    return info["url"], {"Authorization": f"Bearer {info['key']}"}


def _cost(text: str) -> float:
    """A cost as the panel shows it (``$0.0012``, ``<$0.000001``: then its bound)."""
    return float(re.fullmatch(r"<?\$([0-9.]+)", text.strip()).group(1))


@pytest.mark.timeout(600)
def test_remote_job_shows_in_the_queue_finishes_and_is_billed(page, lab, remote_works):
    run_cell(page, NOTEBOOK, 0)
    run_cell(page, NOTEBOOK, 1)
    assert output_text(run_cell(page, NOTEBOOK, 2)).strip() == "True"
    remote_works.append(True)
    panel = open_panel(page)
    try:
        page.locator("#lumi-panel.lumi-mod-connected").wait_for(timeout=15_000)
    except PlaywrightTimeout:
        pytest.fail("after a %%remote cell the panel is not connected (no gateway started for the notebook's "
                    f"backend): {panel.locator('.lumi-NotConnected').inner_text()}")
    job = panel.locator('[data-section="queue"] .lumi-Job[data-state="done"]', has_text="alice").first
    job.wait_for(timeout=30_000)
    assert "enterprise" in job.inner_text()
    assert _cost(job.locator(".lumi-Cost").inner_text()) > 0
    assert _cost(panel.locator(".lumi-Total-value").inner_text()) > 0
    assert "alice" in panel.locator('[data-breakdown="tenant"]').inner_text()
    cluster = panel.locator('[data-section="cluster"]')
    assert cluster.locator(".lumi-Worker").count() >= 1
    if cuda_device_count() == 0:
        assert "CPU fallback" in cluster.locator(".lumi-Fallback").inner_text()


def test_cancel_a_running_job_from_the_panel(page, lab, remote_works):
    if not remote_works:
        pytest.skip("%%remote did not run a job above, so there is nothing to cancel")
    start_cell(page, NOTEBOOK, 3)
    panel = open_panel(page)
    running = panel.locator('.lumi-Job[data-state="running"]', has_text="bob")
    running.wait_for(timeout=60_000)
    running.get_by_role("button", name="Cancel").click()
    panel.locator('.lumi-Job[data-state="cancelled"]', has_text="bob").wait_for(timeout=20_000)
    with pytest.raises(AssertionError, match="(?i)cancel"):
        cell_outputs(page, NOTEBOOK, 3, wait_s=30)


def test_deployment_shows_and_rolls_back_from_the_panel(page, lab):
    for index in (4, 5, 6, 7):
        run_cell(page, NOTEBOOK, index, wait_s=150)
    assert output_text(run_cell(page, NOTEBOOK, 8, wait_s=60)).strip() == str([[36.0, 44.0, 52.0]] * 2)
    panel = open_panel(page)
    row = panel.locator('.lumi-Deployment[data-deployment="demo"]')
    row.and_(page.locator('[data-version="2"]')).wait_for(timeout=20_000)
    assert "v1" in row.inner_text() and "v2" in row.inner_text()
    for stat in ("p50", "p99"):  # at the panel's default width each figure stays on one line
        rects = row.locator(f'[data-stat="{stat}"]').evaluate("e => e.getClientRects().length")
        assert rects == 1, f"{stat} wraps in the panel"
    row.get_by_role("button", name="Rollback").click()
    row.and_(page.locator('[data-version="1"]')).wait_for(timeout=20_000)
    assert "Rolled back demo" in panel.locator(".lumi-Message").inner_text()
    url, headers = _gateway(lab)
    assert httpx.get(f"{url}/v1/endpoints/demo", headers=headers, timeout=10).json()["active_version"] == 1


def test_screenshots_in_light_and_dark(page):
    panel = open_panel(page)
    widen_sidebar(page, 380)
    assert panel.bounding_box()["width"] > 300
    page.wait_for_timeout(2500)  # one more refresh so the sparklines have a few points
    for theme, name in (("JupyterLab Light", "light"), ("JupyterLab Dark", "dark")):
        set_theme(page, theme)
        shot = screenshot(page, f"panel-{name}.png")
        assert shot.stat().st_size > 10_000
    set_theme(page, "JupyterLab Light")
