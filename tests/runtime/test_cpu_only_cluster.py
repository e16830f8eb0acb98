"""A Ray cluster with no GPU slots still runs jobs, on CPU-fallback workers."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import numpy as np, ray, lumi
    from lumi.runtime import cluster
    ray.init(address="local", num_cpus=1, num_gpus=0, include_dashboard=False, namespace=cluster.NAMESPACE,
             log_to_driver=False)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    job = lumi.submit(lumi.trace(lambda x: (x * 2).sum(axis=1), x), x)
    print("result", job.result(timeout=90).tolist(), job.state)
""")


@pytest.mark.slow
def test_jobs_run_on_a_cluster_without_gpus(tmp_path):
    env = {**os.environ, "LUMI_HOME": str(tmp_path)}
    env.pop("LUMI_RAY_ADDRESS", None)
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=240)
    assert "result [6.0, 24.0] done" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
