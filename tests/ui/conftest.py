"""Browser tests: a real ``jupyter lab`` server per test module, driven by Playwright on Debian's Chromium.

Chromium comes from ``apt-get install chromium`` (Playwright cannot download its own here); point
elsewhere with ``$LUMI_CHROMIUM``. Screenshots go to ``test-results/`` (git-ignored).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

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


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory, request):
    path = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    yield path
    shutil.rmtree(path, ignore_errors=True)
