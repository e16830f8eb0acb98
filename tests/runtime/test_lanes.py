"""Lanes: while nothing is queued, a client process sends its short graph jobs straight to a worker the dispatcher
opened to it; queued work closes every lane first; what a lane ran is counted, metered and listed like any job."""

from __future__ import annotations

import time

import lumi
import numpy as np
import pytest
import ray
from dispatchers import sleeper, wait_ready
from lumi.runtime import jobs

pytestmark = pytest.mark.slow


def _counters(d) -> dict:
    return ray.get(d.counters.remote())


def _until(check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return value


def _run(d, graph, x):
    return jobs.submit_spec(jobs.graph_spec(graph, [x]), dispatcher=d, outputs=1)


def _with_a_lane(make_dispatcher, workers: int):
    """A dispatcher with ``workers`` workers, a graph ``x + 1`` and its input, run until its runtime is measured short
    and a lane has opened to this process."""
    d = make_dispatcher(workers=workers)
    wait_ready(d, workers)
    x = np.arange(4, dtype=np.float32)
    graph = lumi.trace(lambda x: x + 1, x)
    for _ in range(40):  # a first run compiles: the measured estimate falls by half with each run after it
        np.testing.assert_array_equal(_run(d, graph, x).result(timeout=60), x + 1)
        if _counters(d)["lanes_opened"]:
            return d, graph, x
    raise AssertionError("no lane opened")


def test_short_jobs_go_straight_to_the_lane_and_are_counted_metered_and_listed(make_dispatcher):
    d, graph, x = _with_a_lane(make_dispatcher, workers=1)
    worker = ray.get(d.cluster.remote())["workers"][0]
    assert worker["doing"]["kind"] == "lane" and worker["activity"].startswith("lane for local (api")
    before = _counters(d)
    ran = [_run(d, graph, x + i) for i in range(10)]
    for i, job in enumerate(ran):
        np.testing.assert_array_equal(job.result(), x + i + 1)
        assert job.refresh()["state"] == "done" and job.refresh()["worker"] == worker["id"]
    queued = _counters(d)["worker_calls"] - before["worker_calls"]
    # each went through the lane, or (a run slowed past 2 ms by a busy machine makes the lane decline the graph
    # until the queue has measured it short again) through the queue: reported with the worker's stats
    _until(lambda: _counters(d)["lane_jobs"] - before["lane_jobs"] + queued == 10)
    assert queued <= 5
    ids = {job.id for job in ran}
    listed = {j["id"]: j for j in ray.get(d.jobs.remote(limit=1000))}
    assert all(listed[i]["state"] == "done" and listed[i]["gpu_seconds"] > 0 for i in ids)
    metered = {r["job_id"] for r in ray.get(d.costs.remote())["records"]}
    assert ids <= metered


def test_queued_work_closes_the_lane_and_the_lanes_client_goes_through_the_queue(make_dispatcher):
    d, graph, x = _with_a_lane(make_dispatcher, workers=1)
    other = ray.get(d.submit.remote(sleeper(0.5, "free", tenant="other")))  # another client's job, queued
    assert ray.get(d.cluster.remote())["lanes"] == 0  # the submit closed the lane before it answered
    before = _counters(d)
    late = _run(d, graph, x)  # the closed lane declines it: it queues behind the other client's job
    np.testing.assert_array_equal(late.result(timeout=60), x + 1)
    assert ray.get(d.status.remote(other["id"]))["state"] == "done"
    assert ray.get(d.status.remote(late.id))["started_at"] >= ray.get(d.status.remote(other["id"]))["started_at"]
    time.sleep(1.0)  # two of the workers' stats reports
    assert _counters(d)["lane_jobs"] == before["lane_jobs"]


def test_a_graph_the_lane_does_not_know_as_short_goes_through_the_queue(make_dispatcher):
    d, graph, x = _with_a_lane(make_dispatcher, workers=2)
    before = _counters(d)
    new = lumi.trace(lambda x: x * 3, x)  # never measured: it may compile for seconds
    job = _run(d, new, x)
    np.testing.assert_array_equal(job.result(timeout=60), x * 3)
    assert _counters(d)["worker_calls"] == before["worker_calls"] + 1  # the other worker ran it, from the queue
    time.sleep(1.0)  # two of the workers' stats reports
    assert _counters(d)["lane_jobs"] == before["lane_jobs"]


def test_no_lanes_when_they_are_turned_off(make_dispatcher):
    d = make_dispatcher(env={"LUMI_LANES": "0"}, workers=1)
    wait_ready(d, 1)
    x = np.arange(4, dtype=np.float32)
    graph = lumi.trace(lambda x: x + 1, x)
    for _ in range(20):
        np.testing.assert_array_equal(_run(d, graph, x).result(timeout=60), x + 1)
    assert _counters(d)["lanes_opened"] == 0
