"""Stopping a test's local Lumi backend and removing what it left (used by conftest and the notebook tests)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


def stop_backend(home: str | os.PathLike) -> None:
    """Stop the local backend recorded under ``home`` (if any) and remove its files and Ray's."""
    subprocess.run([sys.executable, "-m", "lumi.cli", "stop"], env={**os.environ, "LUMI_HOME": str(home)},
                   capture_output=True, timeout=120)
    from lumi.runtime import head

    temp = head.ray_temp_dir_for(home)
    shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(temp, ignore_errors=True)


def run_on_own_backend(script: str, home: str | os.PathLike, gpus: int = 1, timeout: float = 360) -> dict:
    """Run ``script`` in a child process that starts a local backend of its own under ``home`` (2 CPUs, ``gpus``
    logical GPUs); return the JSON it printed after ``RESULT ``."""
    import json

    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "LUMI_RAY_ADDRESS")}
    env.update(LUMI_HOME=str(home), LUMI_HEAD_CPUS="2", LUMI_HEAD_GPUS=str(gpus))
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return json.loads(run.stdout.split("RESULT ", 1)[1])
