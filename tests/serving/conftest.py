"""One gateway for the serving tests (in the session's Ray), and helpers to reach it."""

from __future__ import annotations

import os

import httpx
import numpy as np
import pytest

# Replicas share the test cluster's 2 CPUs: a quarter CPU each, so several endpoints fit at once.
os.environ.setdefault("LUMI_REPLICA_CPUS", "0.25")


@pytest.fixture(scope="session")
def gateway(ray_cluster):
    """The gateway actor, started once: ``{"url", "key"}``."""
    from lumi.serving.gateway import ensure_gateway

    return ensure_gateway()


@pytest.fixture(scope="session")
def client(gateway):
    """An httpx client for the gateway, sending the local admin key."""
    with httpx.Client(base_url=gateway["url"], headers={"Authorization": f"Bearer {gateway['key']}"},
                      timeout=120) as c:
        yield c


@pytest.fixture(scope="session")
def mlp_weights():
    rng = np.random.default_rng(0)
    return {"w1": rng.standard_normal((16, 32)).astype(np.float32), "b1": rng.standard_normal(32).astype(np.float32),
            "w2": rng.standard_normal((32, 4)).astype(np.float32), "b2": rng.standard_normal(4).astype(np.float32)}


def mlp_numpy(x, w1, b1, w2, b2):
    return np.maximum(x @ w1 + b1, 0) @ w2 + b2


@pytest.fixture(scope="session")
def reference():
    """The MLP in plain NumPy: ``reference(x, **weights)``."""
    return mlp_numpy


@pytest.fixture(scope="session")
def mlp_endpoint(gateway, mlp_weights):
    """An MLP deployed through the HTTP API, shared by the tests that only call it."""
    import lumi
    from lumi.serving.endpoint import deploy

    graph = lumi.trace(lambda x: mlp_numpy(x, **mlp_weights), lumi.spec(("batch", 16)))
    deploy(graph, "mlp-shared", gateway["url"], gateway["key"], max_batch=32, max_wait_ms=5,
           scaledown_window=15)
    return "mlp-shared"
