"""``lumi.map`` / ``lumi.starmap``: results in order, failures by index, Ctrl-C cancels what is left,
a bounded window of jobs on the dispatcher, Busy waited out, and progress reported."""

from __future__ import annotations

import ctypes
import subprocess
import sys
import threading
import time
import types
import uuid

import cloudpickle
import lumi
import numpy as np
import pytest
import ray
from lumi.errors import MapItemError
from lumi.runtime import jobs
from lumi.runtime.dispatcher import FINAL, get_dispatcher

pytestmark = pytest.mark.timeout(300)
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module


def ours(label: str, dispatcher=None) -> list[dict]:
    """Every job on the dispatcher whose label comes from the map labelled ``label``."""
    d = dispatcher or get_dispatcher()
    return [j for j in ray.get(d.jobs.remote(limit=1_000_000)) if j["label"].startswith(label + " (")]


def unfinished(label: str, dispatcher=None) -> list[dict]:
    return [j for j in ours(label, dispatcher) if j["state"] not in FINAL]


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


def test_a_python_function_over_200_items_comes_back_in_order(ray_cluster):
    label = unique("py200")
    assert list(lumi.map(lambda x: x + 1, range(200), progress=False, label=label)) == list(range(1, 201))
    assert len(ours(label)) == 200 and {j["state"] for j in ours(label)} == {"done"}
    assert {j["tier"] for j in ours(label)} == {"api"}  # the caller's tier: lumi.submit's default


def test_a_graph_over_200_items_comes_back_in_order(ray_cluster):
    x = np.ones(4, np.float32)
    graph = lumi.trace(lambda x: x * 2 + 1, x)
    items = [np.full(4, i, np.float32) for i in range(200)]
    out = list(lumi.map(graph, items, progress=False))
    assert len(out) == 200
    for i, y in enumerate(out):
        np.testing.assert_array_equal(y, np.full(4, 2 * i + 1, np.float32))


def test_tuples_of_arrays_feed_a_graph_of_several_inputs_and_outputs(ray_cluster):
    a = np.ones(3, np.float32)
    graph = lumi.trace(lambda a, b: (a + b, a * b), a, a)
    items = [(np.full(3, i, np.float32), np.full(3, 2, np.float32)) for i in range(6)]
    for i, (s, p) in enumerate(lumi.map(graph, items, progress=False)):
        np.testing.assert_array_equal(s, np.full(3, i + 2, np.float32))
        np.testing.assert_array_equal(p, np.full(3, 2 * i, np.float32))
    sums = [s for s, _ in lumi.starmap(graph, items, progress=False)]
    assert [float(s[0]) for s in sums] == [i + 2.0 for i in range(6)]


def check(x):
    if x == 57:
        raise ValueError(f"bad item {x}")
    return x * 10


def test_a_failed_item_is_reported_with_its_index_and_the_remote_traceback(ray_cluster):
    label = unique("fail")
    with pytest.raises(lumi.LumiError) as info:
        list(lumi.map(check, range(100), progress=False, label=label))
    e = info.value
    assert isinstance(e, MapItemError) and e.index == 57
    assert "item 57" in str(e) and "ValueError: bad item 57" in str(e)
    assert "remote traceback" in e.remote and "in check" in e.remote
    assert not unfinished(label), "raising cancelled the rest"

    out = list(lumi.map(check, range(100), return_exceptions=True, progress=False))
    assert [v for i, v in enumerate(out) if i != 57] == [i * 10 for i in range(100) if i != 57]
    assert isinstance(out[57], MapItemError) and out[57].index == 57


def test_an_item_that_does_not_fit_the_graph_fails_by_index(ray_cluster):
    graph = lumi.trace(lambda x: x + 1, np.ones(3, np.float32))
    items = [np.ones(3, np.float32), np.ones(5, np.float32), np.ones(3, np.float32)]
    out = list(lumi.map(graph, items, return_exceptions=True, progress=False))
    assert isinstance(out[1], MapItemError) and out[1].index == 1
    np.testing.assert_array_equal(out[2], np.full(3, 2, np.float32))


def test_ordered_false_yields_every_result_as_it_finishes(ray_cluster):
    def slow_first(x):
        import time

        time.sleep(1.0 if x == 0 else 0.01)
        return x

    out = list(lumi.map(slow_first, range(30), ordered=False, max_in_flight=6, progress=False))
    assert sorted(out) == list(range(30))
    assert out[0] != 0, "the slow first item came back before quicker ones that finished earlier"


def test_starmap_calls_with_each_tuple(ray_cluster):
    assert list(lumi.starmap(lambda a, b: a * b + 1, [(i, i) for i in range(20)], progress=False)) == [
        i * i + 1 for i in range(20)]


def test_in_flight_items_stay_within_the_window_and_items_are_read_lazily(ray_cluster):
    label, window = unique("window"), 3
    pulled = 0

    def items():
        nonlocal pulled
        for i in range(40):
            pulled += 1
            yield i

    def nap(x):
        import time

        time.sleep(0.05)
        return x

    seen, stop = [], threading.Event()

    def observe():
        d = get_dispatcher()
        while not stop.is_set():
            seen.append(len(unfinished(label, d)))
            time.sleep(0.02)

    watcher = threading.Thread(target=observe, daemon=True)
    watcher.start()
    got = []
    try:
        for value in lumi.map(nap, items(), max_in_flight=window, progress=False, label=label):
            got.append(value)
            assert pulled - len(got) <= window, "items were read ahead of the window"
    finally:
        stop.set()
        watcher.join()
    assert got == list(range(40))
    assert max(seen) <= window, max(seen)
    assert max(seen) >= 2, "the map never ran items side by side"


