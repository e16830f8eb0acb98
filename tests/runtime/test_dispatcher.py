"""The dispatcher on a real local Ray: fairness, back pressure, worker death, cost, admission tokens."""

from __future__ import annotations

import threading
import time

import lumi
import numpy as np
import pytest
import ray
from dispatchers import sleeper, wait_all, wait_ready
from lumi.runtime import jobs


def jain(xs) -> float:
    xs = np.asarray(xs, dtype=float)
    return xs.sum() ** 2 / (len(xs) * (xs**2).sum())


@pytest.mark.slow
def test_weighted_fair_share_across_four_backlogged_tiers(make_dispatcher):
    d = make_dispatcher(workers=0)  # hold dispatch until every tier is backlogged
    weights = {"enterprise": 8, "api": 4, "unlimited": 2, "light": 1}
    cost = {"enterprise": 0.010, "api": 0.005, "unlimited": 0.010, "light": 0.005}  # seconds per job
    quantum = max(cost.values())
    counts = {t: round(13 * weights[t] * quantum / cost[t]) for t in weights}  # 13 rounds, drained together: 260
    specs = [sleeper(cost[t], t, estimate=cost[t]) for t in weights for _ in range(counts[t])]
    submitted = ray.get([d.submit.remote(s) for s in specs])
    ray.get(d.resize.remote(2))
    done = list(wait_all(d, [j["id"] for j in submitted]).values())
    assert all(j["state"] == "done" for j in done)

    order = sorted(done, key=lambda j: j["started_at"])
    last = {t: max(i for i, j in enumerate(order) if j["tier"] == t) for t in weights}
    window = order[: min(last.values())]  # every tier still had queued work throughout
    assert len(window) >= 200
    service = {t: sum(j["gpu_seconds"] for j in window if j["tier"] == t) for t in weights}
    index = jain([service[t] / weights[t] for t in weights])
    assert index >= 0.95, (index, service)

    for tier in weights:
        one_round = sum(quantum * weights[o] / min(weights.values()) + quantum for o in weights if o != tier)
        gap = 0.0
        for j in window:
            if j["tier"] == tier:
                assert gap <= one_round + 1e-9, f"{tier} waited {gap:.3f} s of others' work (a round is {one_round})"
                gap = 0.0
            else:
                gap += j["estimate"]


