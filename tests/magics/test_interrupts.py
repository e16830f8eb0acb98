"""Ctrl-C always cancels: a KeyboardInterrupt that lands anywhere in ``%%remote`` or ``%%deploy`` cancels the
remote work and is re-raised.

Interrupts are fired at many points, not one: synchronously at the Nth interruptible point of Lumi's own code
inside each stage of the magic (the submit, the Busy countdown, the wait loop, the result fetch, the lines in
between), by a profile function on the kernel's thread; asynchronously from a timer thread, as a signal
(``_thread.interrupt_main``) and as an exception sent to the thread (``PyThreadState_SetAsyncExc``), at several
delays during a real job; and a second Ctrl-C during the cleanup of the first. After each, the cell raised
KeyboardInterrupt and no job it made is left queued or running on the dispatcher.

Most cases run while every worker is held by a long "blocker" job, so the cell's job waits in the queue and
its cancel is immediate (a running job's worker is killed and replaced after a grace period, which takes
seconds on a loaded machine). Every wait polls with a generous deadline: these run on 2 shared cores.
"""

from __future__ import annotations

import _thread
import ctypes
import re
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import lumi.runtime
import pytest
import ray
from lumi.errors import LumiError
from lumi.runtime import jobs
from lumi.runtime.dispatcher import FINAL, get_dispatcher

import lumi_magics

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SETTLE_S = 60.0  # how long a cancelled job may take to show as such (it is immediate unless the machine crawls)
LONG = "import time\ntime.sleep(120)\nz = 1"  # a job that never ends by itself within a test
SHORT = "z = 1"

_OURS = (str(Path(lumi_magics.__file__).parent), str(Path(lumi.runtime.__file__).parent),
         str(Path(lumi.runtime.__file__).parent.parent / "serving" / "endpoint.py"),
         str(Path(lumi.runtime.__file__).parent.parent / "serving" / "gateway.py"))


# -- the dispatcher's side ------------------------------------------------------------------------------
def all_jobs() -> list[dict]:
    return ray.get(get_dispatcher().jobs.remote(limit=2000))


def job_ids() -> set[str]:
    return {j["id"] for j in all_jobs()}


def settled(before: set[str], deadline_s: float = SETTLE_S) -> list[dict]:
    """The jobs made since ``before``, once none of them is queued or running (or the deadline passed)."""
    deadline = time.monotonic() + deadline_s
    while True:
        made = [j for j in all_jobs() if j["id"] not in before]
        if all(j["state"] in FINAL for j in made) or time.monotonic() > deadline:
            return made
        time.sleep(0.2)


def assert_interrupted(result, before: set[str], where: str, may_be_done: bool = False) -> list[dict]:
    """The cell raised KeyboardInterrupt and every job it made is cancelled (or, with ``may_be_done``, done:
    an interrupt after the job finished has nothing left to cancel)."""
    assert isinstance(result.error_in_exec, KeyboardInterrupt), (
        f"interrupt {where}: the cell ended with error_in_exec={result.error_in_exec!r}, "
        f"error_before_exec={result.error_before_exec!r}")
    made = settled(before)
    allowed = ("cancelled", "done") if may_be_done else ("cancelled",)
    assert all(j["state"] in allowed for j in made), (
        f"interrupt {where}: left on the dispatcher {[(j['id'], j['state'], j['label']) for j in made]}")
    assert len(made) <= 1, f"interrupt {where}: one cell made several jobs {made}"
    return made


