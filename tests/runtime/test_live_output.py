"""What a Python job prints reaches the caller while it runs, in order, tagged by stream; a failing cell's
error points at the cell's own lines; a mapped function's prints come back tagged with item and worker."""

from __future__ import annotations

import time

import lumi
import pytest
from lumi.runtime import jobs

pytestmark = pytest.mark.timeout(180)

SOURCE = """import logging, sys, time, warnings
print("starting")
time.sleep(3)
print("to stderr", file=sys.stderr)
warnings.warn("careful")
logging.getLogger("user").warning("logged")
done = True
"""


def test_a_python_jobs_output_is_read_while_it_runs_then_whole(ray_cluster):
    job = jobs.submit_spec(jobs.python_spec(SOURCE, {}, ["done"]))
    seen, deadline = [], time.monotonic() + 60
    while not any("starting" in text for _, text in seen) and time.monotonic() < deadline:
        seen += job.new_output()
        time.sleep(0.1)
    assert ("stdout", "starting") in seen and job.state == "running"  # seen before the job finished
    assert job.result() == {"done": True}
    rest = job.new_output()
    streams = "".join(text for stream, text in rest if stream == "stderr")
    assert "to stderr" in streams and "UserWarning: careful" in streams and "logged" in streams
    assert job.new_output() == []  # nothing handed out twice


def test_a_failing_cell_names_its_lines_not_lumis(ray_cluster):
    source = "def f(n):\n    return 1 / n\n\nprint('before')\ny = f(0)\n"
    job = jobs.submit_spec(jobs.python_spec(source, {}, ["y"]))
    with pytest.raises(lumi.ExecutionError) as caught:
        job.result()
    message = str(caught.value)
    assert "ZeroDivisionError at cell line 2" in message
    assert "cell line 5, in <module>: y = f(0)" in message and "cell line 2, in f: return 1 / n" in message
    assert "lumi/" not in message and "python_cell" not in message
    assert job.new_output() == [("stdout", "before"), ("stdout", "\n")]


def shout(i: int) -> int:
    print(f"item {i} says hi")
    return i


def test_a_mapped_functions_prints_come_back_tagged_with_item_and_worker(ray_cluster, capfd):
    import sys

    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    assert list(lumi.map(shout, range(3), progress=False)) == [0, 1, 2]
    out = capfd.readouterr().out
    for i in range(3):
        assert f"[#{i} on " in out and f"] item {i} says hi" in out
