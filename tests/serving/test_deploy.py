"""%%deploy end to end: a notebook MLP served over HTTP, versions, rollback, tampering, scale to zero."""

from __future__ import annotations

import re
import time

import httpx
import lumi
import numpy as np
import pytest
from lumi.runtime.config import load_config
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

CELL = "def predict(x):\n    return np.maximum(x @ w1 + b1, 0) @ w2 + b2\n"


def _deploy(shell, capsys, line: str) -> str:
    shell.run_cell_magic("deploy", line, CELL)
    return capsys.readouterr().out


def test_deploy_mlp_end_to_end(shell, gateway, mlp_weights, capsys, reference):
    shell.user_ns.update(mlp_weights)
    out = _deploy(shell, capsys, "mlp --input x:float32[batch,16] --max-batch 16 --max-wait-ms 2 --scaledown-window 5")
    url = re.search(r"URL: (\S+)", out)[1]
    assert "version 1" in out and "batching on" in out and "curl -s " + url in out
    headers = {"Authorization": f"Bearer {gateway['key']}"}
    x = np.random.default_rng(1).standard_normal((5, 16)).astype(np.float32)
    expected = reference(x, **mlp_weights)

    r = httpx.post(url, json={"inputs": {"x": x.tolist()}}, headers=headers, timeout=120)
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.array(r.json()["outputs"]["output"]), expected, rtol=1e-5, atol=1e-5)

    r = httpx.post(url, content=st_save({"x": x}), headers={**headers, "Content-Type": "application/octet-stream"},
                   timeout=120)
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(st_load(r.content)["output"], expected, rtol=1e-5, atol=1e-5)

    handle = shell.user_ns["mlp"]
    assert isinstance(handle, lumi.Endpoint) and handle.url == url and handle.headers == headers
    np.testing.assert_allclose(handle(x), expected, rtol=1e-5, atol=1e-5)
    assert handle.version == 1

    info = httpx.get(f"{gateway['url']}/v1/endpoints/mlp", headers=headers).json()
    assert [v["version"] for v in info["versions"]] == [1] and info["active_version"] == 1
    assert info["requests"] == 3 and info["url"] == url

    # the same handle from any process: by name, with the gateway's URL and key
    other = lumi.Endpoint("mlp", url=gateway["url"], key=gateway["key"])
    np.testing.assert_allclose(other(x), expected, rtol=1e-5, atol=1e-5)

    table = shell.run_line_magic("lumi", "deployments")
    assert "mlp" in set(table["name"]) and int(table.set_index("name").loc["mlp", "active_version"]) == 1


@pytest.mark.slow
def test_redeploy_rollback_and_tampering(shell, gateway, mlp_weights, capsys, reference):
    shell.user_ns.update(mlp_weights)
    x = np.random.default_rng(2).standard_normal((3, 16)).astype(np.float32)
    shell.user_ns["probe"] = x
    _deploy(shell, capsys, "versioned --example x=probe --scaledown-window 0")
    v1 = shell.user_ns["versioned"](x)
    np.testing.assert_allclose(v1, reference(x, **mlp_weights), rtol=1e-5, atol=1e-5)

    shell.user_ns["w2"] = mlp_weights["w2"] * 2
    out = _deploy(shell, capsys, "versioned --input x:float32[batch,16] --scaledown-window 0")
    assert "version 2" in out
    handle = shell.user_ns["versioned"]
    v2 = handle(x)
    np.testing.assert_allclose(v2, reference(x, **{**mlp_weights, "w2": mlp_weights["w2"] * 2}), rtol=1e-5,
                               atol=1e-5)
    assert handle.version == 2

    assert handle.rollback()["active_version"] == 1
    np.testing.assert_allclose(handle(x), v1, rtol=1e-6)

    # redeploying identical weights reuses version 2 instead of making a third
    out = _deploy(shell, capsys, "versioned --input x:float32[batch,16] --scaledown-window 0")
    assert "version 2 (identical to an existing version" in out
    assert [v["version"] for v in handle.info()["versions"]] == [1, 2]

    # tamper with version 1's stored file: the gateway refuses to roll back to it
    sha = handle.info()["versions"][0]["sha256"]
    path = load_config().home / "models" / "blobs" / f"{sha}.lumi"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    r = httpx.post(f"{gateway['url']}/v1/endpoints/versioned/rollback", json={"version": 1}, headers=handle.headers)
    assert r.status_code == 500 and "was modified" in r.json()["detail"]
    assert handle.version == 2


@pytest.mark.slow
def test_scale_to_zero_and_cold_start(shell, gateway, mlp_weights, capsys, reference):
    shell.user_ns.update(mlp_weights)
    _deploy(shell, capsys, "sleepy --input x:float32[batch,16] --min-replicas 0 --scaledown-window 2")
    handle = shell.user_ns["sleepy"]
    x = np.ones((1, 16), np.float32)
    np.testing.assert_allclose(handle(x), reference(x, **mlp_weights), rtol=1e-5, atol=1e-5)
    assert handle.info()["replicas"] >= 1
    deadline = time.monotonic() + 20
    while handle.info()["replicas"] and time.monotonic() < deadline:
        time.sleep(0.25)
    assert handle.info()["replicas"] == 0, "replicas did not drop to zero after the 2 s scaledown window"
    start = time.perf_counter()
    np.testing.assert_allclose(handle(x), reference(x, **mlp_weights), rtol=1e-5, atol=1e-5)
    cold = time.perf_counter() - start
    info = handle.info()
    assert info["replicas"] == 1 and len(info["cold_starts_s"]) == 2
    print(f"\ncold start from zero: {cold:.2f} s end to end (replica start {info['cold_starts_s'][-1]:.2f} s)")
