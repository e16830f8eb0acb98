"""Fan-out: ``lumi.map(fn, items)`` and ``lumi.starmap`` run ``fn`` on every item as dispatcher jobs.

Each item is one job of the caller's tier, so a map shares the cluster fairly with everything else.
At most ``max_in_flight`` items are submitted and not yet handed back (the items iterator is read
lazily), so a map over a million items holds a bounded amount in the driver. ``lumi.Busy`` is
waited out and the item submitted again. Leaving the map early (an error, ``break``, Ctrl-C)
cancels every one of its jobs that is not finished.

A traced :class:`~lumi.Graph` runs as graph jobs. A Python function is cloudpickled once, put into
the object store, and called by kind "python" jobs whose source is :data:`CALL_SOURCE` (the worker
unpickles it once and calls it on each item's arguments).

This module never imports IPython: progress goes to an optional callback, and :func:`map` asks the
notebook layer (``lumi_magics.map_progress``) for its display only when running under IPython.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import threading
import time
import traceback
import uuid
import warnings
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

import cloudpickle
import numpy as np
import ray

from ..errors import Busy, ExecutionError, LumiError, MapItemError
from ..graph.ir import Graph
from . import jobs, output
from .cluster import ensure_connected
from .dispatcher import FINAL, get_dispatcher
from .options import GpuRequest, job_placement

RESULT = "__lumi_result__"
CALL_SOURCE = (f"from lumi.runtime.fanout import call_item\n"
               f"{RESULT} = call_item(__lumi_fn__, __lumi_key__, __lumi_args__)\n")
REMOTE_MARK = "fn raised "  # where the worker's own account of a failed call begins in the job's error
WAIT_SLICE_S = 0.25  # the longest the driver blocks in Ray at a time (so Ctrl-C and progress stay live)
WINDOW_REFRESH_S = 5.0  # how often the default window follows the number of workers
LISTING_LIMIT = 1_000_000
MAX_IN_FLIGHT = 256  # each item in flight holds one dispatcher call (``wait``); the actor serves 1000 at once

__all__ = ["MapProgress", "call_item", "map", "starmap"]


@dataclass(frozen=True)
class MapProgress:
    """What a map has done so far, given to the progress callback after every change."""

    done: int = 0  # items finished, failures included
    failed: int = 0
    total: int | None = None  # None: the items had no len()
    in_flight: int = 0  # submitted and not finished
    elapsed: float = 0.0  # seconds since the map started
    cost: float = 0.0  # USD of the finished items (the dispatcher's metering)
    finished: bool = False  # the map has ended (all items, an error, Ctrl-C or the iterator closed)

    @property
    def rate(self) -> float:
        """Items finished per second."""
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds until the last item, at the rate so far (None without a total or a rate)."""
        if self.total is None or self.rate == 0:
            return None
        return max(self.total - self.done, 0) / self.rate


Progress = Callable[[MapProgress], None]


# -- the worker side ------------------------------------------------------------------------------
_functions: OrderedDict[str, Callable] = OrderedDict()
_functions_lock = threading.Lock()
_FUNCTIONS_KEPT = 16


def call_item(fn_ref, key: str, args: tuple):
    """Run on a worker (from :data:`CALL_SOURCE`): ``fn(*args)``, the function unpickled once per worker.

    A failure raises ExecutionError with the exception and the traceback of the function's own frames."""
    with _functions_lock:
        fn = _functions.get(key)
    if fn is None:
        try:
            fn = cloudpickle.loads(ray.get(fn_ref))
        except Exception as e:
            raise ExecutionError(f"{REMOTE_MARK}{type(e).__name__} while loading the function on the worker: {e} "
                                 "(a function from a module is shipped by name: that module must be importable "
                                 "on the workers; one defined in the notebook or script travels whole)") from None
        with _functions_lock:
            _functions[key] = fn
            while len(_functions) > _FUNCTIONS_KEPT:
                _functions.popitem(last=False)
    try:
        return fn(*args)
    except Exception as e:
        frames = traceback.extract_tb(e.__traceback__)[1:]  # the user's frames, not this one
        where = "".join(traceback.format_list(frames))
        raise ExecutionError(f"{REMOTE_MARK}{type(e).__name__}: {e}\nremote traceback (most recent call last):\n"
                             f"{where.rstrip()}") from None


# -- the driver side ------------------------------------------------------------------------------
@dataclass
class _Slot:
    """An item submitted: its job, until its result is collected."""

    index: int
    job: jobs.Job
    waiter: ray.ObjectRef


@dataclass
class _Run:
    """One map's state in the driver (see :func:`_fan_out`)."""

    dispatcher: object
    call: Callable[[object], tuple[dict, int | None]]  # item -> (job spec, graph outputs or None)
    python: bool
    window: int | None  # None: follow the workers (2 x workers x dispatch limit)
    prefix: str  # every job's label starts with this (how a cancel sweep finds them)
    progress: Progress | None
    state: MapProgress
    started: float = field(default_factory=time.monotonic)
    flying: dict[ray.ObjectRef, _Slot] = field(default_factory=dict)
    held: dict[int, tuple[object, bool]] = field(default_factory=dict)  # index -> (value or error, failed)
    source: Iterator = iter(())  # (index, item) pairs, read lazily
    retry: deque = field(default_factory=deque)  # (index, item) pairs Busy turned away, in order
    retry_at: float = 0.0
    exhausted: bool = False  # the source has no more items
    submitting: bool = False
    limit: int = 0
    limit_at: float = -1e9

    def room(self) -> int:
        """Items that may still be submitted now: the window less what is out and not yet handed back."""
        if self.window is not None:
            self.limit = self.window
        elif time.monotonic() - self.limit_at > WINDOW_REFRESH_S:
            self.limit, self.limit_at = default_window(self.dispatcher), time.monotonic()
        return self.limit - len(self.flying) - len(self.held)

    def fill(self) -> None:
        """Submit as many items as the window has room for, all at once; an item Busy turns away waits
        in ``retry`` until ``retry_at``. An item whose spec cannot be built is a failure at once."""
        if time.monotonic() < self.retry_at:
            return
        sent = []
        for _ in range(self.room()):
            entry = self.retry.popleft() if self.retry else next(self.source, None)
            if entry is None:
                self.exhausted = True
                break
            index, item = entry
            try:
                spec, outputs = self.call(item)
            except Exception as e:  # it does not fit the graph, or cannot be pickled
                self.finish(index, MapItemError(index, f"{type(e).__name__}: {e}"), True, 0.0)
                continue
            self.submitting = True  # a Ctrl-C from here on may leave jobs the driver has no handle of: swept
            spec = jobs.with_id({**spec, "label": f"{self.prefix} #{index}"})
            sent.append((index, item, outputs, spec, self.dispatcher.submit.remote(spec)))
        for index, item, outputs, spec, ref in sent:
            try:
                job = jobs.Job(jobs.call(ref), self.dispatcher, outputs, keep=jobs.spec_refs(spec))
            except Busy as e:
                self.retry.append((index, item))
                self.retry_at = max(self.retry_at, time.monotonic() + e.retry_after)
                continue
            waiter = job.waiter()
            self.flying[waiter] = _Slot(index, job, waiter)
        self.submitting = False

    def collect(self, slot: _Slot) -> None:
        """Fetch a finished item's result (or its error) and its cost."""
        del self.flying[slot.waiter]
        try:
            value = slot.job.result()
            value, failed = (value[RESULT] if self.python else value), False
        except Exception as e:  # the job failed, was cancelled, or its result cannot be read here
            value, failed = MapItemError(slot.index, remote_message(e)), True
        record = slot.job.refresh()
        if self.python:
            with contextlib.suppress(LumiError, ray.exceptions.RayError):
                output.write(output.tagged(slot.job.new_output(), f"[#{slot.index} on {record['worker']}] "))
        cost = record["cost"] or 0.0
        self.finish(slot.index, value, failed, cost)

    def finish(self, index: int, value, failed: bool, cost: float) -> None:
        self.held[index] = (value, failed)
        s = self.state
        self.state = replace(s, done=s.done + 1, failed=s.failed + failed, cost=s.cost + cost)
        self.report()

    def wait(self, timeout: float) -> None:
        """Block at most ``timeout`` s for items to finish, and collect every one that has."""
        waiters = list(self.flying)
        if not waiters:
            time.sleep(max(timeout, 0.0))
            return
        ready, rest = ray.wait(waiters, num_returns=1, timeout=max(timeout, 0.0))
        if ready and rest:
            more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        for waiter in ready:
            self.collect(self.flying[waiter])

    def report(self, finished: bool = False) -> None:
        self.state = replace(self.state, in_flight=len(self.flying), elapsed=time.monotonic() - self.started,
                             finished=finished)
        if self.progress is not None:
            self.progress(self.state)

    def cancel(self) -> None:
        """Cancel every job of this map that is not finished: those it holds, and any the dispatcher
        has under this map's label (a submit cut short by Ctrl-C leaves one without a handle)."""
        ids = {slot.job.id for slot in self.flying.values()}
        refs = [self.dispatcher.cancel.remote(i) for i in ids]  # sent before anything else can interrupt
        listing = ray.get(self.dispatcher.jobs.remote(limit=LISTING_LIMIT))
        stray = [j["id"] for j in listing if j["label"].startswith(self.prefix + " #") and j["state"] not in FINAL
                 and j["id"] not in ids]
        refs += [self.dispatcher.cancel.remote(i) for i in stray]
        for ref in refs:
            with contextlib.suppress(ray.exceptions.RayTaskError):  # already gone from the dispatcher's records
                ray.get(ref)
        self.flying.clear()


