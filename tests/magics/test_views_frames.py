"""``%lumi cluster`` (workers, ``--leases``) and ``%lumi costs`` (records, ``--endpoints``) from dispatcher answers
shaped like ``Dispatcher.cluster()`` and ``Dispatcher.costs()``: no Ray, no kernel."""

from __future__ import annotations

import types

import pandas as pd
import pytest
from IPython.core.error import UsageError

from lumi_magics import line, views

SINCE = 1_700_000_000.0


def _worker(id, role, state, doing, activity, **extra):
    return {"id": id, "host": "10.0.0.1", "device": "NVIDIA H100" if role == "device" else "CPU",
            "target": "cuda" if role == "device" else "cpu", "fallback": False, "utilization": 0.25,
            "utilization_source": "nvml", "memory_used": 1024, "memory_total": 4096, "running": 1,
            "state": state, "role": role, "doing": doing, "activity": activity, **extra}


WORKERS = [
    _worker("lumi-worker-0", "device", "busy",
            {"kind": "job", "job": "3f2a91c0", "tier": "api", "tenant": "acme", "label": "remote"},
            "job 3f2a91c0 (api, acme)"),
    _worker("lumi-worker-1", "device", "leased",
            {"kind": "serving", "endpoint": "mnist", "version": 3, "tier": "api", "tenant": "acme", "since": SINCE,
             "batches": 41, "gpu_seconds": 0.52},
            "serving mnist v3 since 12:01:07 (41 batches)"),
    _worker("lumi-cpu-0", "cpu", "idle", {"kind": "idle"}, "idle"),
]
LEASES = [
    {"id": "L1", "endpoint": "mnist", "version": 3, "tier": "api", "tenant": "acme", "worker": "lumi-worker-1",
     "since": SINCE, "batches": 41, "gpu_seconds": 0.52},
    {"id": "L2", "endpoint": "tiny", "version": 1, "tier": "batch", "tenant": "beta", "worker": "lumi-cpu-0",
     "since": SINCE + 60, "batches": 0, "gpu_seconds": 0.0},
]
CLUSTER = {"workers": WORKERS, "queue": {"api": 2, "batch": 0}, "queue_cap": 64, "tiers": {}, "fallback": False,
           "leases": LEASES, "pending_leases": 1}
RECORDS = [
    {"t": SINCE, "tenant": "acme", "tier": "api", "endpoint": None, "device": "cuda:0", "seconds": 0.1,
     "cost": 0.002, "job_id": "3f2a91c0"},
    {"t": SINCE + 1, "tenant": "acme", "tier": "api", "endpoint": "mnist", "device": "cuda:1", "seconds": 0.01,
     "cost": 0.0002, "job_id": None},
]
ENDPOINTS = [
    {"endpoint": "tiny", "tenant": "beta", "gpu_seconds": 0.01, "cost": 0.00001, "runs": 3},
    {"endpoint": "mnist", "tenant": "acme", "gpu_seconds": 0.52, "cost": 0.0104, "runs": 41},
    {"endpoint": "mnist", "tenant": "beta", "gpu_seconds": 0.05, "cost": 0.001, "runs": 4},
]
COSTS = {"total": 0.0134, "by_tenant": {}, "by_tier": {}, "by_endpoint": {}, "records": RECORDS,
         "endpoints": ENDPOINTS}


# --- the pure views ---------------------------------------------------------------------------------------------

def test_workers_lead_with_who_and_what_they_are_doing():
    frame = views.worker_frame(WORKERS)
    assert list(frame.columns[:4]) == ["id", "role", "state", "activity"]
    assert {"host", "device", "target", "fallback", "running", "utilization", "utilization_source", "memory_used",
            "memory_total"} <= set(frame.columns)
    assert "doing" not in frame.columns  # the dispatcher's rendering of it is the column shown
    assert list(frame["role"]) == ["device", "device", "cpu"]
    assert list(frame["activity"]) == ["job 3f2a91c0 (api, acme)", "serving mnist v3 since 12:01:07 (41 batches)",
                                       "idle"]
    assert frame.loc[1, "state"] == "leased" and frame.loc[1, "utilization"] == 0.25


def test_workers_from_an_older_dispatcher_have_the_new_columns_empty():
    old = [{k: v for k, v in w.items() if k not in ("role", "doing", "activity")} for w in WORKERS]
    frame = views.worker_frame(old)
    assert list(frame.columns) == list(views.worker_frame(WORKERS).columns)
    assert frame["role"].isna().all() and frame["activity"].isna().all()
    assert list(frame["id"]) == [w["id"] for w in WORKERS]


def test_no_workers_is_an_empty_frame_with_the_columns():
    frame = views.worker_frame([])
    assert frame.empty and list(frame.columns[:4]) == ["id", "role", "state", "activity"]


def test_leases_frame_has_one_row_per_lease_and_since_as_a_time():
    frame = views.lease_frame(LEASES)
    assert list(frame.columns) == ["id", "endpoint", "version", "tier", "tenant", "worker", "since", "batches",
                                   "gpu_seconds"]
    assert list(frame["endpoint"]) == ["mnist", "tiny"] and list(frame["version"]) == [3, 1]
    assert list(frame["worker"]) == ["lumi-worker-1", "lumi-cpu-0"]
    assert frame.loc[0, "since"] == pd.Timestamp(SINCE, unit="s")
    assert frame.loc[1, "since"] - frame.loc[0, "since"] == pd.Timedelta(seconds=60)
    assert frame.loc[0, "batches"] == 41 and frame.loc[0, "gpu_seconds"] == pytest.approx(0.52)


