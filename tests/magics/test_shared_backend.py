"""One local backend per LUMI_HOME: kernels started one after the other share it, it outlives the kernel
that started it, `lumi serve` joins it, `%lumi stop` stops it, a stale record is replaced, never joined, and
another LUMI_HOME (another user) has a backend of its own, which `lumi stop` there stops alone."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys

import psutil
import pytest
from backends import stop_backend
from kernelclient import text

from lumi_magics import server

SETUP = "%load_ext lumi_magics\nimport numpy as np\nx = np.arange(4, dtype=np.float32)"


def kernel_env(home) -> dict:
    """What `./dev lab` gives a kernel: no cluster configured, Ray's auth mode not set, a LUMI_HOME."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "LUMI_RAY_ADDRESS")}
    return {**env, "LUMI_HOME": str(home), "LUMI_HEAD_CPUS": "2", "LUMI_HEAD_GPUS": "4"}


def address(kernels, client) -> str:
    shown = text(kernels.execute(client, "%lumi status"))
    found = re.search(r"Lumi connected to (\S+):", shown)
    assert found and "shared by every kernel" in shown, shown
    return found[1]


def record(home) -> dict:
    return json.loads((home / "backend.json").read_text())


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_one_backend_per_home_from_the_first_kernel_to_lumi_stop(fresh_home, tmp_path, kernels, monkeypatch):
    """One story, so that it starts three backends rather than five (each costs this 2-core machine 15-20 s)."""
    other = tmp_path / "other"
    try:
        # two kernels one after the other share the backend the first one started; it outlives that kernel
        first = kernels.start(kernel_env(fresh_home))
        shown = text(kernels.execute(first, SETUP))
        here = address(kernels, first)
        shown += text(kernels.execute(first, "%%remote --tenant first\ny = x * 2"))
        shown += text(kernels.execute(first, "print(y.tolist())"))
        assert "[0.0, 2.0, 4.0, 6.0]" in shown
        deployed = text(kernels.execute(first, "%%deploy double --input x:float32[batch,4]\ndef f(x):\n"
                                               "    return x * 2"))
        key = json.loads((fresh_home / "gateway.json").read_text())["key"]
        assert "URL: http://127.0.0.1:" in deployed and "version 1" in deployed
        assert key not in deployed and "LUMI_KEY=lumi" not in deployed and "$LUMI_KEY" in deployed
        kernels.shutdown(first)

        second = kernels.start(kernel_env(fresh_home))
        shown += text(kernels.execute(second, SETUP))
        assert address(kernels, second) == here
        shown += text(kernels.execute(second, "%%remote --tenant second\nz = x + 1"))
        answer = text(kernels.execute(second, "import lumi\ndouble = lumi.Endpoint('double')\n"
                                              "print(double(np.ones((2, 4), np.float32)).tolist(), repr(double))"))
        assert "[[2.0, 2.0, 2.0, 2.0], [2.0, 2.0, 2.0, 2.0]]" in answer and key not in answer
        assert "Token authentication" not in shown + deployed + answer

        monkeypatch.setenv("LUMI_HOME", str(fresh_home))
        snapshot = asyncio.run(server.snapshot())
        assert snapshot["connected"], snapshot
        assert {"first", "second"} <= {job["tenant"] for job in snapshot["jobs"]}
        assert "double" in {d["name"] for d in snapshot["deployments"]}

        # `lumi serve` joins the running backend (idempotent); another LUMI_HOME gets a backend of its own
        old = record(fresh_home)
        assert f"Ray at {old['address']}" in lumi_cli(fresh_home, "serve")
        assert record(fresh_home)["pid"] == old["pid"]
        lumi_cli(other, "serve")
        assert record(other)["address"] != old["address"] and record(other)["temp_dir"] != old["temp_dir"]
        assert (fresh_home / "ray-token").stat().st_mode & 0o777 == 0o600

        # %lumi stop stops it; a stale record (as a crash leaves it) is replaced by a fresh backend, never joined
        stopped = text(kernels.execute(second, "%lumi stop"))
        assert f"Stopped the local Lumi backend at {old['address']}" in stopped
        assert not psutil.pid_exists(old["pid"]) or psutil.Process(old["pid"]).status() == psutil.STATUS_ZOMBIE
        (fresh_home / "backend.json").write_text(json.dumps(old))
        kernels.execute(second, "%%remote\nw = x * 3")
        assert "[0.0, 3.0, 6.0, 9.0]" in text(kernels.execute(second, "print(w.tolist())"))
        new = record(fresh_home)
        assert new["pid"] != old["pid"] and psutil.pid_exists(new["pid"])
        assert address(kernels, second) == new["address"] != old["address"]
        # the handle made before the restart follows the new gateway, which serves the stored endpoint
        assert "[[2.0, 2.0, 2.0, 2.0]]" in text(kernels.execute(second, "print(double(np.ones((1, 4), np.float32))"
                                                                        ".tolist())"))

        # `lumi stop` stops one home's backend only
        assert f"stopped the Lumi backend at {record(other)['address']}" in lumi_cli(other, "stop")
        assert not (other / "backend.json").exists() and not (other / "gateway.json").exists()
        assert psutil.pid_exists(new["pid"])  # the other home's backend is untouched
        assert "no Lumi backend runs" in lumi_cli(other, "stop")
    finally:
        stop_backend(other)


def lumi_cli(home, *args: str) -> str:
    env = {**kernel_env(home), "LUMI_HOME": str(home)}
    done = subprocess.run([sys.executable, "-m", "lumi.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout
