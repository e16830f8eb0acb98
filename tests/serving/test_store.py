"""The model store, on a local directory and on s3:// against a local S3 server (moto)."""

from __future__ import annotations

import lumi
import numpy as np
import pytest
from lumi.errors import FormatError, LumiError
from lumi.serving.store import ModelStore, NotFound


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return ModelStore(str(tmp_path / "models"))
    endpoint = request.getfixturevalue("s3_server")
    import boto3

    bucket = f"lumi-{tmp_path.name.lower().replace('_', '-')[:40]}"
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                 region_name="us-east-1").create_bucket(Bucket=bucket)
    return ModelStore(f"s3://{bucket}/models", endpoint_url=endpoint, key="test", secret="test",
                      client_kwargs={"region_name": "us-east-1"})


def _graph(scale: float):
    w = np.full((4, 3), scale, np.float32)
    return lumi.trace(lambda x: np.tanh(x @ w), lumi.spec(("batch", 4)))


def test_versions_are_content_addressed_and_deduplicated(store):
    record, v1, created = store.deploy("m", _graph(1.0), config={"max_batch": 8})
    assert created and v1["version"] == 1 and record["active_version"] == 1
    data = store.read_bytes(v1["sha256"])
    import hashlib

    assert hashlib.sha256(data).hexdigest() == v1["sha256"]
    # the same graph traced again is the same version, not a new one
    record, again, created = store.deploy("m", _graph(1.0))
    assert not created and again == v1 and len(record["versions"]) == 1
    record, v2, created = store.deploy("m", _graph(2.0))
    assert created and v2["version"] == 2 and v2["sha256"] != v1["sha256"]
    assert [v["version"] for v in store.require("m")["versions"]] == [1, 2]
    assert store.require("m")["config"] == {"max_batch": 8}
    # another endpoint with an identical graph shares the blob
    _, other, _ = store.deploy("n", _graph(2.0))
    assert other["sha256"] == v2["sha256"] and other["version"] == 1
    assert sorted(r["name"] for r in store.endpoints()) == ["m", "n"]


def test_rollback_moves_the_active_pointer(store):
    store.deploy("m", _graph(1.0))
    store.deploy("m", _graph(2.0))
    assert store.rollback("m")["active_version"] == 1
    x = np.ones((2, 4), np.float32)
    graph = store.get(store.version(store.require("m"))["sha256"])
    np.testing.assert_allclose(graph.run(x), np.tanh(x @ np.full((4, 3), 1.0, np.float32)), rtol=1e-6)
    assert store.rollback("m", 2)["active_version"] == 2
    with pytest.raises(NotFound, match="no version 7"):
        store.rollback("m", 7)
    store.rollback("m", 1)
    with pytest.raises(LumiError, match="no version before 1"):
        store.rollback("m")


def test_a_tampered_file_is_refused(store):
    _, v1, _ = store.deploy("m", _graph(1.0))
    _, v2, _ = store.deploy("m", _graph(2.0))
    path = f"{store.root}/blobs/{v1['sha256']}.lumi"
    data = bytearray(store.fs.cat_file(path))
    data[-1] ^= 0xFF  # flip bits in the last weight
    store.fs.pipe_file(path, bytes(data))
    with pytest.raises(FormatError, match="was modified"):
        store.get(v1["sha256"])
    with pytest.raises(FormatError, match="was modified"):
        store.rollback("m", 1)
    assert store.require("m")["active_version"] == 2


def test_names_and_missing_endpoints(store):
    with pytest.raises(LumiError, match="not allowed"):
        store.deploy("../etc", _graph(1.0))
    with pytest.raises(NotFound, match="no endpoint named 'ghost'"):
        store.require("ghost")
    store.deploy("m", _graph(1.0))
    store.delete("m")
    assert store.endpoint("m") is None