def default_window(dispatcher) -> int:
    """Twice what the workers take at once: ``2 x live workers x dispatch limit`` (at least 2 x limit, at
    most :data:`MAX_IN_FLIGHT`)."""
    info = jobs.call(dispatcher.cluster.remote())
    workers = sum(w["role"] == "device" and w["state"] != "dead" for w in info["workers"])
    return min(2 * max(workers, 1) * int(info.get("dispatch_limit", 2)), MAX_IN_FLIGHT)


def remote_message(e: BaseException) -> str:
    """The worker's account of a failed item: from :data:`REMOTE_MARK` on when the function reported it."""
    text = str(e)
    at = text.find(REMOTE_MARK)
    if at >= 0:
        return text[at + len(REMOTE_MARK):]
    return text or type(e).__name__


def _caller(fn, star: bool, placement: dict) -> tuple[Callable, bool]:
    """How each item becomes a job spec (and the graph's output count), and whether results are
    Python jobs' dicts. The graph or the pickled function is put into the object store once."""
    ensure_connected()

    def spec(kind, program, args, key, work) -> dict:
        return {"kind": kind, "program": program, "args": args, "key": key, "work": work, **placement,
                "estimate": None}

    if isinstance(fn, Graph):
        program, outputs = ray.put(fn), len(fn.outputs)

        def graph_item(item):
            arrays = [np.asarray(a) for a in (tuple(item) if star or isinstance(item, tuple) else (item,))]
            work = jobs.graph_work(fn, arrays)  # checks the item against the graph's inputs
            return spec("graph", program, [ray.put(a) for a in arrays], fn.hash, work), outputs

        return graph_item, False
    if not callable(fn):
        raise TypeError(f"lumi.map takes a lumi.Graph or a Python function, not {type(fn).__name__}")
    try:
        data = cloudpickle.dumps(fn)
    except Exception as e:
        raise LumiError(f"lumi.map: cannot pickle {fn!r} to ship it to the workers: {type(e).__name__}: {e}") from e
    key = "map:" + hashlib.sha256(data).hexdigest()  # what the dispatcher remembers measured runtimes by
    fn_ref, program = ray.put(data), ray.put((CALL_SOURCE, [RESULT]))

    def python_item(item):
        return function_spec(fn_ref, key, tuple(item) if star else (item,), placement, program), None

    return python_item, True


def function_spec(fn_ref: ray.ObjectRef, key: str, args: tuple, placement: dict, program=None) -> dict:
    """A kind "python" job spec that calls the cloudpickled function in ``fn_ref`` with ``args`` on a worker
    (through :func:`call_item`, which unpickles it there, as the job's tenant)."""
    inputs = ray.put({"__lumi_fn__": fn_ref, "__lumi_key__": key, "__lumi_args__": args})
    return {"kind": "python", "program": program or ray.put((CALL_SOURCE, [RESULT])), "args": [inputs], "key": key,
            "work": {}, **placement, "estimate": None}


def _start(fn, items: Iterable, star: bool, tier, tenant, gpu, ordered: bool, return_exceptions: bool,
           max_in_flight: int | None, progress, label: str | None, dispatcher) -> Iterator:
    """Check the arguments and ship ``fn`` now; the generator submits once it is iterated."""
    if max_in_flight is not None and (type(max_in_flight) is not int or not 1 <= max_in_flight <= MAX_IN_FLIGHT):
        raise LumiError(f"max_in_flight is a whole number from 1 to {MAX_IN_FLIGHT}, not {max_in_flight!r}")
    placement = job_placement(gpu, tier, tenant)  # a malformed --gpu is refused before anything runs
    try:
        total = len(items)  # type: ignore[arg-type]
    except TypeError:
        total = None
    name = f"graph {fn.hash[:8]}" if isinstance(fn, Graph) else getattr(fn, "__name__", type(fn).__name__)
    call, python = _caller(fn, star, placement)
    prefix = f"{label or 'lumi.map ' + name} ({uuid.uuid4().hex[:8]})"
    return _fan_out(_Run(dispatcher or get_dispatcher(), call, python, max_in_flight, prefix, None,
                         MapProgress(total=total)), items, ordered, return_exceptions, progress)


