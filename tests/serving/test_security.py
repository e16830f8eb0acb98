"""The gateway against a hostile user: principals and tiers, quotas, clean 4xx for bad input, what strangers see,
secrets on disk. Runs the FastAPI app in-process (no port) over a real Service, real Ray replicas and the
session's dispatcher."""

from __future__ import annotations

import json
import os
import stat
import struct

import lumi
import numpy as np
import pytest
from fastapi.testclient import TestClient
from lumi.graph.fileformat import dumps
from lumi.serving.gateway import create_app
from lumi.serving.keys import Keyring, add_key, keys_path, list_keys, revoke_key, rotate_key, write_private
from lumi.serving.service import Service
from lumi.serving.store import ModelStore
from safetensors.numpy import save as st_save

W = np.arange(16 * 4, dtype=np.float32).reshape(16, 4) / 64


def model_bytes(scale: float = 1.0) -> bytes:
    return dumps(lumi.trace(lambda x: x @ (W * scale), lumi.spec(("batch", 16))))


@pytest.fixture(scope="module")
def world(ray_cluster, tmp_path_factory):
    """An app with tenants ``acme`` (api key ``owner``, free key ``lower``), ``globex`` (``other``) and an admin;
    ``acme`` owns endpoint ``m`` (2 versions) and a finished job."""
    home = tmp_path_factory.mktemp("security")
    keys = {"admin": add_key("local", "api", admin=True, home=home), "owner": add_key("acme", "api", home=home),
            "other": add_key("globex", "api", home=home), "lower": add_key("acme", "free", home=home),
            "free": add_key("freebie", "free", home=home)}
    service = Service(ModelStore(str(home / "models")), "http://testserver")
    app = create_app(service, Keyring(keys_path(home)), auth_failures=(100_000, 60.0))
    x = np.ones((2, 16), np.float32)
    job = lumi.submit(lumi.trace(lambda a: a * 2.0, x), x, tenant="acme", tier="light")
    job.result(120)
    with TestClient(app) as client:
        for scale in (1.0, 2.0):
            r = client.put("/v1/endpoints/m", content=model_bytes(scale), headers=auth(keys["owner"]))
            assert r.status_code == 200, r.text
        yield {"client": client, "keys": keys, "home": home, "service": service, "job": job.id}
        for live in service.lives.values():
            live.close()


def auth(key: str | None) -> dict:
    return {"Authorization": f"Bearer {key}"} if key else {}


X2 = {"inputs": {"x": np.ones((2, 16)).tolist()}}
V2 = {"inputs": [{"name": "x", "shape": [2, 16], "datatype": "FP32", "data": [1.0] * 32}]}
ROUTES = [  # method, path, JSON body, needs a key
    ("GET", "/v1/endpoints", None), ("GET", "/v1/endpoints/m", None), ("PUT", "/v1/endpoints/m", "model"),
    ("POST", "/v1/endpoints/m/rollback", {"version": 2}), ("POST", "/v1/endpoints/m/scale", {"replicas": 1}),
    ("POST", "/v1/endpoints/m/infer", X2), ("POST", "/v1/endpoints/m/versions/1/infer", X2),
    ("GET", "/v1/jobs", None), ("GET", "/v1/jobs/{job}", None), ("POST", "/v1/jobs/{job}/cancel", None),
    ("GET", "/v1/cluster", None), ("GET", "/v1/costs", None), ("GET", "/v2/models/m", None),
    ("GET", "/v2/models/m/versions/1", None), ("GET", "/v2/models/m/ready", None),
    ("GET", "/v2/models/m/versions/1/ready", None), ("POST", "/v2/models/m/infer", V2),
    ("POST", "/v2/models/m/versions/1/infer", V2), ("DELETE", "/v1/endpoints/doomed", None),
    ("GET", "/v2", None), ("GET", "/v2/health/live", None), ("GET", "/v2/health/ready", None),
    ("GET", "/openapi.json", None),
]
PUBLIC = {"/v2", "/v2/health/live", "/v2/health/ready", "/openapi.json"}
LISTS = {"/v1/endpoints", "/v1/jobs", "/v1/cluster", "/v1/costs"}  # everyone's own view