def no_helpers_left(deadline_s: float = 30.0) -> None:
    """The submit and cancel helper threads all finish."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if not [t for t in threading.enumerate() if t.name in ("lumi-submit", "lumi-cancel")]:
            return
        time.sleep(0.1)
    raise AssertionError(f"helper threads still alive: {threading.enumerate()}")


# -- firing interrupts ----------------------------------------------------------------------------------
class Interrupter:
    """Raise KeyboardInterrupt at the ``n``-th interruptible point of Lumi's own code (lumi_magics, lumi.runtime,
    the endpoint client) on this thread, counting only points inside ``stage``: a frame chain that reaches a
    function named in ``include`` before one named in ``exclude`` (the entry and return of an excluded function
    still count), and ending with the entry of a function named in ``stop``. Once the stage was entered and left
    without firing, the interrupt fires at the next point of Lumi's code instead and ``exhausted`` says so (so a
    cell never outlives its test).

    The points are where CPython itself delivers a signal or an exception sent to the thread: a function's
    entry (a profiler "call" event), right after a C function returned ("c_return": the interpreter checks
    for pending interrupts after every call of C code, e.g. after ``ray.wait``, ``Lock.__exit__``,
    ``Thread.start``), and a function's return. (Not before an arbitrary line: between ``with lock:`` ending and
    its ``__exit__`` call, say, no interrupt can land.)"""

    def __init__(self, n: int, include: set[str], exclude: frozenset[str] = frozenset(),
                 stop: frozenset[str] = frozenset(), own_return: bool = True):
        self.n, self.include, self.exclude, self.stop = n, include, exclude, stop
        self.own_return = own_return  # count the return of the stage's own function (False: it hands over)
        self.count = 0
        self.entered = self.exhausted = False
        self.fired: str | None = None

    def __enter__(self):
        self.previous = sys.getprofile()
        sys.setprofile(self._event)
        return self

    def __exit__(self, *exc):
        sys.setprofile(self.previous)

    def _where(self, frame, event: str) -> str:
        """"in" the stage, "skipped" (in an excluded function within it), or "out"."""
        here, excluded = frame, False
        while frame is not None:
            name = frame.f_code.co_name
            if name in self.stop and not (frame is here and event == "call"):
                return "out"  # the stage ends on entering this function
            if name in self.exclude and not (frame is here and event in ("call", "return")):
                excluded = True  # inside an excluded function (its own entry and return still count)
            elif name in self.include:
                return "skipped" if excluded else "in"
            frame = frame.f_back
        return "out"

    def _event(self, frame, event, arg):
        if self.fired is not None or event not in ("call", "return", "c_return"):
            return
        code = frame.f_code
        if not code.co_filename.startswith(_OURS) or code.co_name.startswith("<"):
            return
        where = self._where(frame, event)
        if event == "return" and not self.own_return and code.co_name in self.include:
            return
        if where == "in":
            self.entered = True
            self.count += 1
            if self.count >= self.n:
                self._fire(frame, event, arg)
        elif where == "out" and self.entered:
            self.exhausted = True
            self._fire(frame, event, arg)

    def _fire(self, frame, event, arg):
        after = f" after {getattr(arg, '__qualname__', arg)}" if event == "c_return" else ""
        self.fired = f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno} {frame.f_code.co_name} ({event}{after})"
        raise KeyboardInterrupt(f"injected at {self.fired}")


def interrupt_thread(thread_id: int) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(KeyboardInterrupt))


def run_interrupted(shell, cell: str, **stage):
    """Run ``cell`` with a KeyboardInterrupt at the stage's ``n``-th event; (result, interrupter, jobs before)."""
    before = job_ids()
    interrupter = Interrupter(**stage)
    with interrupter:
        result = shell.run_cell(cell, silent=True)
    return result, interrupter, before


def sweep(shell, cell: str, include: set[str], exclude=frozenset(), stop=frozenset(), points: int = 25, at=None,
          may_be_done=False) -> list[str]:
    """Interrupt the cell at events of the stage and assert each time: at ``at``, else at ``points`` events
    spread over all of the stage's (every one when it has fewer), counted by a first run interrupted just
    after the stage. Stops early when an interrupt only came after the stage (the stage had fewer events)."""
    stage = dict(include=include, exclude=exclude, stop=stop)
    fired = []
    if at is None:
        result, counting, before = run_interrupted(shell, cell, n=10**9, **stage)
        assert counting.entered, f"the stage {include} never ran"
        assert_interrupted(result, before, f"just after the stage, {counting.fired}", may_be_done=may_be_done)
        total = counting.count
        at = range(1, total + 1) if total <= points else sorted({round(1 + i * (total - 1) / (points - 1))
                                                                  for i in range(points)})
    for n in at:
        result, interrupter, before = run_interrupted(shell, cell, n=n, **stage)
        assert interrupter.fired, f"event {n}: the interrupt never fired (the cell ended {result.error_in_exec!r})"
        made = assert_interrupted(result, before, f"at event {n}, {interrupter.fired}", may_be_done=may_be_done)
        if any(j["state"] == "cancelled" for j in made):
            assert "z" not in shell.user_ns, f"interrupt at {interrupter.fired}: the cell's variables were bound"
        shell.user_ns.pop("z", None)
        fired.append(interrupter.fired)
        if interrupter.exhausted:
            break
    no_helpers_left()
    return fired


