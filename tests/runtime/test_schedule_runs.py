"""``lumi.schedule``: runs fire on time as dispatcher jobs, their history is kept, pause/resume/delete work,
schedules survive a restart of the scheduler actor, missed runs follow the policy, and tenants stay apart."""

from __future__ import annotations

import contextlib
import sys
import time
import uuid

import cloudpickle
import lumi
import numpy as np
import pytest
import ray
from lumi.cron import client as schedule_api
from lumi.cron import scheduler
from lumi.errors import LumiError, ScheduleError, ScheduleNotFound
from lumi.runtime.dispatcher import get_dispatcher

pytestmark = pytest.mark.timeout(240)
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
EVERY_2_S = "* * * * * */2"


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


def the_scheduler():
    return ray.get_actor(scheduler.NAME, namespace="lumi")


@pytest.fixture
def made(ray_cluster):
    """Schedules a test makes (append them) are deleted after it."""
    made = []
    yield made
    for s in made:
        with contextlib.suppress(LumiError):
            s.delete()


def record_tick(dict_name: str) -> str:
    """What the scheduled function does on a worker: note the time in a lumi.Dict."""
    d = lumi.Dict(dict_name)
    d[f"t{len(d)}"] = time.time()
    return "ok"


def wait_for(condition, timeout: float = 60.0, every: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not within {timeout} s")


def finished(s: lumi.Schedule, n: int) -> list[dict]:
    """The schedule's first ``n`` runs or more once that many are done."""
    try:
        return wait_for(lambda: (runs := [r for r in s.runs() if r["state"] == "done"]) and len(runs) >= n and runs)
    except AssertionError:
        raise AssertionError(f"{n} runs not done within 60 s: {s.runs()}") from None


def test_a_schedule_every_two_seconds_fires_twice_and_records_its_runs(made):
    box = unique("ticks")
    s = lumi.schedule(record_tick, EVERY_2_S, name=unique("tick"), args=(box,), tier="free")
    made.append(s)
    assert isinstance(s.next_run, float) and s.next_run > time.time() - 1
    runs = finished(s, 2)
    assert len(lumi.Dict(box)) >= 2  # the worker's writes, seen here
    assert runs[1]["at"] - runs[0]["at"] >= 1.5  # two separate firings, not one
    for run in runs:
        assert run["job"] and run["error"] is None and run["seconds"] > 0 and run["cost"] >= 0
        job = ray.get(get_dispatcher().status.remote(run["job"]))
        assert job["tier"] == "free" and job["label"] == f"schedule {s.name}" and job["state"] == "done"
    row = next(r for r in schedule_api.listing() if r["name"] == s.name)
    assert row["target"] == "function record_tick" and row["cron"] == EVERY_2_S and row["state"] == "active"


def test_pause_stops_the_runs_resume_starts_them_and_delete_forgets(made):
    box = unique("ticks")
    s = lumi.schedule(record_tick, EVERY_2_S, name=unique("pausable"), args=(box,))
    made.append(s)
    finished(s, 1)
    s.pause()
    assert s.state == "paused" and s.next_run is None
    time.sleep(1.0)  # a run fired just before the pause may still finish
    count = len(s.runs())
    time.sleep(4.5)
    assert len(s.runs()) == count
    s.resume()
    wait_for(lambda: len(s.runs()) > count)
    s.delete()
    assert s.name not in [r["name"] for r in schedule_api.listing()]
    with pytest.raises(ScheduleNotFound):
        s.pause()


def test_a_traced_graph_runs_on_schedule(made):
    x = np.arange(4, dtype=np.float32)
    graph = lumi.trace(lambda x: x * 2, x)
    s = lumi.schedule(graph, EVERY_2_S, name=unique("graph"), args=(x,))
    made.append(s)
    run = finished(s, 1)[0]
    assert s.info()["target"].startswith("graph ")
    assert ray.get(get_dispatcher().status.remote(run["job"]))["state"] == "done"


def test_a_schedule_survives_its_actor_dying(made):
    box = unique("ticks")
    s = lumi.schedule(record_tick, EVERY_2_S, name=unique("survivor"), args=(box,))
    made.append(s)
    finished(s, 1)
    ray.kill(the_scheduler(), no_restart=False)  # Ray restarts it; it reads the schedule back
    before = len([r for r in s.runs() if r["state"] == "done"])
    finished(s, before + 2)
    assert all(r["state"] != "failed" for r in s.runs()), s.runs()


def test_runs_missed_while_no_scheduler_ran_follow_each_schedules_policy(made):
    skip, once = (lumi.schedule(record_tick, "* * * * * */3", name=unique(f"missed-{policy}"), args=(unique("ticks"),),
                                missed=policy) for policy in ("skip", "once"))
    made += [skip, once]
    finished(skip, 1)
    finished(once, 1)
    ray.kill(the_scheduler(), no_restart=True)  # the cluster without a scheduler for a while
    time.sleep(7)
    schedule_api._scheduler()  # the next use starts one again
    missed = wait_for(lambda: [r for r in skip.runs() if r["state"] == "missed"], timeout=20)
    assert "skip" in missed[0]["error"]
    run = wait_for(lambda: [r for r in once.runs() if r.get("catch_up")], timeout=20)[0]
    assert run["job"] and len([r for r in once.runs() if r.get("catch_up")]) == 1  # once, for all it missed
    assert not [r for r in once.runs() if r["state"] == "missed"]


def test_bad_schedules_are_refused_with_what_to_do(ray_cluster):
    with pytest.raises(ScheduleError, match="not a cron expression"):
        lumi.schedule(record_tick, "every five minutes")
    with pytest.raises(ScheduleError, match="'skip'"):
        lumi.schedule(record_tick, EVERY_2_S, missed="twice")
    with pytest.raises(LumiError, match="unknown tier"):
        lumi.schedule(record_tick, EVERY_2_S, tier="platinum")
    with pytest.raises(ScheduleError, match="Python function, a lumi.Graph or an endpoint"):
        lumi.schedule(42, EVERY_2_S)
    with pytest.raises(LumiError, match="no endpoint named"):
        lumi.schedule("no-such-endpoint", EVERY_2_S)
    graph = lumi.trace(lambda x: x * 2, np.ones(4, np.float32))
    with pytest.raises(LumiError):
        lumi.schedule(graph, EVERY_2_S, args=(np.ones(5, np.float32),))
    with pytest.raises(LumiError, match="name"):
        lumi.schedule(record_tick, EVERY_2_S, name="no spaces")


def test_a_tenant_cannot_touch_another_tenants_schedule(made, monkeypatch):
    s = lumi.schedule(record_tick, "0 0 1 1 *", name=unique("owned"), args=("x",), tenant="alice")
    made.append(s)
    monkeypatch.setenv("LUMI_TENANT", "bob")
    with pytest.raises(ScheduleNotFound):
        lumi.Schedule(s.name, tenant="alice").pause()
    assert [x.name for x in lumi.schedules()] == []  # bob has none, and sees none of alice's
    monkeypatch.setenv("LUMI_TENANT", "alice")
    assert [x.name for x in lumi.schedules()] == [s.name]


def test_lumi_schedules_shows_next_run_and_last_runs(made, shell):
    box = unique("ticks")
    s = lumi.schedule(record_tick, EVERY_2_S, name=unique("shown"), args=(box,))
    made.append(s)
    finished(s, 1)
    frame = shell.run_line_magic("lumi", "schedules")
    row = frame[frame["name"] == s.name].iloc[0]
    assert row["cron"] == EVERY_2_S and row["state"] == "active" and row["target"] == "function record_tick"
    assert row["last_state"] in ("done", "queued", "running") and row["runs"] >= 1 and row["next_run"] is not None
    history = shell.run_line_magic("lumi", f"schedules --runs {s.name}")
    assert list(history.columns) == ["at", "state", "seconds", "cost", "job", "error"]
    assert "done" in set(history["state"])
    s.pause()
    frame = shell.run_line_magic("lumi", "schedules")
    assert frame[frame["name"] == s.name].iloc[0]["state"] == "paused"
    with pytest.raises(ScheduleNotFound):
        shell.run_line_magic("lumi", "schedules --runs no-such-schedule")