def expected(who: str, method: str, path: str) -> int:
    if path in PUBLIC:
        return 200
    if who in ("none", "wrong"):
        return 401
    if who == "other" and path not in LISTS and method != "PUT":
        return 404  # another tenant's object answers exactly like a missing one
    if method == "PUT" and who in ("lower", "other"):
        return 403  # a free key deploying at tier api; another tenant's name (names are global: taken, not found)
    return 200


def same(detail: str, name: str, job: str) -> str:
    """An error message with the object's name taken out."""
    return detail.replace(f"'{name}'", "X").replace(f"deploy {name} ", "deploy X ").replace(job, "X")


@pytest.mark.parametrize("who", ["none", "wrong", "other", "lower", "owner", "admin"])
def test_auth_matrix(world, who):
    client, keys = world["client"], world["keys"]
    key = {"none": None, "wrong": keys["owner"][:-4] + "AAAA"}.get(who, keys.get(who))
    seen = {}
    for method, path, body in ROUTES:
        path = path.replace("{job}", world["job"])
        if method == "DELETE":
            assert client.put("/v1/endpoints/doomed", content=model_bytes(3.0), headers=auth(keys["owner"])
                              ).status_code == 200
        kwargs = {"content": model_bytes(2.0), "params": {"tier": "api"}} if body == "model" else \
            {"json": body} if body is not None else {}
        r = client.request(method, path, headers=auth(key), **kwargs)
        seen[f"{method} {path}"] = r.status_code
        assert r.status_code == expected(who, method, path), (who, method, path, r.text[:300])
        if who == "other" and r.status_code == 404:
            gone = "/".join({"m": "nothing-here", world["job"]: "0" * 12}.get(p, p) for p in path.split("/"))
            missing = client.request(method, gone,
                                     headers=auth(key), **kwargs)
            assert missing.status_code == 404
            gone_detail = same(missing.json()["detail"], "nothing-here", "0" * 12)
            assert same(r.json()["detail"], "m", world["job"]) == gone_detail
        if who == "other" and path == "/v1/endpoints":
            assert [e["name"] for e in r.json()] == []
    print(f"\nauth matrix, {who}: {len(seen)} routes, statuses {sorted(set(seen.values()))}")


def test_401_names_no_server_path_and_wrong_keys_are_throttled(world):
    service = world["service"]
    app = create_app(service, Keyring(keys_path(world["home"])), auth_failures=(3, 60.0))
    with TestClient(app) as client:
        for _ in range(3):
            r = client.get("/v1/endpoints", headers=auth("lumi_00000000_guess"))
            assert r.status_code == 401 and str(world["home"]) not in r.text and "keys.toml" not in r.text
        r = client.get("/v1/endpoints", headers=auth(world["keys"]["owner"]))
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1 and "too many wrong keys" in r.text


def test_tier_escalation_is_refused(world):
    client, keys = world["client"], world["keys"]
    r = client.put("/v1/endpoints/free-model", params={"tier": "enterprise"}, content=model_bytes(),
                   headers=auth(keys["free"]))
    assert r.status_code == 403 and "tier is 'free'" in r.json()["detail"] and "'enterprise'" in r.json()["detail"]
    assert client.put("/v1/endpoints/free-model", params={"tier": "free"}, content=model_bytes(),
                      headers=auth(keys["free"])).status_code == 200
    assert client.put("/v1/endpoints/admin-model", params={"tier": "enterprise"}, content=model_bytes(),
                      headers=auth(keys["admin"])).status_code == 200
    # a lower key of the owning tenant is admitted in its own tier even where the endpoint names a higher one
    r = client.post("/v1/endpoints/m/infer", json=X2, headers=auth(keys["lower"]))
    assert r.status_code == 200