@pytest.fixture(autouse=True)
def _quiet_tracebacks(shell, monkeypatch):
    """The interrupted cells' tracebacks would fill the log; the assertions say what happened."""
    monkeypatch.setattr(shell, "showtraceback", lambda *a, **k: None)


# -- the result fetch and what follows it: the job is done, nothing may be left running ----------------------
def test_interrupt_in_the_result_fetch_is_raised(shell):
    fired = sweep(shell, "%%remote --python\n" + SHORT, include={"outputs"}, may_be_done=True)
    assert any("outputs" in f for f in fired) and len(fired) >= 3, fired


def test_interrupt_after_the_job_ran_is_raised_not_swallowed(shell):
    # everything in the magic outside submit-and-follow: tracing the cell, building the spec, binding the results
    shell.user_ns["x"] = __import__("numpy").ones(3, "float32")
    fired = sweep(shell, "%%remote\ny = x * 2\nz = y + 1", include={"_remote"}, exclude=frozenset({"_run"}),
                  points=30, may_be_done=True)
    assert len(fired) >= 5, fired


def test_interrupt_in_the_local_definitions_of_a_graph_cell_is_raised(shell, monkeypatch):
    # the cell's function definitions run locally in a nested run_cell, which catches a KeyboardInterrupt itself
    shell.user_ns["x"] = __import__("numpy").ones(3, "float32")
    real = shell.run_cell

    def run_cell(source, *args, **kw):
        if kw.get("silent") and source.startswith("def double"):
            return real("raise KeyboardInterrupt", *args, **kw)  # the interrupt lands while they run
        return real(source, *args, **kw)

    monkeypatch.setattr(shell, "run_cell", run_cell)
    before = job_ids()
    result = real("%%remote\ndef double(a):\n    return a * 2\ny = double(x)", silent=True)
    assert_interrupted(result, before, "in the local definitions", may_be_done=True)


# -- asynchronous interrupts during a real job ---------------------------------------------------------
@pytest.mark.parametrize("how", ["signal", "async"])
def test_async_interrupt_at_several_delays_cancels_the_running_job(shell, monkeypatch, how):
    import lumi_magics.remote as remote

    main = threading.main_thread().ident
    fire = _thread.interrupt_main if how == "signal" else lambda: interrupt_thread(main)
    real_start = remote.start_backend
    for delay in (0.0, 0.3, 1.0, 2.5):
        timers = []

        def start_backend(delay=delay, timers=timers):  # the clock starts with the magic, not before the cell
            timers.append(threading.Timer(delay, fire))
            timers[0].start()
            real_start()

        monkeypatch.setattr(remote, "start_backend", start_backend)
        before = job_ids()
        try:
            result = shell.run_cell("%%remote --python\n" + LONG, silent=True)
            timers[0].join()
        except KeyboardInterrupt:  # pragma: no cover - would abort the session otherwise
            pytest.fail(f"the {how} interrupt after {delay} s landed outside the cell")
        assert_interrupted(result, before, f"({how}) {delay} s after the magic started")
        assert "z" not in shell.user_ns
    no_helpers_left()


def test_ctrl_c_twice_still_cancels(shell, monkeypatch, busy_workers):
    # a second interrupt while the first one's cleanup runs (at each of its lines) must not stop the cancel
    import lumi_magics.remote as remote

    real = remote._interrupted
    twice = 0
    for n in range(1, 60, 2):
        second = []

        def interrupted(*args, n=n, second=second):
            if second:  # the cleanup, tried again after the second interrupt
                return real(*args)
            with Interrupter(n=n, include={"_interrupted"}) as again:
                second.append(again)
                return real(*args)

        monkeypatch.setattr(remote, "_interrupted", interrupted)
        result, _, before = run_interrupted(shell, "%%remote --python\n" + LONG, n=3, include={"_follow"})
        assert second, "the first interrupt did not reach the cleanup"
        assert_interrupted(result, before, f"twice, the second at cleanup event {n} ({second[0].fired})")
        if not second[0].fired:  # the cleanup has fewer points than n: all of them were tried
            break
        twice += 1
    assert twice >= 3, twice
    no_helpers_left()


