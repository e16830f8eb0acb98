"""The gateway's views for the panel's Store and Schedules sections: ``GET /v1/store`` and ``GET /v1/schedules``,
against real stores on the session's Ray; an admin key sees every tenant's, a tenant key only its own."""

from __future__ import annotations

import contextlib
import time
import uuid

import httpx
import lumi
import numpy as np
import pytest
from lumi.serving.keys import add_key


@pytest.fixture
def tenants(ray_cluster):
    """Two fresh tenants; the Dict and Queue actors made for them are killed afterwards."""
    pair = (f"gwa-{uuid.uuid4().hex[:8]}", f"gwb-{uuid.uuid4().hex[:8]}")
    yield pair
    for actor in ray_cluster.util.list_named_actors(all_namespaces=True):
        if any(f":{t}:" in actor["name"] for t in pair):
            with contextlib.suppress(ValueError):
                ray_cluster.kill(ray_cluster.get_actor(actor["name"], namespace=actor["namespace"]), no_restart=True)


def _mine(listing: dict, tenants: tuple[str, ...]) -> dict:
    return {kind: sorted((r for r in rows if r["tenant"] in tenants), key=lambda r: (r["tenant"], r["name"]))
            for kind, rows in listing.items()}


def test_store_lists_dicts_queues_and_volumes_per_tenant(gateway, client, tenants):
    acme, bob = tenants
    d = lumi.Dict("weights", tenant=acme)
    d["w"], d["lr"], d["name"] = np.zeros(256, np.float32), 0.1, "run-1"
    lumi.Queue("work", tenant=acme, maxsize=7).put_many([1, 2, 3])
    vol = lumi.Volume("data", tenant=acme)
    vol.write_bytes("train.bin", b"\0" * 1000)
    vol.write_text("sub/notes.txt", "hello")
    lumi.Dict("secret", tenant=bob)["k"] = 1

    r = client.get("/v1/store")
    assert r.status_code == 200 and set(r.json()) == {"dicts", "queues", "volumes"}
    listing = _mine(r.json(), tenants)
    assert [(x["name"], x["tenant"], x["keys"]) for x in listing["dicts"]] == [("weights", acme, 3),
                                                                                ("secret", bob, 1)]
    assert listing["dicts"][0]["bytes"] > 1024  # the array's bytes and more
    assert [(x["name"], x["length"], x["maxsize"]) for x in listing["queues"]] == [("work", 3, 7)]
    assert [(x["name"], x["files"], x["bytes"]) for x in listing["volumes"]] == [("data", 2, 1005)]

    # a tenant key: its own stores only (another tenant's are absent, not refused)
    for tenant, names in ((acme, {"weights", "work", "data"}), (bob, {"secret"})):
        key = add_key(tenant, "free")
        r = httpx.get(f"{gateway['url']}/v1/store", headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert r.status_code == 200
        rows = [row for kind in ("dicts", "queues", "volumes") for row in r.json()[kind]]
        assert {row["tenant"] for row in rows} == {tenant}
        assert {row["name"] for row in rows} == names
    assert httpx.get(f"{gateway['url']}/v1/store").status_code == 401
    assert {"/v1/store", "/v1/schedules"} <= set(client.get("/openapi.json").json()["paths"])


def test_schedules_show_cron_state_next_run_and_runs_per_tenant(gateway, client, tenants):
    acme, bob = tenants

    def tick():
        return 1

    often = lumi.schedule(tick, cron="* * * * * */2", name="tick", tenant=acme)
    nightly = lumi.schedule(tick, cron="0 3 * * *", name="nightly", tenant=bob, missed="once").pause()
    try:
        deadline = time.monotonic() + 90
        while True:
            rows = {r["name"]: r for r in client.get("/v1/schedules").json()["schedules"] if r["tenant"] in tenants}
            if any(run["state"] == "done" for run in rows["tick"]["runs"]) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        tick_row, nightly_row = rows["tick"], rows["nightly"]
        assert (tick_row["tenant"], tick_row["cron"], tick_row["state"], tick_row["target"], tick_row["missed"]) == (
            acme, "* * * * * */2", "active", "function tick", "skip")
        assert tick_row["next_run"] is not None and abs(tick_row["next_run"] - time.time()) < 10
        done = [run for run in tick_row["runs"] if run["state"] == "done"]
        assert done, f"no run of the 2-second schedule finished in 90 s: {tick_row['runs']}"
        assert done[-1]["job"] and done[-1]["seconds"] >= 0 and done[-1]["cost"] >= 0 and done[-1]["error"] is None
        assert [run["at"] for run in tick_row["runs"]] == sorted(run["at"] for run in tick_row["runs"])
        assert (nightly_row["state"], nightly_row["next_run"], nightly_row["missed"]) == ("paused", None, "once")

        for tenant, name in ((acme, "tick"), (bob, "nightly")):
            key = add_key(tenant, "free")
            r = httpx.get(f"{gateway['url']}/v1/schedules", headers={"Authorization": f"Bearer {key}"}, timeout=30)
            assert r.status_code == 200
            assert [(s["tenant"], s["name"]) for s in r.json()["schedules"]] == [(tenant, name)]
        assert httpx.get(f"{gateway['url']}/v1/schedules").status_code == 401
    finally:
        often.delete()
        nightly.delete()
    assert not [r for r in client.get("/v1/schedules").json()["schedules"] if r["tenant"] in tenants]