def test_burst_past_the_caps_is_refused_with_busy_and_nothing_is_lost(make_dispatcher):
    caps = {"LUMI_QUEUE_CAP": "20", "LUMI_TIER_API_CAP": "12", "LUMI_TIER_FREE_CAP": "4",
            "LUMI_TIER_ENTERPRISE_CAP": "12"}
    d = make_dispatcher(env=caps, workers=1)
    wait_ready(d, 1)
    tiers = ["api", "free", "enterprise"]
    accepted, refused, lock = [], [], threading.Lock()

    def burst(n: int):
        for i in range(10):
            try:
                job = jobs.submit_spec(sleeper(0.02, tiers[(n + i) % 3]), dispatcher=d)
                with lock:
                    accepted.append(job)
            except lumi.Busy as e:
                with lock:
                    refused.append(e.retry_after)

    threads = [threading.Thread(target=burst, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(accepted) + len(refused) == 100 == 5 * 20
    assert refused and all(r > 0 for r in refused)
    results = [job.result(timeout=60) for job in accepted]
    assert len(results) == len(accepted) and all(job.state == "done" for job in accepted)
    counters = ray.get(d.counters.remote())
    assert counters["accepted"] == len(accepted) and counters["refused"] == len(refused)
    assert counters["done"] == len(accepted) and counters["failed"] == counters["cancelled"] == 0
    assert counters["peak"]["total"] <= 20
    for tier in tiers:
        assert counters["peak"][tier] <= counters["caps"][tier]


def test_a_job_whose_worker_is_killed_completes_on_another(make_dispatcher):
    d = make_dispatcher(env={"LUMI_DISPATCH_LIMIT": "1"}, workers=2)
    wait_ready(d, 2)
    job = jobs.submit_spec(jobs.python_spec("import time\ntime.sleep(1.0)\ny = 42", {}, ["y"]), dispatcher=d)
    deadline = time.monotonic() + 30
    while (snap := job.refresh())["state"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    victim = snap["worker"]
    time.sleep(0.2)  # mid-job
    ray.kill(ray.get_actor(victim, namespace="lumi"))
    assert job.result(timeout=60) == {"y": 42}
    final = job.refresh()
    assert final["state"] == "done" and final["attempts"] == 2 and final["worker"] != victim
    assert ray.get(d.counters.remote())["requeued"] == 1


def test_cost_is_execution_seconds_times_price_and_queueing_is_free(make_dispatcher):
    d = make_dispatcher(env={"LUMI_DISPATCH_LIMIT": "1", "LUMI_PRICE_CPU": "2.0"}, workers=1)
    wait_ready(d, 1)
    first = jobs.submit_spec(sleeper(0.6, "api"), dispatcher=d)
    second = jobs.submit_spec(sleeper(0.2, "api"), dispatcher=d)
    first.result(timeout=30)
    second.result(timeout=30)
    job = second.refresh()
    queued = job["started_at"] - job["submitted_at"]
    assert queued > 0.4  # it waited behind the first job ...
    assert 0.2 <= job["gpu_seconds"] < 0.35  # ... and only its execution was metered
    assert job["cost"] == pytest.approx(job["gpu_seconds"] * 2.0, rel=1e-12)
    costs = ray.get(d.costs.remote())
    assert costs["total"] == pytest.approx(first.cost + second.cost)
    assert {r["job_id"] for r in costs["records"]} == {first.id, second.id}


def test_admission_tokens_count_against_caps_and_meter_on_release(make_dispatcher):
    d = make_dispatcher(env={"LUMI_TIER_FREE_CAP": "2", "LUMI_PRICE_H100": "0.5"}, workers=0)
    tokens = [jobs.call(d.acquire.remote("acme", "free")) for _ in range(2)]
    with pytest.raises(lumi.Busy) as refused:
        jobs.call(d.acquire.remote("acme", "free"))
    assert refused.value.retry_after > 0
    with pytest.raises(lumi.Busy):
        jobs.submit_spec(sleeper(0.01, "free"), dispatcher=d)
    assert jobs.call(d.release.remote(tokens[0], 0.0, "NVIDIA H100 80GB HBM3", None)) == {"cost": 0.0}
    assert jobs.call(d.release.remote(tokens[1], 3.0, "NVIDIA H100 80GB HBM3", "mnist"))["cost"] == 1.5
    costs = ray.get(d.costs.remote())
    assert costs["by_endpoint"] == {"mnist": 1.5} and costs["by_tenant"] == {"acme": 1.5}
    with pytest.raises(lumi.LumiError, match="unknown or expired"):
        jobs.call(d.release.remote(tokens[1], 1.0, "CPU", None))
    # a request admitted by a dispatcher before it restarted (its token unknown here) is metered for whom it was
    assert jobs.call(d.release.remote("f" * 32, 2.0, "NVIDIA H100 80GB HBM3", "mnist", ("acme", "free")))["cost"] == 1
    assert ray.get(d.costs.remote())["by_endpoint"] == {"mnist": 2.5}
    jobs.call(d.acquire.remote("acme", "free"))  # the places were given back


def test_submit_runs_a_graph_and_reuses_uploads_by_content_hash(ray_cluster):
    x = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    graph = lumi.trace(lambda x, w: np.tanh(x @ w), x, w)
    job = lumi.submit(graph, x, w, tier="light", tenant="ana")
    assert isinstance(job, lumi.Job)
    np.testing.assert_allclose(job.result(timeout=60), np.tanh(x @ w), rtol=1e-5)
    snap = job.refresh()
    assert (snap["tier"], snap["tenant"], snap["state"]) == ("light", "ana", "done")
    assert job.gpu_seconds > 0 and job.cost > 0 and snap["finished_at"] >= snap["started_at"] >= snap["submitted_at"]
    cached = len(jobs._cache)
    again = lumi.submit(graph, x, w)
    assert len(jobs._cache) == cached  # neither the graph nor the arrays were uploaded again
    np.testing.assert_allclose(again.result(timeout=60), np.tanh(x @ w), rtol=1e-5)


def test_bad_requests_say_what_to_do(ray_cluster):
    graph = lumi.trace(lambda x: x + 1, np.ones(3, np.float32))
    with pytest.raises(lumi.LumiError, match="unknown tier 'gold'"):
        lumi.submit(graph, np.ones(3, np.float32), tier="gold")
    with pytest.raises(lumi.LumiError, match="a job runs on one worker"):
        lumi.submit(graph, np.ones(3, np.float32), gpu="H100:2")
    with pytest.raises(lumi.ShapeError):
        lumi.submit(graph, np.ones(4, np.int64))


def test_failed_and_cancelled_jobs_say_why(make_dispatcher):
    d = make_dispatcher(env={"LUMI_DISPATCH_LIMIT": "1"}, workers=1)
    wait_ready(d, 1)
    bad = jobs.submit_spec(jobs.python_spec("y = 1 / 0", {}, ["y"]), dispatcher=d)
    with pytest.raises(lumi.ExecutionError, match="ZeroDivisionError"):
        bad.result(timeout=30)
    assert bad.state == "failed" and "ZeroDivisionError" in bad.refresh()["error"]
    blocker = jobs.submit_spec(sleeper(0.5, "api"), dispatcher=d)
    queued = jobs.submit_spec(sleeper(0.1, "api"), dispatcher=d)
    assert queued.refresh()["position"] == 1 and queued.refresh()["tier_position"] == 1
    assert queued.cancel()["state"] == "cancelled"
    with pytest.raises(lumi.LumiError, match="cancelled"):
        queued.result(timeout=10)
    assert queued.cost == 0
    blocker.result(timeout=30)


def test_short_jobs_share_worker_calls_in_the_order_they_were_picked(make_dispatcher):
    d = make_dispatcher(env={"LUMI_DISPATCH_LIMIT": "1"}, workers=1)
    wait_ready(d, 1)
    x = np.arange(4, dtype=np.float32)
    graph = lumi.trace(lambda x: x * 2, x)
    jobs.submit_spec(jobs.graph_spec(graph, [x]), dispatcher=d).result(timeout=60)  # measured: short from now on
    blocker = jobs.submit_spec(sleeper(2.0, "api"), dispatcher=d)  # the one place is taken while the rest queue
    # (2 s: the 40 submits below must land while it runs, on a loaded machine too)
    inputs = [np.full(4, i, np.float32) for i in range(40)]
    specs = [jobs.with_id(jobs.graph_spec(graph, [a], estimate=1e-4)) for a in inputs]
    before = ray.get(d.counters.remote())["worker_calls"]
    ray.get(d.submit_many.remote(specs))
    assert ray.get(d.status.remote(specs[0]["id"]))["state"] == "queued"
    done = wait_all(d, [s["id"] for s in specs])
    assert blocker.refresh()["state"] == "done"
    calls = ray.get(d.counters.remote())["worker_calls"] - before
    assert calls == 3, calls  # 16 + 16 + 8 jobs, each call at most BATCH_JOBS
    results = [ray.get(d.wait.remote(s["id"]))["value"][0] for s in specs]
    for a, result in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(result, a * 2)
    started = sorted(specs, key=lambda s: done[s["id"]]["started_at"])
    assert [s["id"] for s in started] == [s["id"] for s in specs]  # one tenant: its FIFO order


def test_a_graph_not_measured_yet_goes_alone_and_once_measured_short_its_jobs_share_a_call(make_dispatcher):
    d = make_dispatcher(env={"LUMI_DISPATCH_LIMIT": "1"}, workers=1)
    wait_ready(d, 1)
    x = np.arange(4, dtype=np.float32)
    graph = lumi.trace(lambda x: x - 1, x)
    blocker = jobs.submit_spec(sleeper(0.3, "api"), dispatcher=d)
    specs = [jobs.with_id(jobs.graph_spec(graph, [x], estimate=1e-4)) for _ in range(4)]  # never measured yet
    before = ray.get(d.counters.remote())["worker_calls"]
    ray.get(d.submit_many.remote(specs))
    wait_all(d, [s["id"] for s in specs])
    blocker.result(timeout=30)
    assert ray.get(d.counters.remote())["worker_calls"] - before == 2  # the first alone (it may compile), then 3
