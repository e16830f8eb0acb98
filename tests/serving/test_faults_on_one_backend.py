"""A full cluster and restarts ridden through, on one local backend of its own (2 CPUs, 2 logical GPUs) in a
child process, in this order (one backend: each of its own costs this 2-core machine 15-20 s).

A burst for three `--gpu` endpoints on the two GPUs: every request is served or refused with 429 and Retry-After,
nothing waits on an actor Ray cannot place, and each endpoint is served once the burst has passed.

Then the dispatcher crashes: Ray restarts it, and the same gateway (not restarted) answers 503 with Retry-After while
it restarts, then serves infer requests again, and its jobs, cluster and costs routes answer, with the costs
metered before the crash still counted.

Then the gateway is killed under 8 client threads: Ray restarts it and it serves again at the same URL on its
own; `lumi.Endpoint` handles ride through (they retry a gateway that does not answer), so every call returns the
right answer; endpoints, versions and keys are intact. Plain HTTP clients never find the port closed (the local
backend's daemon holds the socket): requests made during the restart wait and are answered; only those in
flight at the kill are cut off."""

from __future__ import annotations

import pytest
from backends import run_on_own_backend, stop_backend

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SCRIPT = r"""
import json, threading, time
from concurrent.futures import ThreadPoolExecutor
import httpx, numpy as np, ray, lumi
from lumi.errors import Busy
from lumi.runtime.cluster import connect
from lumi.runtime.dispatcher import get_dispatcher
from lumi.serving.endpoint import deploy
from lumi.serving.gateway import ACTOR_NAME, ensure_gateway, gateway_info
from backends import infer_until_served

connect()
gateway = ensure_gateway()

# 1. a burst for three --gpu endpoints on the two GPUs
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
burst_result = {"burst": burst, "after": after, "workers": cluster["workers"],
                "gpus": ray.cluster_resources().get("GPU")}

# 2. the dispatcher killed under a served endpoint
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
dispatcher_result = {"statuses": statuses, "back_s": back, "after": after, "routes": routes, "before": before,
                     "costs": costs, "same_gateway": same}

# 3. then the gateway's process killed under 8 client threads
graph = lumi.trace(lambda x: x * 3, lumi.spec(("batch", 4)))
deploy(graph, "triple", gateway["url"], gateway["key"], max_batch=8, scaledown_window=30)
x = np.ones((2, 4), np.float32)
calls, wrong, errors, slowest = [0], [0], [], [0.0]
stop = threading.Event()

def client():
    handle = lumi.Endpoint("triple")
    while not stop.is_set():
        start = time.monotonic()
        try:
            out = handle(x)
        except Busy as e:  # 429 with Retry-After: honoured, then the call is made again
            time.sleep(e.retry_after)
            continue
        except Exception as e:
            errors.append(f"{type(e).__name__}: {e}")
            continue
        slowest[0] = max(slowest[0], time.monotonic() - start)
        calls[0] += 1
        wrong[0] += not np.array_equal(out, x * 3)

raw = {"ok": 0, "busy": 0, "refused": [], "cut": []}  # plain HTTP clients: what each request met

def raw_client():
    body = {"inputs": {"x": x.tolist()}}
    with httpx.Client(base_url=gateway["url"], headers={"Authorization": f"Bearer {gateway['key']}"},
                      timeout=60) as http:
        while not stop.is_set():
            try:
                r = http.post("/v1/endpoints/triple/infer", json=body)
            except httpx.ConnectError as e:  # the port was closed: what the held socket prevents
                raw["refused"].append(f"{time.monotonic() - killed_at[0]:.2f}: {e}")
                continue
            except httpx.TransportError as e:  # a request the dying process had taken: cut off
                raw["cut"].append(round(time.monotonic() - killed_at[0], 2))
                continue
            if r.status_code in (429, 503) and r.headers.get("retry-after"):
                raw["busy"] += 1
                time.sleep(float(r.headers["retry-after"]))
                continue
            answer = r.json()["outputs"] if r.status_code == 200 else {}
            raw["ok"] += np.array_equal(np.asarray(list(answer.values())[:1]), [x * 3])

killed_at = [float("inf")]
threads = [threading.Thread(target=client) for _ in range(4)] + [threading.Thread(target=raw_client) for _ in range(4)]
for t in threads:
    t.start()
deadline = time.monotonic() + 120
while calls[0] < 16 and time.monotonic() < deadline:  # served, warm, before the kill
    time.sleep(0.05)
before_kill = calls[0]
actor = ray.get_actor(ACTOR_NAME, namespace="lumi")
raw_before = raw["ok"]
killed_at[0] = time.monotonic()
ray.kill(actor, no_restart=False)  # the gateway's process dies; Ray starts it again
killed, down = time.monotonic(), False
while time.monotonic() - killed < 90:  # until the gateway answers again, having been down
    try:
        up = httpx.get(gateway["url"] + "/v2", timeout=0.5).status_code == 200
    except httpx.TimeoutException:  # connected (the port stays open) but nobody answers yet
        up = False
    except httpx.HTTPError:
        up = False
    down = down or not up
    if up and (down or time.monotonic() - killed > 10):
        break
    time.sleep(0.05)
back = time.monotonic() - killed
time.sleep(3)
stop.set()
for t in threads:
    t.join(timeout=120)
info = gateway_info()
endpoint = lumi.Endpoint("triple").info()
gateway_result = {"url_before": gateway["url"], "url_after": info and info["url"], "back_s": back, "down": down,
                  "calls": calls[0], "before_kill": before_kill, "wrong": wrong[0], "errors": errors[:5],
                  "slowest_s": slowest[0], "versions": len(endpoint["versions"]), "raw": raw, "raw_before": raw_before}
print("RESULT", json.dumps({"burst": burst_result, "dispatcher": dispatcher_result, "gateway": gateway_result}))
"""


