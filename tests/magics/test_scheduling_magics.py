"""``%%remote`` through the dispatcher (tiers, back pressure, Ctrl-C) and the ``%lumi`` views."""

from __future__ import annotations

import _thread
import threading
import time

import lumi
import numpy as np
import pandas as pd
import pytest
import ray
from lumi.runtime import jobs
from lumi.runtime.dispatcher import get_dispatcher


def newest_job():
    return ray.get(get_dispatcher().jobs.remote(limit=1))[0]


def test_remote_cell_runs_in_its_tier_and_is_metered(shell):
    shell.user_ns["x"] = np.arange(12, dtype=np.float32).reshape(3, 4)
    result = shell.run_cell("%%remote --tier enterprise --tenant ana\ny = np.tanh(x).sum(axis=1)")
    assert result.success, result.error_in_exec
    np.testing.assert_allclose(shell.user_ns["y"], np.tanh(shell.user_ns["x"]).sum(axis=1), rtol=1e-6)
    job = newest_job()
    assert (job["tier"], job["tenant"], job["state"], job["label"]) == ("enterprise", "ana", "done", "%%remote")
    assert job["gpu_seconds"] > 0 and job["cost"] > 0


def test_busy_cluster_counts_down_and_retries_or_raises_with_no_wait(shell, capsys):
    d = get_dispatcher()
    cap = ray.get(d.cluster.remote())["tiers"]["free"]["cap"]
    tokens = [jobs.call(d.acquire.remote("other", "free")) for _ in range(cap)]
    try:
        shell.user_ns["x"] = np.ones(3, np.float32)
        result = shell.run_cell("%%remote --tier free --no-wait\ny = x + 1")
        assert isinstance(result.error_in_exec, lumi.Busy) and result.error_in_exec.retry_after > 0
        assert "drop --no-wait" in str(result.error_in_exec)

        def give_back():
            time.sleep(1.5)
            for token in tokens:
                ray.get(d.release.remote(token, 0.0, "CPU", None))

        threading.Thread(target=give_back).start()
        result = shell.run_cell("%%remote --tier free\ny = x + 2")
        assert result.success, result.error_in_exec
        np.testing.assert_array_equal(shell.user_ns["y"], np.full(3, 3, np.float32))
        assert "cluster busy, retrying in" in capsys.readouterr().out
    finally:
        if ray.get(d.cluster.remote())["tokens"]:
            for token in tokens:
                jobs.call(d.release.remote(token, 0.0, "CPU", None))


def test_ctrl_c_cancels_the_job_on_the_cluster(shell):
    # more points and kinds of interrupt: tests/magics/test_interrupts.py
    before = {j["id"] for j in ray.get(get_dispatcher().jobs.remote(limit=2000))}

    def made():
        return [j for j in ray.get(get_dispatcher().jobs.remote(limit=2000)) if j["id"] not in before]

    def interrupt_once_submitted():  # not at a fixed time: on a loaded machine the submit itself can take seconds
        deadline = time.monotonic() + 120
        while not made() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        _thread.interrupt_main()

    interrupter = threading.Thread(target=interrupt_once_submitted)
    interrupter.start()
    result = shell.run_cell("%%remote --python\nimport time\ntime.sleep(60)\nz = 1")
    interrupter.join()
    assert isinstance(result.error_in_exec, KeyboardInterrupt), (result.error_before_exec, result.error_in_exec)
    deadline = time.monotonic() + 60  # the cancel is confirmed at once, unless the machine crawls
    while any(j["state"] in ("queued", "running") for j in made()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [(j["state"], j["label"]) for j in made()] == [("cancelled", "%%remote --python")], made()
    assert "z" not in shell.user_ns


def test_timeout_cancels(shell):
    result = shell.run_cell("%%remote --python --timeout 0.5\nimport time\ntime.sleep(20)\nz = 1")
    assert isinstance(result.error_in_exec, lumi.LumiError) and "--timeout" in str(result.error_in_exec)
    assert newest_job()["state"] == "cancelled"


def test_views_return_dataframes_and_plots(shell):
    shell.user_ns["x"] = np.ones(4, np.float32)
    assert shell.run_cell("%%remote --tier light\ny = x * 3").success
    frame = shell.run_line_magic("lumi", "jobs --limit 5")
    assert isinstance(frame, pd.DataFrame) and len(frame) <= 5
    assert {"id", "tier", "state", "position", "gpu_seconds", "cost"} <= set(frame.columns)
    assert frame.iloc[0]["tier"] == "light"
    costs = shell.run_line_magic("lumi", "costs")
    assert isinstance(costs, pd.DataFrame) and (costs["cost"] > 0).any()
    workers = shell.run_line_magic("lumi", "cluster")
    assert {"device", "target", "utilization", "utilization_source"} <= set(workers.columns)
    live = workers[workers["state"] != "dead"]
    assert len(live) >= 1 and live["target"].isin(["cuda", "cpu", "numpy"]).all()
    assert (workers["utilization_source"] == "busy fraction (CPU fallback)").all() or (workers["device"] != "CPU").all()
    for view in ("jobs", "costs", "cluster"):
        figure = shell.run_line_magic("lumi", f"{view} --plot")
        assert type(figure).__name__ == "Figure" and len(figure.data) >= 1


@pytest.mark.parametrize("magic", ["remote"])
def test_help_lists_the_scheduling_options(shell, capsys, magic):
    shell.run_cell(f"%%{magic} --help\npass")
    out = capsys.readouterr().out
    for option in ("--tier", "--tenant", "--gpu", "--timeout", "--no-wait"):
        assert option in out
