"""Helpers for the dispatcher tests: private dispatchers' settings, job specs, waiting for workers and jobs."""

from __future__ import annotations

import time

import ray
from lumi.runtime import jobs
from lumi.runtime.dispatcher import FINAL

SMALL_WORKERS = {"LUMI_WORKER_GPUS": "0.01"}  # leave the session's logical GPUs to other tests


def sleeper(seconds: float, tier: str, estimate: float | None = None, tenant: str = "local") -> dict:
    return jobs.python_spec(f"import time\ntime.sleep({seconds})", {}, [], tier=tier, tenant=tenant,
                            estimate=estimate)


def wait_ready(d, workers: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while sum(w["state"] != "dead" and w["device"] != "" for w in ray.get(d.cluster.remote())["workers"]) < workers:
        assert time.monotonic() < deadline, "workers did not come up"
        time.sleep(0.05)


def wait_all(d, ids, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        by_id = {j["id"]: j for j in ray.get(d.jobs.remote(limit=100_000))}
        if all(by_id[i]["state"] in FINAL for i in ids):
            return {i: by_id[i] for i in ids}
        assert time.monotonic() < deadline, "jobs did not finish"
        time.sleep(0.1)