def test_replica_gpu_endpoint_and_store_quotas(world, monkeypatch):
    client, key, store = world["client"], auth(world["keys"]["free"]), world["service"].store

    def deploy(name, **params):
        return client.put(f"/v1/endpoints/{name}", params=params, content=model_bytes(5.0), headers=key)

    r = deploy("hog", min_replicas=100, max_replicas=100, gpu="any")
    assert r.status_code == 403 and "quota 'replicas'" in r.json()["detail"] and store.endpoint("hog") is None
    monkeypatch.setenv("LUMI_QUOTA_FREE_REPLICAS", "100")
    r = deploy("hog", max_replicas=2, gpu="any")
    assert r.status_code == 403 and "quota 'gpus'" in r.json()["detail"]
    monkeypatch.setenv("LUMI_QUOTA_FREE_STORE_BYTES", "100")
    r = deploy("hog")
    assert r.status_code == 403 and "quota 'store_bytes'" in r.json()["detail"]
    monkeypatch.delenv("LUMI_QUOTA_FREE_STORE_BYTES")
    monkeypatch.setenv("LUMI_QUOTA_FREE_ENDPOINTS", "0")
    r = deploy("hog")
    assert r.status_code == 403 and "quota 'endpoints'" in r.json()["detail"]
    monkeypatch.setenv("LUMI_QUOTA_FREE_ENDPOINTS", "100")
    assert deploy("scaled", max_replicas=2).status_code == 200
    monkeypatch.setenv("LUMI_QUOTA_FREE_REPLICAS", "1")
    r = client.post("/v1/endpoints/scaled/scale", json={"replicas": 2}, headers=key)
    assert r.status_code == 403 and "quota 'replicas'" in r.json()["detail"], r.text
    assert client.post("/v1/endpoints/scaled/scale", json={"replicas": 0}, headers=key).status_code == 200


def test_queued_jobs_quota_per_tenant(ray_cluster):
    import ray
    from lumi.runtime import jobs
    from lumi.runtime.dispatcher import start_dispatcher

    d = start_dispatcher("test-quota-dispatcher", env={"LUMI_QUOTA_FREE_JOBS": "2"}, workers=0)
    try:
        spec = lambda tenant: jobs.python_spec("x = 1", {}, [], tier="free", tenant=tenant)  # noqa: E731
        for _ in range(2):
            jobs.submit_spec(spec("acme"), dispatcher=d)
        with pytest.raises(lumi.Busy, match="quota 'jobs'"):
            jobs.submit_spec(spec("acme"), dispatcher=d)
        jobs.submit_spec(spec("globex"), dispatcher=d)  # another tenant has its own quota
    finally:
        ray.kill(d)


def test_strangers_see_only_their_own_cluster_view(world):
    client, keys = world["client"], world["keys"]
    mine = client.get("/v1/cluster", headers=auth(keys["other"])).json()
    assert set(mine) == {"capacity", "jobs"} and mine["jobs"] == []
    assert "tiers" not in json.dumps(mine) and "tokens" not in mine
    full = client.get("/v1/cluster", headers=auth(keys["admin"])).json()
    assert {"workers", "tiers", "queue", "tokens"} <= set(full)


def _v2(body: dict, **headers) -> tuple[bytes, dict]:
    return json.dumps(body).encode(), {"Content-Type": "application/json", **headers}


