"""Browser tests: real ``jupyter lab`` servers, driven by Playwright on Debian's Chromium.

Two servers serve every module (each starts a lab and a local backend, which costs the 2-core machine tens of
seconds): ``plain_lab``, where no backend runs until a notebook's first ``%%remote`` starts one (the panel's
not-connected tests run first, then the whole flow), and ``autostart_lab``, whose server extension starts the
backend as ``./dev lab`` does. A module writes its notebooks into the lab's root (``labdriver.write_notebooks``)
and opens pages of its own.

Chromium comes from ``apt-get install chromium`` (Playwright cannot download its own here); point
elsewhere with ``$LUMI_CHROMIUM``. Screenshots go to ``test-results/`` (git-ignored).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from labdriver import start_lab, stop_lab

CHROMIUM = os.environ.get("LUMI_CHROMIUM", "/usr/bin/chromium")


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.ui)
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def browser_type_launch_args():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: `apt-get install -y chromium` (or set $LUMI_CHROMIUM)")
    return {"executable_path": CHROMIUM, "args": ["--no-sandbox", "--disable-gpu"], "headless": True}


@pytest.fixture(scope="session")
def plain_lab(tmp_path_factory):
    lab = start_lab(tmp_path_factory.mktemp("plain-lab"))
    yield lab
    stop_lab(lab)


@pytest.fixture(scope="session")
def autostart_lab(tmp_path_factory):
    lab = start_lab(tmp_path_factory.mktemp("autostart-lab"), autostart=True)
    yield lab
    stop_lab(lab)