@pytest.fixture(scope="module")
def one_backend(tmp_path_factory):
    home = tmp_path_factory.mktemp("lumi-home")
    try:
        yield run_on_own_backend(SCRIPT, home, gpus=2, timeout=840)
    finally:
        stop_backend(home)


def test_a_burst_on_a_full_cluster_is_served_or_refused_with_retry_after(one_backend):
    result = one_backend["burst"]
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


def test_the_gateway_serves_again_after_the_dispatcher_restarts(one_backend):
    result = one_backend["dispatcher"]
    assert result["statuses"][-1][0] == 200, result["statuses"]
    assert all(s == 200 or (s in (429, 503) and retry) for s, retry in result["statuses"]), result["statuses"]
    assert any(s == 503 for s, _ in result["statuses"]), "no 503 while the dispatcher restarted"
    assert result["after"] == [200] * 16, result["after"]
    assert result["routes"] == {"/v1/jobs": 200, "/v1/cluster": 200, "/v1/costs": 200}
    assert result["costs"] >= result["before"] > 0  # metered before the crash: still counted
    assert result["same_gateway"]
    print(f"\nserved again {result['back_s']:.1f} s after the dispatcher was killed; answers meanwhile: "
          f"{[s for s, _ in result['statuses']]}")


def test_a_killed_gateway_comes_back_at_the_same_url_and_clients_ride_through(one_backend):
    result = one_backend["gateway"]
    assert result["url_after"] == result["url_before"], result
    assert result["errors"] == [] and result["wrong"] == 0, result
    assert result["calls"] > result["before_kill"] > 0, result
    assert result["versions"] == 1 and result["down"]  # it was really down, and came back
    raw = result["raw"]
    assert raw["refused"] == [], raw  # the port never closed: the local backend's daemon holds the socket
    assert len(raw["cut"]) <= 4 and all(t < 2.0 for t in raw["cut"]), raw  # only what was in flight at the kill
    assert raw["ok"] > result["raw_before"] > 0, raw  # and plain clients were served again after it
    print(f"\ngateway killed under 8 clients: served again at the same URL after {result['back_s']:.1f} s; "
          f"{result['calls']} lumi.Endpoint calls, none failed; slowest call {result['slowest_s']:.1f} s; plain HTTP "
          f"clients: {raw['ok']} answered, {raw['busy']} 429/503, {len(raw['cut'])} cut off in flight, none refused")
