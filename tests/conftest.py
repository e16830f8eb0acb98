"""Shared fixtures: one real local Ray per test session, an IPython shell with Lumi loaded."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

# Keep the tests away from the user's ~/.lumi and from any configured cluster.
_HOME = tempfile.mkdtemp(prefix="lumi-test-home-")
os.environ["LUMI_HOME"] = _HOME
os.environ.pop("LUMI_RAY_ADDRESS", None)
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def has_cuda() -> bool:
    from lumi.runtime.cluster import cuda_device_count

    return cuda_device_count() > 0


def pytest_collection_modifyitems(config, items):
    if has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none here (CPU fallback)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def lumi_home():
    yield _HOME
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_cluster(lumi_home):
    """A real local Ray: 2 CPUs, 4 logical GPUs, no dashboard; shut down after the session."""
    import ray
    from lumi.runtime import cluster

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, num_gpus=4, include_dashboard=False, namespace=cluster.NAMESPACE,
                 object_store_memory=200 << 20, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def shell(ray_cluster):
    """An IPython InteractiveShell with ``%load_ext lumi_magics`` and NumPy imported."""
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "lumi_magics")
    ip.run_cell("import numpy as np")
    yield ip
    ip.user_ns.clear()
    ip.run_cell("import numpy as np")
