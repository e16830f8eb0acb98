"""The device actor: the only Ray actor that runs work. It runs jobs, and holds endpoint versions
it is leased to warm (compiled plans), running their batches; every run is metered by one path.

A worker may also hold a *lane* the dispatcher opened for one client process: while nothing waits in the queue,
that process sends its short graph jobs here itself (:meth:`Worker.run_direct`), one actor call each, and the
worker reports them to the dispatcher afterwards (:meth:`Worker.stats`, :meth:`Worker.close_lane`)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import ray

from ..errors import ExecutionError, LaneClosed, LeaseRevoked, LumiError, OutOfMemory, PastMemoryLimit
from ..graph.fileformat import loads
from ..graph.ir import Graph
from .execute import default_target, execute, is_warm, plan_for
from .memory import MemoryWatch, memory_error
from .metering import refine
from .output import Output, captured
from .python_cell import run_cell
from .utilization import BusyMeter, device_name, sample

__all__ = ["Worker", "device_name"]

INLINE_BYTES = 64 << 10
MIB = 1 << 20
SHORT_JOB_S = 0.002  # a graph job measured at most this long is short: it may share a call, or run on a lane
LOST_INPUTS = ("its inputs are gone: the process that submitted it has exited (or dropped them) and the dispatcher "
               "restarted meanwhile; submit the job again")


@dataclass
class _Held:
    """An endpoint version this worker is leased to, and what it has run for it."""

    lease: str
    graph: Graph
    batches: int = 0
    seconds: float = 0.0
    last_used: float = 0.0


@dataclass
class _Lane:
    """A lane the dispatcher opened: who its jobs run for, and the graphs known to be short."""

    token: str
    tenant: str
    tier: str
    short: dict[str, float]  # graph hash -> its estimated seconds (as the dispatcher's measured estimates)
    jobs: int = 0
    last_used: float = 0.0


@ray.remote(num_gpus=1, num_cpus=0, max_restarts=0, concurrency_groups={"control": 1, "lease": 1, "lane": 1})
class Worker:
    """Runs one job or batch at a time; ``info``, ``stats`` and ``drop`` answer from a separate thread
    meanwhile, and ``hold`` compiles from another (it is only sent to a worker with nothing running). A lane's
    jobs come on a thread of their own, and run only while no job of the dispatcher's does."""

    def __init__(self, memory_limit: int = 0):
        self.device = device_name()
        self.host = socket.gethostname()
        self.meter = BusyMeter()
        self.memory = MemoryWatch(memory_limit)
        self.held: _Held | None = None
        self.output: Output | None = None  # what the running Python job has written
        self.lane: _Lane | None = None
        self.ran: list[dict] = []  # the lane jobs run since the dispatcher last asked
        self._ran_lock = threading.Lock()
        self._running = threading.Lock()  # held while a job runs: a lane's job never runs beside another

    @ray.method(concurrency_group="control")
    def info(self) -> dict:
        return {"device": self.device, "host": self.host, "pid": os.getpid(), "target": default_target(),
                "fallback": self.device == "CPU"}

    @ray.method(concurrency_group="control")
    def stats(self) -> dict:
        held = self.held
        lease = None if held is None else {"id": held.lease, "batches": held.batches, "gpu_seconds": held.seconds,
                                           "idle_for": time.monotonic() - held.last_used}
        lane = self.lane
        lane = None if lane is None else {"token": lane.token, "jobs": lane.jobs,
                                          "idle_for": time.monotonic() - lane.last_used}
        return {**sample(self.meter, self.device), "lease": lease, "lane": lane, "ran": self._take_ran()}

    def _take_ran(self) -> list[dict]:
        with self._ran_lock:
            ran, self.ran = self.ran, []
        return ran

    @ray.method(concurrency_group="lane")  # behind the lane's jobs that came before it, ahead of those after it
    def close_lane(self, token: str) -> list[dict]:
        """Close lane ``token`` (its jobs are declined from now on); the lane jobs not yet reported."""
        if self.lane is not None and self.lane.token == token:
            self.lane = None
        return self._take_ran()

    @ray.method(concurrency_group="lane", enable_task_events=False)
    def run_direct(self, token: str, job: tuple) -> tuple[dict, object] | str:
        """Run a graph job sent by the lane's client, ``(id, graph, args, key, label, submitted_at)``: ``(reading,
        result)`` as :meth:`run_jobs` gives them (the result is None when it is in the reading). When declined,
        why: "unknown" (the graph is not known to be short, or not compiled here: a compile could take seconds) or
        "busy" (a job of the dispatcher's runs now);
        the client submits it to the queue instead. Raises LaneClosed when the lane is closed."""
        job_id, program, args, key, label, submitted_at = job
        lane = self.lane
        if lane is None or lane.token != token:
            raise LaneClosed(f"lane {token} is closed: the dispatcher has queued work for this worker")
        if lane.short.get(key, SHORT_JOB_S + 1) > SHORT_JOB_S or not is_warm(key):
            return "unknown"
        if not self._running.acquire(blocking=False):
            return "busy"
        try:
            started = time.time()
            reading, result = self._run_job(job_id, "graph", program, args, lane.tenant)
        finally:
            self._running.release()
        lane.jobs, lane.last_used = lane.jobs + 1, time.monotonic()
        lane.short[key] = refine(lane.short[key], reading["seconds"])
        reading.update(started_at=started, finished_at=time.time())
        with self._ran_lock:
            self.ran.append({"id": job_id, "tenant": lane.tenant, "tier": lane.tier, "key": key, "label": label,
                             "submitted_at": submitted_at, **{k: reading[k] for k in (
                                 "seconds", "device", "error", "started_at", "finished_at")}})
        return reading, (None if "value" in reading else result)

    @ray.method(concurrency_group="control")
    def output(self, job: str, since: int = 0) -> list[tuple[str, str]] | None:
        """What Python job ``job`` has written from chunk ``since`` on; None when it is not the one running."""
        output = self.output
        return output.since(since) if output is not None and output.job == job else None

    @ray.method(concurrency_group="lease")
    def hold(self, lease: str, data: bytes) -> dict:
        """Take a lease on an endpoint version (its ``.lumi`` bytes, verified by the model store):
        load and compile it now, so the first batch runs warm. Replaces any lease held before."""
        graph = loads(data)
        start = time.perf_counter()
        plan_for(graph)
        self.held = _Held(lease, graph, last_used=time.monotonic())
        return {"compile_s": time.perf_counter() - start, "device": self.device}

    @ray.method(concurrency_group="control")
    def drop(self, lease: str) -> None:
        """Give up ``lease`` (batches that arrive for it afterwards raise LeaseRevoked)."""
        if self.held is not None and self.held.lease == lease:
            self.held = None

    def _metered(self, work: Callable[[], object], what: str) -> tuple[dict, object]:
        """Run ``work`` (``what`` names it: "job 3f2a91c0") under the busy meter and the memory limit:
        ``(reading, result)``; a failure is the result, still metered. A job that ran out of memory has
        ``replace`` in its reading: its worker is replaced, since what it left behind may not be freed."""
        self.meter.start()
        start = time.perf_counter()
        error = replace = None
        try:
            with self.memory:
                result = work()
        except Exception as e:
            if (short := memory_error(e)) is not None:
                result = error = self._out_of_memory(e, short, what)
                replace = True
            elif isinstance(e, LumiError):
                result = error = e
            else:
                result = error = ExecutionError(f"the job raised {type(e).__name__} on the worker: {e}")
        seconds = time.perf_counter() - start
        self.meter.stop()
        reading = {"seconds": seconds, "device": self.device, "target": default_target(),
                   "error": None if error is None else str(error), "replace": replace}
        return reading, result

    def _out_of_memory(self, raised: Exception, error: MemoryError, what: str) -> OutOfMemory:
        """``raised`` (or ``error``, the MemoryError behind it) as an OutOfMemory that says what to do."""
        if isinstance(error, PastMemoryLimit):
            why = (f"its worker went past its limit of {self.memory.limit / MIB:.0f} MiB resident "
                   f"(LUMI_WORKER_MEMORY_BYTES), at {self.memory.peak / MIB:.0f} MiB")
            more = "or raise LUMI_WORKER_MEMORY_BYTES"
        else:  # a Lumi error's message names the op or the cell line; keep it
            why = str(raised) if isinstance(raised, LumiError) else f"{type(error).__name__}: {error}"
            why = f"{why} (on {self.device})"
            more = "or run it where there is more memory"
        replaced = f" Its worker on {self.host} was replaced." if what.startswith("job") else ""
        return OutOfMemory(f"{what} ran out of memory: {why}.{replaced} Use less memory per job (smaller batches, "
                           f"fewer rows), {more}")

    @ray.method(num_returns=2, enable_task_events=False)  # the hot path: no per-call task events for Ray's state API
    def run_jobs(self, jobs: list[tuple], lane: tuple | None = None) -> tuple:
        """Run jobs one after another, each ``(id, kind, program, args, tenant)``; return ``(readings, result, ...)``,
        a meter reading per job and then each job's result, so the scheduler sees only the small part. The caller
        asks for ``len(jobs) + 1`` returns (``.options(num_returns=...)``): each result is an object of its own.

        ``kind`` "graph": ``program`` is a Graph and ``args`` its input arrays; the result is the
        list of outputs. When they come to at most INLINE_BYTES they travel in the reading instead, as ``value``
        (the dispatcher's journal keeps them), and the result object is None.
        ``kind`` "python": ``program`` is ``(source, output names)`` and ``args``
        holds the inputs dict; the result is the dict of outputs (in the reading as ``value`` when small), and
        what it printed is in the reading as ``output`` (``(stream, text)`` chunks, also readable while it runs:
        :meth:`output`). A failure comes back as the exception in place of the result (and its message in the
        reading), so the run is still metered. While a job runs, ``LUMI_TENANT`` is its tenant: the stores it
        opens are that tenant's.

        ``lane``, ``(token, tenant, tier, short graphs)``, opens a lane once the jobs have run (see the module
        docstring): ``short graphs`` maps the hashes of graphs measured short to their seconds.
        """
        readings, results = [], []
        with self._running:
            for job, kind, program, args, tenant in jobs:
                reading, result = self._run_job(job, kind, program, args, tenant)
                if "value" in reading:
                    result = None  # it travels once, in the reading
                readings.append(reading)
                results.append(result)
        if lane is not None:
            token, tenant, tier, short = lane
            self.lane = _Lane(token, tenant, tier, dict(short), last_used=time.monotonic())
        return (readings, *results)

    def _run_job(self, job: str, kind: str, program, args: list, tenant: str) -> tuple[dict, object]:
        try:  # what travels by ObjectRef (big graphs and arrays) is fetched here, from its owner, the submitter
            program, *args = [ray.get(v) if isinstance(v, ray.ObjectRef) else v for v in (program, *args)]
        except ray.exceptions.ObjectLostError:
            reading = {"seconds": 0.0, "device": self.device, "target": default_target(), "error": LOST_INPUTS,
                       "replace": None}
            return reading, LumiError(LOST_INPUTS)
        os.environ["LUMI_TENANT"] = tenant  # jobs run one at a time on this thread
        if kind != "graph":
            with captured(job) as self.output:
                reading, result = self._metered(lambda: run_cell(program[0], args[0], program[1]), f"job {job}")
            reading["output"] = self.output.chunks
            if isinstance(result, dict) and len(ray.cloudpickle.dumps(result)) <= INLINE_BYTES:
                reading["value"] = result
            return reading, result
        compiled = []

        def run():
            start = time.perf_counter()
            plan_for(program)  # compiled on its first run here: its seconds are in the reading as compile_s
            compiled.append(time.perf_counter() - start)
            return execute(program, args)

        reading, result = self._metered(run, f"job {job}")
        reading["compile_s"] = sum(compiled)
        if isinstance(result, list) and sum(a.nbytes for a in result) <= INLINE_BYTES:
            reading["value"] = result
        return reading, result

    @ray.method(enable_task_events=False)
    def run_batch(self, lease: str, arrays: list) -> tuple[dict, list]:
        """Run one batch of the leased endpoint version: ``(meter reading, outputs)``; raises what failed."""
        held = self.held
        if held is None or held.lease != lease:
            raise LeaseRevoked(f"lease {lease} was reclaimed by the dispatcher; ask for a new one")
        reading, outputs = self._metered(lambda: execute(held.graph, arrays), f"a batch of lease {lease}")
        held.batches += 1
        held.seconds += reading["seconds"]
        held.last_used = time.monotonic()
        if isinstance(outputs, BaseException):
            raise outputs
        return reading, outputs