# -- while every worker is held: the cell's job waits in the queue --------------------------------------------
@pytest.fixture(scope="module")
def busy_workers(ray_cluster):
    """Hold every device worker with long jobs: blockers are added until one more stays queued (no worker
    has room), then two more wait in the queue for a worker that starts later (a worker whose running job
    was cancelled is replaced). Cancelled after the module."""
    label = f"blocker-{uuid.uuid4().hex[:6]}"

    def blocker():
        return jobs.submit_spec(jobs.python_spec("import time\ntime.sleep(1800)", {}, [], label=label,
                                                 tier="enterprise"))

    blockers = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        blockers.append(b := blocker())
        waited = time.monotonic()
        while b.refresh()["state"] == "queued" and time.monotonic() - waited < 10:
            time.sleep(0.2)
        if b.state == "queued":
            break
    blockers += [blocker(), blocker()]
    yield blockers
    for b in blockers:
        b.cancel()


def queued_probe(busy_workers) -> None:
    """A job submitted now stays queued (the blockers hold every worker)."""
    probe = jobs.submit_spec(jobs.python_spec(SHORT, {}, ["z"], label="probe"))
    try:
        time.sleep(0.5)
        assert probe.refresh()["state"] == "queued", "a worker is free: the blockers do not hold them all"
    finally:
        probe.cancel()


def test_interrupt_anywhere_in_the_submit_cancels_the_job(shell, busy_workers):
    queued_probe(busy_workers)
    fired = sweep(shell, "%%remote --python\n" + LONG, include={"_submit"}, points=40)
    assert any("submit" in f for f in fired), fired


def test_interrupt_between_submit_and_wait_cancels_the_job(shell, busy_workers):
    # _run itself, outside the submit and the wait: making the view, the submit's return, the wait's call
    fired = sweep(shell, "%%remote --python\n" + LONG, include={"_run"}, exclude=frozenset({"_submit"}),
                  stop=frozenset({"_follow"}), points=80)
    assert any("_submit (return)" in f for f in fired) and any("_follow (call)" in f for f in fired), fired


def test_interrupt_in_the_wait_loop_cancels_the_job(shell, busy_workers):
    at = range(1, 110, 9)
    fired = sweep(shell, "%%remote --python\n" + LONG, include={"_follow"}, exclude=frozenset({"outputs"}), at=at)
    assert len(fired) == len(at), fired  # the loop goes on while the job is queued: every interrupt lands in it


def test_interrupt_in_the_busy_countdown_submits_nothing(shell, busy_workers, monkeypatch):
    import lumi_magics.remote as remote

    d = get_dispatcher()
    cap = ray.get(d.cluster.remote())["tiers"]["free"]["cap"]
    tokens = [jobs.call(d.acquire.remote("other", "free")) for _ in range(cap)]
    try:
        cell = "%%remote --python --tier free\n" + SHORT
        # at the Nth sleep of the countdown
        for n in (1, 2, 5):
            calls = []

            def sleep(seconds, n=n, calls=calls):
                calls.append(seconds)
                if len(calls) >= n:
                    raise KeyboardInterrupt(f"injected at countdown sleep {n}")
                time.sleep(seconds)

            monkeypatch.setattr(remote, "countdown_sleep", sleep)
            before = job_ids()
            result = shell.run_cell(cell, silent=True)
            assert not assert_interrupted(result, before, f"at countdown sleep {n}"), "a refused cell made a job"
        monkeypatch.setattr(remote, "countdown_sleep", time.sleep)
        # at lines of the countdown loop and of the retried submits
        for n in (1, 4, 10, 25, 60, 120, 200):
            result, interrupter, before = run_interrupted(shell, cell, n=n, include={"_submit"})
            assert not assert_interrupted(result, before, f"at {interrupter.fired}"), "a refused cell made a job"
    finally:
        for token in tokens:
            jobs.call(d.release.remote(token, 0.0, "CPU", None))
    no_helpers_left()


