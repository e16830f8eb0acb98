"""One pool on a one-GPU machine, as a new user meets it: a `%%remote` cell, then a `%%deploy --gpu`
endpoint that answers, then another `%%remote` cell that completes (the endpoint's idle lease is
reclaimed for it), with `%lumi cluster` showing the lease and `%lumi costs` the endpoint's metered
seconds. The steps share one kernel on a local backend with one logical GPU, in order."""

from __future__ import annotations

import os
import re

import pytest
from backends import stop_backend
from kernelclient import Kernels, text

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SETUP = "%load_ext lumi_magics\nimport numpy as np, time, lumi\nx = np.arange(4, dtype=np.float32)"


@pytest.fixture(scope="module")
def one_gpu(tmp_path_factory):
    """A kernel on a fresh local backend started with 2 CPUs and 1 logical GPU."""
    home = tmp_path_factory.mktemp("one-gpu-home")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "LUMI_RAY_ADDRESS")}
    kernels = Kernels()
    client = kernels.start({**env, "LUMI_HOME": str(home), "LUMI_HEAD_CPUS": "2", "LUMI_HEAD_GPUS": "1"})
    kernels.execute(client, SETUP)
    yield lambda code, **kw: text(kernels.execute(client, code, **kw))
    kernels.shutdown(client)
    stop_backend(home)


def test_a_remote_cell_runs_on_the_one_worker(one_gpu):
    assert "[0.0, 2.0, 4.0, 6.0]" in one_gpu("%%remote\ny = x * 2\nprint(y.tolist())") + one_gpu("print(y.tolist())")
    workers = one_gpu("frame = %lumi cluster\nprint('workers', len(frame), *frame.role)")
    assert "workers 1 device" in workers, workers


def test_then_a_gpu_endpoint_answers_within_seconds(one_gpu):
    deployed = one_gpu("%%deploy double --gpu --min-replicas 1 --input x:float32[batch,4]\n"
                       "def f(x):\n    return x * 2")
    assert "version 1" in deployed, deployed
    answer = one_gpu("double = lumi.Endpoint('double')\nt = time.monotonic()\n"
                     "out = double(np.ones((2, 4), np.float32))\n"
                     "print(out.tolist(), f'took {time.monotonic() - t:.2f} s')")
    assert "[[2.0, 2.0, 2.0, 2.0], [2.0, 2.0, 2.0, 2.0]]" in answer, answer
    assert float(re.search(r"took ([\d.]+) s", answer)[1]) < 30, answer


def test_lumi_cluster_shows_the_leased_worker(one_gpu):
    shown = one_gpu("frame = %lumi cluster\nprint(frame[['role', 'state', 'activity']].to_string())\n"
                    "leases = %lumi cluster --leases\nprint(leases[['endpoint', 'version', 'tier']].to_string())")
    assert re.search(r"device\s+leased\s+serving double v1", shown), shown
    assert re.search(r"double\s+1\s+api", shown), shown


def test_endpoint_seconds_and_cost_come_from_the_worker(one_gpu):
    shown = one_gpu("for _ in range(5):\n    double(np.ones((3, 4), np.float32))\ntime.sleep(1.5)\n"
                    "use = %lumi costs --endpoints\nrow = use[(use.endpoint == 'double') & (use.tenant == 'local')]\n"
                    "leases = %lumi cluster --leases\nlease = leases.iloc[0]\n"
                    "print('runs', int(row.runs.iloc[0]), 'cost', row.cost.iloc[0] > 0)\n"
                    "print('metered', row.gpu_seconds.iloc[0], 'worker', lease.gpu_seconds)")
    assert "runs 6 cost True" in shown, shown
    metered, worker = map(float, re.search(r"metered (\S+) worker (\S+)", shown).groups())
    # every request's share of its batch's seconds, summed, is what the worker measured running them
    assert metered > 0 and abs(metered - worker) <= 1e-6 + 1e-3 * worker, shown


def test_then_another_remote_cell_completes(one_gpu):
    one_gpu("t = time.monotonic()")
    shown = one_gpu("%%remote\nz = x + 1\nprint(z.tolist())", timeout=120) + one_gpu(
        "print(z.tolist(), f'after {time.monotonic() - t:.1f} s')")
    assert "[1.0, 2.0, 3.0, 4.0]" in shown, shown
    # the endpoint gets its lease back on its next request
    assert "[[2.0, 2.0, 2.0, 2.0]]" in one_gpu("print(double(np.ones((1, 4), np.float32)).tolist())")