def _tensor(**change) -> dict:
    return {"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [0.0] * 16, **change}]}


def _safetensors_tagged(dtype: str) -> bytes:
    data = st_save({"x": np.zeros((1, 16), np.float32)})
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    header["x"]["dtype"] = dtype
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data[8 + n :]


HEADER = "Inference-Header-Content-Length"
BINARY_6 = json.dumps(_tensor(parameters={"binary_data_size": 6}, data=None)).encode()
MALFORMED = [  # every kind of request that answered 500 before
    ("/v2/models/m/infer", *_v2(_tensor(datatype=["FP32"]))),
    ("/v2/models/m/infer", *_v2(_tensor(shape=None))),
    ("/v2/models/m/infer", *_v2(_tensor(shape=[-1, 16]))),
    ("/v2/models/m/infer", *_v2(_tensor(shape=[2**32, 2**32], data=[]))),
    ("/v2/models/m/infer", *_v2({**_tensor(), "parameters": [1]})),
    ("/v2/models/m/infer", *_v2({**_tensor(), "outputs": "x"})),
    ("/v2/models/m/infer", *_v2(_tensor(parameters={"binary_data_size": "abc"}, data=None))),
    ("/v2/models/m/infer", BINARY_6 + b"\0" * 6, {HEADER: str(len(BINARY_6))}),  # 6 bytes: not whole FP32s
    ("/v2/models/m/infer", *_v2(_tensor(), **{HEADER: "abc"})),
    ("/v2/models/m/infer", *_v2(_tensor(), **{HEADER: "99999999"})),
    ("/v2/models/m/infer", b"[" * 2000 + b"]" * 2000, {"Content-Type": "application/json"}),
    ("/v1/endpoints/m/infer", b'{"inputs": ' + b"[" * 2000 + b"]" * 2000 + b"}", {"Content-Type": "application/json"}),
    ("/v1/endpoints/m/infer", _safetensors_tagged("BF16"), {"Content-Type": "application/octet-stream"}),
    ("/v1/endpoints/m/infer", _safetensors_tagged("F8_E4M3"), {"Content-Type": "application/octet-stream"}),
    ("/v1/endpoints/m/infer", b'{"inputs": {"x": [[1e400]]}}', {"Content-Type": "application/json"}),
    ("/v1/endpoints/m/infer", b'{"inputs": {"x": [["a"]]}}', {"Content-Type": "application/json"}),
    ("/v1/endpoints/m/infer", b'{"inputs": [{}]}', {"Content-Type": "application/json"}),  # found by schemathesis
    ("/v1/endpoints/m/infer", b'{"inputs": {"x": [[{}]]}}', {"Content-Type": "application/json"}),
    ("/v1/endpoints/m/rollback", b'{"version": "abc"}', {"Content-Type": "application/json"}),
    ("/v1/endpoints/m/rollback", b"[" * 5000, {"Content-Type": "application/json"}),
    ("/v1/endpoints/m/scale", b'{"replicas": -1}', {"Content-Type": "application/json"}),
    ("/v1/endpoints/m/scale", b'{"replicas": 1e300}', {"Content-Type": "application/json"}),
]


@pytest.mark.parametrize("case", range(len(MALFORMED)))
def test_malformed_requests_answer_4xx_with_a_message(world, case):
    path, body, headers = MALFORMED[case]
    r = world["client"].post(path, content=body, headers={**headers, **auth(world["keys"]["owner"])})
    assert 400 <= r.status_code < 500, (case, r.status_code, r.text[:300])
    assert r.json()["detail"]


def test_zero_row_batch_answers_zero_rows(world):
    client, key = world["client"], world["keys"]["owner"]
    r = client.post("/v1/endpoints/m/infer", json={"inputs": {"x": np.zeros((0, 16)).tolist()}}, headers=auth(key))
    assert r.status_code == 200, r.text
    assert r.json()["outputs"]["output"] == []
    r = client.post("/v2/models/m/infer", json={"inputs": [{"name": "x", "shape": [0, 16], "datatype": "FP32",
                                                           "data": []}]}, headers=auth(key))
    assert r.status_code == 200 and r.json()["outputs"][0]["shape"] == [0, 4]


def _strict(text: str):
    def refuse(name):
        raise AssertionError(f"bare {name} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_non_finite_outputs_are_proto3_json_strings(world):
    client, key = world["client"], world["keys"]["owner"]
    x = [[v] + [0.0] * 15 for v in ("NaN", "Infinity", "-Infinity")]  # inputs may use the same spelling
    r = client.post("/v1/endpoints/m/infer", json={"inputs": {"x": x}}, headers=auth(key))
    assert r.status_code == 200, r.text
    out = _strict(r.text)["outputs"]["output"]
    assert out[0][0] == "NaN" and "Infinity" in out[1] and "-Infinity" in out[2]
    r = client.post("/v2/models/m/infer", headers=auth(key), json={"inputs": [
        {"name": "x", "shape": [3, 16], "datatype": "FP32", "data": sum(x, [])}]})
    assert r.status_code == 200, r.text
    data = _strict(r.text)["outputs"][0]["data"]
    assert data[0] == "NaN" and "Infinity" in data and "-Infinity" in data


def test_an_output_past_the_cap_is_refused_before_it_runs(world, monkeypatch):
    client, key, service = world["client"], world["keys"]["owner"], world["service"]
    monkeypatch.setattr(service, "max_output_bytes", 1000)
    ok = client.post("/v1/endpoints/m/infer", json={"inputs": {"x": np.ones((4, 16)).tolist()}}, headers=auth(key))
    assert ok.status_code == 200
    batches = service.live(service.store.require("m")).batcher.batches
    r = client.post("/v1/endpoints/m/infer", json={"inputs": {"x": np.ones((100, 16)).tolist()}}, headers=auth(key))
    assert r.status_code == 413 and "1600 bytes, past the 1000-byte output limit" in r.json()["detail"]
    assert service.live(service.store.require("m")).batcher.batches == batches  # refused before running


def test_keys_are_stored_as_hashes_and_can_be_listed_revoked_rotated(tmp_path):
    key = add_key("acme", "free", home=tmp_path)
    text = (tmp_path / "keys.toml").read_text()
    assert key not in text and key.split("_")[-1] not in text and key[:13] in text and "sha256:" in text
    ring = Keyring(keys_path(tmp_path))
    assert ring.lookup(key).tenant == "acme" and ring.lookup(key[:-1] + "x") is None
    assert [k.prefix for k in list_keys(tmp_path)] == [key[:13]]
    new = rotate_key(key[:13], home=tmp_path)
    assert ring.lookup(key) is None and ring.lookup(new).tier == "free"
    revoke_key(new, home=tmp_path)
    assert ring.lookup(new) is None and list_keys(tmp_path) == []


def test_plaintext_keys_from_an_older_lumi_are_rehashed(tmp_path):
    old = "lumi_plaintextkeyfromolderversion"
    (tmp_path / "keys.toml").write_text(f'[keys."{old}"]\ntenant = "acme"\ntier = "api"\nadmin = false\n')
    assert Keyring(keys_path(tmp_path)).lookup(old).tenant == "acme"
    assert old not in (tmp_path / "keys.toml").read_text()


def _private(path) -> bool:
    return stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0


def test_secret_files_are_never_world_readable_not_even_for_a_moment(gateway, lumi_home, tmp_path, monkeypatch):
    """With umask 0 (a plain open would make 0666 files), every file is 0600 when it is renamed into place."""
    from lumi.serving.gateway import ensure_gateway, gateway_file

    renamed = []
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        renamed.append((str(dst), stat.S_IMODE(os.stat(src).st_mode)))
        return real_replace(src, dst, *args, **kwargs)

    old = os.umask(0)
    monkeypatch.setattr(os, "replace", replace)
    try:
        add_key("acme", "api", home=tmp_path)
        store = ModelStore(str(tmp_path / "models"))
        store.deploy("private", model_bytes(), "acme")
        gateway_file().unlink()
        assert ensure_gateway()["key"] == gateway["key"]  # rewrites gateway.json for the running gateway
        write_private(tmp_path / "secret", b"x")
    finally:
        os.umask(old)
    assert {d.rsplit("/", 1)[-1] for d, _ in renamed} >= {"keys.toml", "gateway.json", "private.json", "secret"}
    assert all(mode == 0o600 for _, mode in renamed), renamed
    for root, _dirs, files in os.walk(tmp_path / "models"):
        assert _private(root) and all(_private(os.path.join(root, f)) for f in files)
    for name in ("keys.toml", "admin.key", "gateway.json"):
        assert _private(os.path.join(lumi_home, name)), name
    assert json.loads(gateway_file().read_text())["key"] == gateway["key"]
