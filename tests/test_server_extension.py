"""The panel's Jupyter server extension (``lumi_magics.server``) through a real Jupyter server:
the not-connected state, and real data proxied from a real local gateway.

pytest-jupyter's fixtures are imported into this module rather than registered as a plugin: its
autouse fixtures (a fresh asyncio loop and a ServerApp cleanup around every test) would otherwise
wrap every test of the session, and break Playwright's in the browser tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid

import lumi
import numpy as np
import pytest
import ray
from pytest_jupyter.jupyter_server import *  # noqa: F403  (fixtures: jp_fetch and what it needs)
from tornado.httpclient import HTTPClientError

from lumi_magics.server import cost_series

SECTIONS = ("cluster", "jobs", "deployments", "costs", "store", "schedules")


@pytest.fixture(autouse=True)
def _current_event_loop(jp_asyncio_loop):
    """Make pytest-jupyter's loop the current one: earlier tests (nbclient runs, asyncio.run) can
    leave the main thread with another loop or none, and the test server would start on that."""
    asyncio.set_event_loop(jp_asyncio_loop)


@pytest.fixture
def jp_server_config():
    return {"ServerApp": {"jpserver_extensions": {"lumi_magics": True}}}


@pytest.fixture
def empty_home(tmp_path, monkeypatch):
    """A LUMI_HOME with no backend in it."""
    monkeypatch.setenv("LUMI_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture
def fetch(jp_fetch, jp_asyncio_loop):
    """``fetch(*path, **kwargs)``: a request to ``/lumi/api/<path>`` on the test server, run to completion."""
    return lambda *path, **kwargs: jp_asyncio_loop.run_until_complete(jp_fetch("lumi", "api", *path, **kwargs))


def get(fetch, *path):
    response = fetch(*path)
    assert response.code == 200
    return json.loads(response.body)


def post(fetch, *path, body=None):
    return json.loads(fetch(*path, method="POST", body=json.dumps(body or {})).body)


def test_not_connected_without_gateway_file(fetch, empty_home):
    for path in [("snapshot",), *((s,) for s in SECTIONS)]:
        answer = get(fetch, *path)
        assert answer["connected"] is False
        assert str(empty_home / "gateway.json") in answer["hint"]
        assert "%%remote" in answer["hint"]
    for path in [("jobs", "abc", "cancel"), ("deployments", "m", "rollback"), ("deployments", "m", "scale")]:
        answer = post(fetch, *path, body={"replicas": 0})
        assert answer["connected"] is False and "hint" in answer


def test_not_connected_when_gateway_does_not_answer(fetch, empty_home):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (empty_home / "gateway.json").write_text(json.dumps({"url": f"http://127.0.0.1:{port}", "key": "k"}))
    answer = get(fetch, "snapshot")
    assert answer["connected"] is False
    assert f"127.0.0.1:{port}" in answer["hint"] and "does not answer" in answer["hint"]


def test_not_connected_with_malformed_gateway_file(fetch, empty_home):
    (empty_home / "gateway.json").write_text("{not json")
    answer = get(fetch, "snapshot")
    assert answer["connected"] is False and "unreadable" in answer["hint"]


def test_handlers_need_jupyter_auth(fetch, empty_home):
    with pytest.raises(HTTPClientError) as e:
        fetch("snapshot", headers={"Authorization": "token wrong"})
    assert e.value.code == 403
    with pytest.raises(HTTPClientError) as e:
        fetch("jobs", "x", "cancel", method="POST", body="{}",
                       headers={"Authorization": "token wrong"})
    assert e.value.code == 403


def test_unknown_routes_and_bad_bodies_are_refused(fetch, empty_home):
    for path, kwargs in [(("nodes",), {}), (("jobs", "x", "delete"), {"method": "POST", "body": "{}"})]:
        with pytest.raises(HTTPClientError) as e:
            fetch(*path, **kwargs)
        assert e.value.code == 404
    with pytest.raises(HTTPClientError) as e:
        fetch("deployments", "m", "scale", method="POST", body="{replicas")
    assert e.value.code == 400


def test_cost_series_is_cumulative_sorted_and_thinned():
    records = [{"t": t, "cost": 0.5} for t in (3.0, 1.0, 2.0)]
    assert cost_series(records) == [[1.0, 0.5], [2.0, 1.0], [3.0, 1.5]]
    many = [{"t": float(t), "cost": 1.0} for t in range(1000)]
    thinned = cost_series(many, points=10)
    assert len(thinned) == 10
    assert thinned[0] == [0.0, 1.0] and thinned[-1] == [999.0, 1000.0]
    assert all(a[0] < b[0] and a[1] < b[1] for a, b in zip(thinned, thinned[1:]))
    assert cost_series([]) == []


# -- against a real local backend: dispatcher, workers and gateway on the session's Ray ---------------------


@pytest.fixture(scope="module")
def gateway(ray_cluster):
    from lumi.serving.gateway import ensure_gateway

    return ensure_gateway()


@pytest.fixture(scope="module")
def finished_job(gateway):
    x = np.linspace(-1, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    job = lumi.submit(lumi.trace(lambda a: np.tanh(a) @ a, x), x, tenant="panel-test", tier="light", label="panel")
    job.result(120)
    return job


@pytest.fixture(scope="module")
def two_versions(gateway):
    from lumi.serving.endpoint import Endpoint, deploy

    w = np.arange(12, dtype=np.float32).reshape(4, 3)
    for weights in (w, w * 2):
        graph = lumi.trace(lambda x, weights=weights: x @ weights, lumi.spec(("batch", 4), "float32"))
        deploy(graph, "panel-model", gateway["url"], gateway["key"])
    endpoint = Endpoint("panel-model", gateway["url"], gateway["key"])
    np.testing.assert_allclose(endpoint(np.ones((2, 4), np.float32)), np.ones((2, 4)) @ (w * 2))
    return endpoint


@pytest.mark.slow
def test_snapshot_proxies_the_real_gateway(fetch, gateway, finished_job, two_versions):
    from lumi.runtime.cluster import cuda_device_count

    snap = get(fetch, "snapshot")
    assert snap["connected"] is True and snap["gateway"] == gateway["url"] and snap["errors"] == {}
    cluster = snap["cluster"]
    assert cluster["fallback"] is (cuda_device_count() == 0)
    assert cluster["workers"] and {"utilization", "utilization_source", "memory_used", "state"} <= set(
        cluster["workers"][0])
    job = next(j for j in snap["jobs"] if j["id"] == finished_job.id)
    assert (job["state"], job["tenant"], job["tier"], job["label"]) == ("done", "panel-test", "light", "panel")
    assert job["cost"] > 0 and job["gpu_seconds"] > 0
    model = next(d for d in snap["deployments"] if d["name"] == "panel-model")
    assert model["active_version"] == 2 and [v["version"] for v in model["versions"]] == [1, 2]
    costs = snap["costs"]
    assert "records" not in costs and costs["by_tenant"]["panel-test"] >= job["cost"]
    assert costs["series"] and costs["series"][-1][1] == pytest.approx(costs["total"])
    for section in SECTIONS:
        one = get(fetch, section)
        assert one["connected"] is True and section in one and one["errors"] == {}


@pytest.mark.slow
def test_rollback_and_scale_from_the_panel_reach_the_gateway(fetch, two_versions):
    answer = post(fetch, "deployments", "panel-model", "rollback")
    assert answer["connected"] is True and answer["result"]["active_version"] == 1
    assert two_versions.version == 1
    answer = post(fetch, "deployments", "panel-model", "scale", body={"replicas": 0})
    assert answer["connected"] is True and answer["result"]["replicas"] == 0
    model = next(d for d in (get(fetch, "deployments"))["deployments"] if d["name"] == "panel-model")
    assert (model["active_version"], model["replicas"]) == (1, 0)


@pytest.mark.slow
def test_cancel_from_the_panel_and_gateway_errors_are_passed_on(fetch, gateway, finished_job):
    with pytest.raises(HTTPClientError) as e:
        fetch("jobs", "no-such-job", "cancel", method="POST", body="{}")
    assert e.value.code == 404 and "no-such-job" in json.loads(e.value.response.body)["error"]
    with pytest.raises(HTTPClientError) as e:
        fetch("deployments", "no-such-model", "rollback", method="POST", body="{}")
    assert e.value.code == 404
    answer = post(fetch, "jobs", finished_job.id, "cancel")  # finished: cancelling changes nothing
    assert answer["connected"] is True and answer["result"]["state"] == "done"


@pytest.mark.slow
def test_store_and_schedules_sections_proxy_the_real_gateway(fetch, gateway):
    tenant = f"panel-{uuid.uuid4().hex[:8]}"
    d = lumi.Dict("notes", tenant=tenant)
    d["a"], d["b"] = 1, np.ones(8)
    lumi.Queue("jobs", tenant=tenant, maxsize=9).put(1)
    lumi.Volume("files", tenant=tenant).write_text("x.txt", "hi")
    sched = lumi.schedule(lambda: None, cron="0 4 * * *", name="nightly", tenant=tenant)
    try:
        snap = get(fetch, "snapshot")
        assert snap["errors"] == {}
        mine = lambda rows: [r for r in rows if r["tenant"] == tenant]  # noqa: E731
        assert [(r["name"], r["keys"]) for r in mine(snap["store"]["dicts"])] == [("notes", 2)]
        assert [(r["name"], r["length"], r["maxsize"]) for r in mine(snap["store"]["queues"])] == [("jobs", 1, 9)]
        assert [(r["name"], r["files"]) for r in mine(get(fetch, "store")["store"]["volumes"])] == [("files", 1)]
        row = next(r for r in get(fetch, "schedules")["schedules"]["schedules"] if r["tenant"] == tenant)
        assert (row["name"], row["cron"], row["state"]) == ("nightly", "0 4 * * *", "active")
        assert row["next_run"] > snap["time"] and row["runs"] == []
    finally:
        sched.delete()
        for kind in ("dict", "queue"):
            with contextlib.suppress(ValueError):
                ray.kill(ray.get_actor(f"lumi-{kind}:{tenant}:{'notes' if kind == 'dict' else 'jobs'}",
                                       namespace="lumi"), no_restart=True)
