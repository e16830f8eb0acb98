"""The demo notebooks the repository lists run top to bottom, headless, on one shared local backend."""

from __future__ import annotations

import os
import pathlib
import subprocess

import nbformat
import pytest
from backends import stop_backend
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).parent.parent
# The notebooks of the repository, in order: not whatever .ipynb happens to lie in notebooks/.
NOTEBOOKS = ["01-quickstart", "02-deploy-an-endpoint", "03-fair-scheduling-and-cost", "04-kernel-fusion",
             "05-fan-out-and-store"]


@pytest.fixture(scope="module")
def notebook_env(tmp_path_factory):
    """A kernel environment as `./dev lab` gives it: no cluster configured and Ray's auth mode left to Lumi,
    with a LUMI_HOME of its own (all the notebooks share its backend, stopped after the last one)."""
    home = tmp_path_factory.mktemp("notebooks-home")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "LUMI_RAY_ADDRESS")}
    yield {**env, "LUMI_HOME": str(home)}
    stop_backend(home)


def outputs_text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            parts.append(out.get("text", "") if out.output_type == "stream" else str(out.get("data", {})))
    return "".join(parts)


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_without_error(name, tmp_path, notebook_env):
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=notebook_env)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    shown = outputs_text(nb)
    assert "Token authentication" not in shown  # Ray's warning never reaches a notebook
    assert "LUMI_KEY=lumi" not in shown


def test_the_listed_notebooks_are_the_repositorys():
    tracked = subprocess.run(["git", "ls-files", "notebooks/*.ipynb"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    assert sorted(pathlib.Path(p).stem for p in tracked.stdout.split()) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_are_committed_without_outputs(name):
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{name}: clear the outputs of cells {dirty} before committing"
