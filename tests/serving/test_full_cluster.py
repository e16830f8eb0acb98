"""A burst for three `--gpu` endpoints on a two-GPU cluster: every request is served or refused with
429 and Retry-After, nothing waits on an actor Ray cannot place, and each endpoint is served once the
burst has passed. Runs on a local backend of its own (2 CPUs, 2 logical GPUs) in a child process."""

from __future__ import annotations

import pytest
from backends import run_on_own_backend

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

BURST = r"""
import json, time
from concurrent.futures import ThreadPoolExecutor
import httpx, numpy as np, ray, lumi
from lumi.runtime.cluster import connect
from lumi.runtime.dispatcher import get_dispatcher
from lumi.serving.endpoint import deploy
from lumi.serving.gateway import ensure_gateway

connect()
gateway = ensure_gateway()
w = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
graph = lumi.trace(lambda x: np.tanh(np.tanh(x @ w) @ w), lumi.spec(("batch", 64)))
names = ["a", "b", "c"]
for name in names:
    deploy(graph, name, gateway["url"], gateway["key"], gpu="any", max_batch=8, scaledown_window=2)
client = httpx.Client(base_url=gateway["url"], headers={"Authorization": f"Bearer {gateway['key']}"}, timeout=120)
body = {"inputs": {"x": np.ones((4, 64), np.float32).tolist()}}

def call(name):
    start = time.monotonic()
    r = client.post(f"/v1/endpoints/{name}/infer", json=body)
    return name, r.status_code, r.headers.get("retry-after") or r.text[:400], time.monotonic() - start

with ThreadPoolExecutor(24) as pool:
    burst = list(pool.map(call, names * 40))
after = {}
for name in names:  # then each is served, honouring Retry-After
    for _ in range(30):
        _, status, retry, _ = call(name)
        if status != 429:
            break
        time.sleep(float(retry))
    after[name] = status
cluster = ray.get(get_dispatcher().cluster.remote())
print("RESULT", json.dumps({"burst": burst, "after": after, "workers": cluster["workers"],
                            "gpus": ray.cluster_resources().get("GPU")}))
"""


def test_a_burst_on_a_full_cluster_is_served_or_refused_with_retry_after(fresh_home):
    result = run_on_own_backend(BURST, fresh_home, gpus=2, timeout=540)
    statuses = {status for _, status, _, _ in result["burst"]}
    assert statuses <= {200, 429}, [r for r in result["burst"] if r[1] not in (200, 429)]
    assert all(float(retry) > 0 for _, status, retry, _ in result["burst"] if status == 429)
    # a refusal comes within the lease wait, not after a hang on an actor that cannot be placed
    assert max(seconds for _, _, _, seconds in result["burst"]) < 60, result["burst"]
    assert result["after"] == {"a": 200, "b": 200, "c": 200}, result["after"]
    devices = [w for w in result["workers"] if w["role"] == "device" and w["state"] != "dead"]
    assert len(devices) == result["gpus"] == 2, result["workers"]
    assert not [w for w in result["workers"] if w["role"] == "cpu"], "GPU endpoints must not start CPU workers"
    served = {n for n, status, _, _ in result["burst"] if status == 200}
    print(f"\nburst: {sum(s == 200 for _, s, _, _ in result['burst'])} served, "
          f"{sum(s == 429 for _, s, _, _ in result['burst'])} refused with Retry-After; served during it: {served}")