def test_no_leases_is_an_empty_frame_with_the_columns():
    frame = views.lease_frame([])
    assert frame.empty and list(frame.columns) == ["id", "endpoint", "version", "tier", "tenant", "worker", "since",
                                                   "batches", "gpu_seconds"]


def test_endpoint_costs_one_row_per_endpoint_and_tenant_costliest_first():
    frame = views.endpoint_cost_frame(COSTS)
    assert list(frame.columns) == ["endpoint", "tenant", "gpu_seconds", "cost", "runs"]
    assert list(zip(frame["endpoint"], frame["tenant"])) == [("mnist", "acme"), ("mnist", "beta"), ("tiny", "beta")]
    assert list(frame["runs"]) == [41, 4, 3]
    assert list(frame.index) == [0, 1, 2]
    assert frame["cost"].is_monotonic_decreasing


@pytest.mark.parametrize("ledger", [{**COSTS, "endpoints": []}, {k: v for k, v in COSTS.items() if k != "endpoints"}],
                         ids=["nothing served", "older dispatcher"])
def test_no_endpoint_costs_is_an_empty_frame_with_the_columns(ledger):
    frame = views.endpoint_cost_frame(ledger)
    assert frame.empty and list(frame.columns) == ["endpoint", "tenant", "gpu_seconds", "cost", "runs"]


def test_cluster_summary_counts_leases_and_points_to_them():
    line_ = views.cluster_summary(CLUSTER)
    assert line_.startswith("queued: api 2, batch 0 (cap 64)")
    assert "leases: 2 (1 pending)" in line_ and "%lumi cluster --leases" in line_
    assert "CPU fallback" not in line_
    old = {k: v for k, v in CLUSTER.items() if k not in ("leases", "pending_leases")}
    assert views.cluster_summary({**old, "fallback": True}) == "queued: api 2, batch 0 (cap 64) | CPU fallback: no GPU"
    assert "pending" not in views.cluster_summary({**CLUSTER, "pending_leases": 0})


def test_costs_summary_gives_the_total_and_points_to_the_endpoint_view():
    assert views.costs_summary(COSTS) == ("total $0.013 in 2 records | per endpoint and tenant: "
                                          "%lumi costs --endpoints")
    old = {k: v for k, v in COSTS.items() if k != "endpoints"}
    assert views.costs_summary(old) == "total $0.013 in 2 records"


# --- the commands, on a stand-in dispatcher ------------------------------------------------------------------------

@pytest.fixture
def dispatcher(monkeypatch):
    """``%lumi`` answered from ``answers`` (a dict per dispatcher method) instead of the Ray actor."""
    answers = {"cluster": CLUSTER, "costs": COSTS}
    method = lambda name: types.SimpleNamespace(remote=lambda **kw: name)
    stub = types.SimpleNamespace(cluster=method("cluster"), costs=method("costs"))
    monkeypatch.setattr(views, "get_dispatcher", lambda: stub)
    monkeypatch.setattr(views, "call", lambda name: answers[name])
    return answers


def test_lumi_cluster_prints_the_summary_and_returns_the_workers(dispatcher, capsys):
    frame = line.lumi("cluster")
    assert list(frame["id"]) == [w["id"] for w in WORKERS] and "activity" in frame
    assert "leases: 2 (1 pending)" in capsys.readouterr().out


def test_lumi_cluster_leases_returns_the_leases(dispatcher, capsys):
    frame = line.lumi("cluster --leases")
    assert list(frame["id"]) == ["L1", "L2"] and "endpoint" in frame
    assert "1 lease(s) waiting for a worker" in capsys.readouterr().out


def test_lumi_cluster_leases_on_an_older_dispatcher_says_so(dispatcher, capsys):
    dispatcher["cluster"] = {k: v for k, v in CLUSTER.items() if k not in ("leases", "pending_leases")}
    frame = line.lumi("cluster --leases")
    assert frame.empty and "endpoint" in frame
    assert "does not report leases" in capsys.readouterr().out


def test_lumi_cluster_plot_and_leases_do_not_combine(dispatcher):
    with pytest.raises(UsageError):
        line.lumi("cluster --leases --plot")


def test_lumi_costs_default_mentions_the_endpoint_view(dispatcher, capsys):
    frame = line.lumi("costs")
    assert list(frame["job_id"].fillna("-")) == ["3f2a91c0", "-"]
    assert "%lumi costs --endpoints" in capsys.readouterr().out


def test_lumi_costs_endpoints_returns_the_per_endpoint_frame(dispatcher, capsys):
    frame = line.lumi("costs --endpoints")
    assert list(frame.columns) == ["endpoint", "tenant", "gpu_seconds", "cost", "runs"] and len(frame) == 3
    assert capsys.readouterr().out == ""


def test_lumi_costs_endpoints_plot_is_a_bar_per_endpoint(dispatcher):
    figure = line.lumi("costs --endpoints --plot")
    assert type(figure).__name__ == "Figure"
    assert {trace.name for trace in figure.data} == {"acme", "beta"}


def test_help_names_the_new_options(capsys):
    for name, option in (("cluster", "--leases"), ("costs", "--endpoints")):
        assert line.lumi(f"{name} --help") is None
        assert option in capsys.readouterr().out
