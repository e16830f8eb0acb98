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
    here = os.path.dirname(os.path.abspath(__file__))  # the script may import this module's helpers
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return json.loads(run.stdout.split("RESULT ", 1)[1].splitlines()[0])  # Ray may print more after it


def infer_until_served(client, body: dict, expected: list, endpoint: str = "double", seconds: float = 120):
    """POST ``body`` to the endpoint until it answers 200 with ``expected`` (waiting out 429s and 503s for their
    Retry-After): ``([[status, retry-after], ...], seconds it took)``. For the scripts of ``run_on_own_backend``."""
    import time

    import numpy as np

    start, statuses = time.monotonic(), []
    while time.monotonic() - start < seconds:
        r = client.post(f"/v1/endpoints/{endpoint}/infer", json=body)
        statuses.append([r.status_code, r.headers.get("retry-after")])
        if r.status_code == 200:
            assert np.asarray(list(r.json()["outputs"].values())[0]).tolist() == expected, r.text
            break
        time.sleep(float(r.headers.get("retry-after") or 0.5))
    return statuses, time.monotonic() - start
