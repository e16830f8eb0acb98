"""The wire (``lumi.runtime.wire``): the submits of many threads share ``submit_many`` calls, and every job's
end reaches its ``Job`` through the process's mailbox, also an end that comes before its submit's answer; a
dispatcher stopped for good fails its jobs with a LumiError, never a raw Ray one."""

from __future__ import annotations

import threading
import time

import lumi
import numpy as np
import pytest
import ray
from dispatchers import wait_ready
from lumi.errors import LumiError
from lumi.runtime import jobs

THREADS, EACH = 16, 10


def test_sixteen_threads_share_submit_calls_and_each_job_gets_its_own_result(make_dispatcher):
    d = make_dispatcher(workers=2)
    wait_ready(d, 2)
    graph = lumi.trace(lambda x: x * 2 + 1, np.zeros(3, np.float32))
    before = ray.get(d.counters.remote())
    start, results, errors = threading.Barrier(THREADS), {}, []

    def client(t: int) -> None:
        start.wait()
        try:
            for i in range(EACH):
                n = t * EACH + i
                results[n] = jobs.submit(graph, np.full(3, n, np.float32), dispatcher=d).result(timeout=120)
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=client, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    assert sorted(results) == list(range(THREADS * EACH))
    for n, value in results.items():
        np.testing.assert_array_equal(value, np.full(3, 2 * n + 1, np.float32))
    deadline = time.monotonic() + 30  # a job that ran on a lane is recorded once its worker has reported it
    while (after := ray.get(d.counters.remote()))["accepted"] - before["accepted"] < THREADS * EACH:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    jobs_made = after["accepted"] - before["accepted"]
    calls = after["submit_calls"] - before["submit_calls"]
    assert jobs_made == THREADS * EACH
    assert calls < jobs_made, f"{calls} submit calls for {jobs_made} jobs: none was shared"


def test_a_job_whose_dispatcher_is_stopped_for_good_fails_with_a_lumi_error(make_dispatcher):
    d = make_dispatcher(workers=0)  # nothing runs: the job stays queued
    job = jobs.submit_spec(jobs.python_spec("y = 1", {}, ["y"]), d)
    ray.kill(d)  # no restart
    with pytest.raises(LumiError, match="was stopped; submit them again"):
        job.result(timeout=60)
    with pytest.raises(LumiError, match="was stopped"):
        jobs.submit_spec(jobs.python_spec("y = 1", {}, ["y"]), d)
