"""One local backend per LUMI_HOME: kernels started one after the other share it, it outlives the kernel
that started it, `%lumi stop` stops it, a stale record is replaced, never joined, and another
LUMI_HOME (another user) has a backend of its own."""

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
def test_two_kernels_share_one_backend_that_outlives_the_first(fresh_home, kernels, monkeypatch):
    first = kernels.start(kernel_env(fresh_home))
    shown = text(kernels.execute(first, SETUP))
    here = address(kernels, first)
    shown += text(kernels.execute(first, "%%remote --tenant first\ny = x * 2"))
    shown += text(kernels.execute(first, "print(y.tolist())"))
    assert "[0.0, 2.0, 4.0, 6.0]" in shown
    deployed = text(kernels.execute(first, "%%deploy double --input x:float32[batch,4]\ndef f(x):\n    return x * 2"))
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


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_stop_then_the_next_cell_starts_a_fresh_backend_never_the_dead_one(fresh_home, kernels):
    client = kernels.start(kernel_env(fresh_home))
    kernels.execute(client, SETUP)
    kernels.execute(client, "%%deploy triple --input x:float32[batch,4]\ndef f(x):\n    return x * 3")
    old_address, old = address(kernels, client), record(fresh_home)
    stopped = text(kernels.execute(client, "%lumi stop"))
    assert f"Stopped the local Lumi backend at {old_address}" in stopped
    assert not psutil.pid_exists(old["pid"]) or psutil.Process(old["pid"]).status() == psutil.STATUS_ZOMBIE
    (fresh_home / "backend.json").write_text(json.dumps(old))  # a stale record, as a crash would leave it

    kernels.execute(client, "%%remote\ny = x * 3")
    assert "[0.0, 3.0, 6.0, 9.0]" in text(kernels.execute(client, "print(y.tolist())"))
    new = record(fresh_home)
    assert new["pid"] != old["pid"] and psutil.pid_exists(new["pid"])
    assert address(kernels, client) == new["address"] != old_address
    # the handle made before the restart follows the new gateway, which serves the stored endpoint
    answer = text(kernels.execute(client, "print(triple(np.ones((1, 4), np.float32)).tolist())"))
    assert "[[3.0, 3.0, 3.0, 3.0]]" in answer


def lumi_cli(home, *args: str) -> str:
    env = {**kernel_env(home), "LUMI_HOME": str(home)}
    done = subprocess.run([sys.executable, "-m", "lumi.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_lumi_serve_is_idempotent_per_lumi_home_and_homes_are_isolated(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    try:
        lumi_cli(one, "serve")
        first = record(one)
        assert f"Ray at {first['address']}" in lumi_cli(one, "serve")  # joined, not started again
        assert record(one)["pid"] == first["pid"]
        lumi_cli(two, "serve")
        assert record(two)["address"] != first["address"] and record(two)["temp_dir"] != first["temp_dir"]
        assert (one / "ray-token").stat().st_mode & 0o777 == 0o600

        assert f"stopped the Lumi backend at {first['address']}" in lumi_cli(one, "stop")
        assert not (one / "backend.json").exists() and not (one / "gateway.json").exists()
        assert psutil.pid_exists(record(two)["pid"])  # the other home's backend is untouched
        assert "no Lumi backend runs" in lumi_cli(one, "stop")
    finally:
        stop_backend(one)
        stop_backend(two)
