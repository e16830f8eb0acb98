"""Binder as repo2docker runs it: postBuild in a fresh environment, then `start`."""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import subprocess
import sys

import psutil
import pytest

ROOT = pathlib.Path(__file__).parent.parent
RAY_ADDRESS_FILE = pathlib.Path(os.environ.get("TMPDIR", "/tmp")) / "ray" / "ray_current_cluster"


def head_processes(venv: pathlib.Path) -> list[psutil.Process]:
    """The Ray head `start` launched: processes run from the new environment, and their descendants
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
def test_postbuild_then_start_brings_up_a_small_ray_head_the_quickstart_uses(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # Only the new environment and the system on PATH: nothing may leak in from the test's own venv.
    system_path = ":".join(p for p in os.environ["PATH"].split(":") if not p.startswith(sys.prefix))
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{system_path}", "VIRTUAL_ENV": str(venv),
           "LUMI_HOME": str(tmp_path / "home")}
    env.pop("LUMI_RAY_ADDRESS", None)
    subprocess.run(["bash", str(ROOT / "binder" / "postBuild")], check=True, env=env, cwd=tmp_path)
    try:
        start = subprocess.run(["bash", str(ROOT / "binder" / "start"), "true"], env=env, cwd=tmp_path,
                               capture_output=True, text=True, timeout=120)
        assert start.returncode == 0, start.stderr
        status = subprocess.run([str(venv / "bin" / "ray"), "status"], env={**env, "RAY_AUTH_MODE": "disabled"},
                                capture_output=True, text=True, timeout=60)
        assert "Active" in status.stdout, status.stdout + status.stderr
        rss = sum(p.memory_info().rss for p in head_processes(venv) if p.is_running())
        assert 0 < rss < 1.5 * 2**30

        out = tmp_path / "quickstart.ipynb"
        subprocess.run([str(venv / "bin" / "jupyter"), "execute", str(ROOT / "notebooks" / "01-quickstart.ipynb"),
                        "--output", str(out), "--timeout", "600"],
                       env={**env, "RAY_AUTH_MODE": "disabled"}, cwd=tmp_path, check=True, timeout=900)
        head = RAY_ADDRESS_FILE.read_text().strip()
        assert f"Lumi connected to {head}" in out.read_text()  # the kernel joined the head, not a new Ray
    finally:
        stop(head_processes(venv))  # not `ray stop`: that would stop every Ray on the machine, the tests' too
        with contextlib.suppress(OSError):  # `ray stop` would also have forgotten the head
            RAY_ADDRESS_FILE.unlink()
