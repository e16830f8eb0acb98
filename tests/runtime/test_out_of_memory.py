"""A job that runs out of memory fails with OutOfMemory naming the job, and its worker is replaced: past the
worker's own limit (LUMI_WORKER_MEMORY_BYTES, watched while the job runs) and when an allocation fails."""

from __future__ import annotations

import time

import pytest
import ray
from dispatchers import wait_ready
from lumi.errors import OutOfMemory
from lumi.runtime import jobs

pytestmark = pytest.mark.timeout(240)
MIB = 1 << 20
GROWS = """
import numpy as np, time
held = []
for _ in range(150):  # up to 1.5 GiB, 10 MiB at a time, each page touched
    held.append(np.ones(10 << 20, np.uint8))
    time.sleep(0.01)
"""


def live_workers(d) -> set[str]:
    return {w["id"] for w in ray.get(d.cluster.remote())["workers"] if w["state"] != "dead"}


def assert_replaced(d, worker: str) -> None:
    deadline = time.monotonic() + 60
    while worker in live_workers(d) or not live_workers(d):
        assert time.monotonic() < deadline, f"worker {worker} was not replaced"
        time.sleep(0.1)
    after = jobs.submit_spec(jobs.python_spec("y = 41 + 1", {}, ["y"]), d)  # the new worker runs the next job
    assert after.result(timeout=60) == {"y": 42}
    assert after.refresh()["worker"] != worker


def test_a_job_past_the_worker_memory_limit_fails_and_its_worker_is_replaced(make_dispatcher):
    d = make_dispatcher(env={"LUMI_WORKER_MEMORY_BYTES": str(700 * MIB)}, workers=1)
    wait_ready(d, 1)
    job = jobs.submit_spec(jobs.python_spec(GROWS, {}, []), d)
    with pytest.raises(OutOfMemory) as raised:
        job.result(timeout=120)
    message = str(raised.value)
    assert f"job {job.id} ran out of memory" in message
    assert "limit of 700 MiB" in message and "LUMI_WORKER_MEMORY_BYTES" in message and "was replaced" in message
    record = job.refresh()
    assert record["state"] == "failed" and record["attempts"] == 1  # not run again: it would run out again
    assert_replaced(d, record["worker"])


def test_a_job_whose_allocation_fails_is_told_so_and_its_worker_is_replaced(make_dispatcher):
    d = make_dispatcher(workers=1)
    wait_ready(d, 1)
    job = jobs.submit_spec(jobs.python_spec("import numpy as np\nx = np.ones(1 << 52)", {}, ["x"]), d)
    with pytest.raises(OutOfMemory, match=f"job {job.id} ran out of memory: the cell raised MemoryError at cell line"):
        job.result(timeout=60)
    assert_replaced(d, job.refresh()["worker"])