def test_interrupt_before_the_answer_reaches_the_cell_still_cancels(shell, busy_workers, monkeypatch):
    # the dispatcher accepted the job, and the interrupt lands before its id reached the cell's thread: the
    # submit's helper keeps the answer, and the cancel finds the job
    real = jobs.Job.__init__
    gate = threading.Event()

    def slow_handle(self, *args, **kw):
        real(self, *args, **kw)
        if threading.current_thread().name == "lumi-submit":
            interrupt_thread(threading.main_thread().ident)
            gate.wait(30)  # hold the answer back until the cell's thread has been interrupted

    monkeypatch.setattr(jobs.Job, "__init__", slow_handle)
    real_cancel = jobs.Submission.cancel

    def cancel(self, *args, **kw):
        gate.set()
        return real_cancel(self, *args, **kw)

    monkeypatch.setattr(jobs.Submission, "cancel", cancel)
    before = job_ids()
    result = shell.run_cell("%%remote --python\n" + LONG, silent=True)
    (job,) = assert_interrupted(result, before, "while the dispatcher's answer was on its way")
    assert job["state"] == "cancelled"
    no_helpers_left()


def test_a_ctrl_c_whose_interrupt_is_swallowed_still_cancels(shell, busy_workers, monkeypatch):
    # Once, in a full suite under load, a Ctrl-C (a SIGINT) vanished in the wait loop with no trace and the job ran
    # to its end: something between the signal and the cell dropped the KeyboardInterrupt. Here a stand-in for
    # the wait on the job's end drops it on purpose; the handler Lumi installs kept a copy, which the wait raises.
    real_wait, calls = jobs._wait_on, []

    def swallowing_wait(event, seconds):
        if threading.current_thread() is not threading.main_thread():
            return real_wait(event, seconds)
        calls.append(1)
        if len(calls) > 40:  # 10 s of waits: the interrupt is lost for good; end the cell rather than hang
            raise RuntimeError("the swallowed interrupt was never raised again")
        try:
            if len(calls) == 3:
                _thread.interrupt_main()  # the SIGINT's KeyboardInterrupt is raised right here, and dropped
            return real_wait(event, seconds)
        except KeyboardInterrupt:
            return False

    monkeypatch.setattr(jobs, "_wait_on", swallowing_wait)
    before = job_ids()
    result = shell.run_cell("%%remote --python\n" + LONG, silent=True)
    monkeypatch.undo()
    assert len(calls) >= 3, calls
    assert_interrupted(result, before, "in a wait that dropped its KeyboardInterrupt")
    no_helpers_left()


def test_lumi_submit_interrupted_cancels_its_job(busy_workers):
    # the library call too: a KeyboardInterrupt before lumi.submit returned the Job cancels the job it made
    fired = []
    for n in range(1, 80, 2):
        before = job_ids()
        spec = jobs.python_spec(LONG, {}, ["z"], label="lumi.submit")
        # the return of submit_spec itself is where the Job passes to the caller: CPython checks for signals on
        # calls and backward jumps, not between a RETURN_VALUE and the caller storing what it returned
        interrupter = Interrupter(n=n, include={"submit_spec"}, own_return=False)
        try:
            with interrupter:
                job = jobs.submit_spec(spec)
        except KeyboardInterrupt:
            made = settled(before)
            assert all(j["state"] == "cancelled" for j in made), (interrupter.fired, made)
            fired.append(interrupter.fired)
            continue
        job.cancel()  # past the last event of submit_spec: it returned the Job, which is the caller's now
        break
    assert len(fired) >= 5, fired
    no_helpers_left()


def test_ctrl_c_in_a_finalizer_is_kept_and_raised(shell, busy_workers, monkeypatch):
    # CPython drops a KeyboardInterrupt raised in a __del__ ("Exception ignored in ..."); Ray's ActorHandle.__del__
    # runs on the cell's thread in every get_dispatcher(). The magic keeps such an interrupt and raises it.
    import lumi_magics.remote as remote

    class Finalized:
        def __del__(self):
            raise KeyboardInterrupt("landed in a finalizer")

    real = remote._submit

    def submit_then_finalize(*args):
        job = real(*args)
        Finalized()  # dropped at once: its __del__ raises into the void
        return job

    monkeypatch.setattr(remote, "_submit", submit_then_finalize)
    before = job_ids()
    result = shell.run_cell("%%remote --python\n" + LONG, silent=True)
    assert_interrupted(result, before, "in a finalizer after the submit")
    no_helpers_left()


