"""Accepted work survives the dispatcher: Ray restarts it, it reads its journal back, and clients ride through
(handles, waits, new submits); costs metered before the kill are still there; a journal that cannot be written
refuses the submit rather than accept a job it could lose."""

from __future__ import annotations

import sqlite3
import time

import lumi
import numpy as np
import pytest
import ray
from dispatchers import wait_ready
from lumi.errors import JournalError
from lumi.runtime import jobs
from lumi.runtime.journal import Journal

pytestmark = pytest.mark.timeout(300)
TIERS = ("enterprise", "api", "unlimited")
SOURCE = "import time\ntime.sleep(0.15)\ny = x * 2\n"


def burst(d, n: int) -> list[jobs.Job]:
    return [jobs.submit_spec(jobs.python_spec(SOURCE, {"x": i}, ["y"], tier=TIERS[i % 3], tenant=f"team-{i % 3}"), d)
            for i in range(n)]


def test_killing_the_dispatcher_mid_burst_loses_no_accepted_job(make_dispatcher):
    d = make_dispatcher(workers=2)
    wait_ready(d, 2)
    graph = lumi.trace(lambda x: x * 2 + 1, np.ones(4, np.float32))
    early = jobs.submit(graph, np.ones(4, np.float32), tier="api", tenant="before", dispatcher=d)
    np.testing.assert_array_equal(early.result(), np.full(4, 3, np.float32))
    costs_before = ray.get(d.costs.remote())
    assert costs_before["by_tenant"]["before"] > 0

    submitted = burst(d, 60)
    deadline = time.monotonic() + 60
    while sum(j["state"] == "done" for j in ray.get(d.jobs.remote(limit=1000))) < 8:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    ray.kill(d, no_restart=False)  # a crash: Ray restarts the actor, which reads its journal back
    states = [job.state for job in submitted]  # never raises: the calls wait for the restarted dispatcher
    assert set(states) <= {"queued", "running", "done"}, states
    for i, job in enumerate(submitted):
        assert job.result(timeout=120) == {"y": 2 * i}
    assert {job.state for job in submitted} == {"done"}
    again = jobs.submit_spec(jobs.python_spec("z = 7", {}, ["z"]), d)  # a new submit works
    assert again.result(timeout=60) == {"z": 7}
    costs = ray.get(d.costs.remote())
    assert costs["by_tenant"]["before"] == pytest.approx(costs_before["by_tenant"]["before"])
    assert early.id in {r["job_id"] for r in costs["records"]}
    assert {f"team-{k}" for k in range(3)} <= set(costs["by_tenant"])
    assert ray.get(d.counters.remote())["requeued"] >= 1  # work that was out ran again


def test_a_restarted_dispatcher_keeps_finished_jobs_and_their_small_results(make_dispatcher):
    d = make_dispatcher(workers=1)
    graph = lumi.trace(lambda x: x + 1, np.ones(3, np.float32))
    job = jobs.submit(graph, np.zeros(3, np.float32), dispatcher=d)
    ray.get(job.waiter())  # finished; the result not fetched yet
    ray.kill(d, no_restart=False)
    fresh = jobs.Job({"id": job.id}, d, outputs=1)  # a handle made after the restart, by id
    np.testing.assert_array_equal(fresh.result(timeout=60), np.ones(3, np.float32))  # from the journal
    assert fresh.state == "done"
    again = jobs.submit(graph, np.zeros(3, np.float32), dispatcher=d)
    assert again.refresh()["estimate"] == pytest.approx(fresh.refresh()["gpu_seconds"])  # its runtime, read back


def test_a_journal_that_cannot_be_written_refuses_the_job(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    journal.accepted([({"id": "a" * 12, "state": "queued"}, None, [])])
    journal.db.close()
    journal.db = sqlite3.connect(f"file:{tmp_path / 'j.sqlite'}?mode=ro", uri=True, isolation_level=None)
    with pytest.raises(JournalError, match="cannot be written.*nothing was accepted"):
        journal.accepted([({"id": "b" * 12, "state": "queued"}, None, [])])
    assert [r["id"] for r, *_ in journal.jobs()] == ["a" * 12]


def test_a_full_journal_refuses_submits_and_keeps_every_accepted_job(make_dispatcher, tmp_path):
    """The journal at its size limit answers as a full disk does: the dispatcher refuses the submit with
    JournalError and accepts nothing it has not journaled; what it accepted before still completes."""
    d = make_dispatcher(env={"LUMI_JOURNAL": str(tmp_path), "LUMI_JOURNAL_MAX_BYTES": str(64 << 10)}, workers=1)
    accepted, refused = [], None
    for i in range(2000):
        try:
            accepted.append(jobs.submit_spec(jobs.python_spec("y = x + 1", {"x": i}, ["y"]), d))
        except JournalError as e:
            refused = e
            break
    assert refused is not None, "64 KiB of journal should not hold 2,000 jobs"
    assert "full" in str(refused) and "nothing was accepted" in str(refused)
    assert len(accepted) >= 5
    counters = ray.get(d.counters.remote())
    assert counters["accepted"] == len(accepted)  # the refused submit made no job
    assert [job.result(timeout=60) for job in accepted] == [{"y": i + 1} for i in range(len(accepted))]
    (path,) = tmp_path.glob("*.sqlite")
    journaled = [record["id"] for record, *_ in Journal(path).jobs()]
    assert journaled == [job.id for job in accepted]  # every accepted job is in the journal, and nothing else
