"""The gateway's HTTP contract: status codes, tenants, OpenAPI, the Open Inference Protocol, load."""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np
import pytest
from lumi.serving.gateway import MAX_BODY_BYTES
from lumi.serving.keys import add_key
from safetensors.numpy import save as st_save


def test_status_codes(client, gateway, mlp_endpoint):
    url = f"/v1/endpoints/{mlp_endpoint}/infer"
    ok = {"inputs": {"x": np.zeros((2, 16)).tolist()}}
    assert client.post(url, json=ok).status_code == 200

    r = httpx.post(gateway["url"] + url, json=ok, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and "lumi keys create" in r.json()["detail"] and "keys.toml" not in r.text
    assert httpx.post(gateway["url"] + url, json=ok).status_code == 401

    other = add_key("acme", "free")
    for method, path in [("POST", url), ("GET", f"/v1/endpoints/{mlp_endpoint}"),
                         ("GET", f"/v2/models/{mlp_endpoint}")]:
        r = httpx.request(method, gateway["url"] + path, json=ok, headers={"Authorization": f"Bearer {other}"})
        assert r.status_code == 404 and "no endpoint named" in r.text, (path, r.text)  # as if it did not exist
    listed = httpx.get(gateway["url"] + "/v1/endpoints", headers={"Authorization": f"Bearer {other}"}).json()
    assert mlp_endpoint not in [e["name"] for e in listed]

    r = client.post(url, json={"inputs": {"x": np.zeros((2, 15)).tolist()}})
    assert r.status_code == 400 and "expects shape [batch,16]" in r.json()["detail"]
    r = client.post(url, content=st_save({"x": np.zeros((2, 16), np.float64)}),
                    headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 400 and "expects float32" in r.json()["detail"]
    r = client.post(url, json={"inputs": {"y": [[0.0] * 16]}})
    assert r.status_code == 400 and "inputs are ['x']" in r.json()["detail"]
    r = client.post(url, content=b"\0" * (MAX_BODY_BYTES + 1), headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 413
    r = client.post("/v1/endpoints/nobody/infer", json=ok)
    assert r.status_code == 404 and "no endpoint named 'nobody'" in r.json()["detail"]


def test_openapi_lists_the_routes(client):
    spec = client.get("/openapi.json").json()
    for path in ["/v1/endpoints", "/v1/endpoints/{name}/infer", "/v1/endpoints/{name}/rollback",
                 "/v1/endpoints/{name}/scale", "/v1/jobs", "/v1/jobs/{job_id}", "/v1/cluster", "/v1/costs",
                 "/v2/health/live", "/v2/models/{name}/versions/{version}/infer"]:
        assert path in spec["paths"], path
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    for path, model in [("/v1/endpoints/{name}/infer", "InferRequest"), ("/v2/models/{name}/infer", "V2InferRequest"),
                        ("/v1/endpoints/{name}/rollback", "RollbackRequest"),
                        ("/v1/endpoints/{name}/scale", "ScaleRequest")]:  # bodies have schemas that fuzzers can use
        body = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{model}"} and model in spec["components"]["schemas"]
    assert spec["components"]["schemas"]["V2Input"]["properties"]["shape"]["items"]["minimum"] == 0


def test_panel_views_and_metering(client, mlp_endpoint):
    client.post(f"/v1/endpoints/{mlp_endpoint}/infer", json={"inputs": {"x": np.ones((1, 16)).tolist()}})
    assert isinstance(client.get("/v1/jobs").json(), list)
    cluster = client.get("/v1/cluster").json()
    assert "api" in cluster["tiers"] and "workers" in cluster
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        costs = client.get("/v1/costs").json()
        if costs["by_endpoint"].get(mlp_endpoint):
            break
        time.sleep(0.2)
    assert costs["by_endpoint"][mlp_endpoint] > 0 and costs["by_tenant"]["local"] > 0
    assert any(r["endpoint"] == mlp_endpoint and r["tenant"] == "local" for r in costs["records"])


@pytest.mark.parametrize("binary", [True, False])
def test_open_inference_protocol_client(gateway, mlp_endpoint, mlp_weights, reference, binary):
    """tritonclient.http, used as its documentation shows, against a Lumi endpoint."""
    import tritonclient.http as httpclient

    headers = {"Authorization": f"Bearer {gateway['key']}"}
    client = httpclient.InferenceServerClient(url=gateway["url"].removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(mlp_endpoint, headers=headers)
    meta = client.get_model_metadata(mlp_endpoint, headers=headers)
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 16]}]

    x = np.random.default_rng(3).standard_normal((4, 16)).astype(np.float32)
    inputs = [httpclient.InferInput("x", list(x.shape), "FP32")]
    inputs[0].set_data_from_numpy(x, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput("output", binary_data=binary)]
    result = client.infer(mlp_endpoint, inputs, outputs=outputs, headers=headers, request_id="r1")
    np.testing.assert_allclose(result.as_numpy("output"), reference(x, **mlp_weights), rtol=1e-5, atol=1e-5)
    assert result.get_response()["model_name"] == mlp_endpoint and result.get_response()["id"] == "r1"
    versioned = client.infer(mlp_endpoint, inputs, model_version="1", headers=headers)
    np.testing.assert_allclose(versioned.as_numpy("output"), reference(x, **mlp_weights), rtol=1e-5, atol=1e-5)
    client.close()


@pytest.mark.slow
def test_64_concurrent_clients(gateway, client, mlp_endpoint, mlp_weights, reference):
    """64 clients for 10 s on loopback: every request answered (200, or 429 with Retry-After), outputs right."""
    url = f"{gateway['url']}/v1/endpoints/{mlp_endpoint}/infer"
    headers = {"Authorization": f"Bearer {gateway['key']}"}
    before = client.get(f"/v1/endpoints/{mlp_endpoint}").json()
    counts = {"ok": 0, "busy": 0, "wrong": 0, "other": 0}

    async def one_client(http: httpx.AsyncClient, seed: int, stop: float):
        rng = np.random.default_rng(seed)
        while time.monotonic() < stop:
            x = rng.standard_normal((1 + seed % 3, 16)).astype(np.float32)
            r = await http.post(url, json={"inputs": {"x": x.tolist()}}, headers=headers)
            if r.status_code == 200:
                ok = np.allclose(r.json()["outputs"]["output"], reference(x, **mlp_weights), rtol=1e-4, atol=1e-4)
                counts["ok" if ok else "wrong"] += 1
            elif r.status_code == 429 and r.headers.get("Retry-After"):
                counts["busy"] += 1
                await asyncio.sleep(float(r.headers["Retry-After"]))
            else:
                counts["other"] += 1

    async def main():
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(timeout=120, limits=limits) as http:
            stop = time.monotonic() + 10
            await asyncio.gather(*(one_client(http, i, stop) for i in range(64)))

    asyncio.run(main())
    after = client.get(f"/v1/endpoints/{mlp_endpoint}").json()
    batches = after["batches"] - before["batches"]
    mean_batch = (after["requests"] - before["requests"]) / max(1, batches)
    print(f"\n64 clients, 10 s: {counts}, {batches} batches, mean batch size {mean_batch:.1f} requests, "
          f"replicas {after['replicas']}, p50 {after['p50_ms']:.1f} ms, p99 {after['p99_ms']:.1f} ms")
    assert counts["wrong"] == 0 and counts["other"] == 0 and counts["ok"] > 0
    assert mean_batch > 1


def test_triton_client_reads_non_finite_outputs(gateway):
    """NaN and infinities travel as proto3 JSON strings ("NaN", "Infinity", "-Infinity"); Triton's client reads them."""
    import lumi
    import tritonclient.http as httpclient
    from lumi.serving.endpoint import deploy

    deploy(lumi.trace(lambda x: np.log(x) * 1.0, lumi.spec(("batch", 3))), "non-finite", gateway["url"],
           gateway["key"], scaledown_window=5)
    headers = {"Authorization": f"Bearer {gateway['key']}"}
    x = np.array([[-1.0, 0.0, np.inf]], np.float32)
    r = httpx.post(f"{gateway['url']}/v2/models/non-finite/infer", headers=headers, json={"inputs": [
        {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [-1.0, 0.0, "Infinity"]}]}, timeout=120)
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == ["NaN", "-Infinity", "Infinity"]
    client = httpclient.InferenceServerClient(url=gateway["url"].removeprefix("http://"))
    inputs = [httpclient.InferInput("x", [1, 3], "FP32")]
    inputs[0].set_data_from_numpy(x, binary_data=True)
    for binary in (False, True):
        outputs = [httpclient.InferRequestedOutput("output", binary_data=binary)]
        got = client.infer("non-finite", inputs, outputs=outputs, headers=headers).as_numpy("output")
        assert np.isnan(got[0, 0]) and got[0, 1] == -np.inf and got[0, 2] == np.inf, (binary, got)
    client.close()
