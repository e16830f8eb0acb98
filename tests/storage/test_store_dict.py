"""lumi.Dict on the session's Ray: written by the driver and a worker, persisted (local and s3), restarted."""

from __future__ import annotations

import os
import time

import lumi
import numpy as np
import pytest
import ray
from lumi.errors import LumiError
from lumi.storage import InvalidName, MissingKey, StoreNotFound, ValueTooLarge
from lumi.storage._persist import Folder
from store_helpers import restart


@ray.remote(num_cpus=0)
def _worker_side(name: str, root: dict, handle) -> dict:
    import lumi

    d = lumi.Dict(name, **root)
    seen = {"x": d["x"], "config": d["config"], "keys": d.keys(), "by_handle": handle["x"]}
    d["y"] = d["x"] * 2
    d["from_worker"] = {"pid": os.getpid(), "tenant": os.environ.get("LUMI_TENANT", "local")}
    del d["gone"]
    return seen


def test_a_worker_reads_and_writes_the_drivers_dict(ray_cluster, name, root, kill_stores):
    d = lumi.Dict(name, **root)
    kill_stores.append(f"lumi-dict:local:{name}")
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    d["x"] = x
    d["config"] = {"lr": 0.1, "layers": [4, 4], "fn": lambda v: v + 1}  # not all arrays: cloudpickle
    d["gone"] = 1
    seen = ray.get(_worker_side.remote(name, root, d), timeout=120)
    np.testing.assert_array_equal(seen["x"], x)
    np.testing.assert_array_equal(seen["by_handle"], x)
    assert seen["config"]["lr"] == 0.1 and seen["keys"] == ["x", "config", "gone"]
    np.testing.assert_array_equal(d["y"], x * 2)
    assert d["from_worker"]["pid"] != os.getpid() and d["from_worker"]["tenant"] == "local"
    assert "gone" not in d and len(d) == 4 and d.keys() == ["x", "config", "y", "from_worker"]
    assert d["config"]["fn"](1) == 2


def test_the_mapping_api(ray_cluster, name, kill_stores):
    d = lumi.Dict(name)
    kill_stores.append(f"lumi-dict:local:{name}")
    weights = {"w": np.ones((2, 2), np.float16), "b": np.zeros(2, np.int64)}
    d["weights"] = weights  # a dict of arrays: one safetensors file
    d[7] = np.float32(3.5)
    d["scalar"] = np.array(5.0)
    d["strings"] = np.array(["a", "bc"])  # no safetensors dtype: cloudpickle
    got = d["weights"]
    assert set(got) == {"w", "b"} and got["w"].dtype == np.float16 and got["b"].dtype == np.int64
    assert d[7] == 3.5 and d["scalar"].shape == () and list(d["strings"]) == ["a", "bc"]
    assert d.get("nope") is None and d.get("nope", 3) == 3
    assert d.pop(7) == 3.5 and d.pop(7, "default") == "default"
    assert 7 not in d and "weights" in d and list(d) == ["weights", "scalar", "strings"]
    d["weights"] = 0  # overwriting keeps the key's place
    assert d.keys() == ["weights", "scalar", "strings"] and d["weights"] == 0


def test_a_missing_key_is_a_key_error_naming_the_dict_and_key(ray_cluster, name, kill_stores):
    d = lumi.Dict(name)
    kill_stores.append(f"lumi-dict:local:{name}")
    for action in (lambda: d["absent"], lambda: d.pop("absent"), lambda: d.__delitem__("absent")):
        with pytest.raises(MissingKey) as e:
            action()
        assert isinstance(e.value, KeyError) and isinstance(e.value, LumiError)
        assert str(e.value) == f"Dict {name!r} has no key 'absent'"


