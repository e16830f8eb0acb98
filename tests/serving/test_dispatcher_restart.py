"""The gateway rides through a dispatcher crash: Ray restarts the dispatcher, and the same gateway (not
restarted) answers 503 with Retry-After while the dispatcher restarts, then serves infer requests again, and
its jobs, cluster and costs routes answer, with the costs metered before the crash still counted. Runs on a
local backend of its own in a child process."""

from __future__ import annotations

import pytest
from backends import run_on_own_backend

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

SCRIPT = r"""
import json, time
from concurrent.futures import ThreadPoolExecutor
import httpx, numpy as np, ray, lumi
from lumi.runtime.cluster import connect
from lumi.runtime.dispatcher import get_dispatcher
from lumi.serving.endpoint import deploy
from lumi.serving.gateway import ACTOR_NAME, ensure_gateway
from backends import infer_until_served

connect()
gateway = ensure_gateway()
graph = lumi.trace(lambda x: x * 2, lumi.spec(("batch", 4)))
deploy(graph, "double", gateway["url"], gateway["key"], max_batch=8, scaledown_window=30)
client = httpx.Client(base_url=gateway["url"], headers={"Authorization": f"Bearer {gateway['key']}"}, timeout=120)
body = {"inputs": {"x": np.ones((2, 4), np.float32).tolist()}}
assert client.post("/v1/endpoints/double/infer", json=body).status_code == 200
time.sleep(0.5)
before = client.get("/v1/costs").json()["by_endpoint"]["double"]
gateway_actor = ray.get_actor(ACTOR_NAME, namespace="lumi")._actor_id.hex()

ray.kill(get_dispatcher(), no_restart=False)
statuses, back = infer_until_served(client, body, [[2.0] * 4] * 2, seconds=90)
with ThreadPoolExecutor(8) as pool:
    after = [r.status_code for r in pool.map(lambda _: client.post("/v1/endpoints/double/infer", json=body), range(16))]
routes = {route: client.get(route).status_code for route in ("/v1/jobs", "/v1/cluster", "/v1/costs")}
costs = client.get("/v1/costs").json()["by_endpoint"]["double"]
same = ray.get_actor(ACTOR_NAME, namespace="lumi")._actor_id.hex() == gateway_actor
print("RESULT", json.dumps({"statuses": statuses, "back_s": back, "after": after, "routes": routes,
                            "before": before, "costs": costs, "same_gateway": same}))
"""


def test_the_gateway_serves_again_after_the_dispatcher_restarts(fresh_home):
    result = run_on_own_backend(SCRIPT, fresh_home, gpus=1, timeout=360)
    assert result["statuses"][-1][0] == 200, result["statuses"]
    assert all(s == 200 or (s in (429, 503) and retry) for s, retry in result["statuses"]), result["statuses"]
    assert any(s == 503 for s, _ in result["statuses"]), "no 503 while the dispatcher restarted"
    assert result["after"] == [200] * 16, result["after"]
    assert result["routes"] == {"/v1/jobs": 200, "/v1/cluster": 200, "/v1/costs": 200}
    assert result["costs"] >= result["before"] > 0  # metered before the crash: still counted
    assert result["same_gateway"]
    print(f"\nserved again {result['back_s']:.1f} s after the dispatcher was killed; answers meanwhile: "
          f"{[s for s, _ in result['statuses']]}")
