"""Binder as repo2docker runs it: postBuild in a fresh environment, then `start`."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import subprocess
import sys

import psutil
import pytest
from backends import stop_backend

ROOT = pathlib.Path(__file__).parent.parent


def head_processes(venv: pathlib.Path) -> list[psutil.Process]:
    """The backend `start` launched: processes run from the new environment, and their descendants
    (workers renamed `ray::...`). Other Ray clusters on the machine, the tests' own, are left out."""
    family: dict[int, psutil.Process] = {}
    for p in psutil.process_iter(["cmdline"]):
        if str(venv) in " ".join(p.info["cmdline"] or []):
            with contextlib.suppress(psutil.Error):  # a process may end while we look
                family.update({q.pid: q for q in [p, *p.children(recursive=True)]})
    return list(family.values())


def stop(processes: list[psutil.Process]) -> None:
    for p in processes:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(processes, timeout=30)


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.skipif(shutil.which("npm") is None, reason="postBuild builds the lab extension and needs Node/npm")
def test_postbuild_then_start_brings_up_a_small_backend_the_quickstart_uses(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # Only the new environment and the system on PATH: nothing may leak in from the test's own venv.
    system_path = ":".join(p for p in os.environ["PATH"].split(":") if not p.startswith(sys.prefix))
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{system_path}", "VIRTUAL_ENV": str(venv),
           "LUMI_HOME": str(tmp_path / "home")}
    env.pop("LUMI_RAY_ADDRESS", None)
    env.pop("RAY_AUTH_MODE", None)
    subprocess.run(["bash", str(ROOT / "binder" / "postBuild")], check=True, env=env, cwd=tmp_path)
    try:
        start = subprocess.run(["bash", str(ROOT / "binder" / "start"), "true"], env=env, cwd=tmp_path,
                               capture_output=True, text=True, timeout=300)
        assert start.returncode == 0, start.stderr
        record = json.loads((tmp_path / "home" / "backend.json").read_text())
        assert record["cpus"] == 1 and record["gpus"] == 2 and psutil.pid_exists(record["pid"])
        rss = sum(p.memory_info().rss for p in head_processes(venv) if p.is_running())
        assert 0 < rss < 1.5 * 2**30

        notebook = tmp_path / "01-quickstart.ipynb"  # a copy: the kernel runs beside it and writes files there
        shutil.copy(ROOT / "notebooks" / "01-quickstart.ipynb", notebook)
        subprocess.run([str(venv / "bin" / "jupyter"), "execute", str(notebook), "--inplace", "--timeout", "600"],
                       env=env, cwd=tmp_path, check=True, timeout=900)
        shown = notebook.read_text()
        assert f"Lumi connected to {record['address']}" in shown  # the kernel joined the backend, not a new Ray
        assert "Token authentication" not in shown
    finally:
        stop_backend(tmp_path / "home")  # `lumi stop`, then Ray's files in /tmp go too
        stop(head_processes(venv))  # whatever is left; not `ray stop`, which would stop every Ray on the machine
