"""Two notebooks open in one JupyterLab share one backend: the server extension started it when the
server came up, both kernels join it, and the one panel shows the jobs of both."""

from __future__ import annotations

import json
import time

import httpx
import nbformat
import pytest
from labdriver import open_lab, open_notebook, open_panel, output_text, run_cell, write_notebooks

from lumi_magics.numbers import money

SETUP = "%load_ext lumi_magics\nimport numpy as np\nx = np.ones((64, 64), np.float32)"


def notebook(tenant: str) -> dict:
    cells = [SETUP, f"%%remote --tenant {tenant}\ny = np.tanh(x @ x)", "%lumi status"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


@pytest.fixture(scope="module")
def lab(autostart_lab):
    write_notebooks(autostart_lab.root, {"one.ipynb": notebook("carol"), "two.ipynb": notebook("dave")})
    return autostart_lab


@pytest.mark.timeout(900)
def test_jobs_from_two_notebooks_show_in_the_one_panel(browser, lab):
    deadline = time.monotonic() + 180
    while not (lab.home / "backend.json").exists():  # the server extension starts it: no cell has run yet
        assert time.monotonic() < deadline, "JupyterLab started, but the server extension did not start a backend"
        time.sleep(0.5)
    page = open_lab(browser, lab)
    try:
        open_notebook(page, "one.ipynb")
        open_notebook(page, "two.ipynb")
        shown = ""
        for path in ("one.ipynb", "two.ipynb"):
            for index in range(3):
                shown += output_text(run_cell(page, path, index))
        record = json.loads((lab.home / "backend.json").read_text())
        assert shown.count(f"Lumi connected to {record['address']}") == 2  # both kernels, one backend
        assert "Token authentication" not in shown

        panel = open_panel(page)
        page.locator("#lumi-panel.lumi-mod-connected").wait_for(timeout=30_000)
        queue = panel.locator('[data-section="queue"]')
        for tenant in ("carol", "dave"):
            queue.locator('.lumi-Job[data-state="done"]', has_text=tenant).first.wait_for(timeout=30_000)

        gateway = json.loads((lab.home / "gateway.json").read_text())
        jobs = httpx.get(f"{gateway['url']}/v1/jobs", headers={"Authorization": f"Bearer {gateway['key']}"},
                         timeout=10).json()
        job = next(j for j in jobs if j["tenant"] == "carol")
        row = queue.locator(f'.lumi-Job[data-job-id="{job["id"]}"]')
        assert row.locator(".lumi-Cost").inner_text().strip() == money(job["cost"])  # one rule, Python and TS
    finally:
        page.context.close()
