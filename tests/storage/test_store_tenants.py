"""Each store belongs to a tenant: another tenant's key (or job) cannot open it, nor tell that it exists."""

from __future__ import annotations

import lumi
import numpy as np
import pytest
import ray
from lumi.serving.keys import add_key, admin_key
from lumi.storage import StoreNotFound, UntrustedValue


@pytest.fixture(scope="module")
def other_key(lumi_home):
    return add_key("other", "api", home=lumi_home)


def _refusal(open_store) -> str:
    with pytest.raises(StoreNotFound) as e:
        open_store()
    return str(e.value)


@pytest.mark.parametrize("kind", ["Dict", "Queue", "Volume"])
def test_another_tenants_key_cannot_open_a_store(ray_cluster, name, kind, other_key, kill_stores):
    cls = getattr(lumi, kind)
    mine = cls(name)
    kill_stores += [f"lumi-{kind.lower()}:local:{name}", f"lumi-{kind.lower()}:other:{name}"]
    if kind == "Dict":
        mine["secret"] = 42
    missing = _refusal(lambda: cls("never-made", key=other_key, create=False)).replace("never-made", "N")
    # asking for local's store by name, or naming the tenant, answers as for a store that does not exist
    assert _refusal(lambda: cls(name, key=other_key, create=False)).replace(name, "N") == missing
    assert _refusal(lambda: cls(name, key=other_key, tenant="local")).replace(name, "N") == missing
    assert _refusal(lambda: cls(name, key=other_key, tenant="local", create=False)).replace(name, "N") == missing
    assert "other" in missing and "local" not in missing
    theirs = cls(name, key=other_key)  # the same name is another store in their tenant
    assert theirs.tenant == "other" and mine.tenant == "local"
    if kind == "Dict":
        assert len(theirs) == 0 and "secret" not in theirs
        theirs["secret"] = 1
        assert mine["secret"] == 42


def test_a_job_opens_its_own_tenants_dict(ray_cluster, name, kill_stores):
    lumi.Dict(name)["x"] = 1
    kill_stores += [f"lumi-dict:local:{name}", f"lumi-dict:other:{name}"]

    @ray.remote(num_cpus=0, runtime_env={"env_vars": {"LUMI_TENANT": "other"}})
    def as_other():
        import lumi
        from lumi.storage import StoreNotFound

        try:
            lumi.Dict(name, tenant="local")
            return "opened"
        except StoreNotFound as e:
            refused = str(e)
        d = lumi.Dict(name)
        d["y"] = 2
        return refused, d.tenant, d.keys()

    refused, tenant, keys = ray.get(as_other.remote(), timeout=180)
    assert refused.startswith(f"no Dict named {name!r} that tenant 'other' can open")
    assert tenant == "other" and keys == ["y"] and lumi.Dict(name).keys() == ["x"]


def test_an_admin_reads_arrays_but_never_unpickles_another_tenants_values(ray_cluster, name, other_key, lumi_home,
                                                                          kill_stores):
    theirs = lumi.Dict(name, key=other_key)
    kill_stores.append(f"lumi-dict:other:{name}")
    theirs["w"] = np.ones(3)
    theirs["code"] = {"fn": print}
    admin = lumi.Dict(name, key=admin_key(lumi_home), tenant="other")
    np.testing.assert_array_equal(admin["w"], np.ones(3))
    with pytest.raises(UntrustedValue, match="unpickling runs code"):
        admin["code"]
    operator = lumi.Dict(name, tenant="other")  # the key-less local operator, like the local admin key
    with pytest.raises(UntrustedValue):
        operator.pop("code")
    assert theirs["code"] == {"fn": print}  # still there, for its own tenant
    q = lumi.Queue(name, key=other_key)
    kill_stores.append(f"lumi-queue:other:{name}")
    q.put_many(["pickled", np.zeros(2)])
    with pytest.raises(UntrustedValue):
        lumi.Queue(name, tenant="other").get(block=False)
    assert len(q) == 2 and q.get() == "pickled"  # a refused get takes nothing


def test_an_invalid_key_opens_nothing(ray_cluster, name):
    with pytest.raises(StoreNotFound, match="the key is not valid"):
        lumi.Dict(name, key="lumi_00000000_not-a-key")
