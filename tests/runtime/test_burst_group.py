"""The burst worker group on a multi-node ``ray.cluster_utils.Cluster``: a node labelled as burst capacity
(``LUMI_BURST_POOL``) gets device workers only while a tier's head job is past its wait target, and gives them
back once the queues drain. Runs in a child process that makes the cluster: a head with one logical GPU, and
a burst node with two."""

from __future__ import annotations

import pytest
from backends import run_on_own_backend

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SCRIPT = r"""
import json, os, time
import ray
from ray.cluster_utils import Cluster

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 1, "include_dashboard": False})
burst = cluster.add_node(num_cpus=1, num_gpus=2, labels={"lumi.io/pool": "burst"})
cluster.wait_for_nodes()
os.environ.update(LUMI_RAY_ADDRESS=cluster.address, LUMI_BURST_POOL="lumi.io/pool=burst",
                  LUMI_TIER_API_WAIT_S="0.5", LUMI_DISPATCH_LIMIT="1")

from ray._private import state
from lumi.runtime import jobs
from lumi.runtime.cluster import connect
from lumi.runtime.dispatcher import get_dispatcher

connect()
d = get_dispatcher()
nodes = lambda: {a["Name"]: a["Address"]["NodeID"] for a in state.actors().values() if a["State"] == "ALIVE"}
alone = jobs.submit_spec(jobs.python_spec("y = 1", {}, ["y"], tier="api"), d)
alone.result(timeout=120)
time.sleep(1.0)
quiet = ray.get(d.counters.remote())["burst_started"]

submitted = [jobs.submit_spec(jobs.python_spec(f"import time\ntime.sleep(0.4)\ny = {i} * 2", {}, ["y"], tier="api",
                                               tenant=f"t{i % 4}"), d) for i in range(16)]
results = [job.result(timeout=180) for job in submitted]
records = [job.refresh() for job in submitted]
where = nodes()
drained_at = time.monotonic()
while any(w["role"] == "burst" for w in ray.get(d.cluster.remote())["workers"] if w["state"] != "dead"):
    assert time.monotonic() - drained_at < 60, "the burst workers were not released"
    time.sleep(0.25)
print("RESULT", json.dumps({
    "quiet": quiet, "results": results, "records": records, "counters": ray.get(d.counters.remote()),
    "worker_nodes": {r["worker"]: where.get(r["worker"]) for r in records}, "burst_node": burst.node_id,
    "head_node": cluster.head_node.node_id, "released_after_s": time.monotonic() - drained_at}))
ray.shutdown()
cluster.shutdown()
"""


def test_the_burst_group_is_used_only_past_the_wait_target_and_released_after(fresh_home):
    result = run_on_own_backend(SCRIPT, fresh_home, timeout=280)
    assert result["quiet"] == 0  # one job, no wait: the burst nodes were left alone
    assert result["results"] == [{"y": 2 * i} for i in range(16)]
    records, nodes = result["records"], result["worker_nodes"]
    on_burst = [r for r in records if r["worker"].startswith("lumi-burst-worker-")]
    on_main = [r for r in records if r["worker"].startswith("lumi-worker-")]
    assert on_burst and on_main and len(on_burst) + len(on_main) == 16
    assert {nodes[r["worker"]] for r in on_burst} == {result["burst_node"]}  # burst workers on the labelled node
    assert {nodes[r["worker"]] for r in on_main} == {result["head_node"]}  # and the others never there
    first_overdue = min(r["submitted_at"] for r in records) + 0.5
    assert min(r["started_at"] for r in on_burst) >= first_overdue  # only once a head was past its target
    assert 1 <= result["counters"]["burst_started"] <= 2  # the burst node has two GPU slots
    assert result["counters"]["burst_released"] == result["counters"]["burst_started"]
    print(f"\n{len(on_burst)} of 16 jobs ran on burst workers; released {result['released_after_s']:.1f} s after the "
          "queue drained")