def test_busy_is_waited_out_and_no_item_is_dropped(make_dispatcher):
    d = make_dispatcher(env={"LUMI_TIER_API_CAP": "2"}, workers=1)
    out = list(lumi.map(lambda x: -x, range(16), max_in_flight=8, progress=False, dispatcher=d))
    assert out == [-x for x in range(16)]
    assert ray.get(d.counters.remote())["refused"] > 0, "the tier cap never pushed back"


def test_progress_reports_done_total_failures_cost_and_the_end(ray_cluster):
    states = []
    list(lumi.map(lambda x: 1 // (x - 5), range(12), return_exceptions=True, progress=states.append))
    last = states[-1]
    assert last.finished and last.done == 12 and last.total == 12 and last.failed == 1 and last.in_flight == 0
    assert last.cost > 0 and last.rate > 0
    assert [s.done for s in states] == sorted(s.done for s in states)
    assert not any(s.finished for s in states[:-1])
    unknown = []
    list(lumi.map(lambda x: x, iter(range(3)), progress=unknown.append))
    assert unknown[-1].total is None and unknown[-1].done == 3 and unknown[-1].eta is None


# -- Ctrl-C, at several points: none of the map's jobs is left queued or running ----------------------
def _nap(x):
    import time

    time.sleep(0.2)
    return x


def _interrupt_main_thread() -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(threading.main_thread().ident),
                                               ctypes.py_object(KeyboardInterrupt))


def _assert_cancelled(label: str) -> None:
    left = unfinished(label)
    assert not left, f"left on the dispatcher: {[(j['id'], j['state']) for j in left]}"
    states = [j["state"] for j in ours(label)]
    assert "cancelled" in states, f"nothing was in flight to cancel: {states}"
    assert len(states) < 40, "the map ran to the end"


def test_ctrl_c_from_another_thread_while_waiting_cancels_the_rest(ray_cluster):
    label = unique("ctrlc-wait")
    started = threading.Event()

    def interrupt_once_running():
        started.wait(60)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(j["state"] == "running" for j in ours(label)):
            time.sleep(0.02)
        _interrupt_main_thread()

    thread = threading.Thread(target=interrupt_once_running, daemon=True)
    with pytest.raises(KeyboardInterrupt):
        thread.start()
        for _ in lumi.map(_nap, range(40), max_in_flight=6, progress=False, label=label):
            started.set()
        time.sleep(30)  # the interrupt lands here at the latest (the map ran out first): fails the check below
    thread.join()
    _assert_cancelled(label)


def test_ctrl_c_from_the_progress_callback_cancels_the_rest(ray_cluster):
    label = unique("ctrlc-progress")

    def progress(p):
        if p.done >= 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        list(lumi.map(_nap, range(40), max_in_flight=6, progress=progress, label=label))
    _assert_cancelled(label)


def test_ctrl_c_while_submitting_cancels_even_the_job_it_has_no_handle_of(ray_cluster, monkeypatch):
    label = unique("ctrlc-submit")
    calls = []

    class Interrupted(jobs.Job):
        def __init__(self, snapshot, *args, **kwargs):
            calls.append(snapshot["id"])  # the dispatcher has the job; the driver never gets its handle
            if len(calls) == 4:
                raise KeyboardInterrupt
            super().__init__(snapshot, *args, **kwargs)

    monkeypatch.setattr(jobs, "Job", Interrupted)
    with pytest.raises(KeyboardInterrupt):
        list(lumi.map(_nap, range(40), max_in_flight=6, progress=False, label=label))
    _assert_cancelled(label)
    assert {j["id"]: j["state"] for j in ours(label)}[calls[3]] in ("cancelled", "done")


def test_ctrl_c_while_fetching_a_result_cancels_the_rest(ray_cluster, monkeypatch):
    label = unique("ctrlc-fetch")
    real, calls = jobs.Job.result, []

    def result_then_interrupt(self, *args, **kwargs):
        calls.append(self.id)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(jobs.Job, "result", result_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        list(lumi.map(_nap, range(40), max_in_flight=6, progress=False, label=label))
    _assert_cancelled(label)


def test_leaving_the_loop_early_cancels_the_rest(ray_cluster):
    label = unique("break")
    results = lumi.map(_nap, range(40), max_in_flight=6, progress=False, label=label)
    for value in results:
        assert value == 0
        break
    results.close()
    _assert_cancelled(label)


def test_a_function_whose_module_the_workers_lack_fails_saying_so(ray_cluster):
    module = types.ModuleType("lumi_driver_only")
    exec("def f(x):\n    return x\n", module.__dict__)
    sys.modules[module.__name__] = module  # importable here, so cloudpickle ships f by name
    try:
        out = list(lumi.map(module.f, range(2), return_exceptions=True, progress=False))
    finally:
        del sys.modules[module.__name__]
    assert all(isinstance(e, MapItemError) for e in out)
    assert "while loading the function on the worker" in str(out[0]) and "importable" in str(out[0])


def test_arguments_are_checked_before_anything_runs(ray_cluster):
    with pytest.raises(lumi.LumiError, match="--gpu"):
        lumi.map(lambda x: x, range(3), gpu="H100:0")
    with pytest.raises(lumi.LumiError, match="max_in_flight"):
        lumi.map(lambda x: x, range(3), max_in_flight=0)
    with pytest.raises(TypeError, match="lumi.Graph or a Python function"):
        lumi.map(42, range(3))
    lock = threading.Lock()
    with pytest.raises(lumi.LumiError, match="cannot pickle"):
        lumi.map(lambda x: lock, range(3))


def test_the_runtime_picks_no_display_and_imports_no_ipython_outside_ipython():
    code = ("import sys; from lumi.runtime import fanout; assert fanout.default_progress() is None; "
            "print(any(m.split('.')[0] in ('IPython', 'ipywidgets', 'lumi_magics') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
