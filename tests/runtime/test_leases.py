"""Leases: endpoint replicas on the dispatcher's own workers, granted, refused with Busy when every
worker is taken, reclaimed for queued jobs by the tier rule, and metered by the worker's own code."""

from __future__ import annotations

import time

import lumi
import numpy as np
import pytest
import ray
from dispatchers import sleeper, wait_all, wait_ready
from lumi.graph.fileformat import dumps

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def version_bytes(ray_cluster):
    graph = lumi.trace(lambda x: np.tanh(x) * 3, lumi.spec(("batch", 4)))
    return ray.put(dumps(graph))


def ask(data, endpoint: str, tier: str = "api", window: float = 60.0, wait_s: float = 5.0) -> dict:
    return {"endpoint": endpoint, "version": 1, "tier": tier, "tenant": "acme", "gpu": "any", "cpus": 0.25,
            "window": window, "wait_s": wait_s, "data": [data]}


def workers(d) -> list[dict]:
    return ray.get(d.cluster.remote())["workers"]


def test_leases_are_workers_and_a_full_pool_refuses_with_busy(make_dispatcher, version_bytes):
    d = make_dispatcher()
    wait_ready(d, 2)
    first = ray.get(d.lease.remote(ask(version_bytes, "e1", tier="enterprise")))
    second = ray.get(d.lease.remote(ask(version_bytes, "e2", tier="enterprise")))
    assert first["worker"] != second["worker"] and first["compile_s"] >= 0
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    reading, outputs = ray.get(first["worker"].run_batch.remote(first["lease"], [x]))
    np.testing.assert_allclose(outputs[0], np.tanh(x) * 3, rtol=1e-6)
    assert reading["seconds"] > 0 and reading["error"] is None

    shown = {w["doing"].get("endpoint"): w for w in workers(d)}
    assert shown["e1"]["state"] == "leased" and shown["e1"]["activity"].startswith("serving e1 v1 since ")
    assert shown["e2"]["doing"]["tier"] == "enterprise" and shown["e2"]["doing"]["tenant"] == "acme"

    # a lower tier cannot take an enterprise lease that was used within its window: Busy, not a hang
    start = time.monotonic()
    with pytest.raises(lumi.Busy) as refused:
        ray.get(d.lease.remote(ask(version_bytes, "e3", tier="free", wait_s=1.0)))
    assert refused.value.retry_after > 0 and time.monotonic() - start < 30
    assert "no GPU worker is free for 'e3'" in str(refused.value)
    assert ray.get(d.cluster.remote())["pending_leases"] == 0


def test_jobs_queue_behind_leases_and_run_when_one_is_given_back(make_dispatcher, version_bytes):
    d = make_dispatcher(workers=1)
    wait_ready(d, 1)
    held = ray.get(d.lease.remote(ask(version_bytes, "busy-e", tier="enterprise")))
    job = ray.get(d.submit.remote(sleeper(0.01, "free")))
    time.sleep(2.5)  # past the reclaim rule for its own tier; enterprise keeps it for its 60 s window
    queued = ray.get(d.status.remote(job["id"]))
    assert queued["state"] == "queued" and queued["position"] == 1, queued
    ray.get(d.unlease.remote(held["lease"]))
    assert wait_all(d, [job["id"]])[job["id"]]["state"] == "done"


def test_an_idle_lease_is_reclaimed_for_a_job_of_its_tier(make_dispatcher, version_bytes):
    d = make_dispatcher(workers=1)
    wait_ready(d, 1)
    held = ray.get(d.lease.remote(ask(version_bytes, "idle-e", tier="api")))
    job = ray.get(d.submit.remote(sleeper(0.01, "api")))
    done = wait_all(d, [job["id"]], timeout=60)[job["id"]]
    assert done["state"] == "done"
    with pytest.raises(lumi.LumiError, match="reclaimed"):
        ray.get(held["worker"].run_batch.remote(held["lease"], [np.ones((1, 4), np.float32)]))
    assert [w["doing"]["kind"] for w in workers(d)] == ["idle"]


def test_endpoint_runs_are_metered_per_endpoint_and_tenant(make_dispatcher, version_bytes):
    d = make_dispatcher(workers=1)
    token = ray.get(d.acquire.remote("acme", "api"))
    ray.get(d.release.remote(token, 0.25, "CPU", "e1"))
    token = ray.get(d.acquire.remote("acme", "api"))
    ray.get(d.release.remote(token, 0.5, "CPU", "e1"))
    rows = ray.get(d.costs.remote())["endpoints"]
    assert [(r["endpoint"], r["tenant"], r["runs"]) for r in rows] == [("e1", "acme", 2)]
    assert rows[0]["gpu_seconds"] == pytest.approx(0.75) and rows[0]["cost"] > 0