# -- %%deploy ----------------------------------------------------------------------------------------------
DEPLOY_CELL = "def predict(x):\n    return x * 2 + 1\n"


@pytest.fixture(scope="module")
def gateway(ray_cluster):
    from lumi.serving.gateway import ensure_gateway

    return ensure_gateway()


def endpoint_versions(gateway, name: str) -> list[int]:
    r = httpx.get(f"{gateway['url']}/v1/endpoints/{name}", headers={"Authorization": f"Bearer {gateway['key']}"},
                  timeout=60)
    if r.status_code == 404:
        return []
    r.raise_for_status()
    return [v["version"] for v in r.json()["versions"]]


def delete_endpoint(gateway, name: str) -> None:
    httpx.delete(f"{gateway['url']}/v1/endpoints/{name}", headers={"Authorization": f"Bearer {gateway['key']}"},
                 timeout=60)


def deploy_line(name: str) -> str:
    return f"%%deploy {name} --input x:float32[batch,4] --scaledown-window 5\n"


def test_interrupt_during_the_upload_says_what_was_deployed(shell, gateway, monkeypatch, capsys):
    import lumi_magics.deploy as deploy

    real = deploy.upload
    main = threading.main_thread().ident
    for outcome in ("deployed", "refused"):
        name = f"ki-upload-{outcome}-{uuid.uuid4().hex[:6]}"

        def upload(*args, outcome=outcome, **kw):  # on the upload's thread: the cell's thread is interrupted now
            interrupt_thread(main)
            time.sleep(0.5)
            if outcome == "refused":
                raise LumiError("the gateway answered 400: refused for the test")
            return real(*args, **kw)

        monkeypatch.setattr(deploy, "upload", upload)
        capsys.readouterr()
        result = shell.run_cell(deploy_line(name) + DEPLOY_CELL, silent=True)
        err = capsys.readouterr().err
        assert isinstance(result.error_in_exec, KeyboardInterrupt), result.error_in_exec
        try:
            if outcome == "deployed":
                assert endpoint_versions(gateway, name) == [1]
                assert f"the deploy had already happened: {name!r} version 1" in err, err
                assert shell.user_ns[name].version == 1
            else:
                assert endpoint_versions(gateway, name) == []
                assert f"nothing was deployed as {name!r}" in err, err
                assert name not in shell.user_ns
        finally:
            delete_endpoint(gateway, name)


@pytest.mark.parametrize("stage", ["whole", "upload"])
def test_interrupt_anywhere_in_a_deploy_leaves_what_it_says(shell, gateway, capsys, stage):
    # at points of %%deploy (the cell's run, the trace, the upload and its wait, binding the handle, the report):
    # afterwards the endpoint exists exactly when the cell said it was deployed
    include = {"_deploy"} if stage == "whole" else {"send"}
    names = []

    def deploy_interrupted(n: int) -> Interrupter:
        name = f"ki-{stage}-{n}-{uuid.uuid4().hex[:6]}"
        names.append(name)
        capsys.readouterr()
        with Interrupter(n=n, include=include) as interrupter:
            result = shell.run_cell(deploy_line(name) + DEPLOY_CELL, silent=True)
        out = capsys.readouterr()
        said = out.out + out.err
        assert isinstance(result.error_in_exec, KeyboardInterrupt), (interrupter.fired, result.error_in_exec)
        deployed = endpoint_versions(gateway, name) == [1]
        claims = bool(re.search(rf"Deployed '{name}' version 1|already happened: '{name}' version 1", said))
        assert deployed == claims, f"interrupt at {interrupter.fired}: deployed={deployed}, the cell said {said!r}"
        if not deployed:
            assert name not in shell.user_ns
        return interrupter

    try:
        total = deploy_interrupted(10**9).count  # interrupted just after the stage: counts its points
        for n in sorted({round(1 + i * (total - 1) / 11) for i in range(12)}):
            if deploy_interrupted(n).exhausted:
                break
    finally:
        for name in names:
            delete_endpoint(gateway, name)