def _fan_out(run: _Run, items: Iterable, ordered: bool, return_exceptions: bool, progress) -> Iterator:
    """Submit while the window has room, collect what finished, hand results back; see :func:`map`."""
    run.progress = default_progress() if progress is None or progress is True else progress or None
    run.started = time.monotonic()
    run.source = iter(enumerate(items))
    after = 0  # the next index to hand back (ordered)
    try:
        run.report()
        while True:
            run.fill()
            run.report()
            while run.held:
                index = after if ordered else next(iter(run.held))
                if index not in run.held:
                    break
                value, failed = run.held.pop(index)
                after += 1
                if failed and not return_exceptions:
                    raise value
                yield value
            if run.exhausted and not (run.retry or run.flying or run.held):
                return
            run.wait(min(max(run.retry_at - time.monotonic(), 0.0), WAIT_SLICE_S) if run.retry else WAIT_SLICE_S)
    finally:
        _close(run)


def _close(run: _Run) -> None:
    """Cancel what is not finished and give the callback its last state. A Ctrl-C while cancelling
    does not stop the cancelling (it is raised once the jobs are cancelled)."""
    interrupted = None
    for _ in range(3):
        try:
            if run.flying or run.submitting:
                run.cancel()
            break
        except KeyboardInterrupt as e:
            interrupted = e
        except Exception as e:  # the dispatcher is gone: say so, without hiding how the map ended
            warnings.warn(f"lumi.map could not cancel its unfinished jobs: {type(e).__name__}: {e}", stacklevel=3)
            break
    with contextlib.suppress(Exception):  # a display failing at the end does not hide how the map ended either
        run.report(finished=True)
    if interrupted is not None:
        raise interrupted


def default_progress() -> Progress | None:
    """The notebook's display under IPython (a widget under a Jupyter kernel, else a text line); None
    outside IPython. ``lumi_magics`` is imported only when IPython already runs."""
    if "IPython" not in sys.modules:
        return None
    shell = sys.modules["IPython"].get_ipython()
    if shell is None:
        return None
    try:
        from lumi_magics.map_progress import map_view
    except ImportError:
        return None
    return map_view(shell)


def map(fn: Graph | Callable, items: Iterable, *, tier: str | None = None, tenant: str | None = None,
        gpu: str | bool | GpuRequest | None = None, ordered: bool = True, return_exceptions: bool = False,
        max_in_flight: int | None = None, progress: Progress | bool | None = None, label: str | None = None,
        dispatcher=None) -> Iterator:
    """Run ``fn`` on every item on the cluster; yield the results in order (``ordered=False``: as they finish).

    ``fn`` is a traced :class:`lumi.Graph` (an item is one array or a tuple of arrays) or a Python
    function (cloudpickled; called with the item). Lazy like the builtin ``map``: nothing is submitted
    until you iterate. A failed item raises :class:`MapItemError` (its ``index`` and the worker's
    message) unless ``return_exceptions``, which yields it instead. At most ``max_in_flight`` items are
    out at once (default: twice what the workers take). ``progress``: a callback given a
    :class:`MapProgress` after every change; None shows the notebook's progress bar under IPython,
    False nothing. Leaving early (an error, ``break``, Ctrl-C, ``close()``) cancels what is left.
    """
    return _start(fn, items, False, tier, tenant, gpu, ordered, return_exceptions, max_in_flight, progress, label,
                  dispatcher)


def starmap(fn: Graph | Callable, items: Iterable[tuple], *, tier: str | None = None, tenant: str | None = None,
            gpu: str | bool | GpuRequest | None = None, ordered: bool = True, return_exceptions: bool = False,
            max_in_flight: int | None = None, progress: Progress | bool | None = None, label: str | None = None,
            dispatcher=None) -> Iterator:
    """:func:`map` with each item a tuple of arguments: ``fn(*item)``."""
    return _start(fn, items, True, tier, tenant, gpu, ordered, return_exceptions, max_in_flight, progress, label,
                  dispatcher)
