"""Shared fixtures: one real local Ray per test session, an IPython shell with Lumi loaded, and
fresh ``LUMI_HOME``s whose local backends are stopped when they are done with."""

from __future__ import annotations

import os
import socket
import tempfile

import pytest
from backends import stop_backend
from hypothesis import settings

# Property tests draw the same examples on every run (a seed per test): a rare draw found once must not fail some
# later landing at random. Exploration with fresh draws is `./dev fuzz`'s job.
settings.register_profile("suite", derandomize=True)
settings.load_profile("suite")

# Keep the tests away from the user's ~/.lumi and from any configured cluster: each run has its own
# LUMI_HOME, outside the checkout. Jupyter servers the tests start do not start a backend on their own
# (LUMI_AUTOSTART=0) unless a test asks for it.
_HOME = tempfile.mkdtemp(prefix="lumi-test-home-")
os.environ["LUMI_HOME"] = _HOME
os.environ["LUMI_AUTOSTART"] = "0"
os.environ.pop("LUMI_RAY_ADDRESS", None)
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def pytest_sessionfinish(session, exitstatus):
    stop_backend(_HOME)


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
    return _HOME


@pytest.fixture
def fresh_home(tmp_path_factory):
    """A LUMI_HOME of its own for processes a test starts (kernels, servers); its backend is stopped after."""
    home = tmp_path_factory.mktemp("lumi-home")
    yield home
    stop_backend(home)


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A local S3 server (moto) for the tests of s3:// stores: its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()