def test_the_dict_survives_its_actor_restarting(ray_cluster, name, root, kill_stores):
    d = lumi.Dict(name, **root)
    kill_stores.append(f"lumi-dict:local:{name}")
    x = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32)
    d["x"], d["meta"], d["tmp"] = x, {"step": 3}, "drop me"
    del d["tmp"]
    Folder(root["root"], root["storage_options"]).write(f"dicts/local/{name}/items/.half-written", b"junk")
    restart(f"lumi-dict:local:{name}")
    np.testing.assert_array_equal(d["x"], x)  # the same handle, after the restart
    assert d["meta"] == {"step": 3} and "tmp" not in d and d.keys() == ["x", "meta"]
    again = lumi.Dict(name, create=False, **root)  # and a fresh one
    assert len(again) == 2
    again["after"] = 1
    assert d.keys() == ["x", "meta", "after"]
    ray.kill(ray.get_actor(f"lumi-dict:local:{name}", namespace="lumi"), no_restart=True)  # gone for good, as
    deadline = time.monotonic() + 60  # after a cluster restart: the next open starts it from what was persisted
    while f"lumi-dict:local:{name}" in ray.util.list_named_actors():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    reopened = lumi.Dict(name, create=False, **root)
    assert reopened.keys() == ["x", "meta", "after"]
    np.testing.assert_array_equal(reopened["x"], x)


def test_bad_names_keys_and_sizes_are_refused(ray_cluster, name, monkeypatch, kill_stores):
    for bad in ("", "a/b", "../x", "a:b", "x" * 64, "-lead", "sp ace", None):
        with pytest.raises(InvalidName, match="not allowed"):
            lumi.Dict(bad)
    with pytest.raises(InvalidName, match="not allowed"):
        lumi.Dict("ok", tenant="a:b")
    with pytest.raises(StoreNotFound) as e:
        lumi.Dict(name, create=False)
    assert str(e.value) == f"no Dict named {name!r} that tenant 'local' can open; create it with lumi.Dict({name!r})"
    d = lumi.Dict(name)
    kill_stores.append(f"lumi-dict:local:{name}")
    with pytest.raises(InvalidName, match="str or int"):
        d[(1, 2)] = 1
    with pytest.raises(InvalidName, match="too long"):
        d["k" * 513] = 1
    monkeypatch.setenv("LUMI_STORE_MAX_VALUE_BYTES", "1000")
    with pytest.raises(ValueTooLarge, match=f"Dict {name!r} key 'big' is 4,1..? bytes.*at most 1,000 bytes"):
        d["big"] = np.zeros(1024, np.float32)
    assert "big" not in d
    d["small"] = np.zeros(16, np.float32)


def test_a_python_job_on_a_dispatcher_worker_uses_the_dict(ray_cluster, name, kill_stores):
    import uuid

    from lumi.runtime import jobs
    from lumi.runtime.dispatcher import start_dispatcher

    d = lumi.Dict(name)
    kill_stores.append(f"lumi-dict:local:{name}")
    d["x"] = np.arange(5)
    dispatcher = start_dispatcher(f"test-store-{uuid.uuid4().hex[:6]}", env={"LUMI_WORKER_GPUS": "0.01"}, workers=1)
    try:
        source = "import lumi\nd = lumi.Dict(name)\nd['total'] = int(d['x'].sum())\ntotal = d['total']"
        job = jobs.submit_spec(jobs.python_spec(source, {"name": name}, ["total"]), dispatcher=dispatcher)
        assert job.result(timeout=180) == {"total": 10}
        # the worker runs each job as its tenant: another tenant's job opens a Dict of its own
        kill_stores.append(f"lumi-dict:other:{name}")
        source = "import lumi\nd = lumi.Dict(name)\nowner, seen = d.tenant, 'x' in d"
        job = jobs.submit_spec(jobs.python_spec(source, {"name": name}, ["owner", "seen"], tenant="other"),
                               dispatcher=dispatcher)
        assert job.result(timeout=180) == {"owner": "other", "seen": False}
    finally:
        ray.kill(dispatcher)
    assert d["total"] == 10
