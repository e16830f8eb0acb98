"""The client side of the dispatcher: ``lumi.submit(...) -> lumi.Job``.

Graphs and input arrays past INLINE_BYTES travel by content hash: each is put into Ray's object store once per
connection and its ObjectRef reused, so an unchanged input (or graph) is not sent again. Smaller ones travel
inside the spec: fetching an object from the store costs a worker more than a copy of 64 KiB does.
"""

from __future__ import annotations

import hashlib
import signal
import sys
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import ray

from ..errors import Busy, JobTimeout, LumiError
from ..graph import shapes as S
from ..graph.ir import Graph, array_digest
from ..graph.ops import OPS
from .cluster import ensure_connected
from .dispatcher import FINAL, get_dispatcher
from .options import GpuRequest, job_placement
from .wire import wire_of

CACHE_BYTES = 1 << 30
INLINE_BYTES = 64 << 10
_cache: OrderedDict[str, tuple[ray.ObjectRef, int]] = OrderedDict()
_cache_lock = threading.Lock()


def reset() -> None:
    """Forget cached ObjectRefs (they belong to the Ray connection that made them)."""
    with _cache_lock:
        _cache.clear()


def _put(key: str, value, nbytes: int) -> ray.ObjectRef:
    """The ObjectRef of ``value`` under its content hash, putting it only the first time."""
    ensure_connected()  # before any ray call: Ray would otherwise start a bare local cluster of its own
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key][0]
    ref = ray.put(value)
    with _cache_lock:
        _cache[key] = (ref, nbytes)
        while len(_cache) > 1 and sum(n for _, n in _cache.values()) > CACHE_BYTES:
            _cache.popitem(last=False)
    return ref


def graph_work(graph: Graph, arrays: Sequence[np.ndarray]) -> dict:
    """FLOPs, bytes moved and compute ops of running ``graph`` on ``arrays`` (checks the inputs)."""
    _, bindings = graph.bind_inputs(arrays)
    flops = nbytes = ops = 0
    outputs = set(graph.outputs.values())
    for node in graph.nodes:
        kind = OPS[node.op].kind
        size = S.numel(S.resolve(node.shape, bindings))
        if kind == "source" or node.id in outputs:
            nbytes += size * np.dtype(node.dtype).itemsize
        if kind in ("source", "view"):
            continue
        ops += 1
        if kind == "matmul":
            flops += 2 * size * S.resolve(graph.nodes[node.src[0]].shape, bindings)[-1]
        elif kind == "reduce":
            flops += S.numel(S.resolve(graph.nodes[node.src[0]].shape, bindings))
        else:
            flops += size
    return {"flops": flops, "bytes": nbytes, "ops": ops}


def graph_spec(graph: Graph, arrays: Sequence, **options) -> dict:
    """A dispatcher job spec for ``graph`` on ``arrays``: both by content-addressed ObjectRef."""
    options = _placed(options)  # a malformed --gpu is refused before anything is uploaded
    arrays = [np.asarray(a) for a in arrays]
    work = graph_work(graph, arrays)
    constants = sum(c.nbytes for c in graph.constants.values())
    program = graph if constants <= INLINE_BYTES else _put("graph:" + graph.hash, graph, constants)
    args = [a if a.nbytes <= INLINE_BYTES else _put("array:" + array_digest(a), a, a.nbytes) for a in arrays]
    return _spec("graph", program, args, key=graph.hash, work=work, **options)


def python_spec(source: str, inputs: dict, outputs: list[str], **options) -> dict:
    """A dispatcher job spec running ``source`` as Python on a worker (``%%remote --python``)."""
    options = _placed(options)
    key = hashlib.sha256(source.encode()).hexdigest()
    ensure_connected()
    return _spec("python", (source, list(outputs)), [ray.put(inputs)], key=key, work={}, **options)


def _placed(options: dict) -> dict:
    """``gpu`` in any ``--gpu`` form becomes its canonical one (``any``, ``H100``, ``H100:2``) or None, and
    ``tier``/``tenant`` default to ``api``/``local``; whether the cluster can serve the GPUs asked for (a
    type, a count) is the dispatcher's to say."""
    return {**options, **job_placement(options.get("gpu"), options.get("tier"), options.get("tenant"))}


def _spec(kind, program, args, key, work, tier=None, tenant=None, gpu=None, label=None, estimate=None) -> dict:
    return {"kind": kind, "program": program, "args": args, "key": key, "work": work,
            **job_placement(gpu, tier, tenant), "label": label or kind, "estimate": estimate}


def call(ref, timeout: float | None = None):
    """``ray.get`` a dispatcher call, re-raising Lumi's own errors (``Busy`` with its retry time) plainly;
    past ``timeout`` seconds, a LumiError."""
    try:
        return ray.get(ref, timeout=timeout)
    except ray.exceptions.GetTimeoutError:
        raise LumiError(f"the dispatcher did not answer within {timeout:g} s") from None
    except ray.exceptions.RayTaskError as e:
        cause = e.cause
        if isinstance(cause, Busy):
            raise Busy(str(cause), retry_after=cause.retry_after) from None
        if isinstance(cause, LumiError):
            raise type(cause)(str(cause)) from None
        raise


def submit_spec(spec: dict, dispatcher=None, outputs: int | None = None) -> Job:
    """Submit a spec built by :func:`graph_spec` or :func:`python_spec`; raises ``Busy`` when full.
    A ``KeyboardInterrupt`` before the ``Job`` is returned cancels the job the submit made."""
    submission = Submission(spec, dispatcher, outputs)
    try:
        return submission.submit()
    except KeyboardInterrupt:
        for wait in (CANCEL_WAIT_S, 0.0, 0.0):  # another Ctrl-C meanwhile only stops the waiting
            try:
                submission.cancel(wait)
                break
            except KeyboardInterrupt:
                pass
        raise


def with_id(spec: dict) -> dict:
    """``spec`` with a job id of the client's choosing, so that a submit Ray retries across a dispatcher restart
    makes one job, not two."""
    return spec if spec.get("id") else {**spec, "id": uuid.uuid4().hex[:16]}


def spec_refs(spec: dict) -> tuple:
    """What a client holds while its job runs: the program and inputs, which a restarted dispatcher resolves
    from this process (their owner) again."""
    return tuple(v for v in (spec["program"], *spec["args"]) if isinstance(v, ray.ObjectRef))


CANCEL_WAIT_S = 5.0  # how long a Ctrl-C waits for the dispatcher to confirm a cancel before re-raising
_POLL_S = 0.25


class Submission:
    """One submit whose job an interrupt cannot lose.

    A ``KeyboardInterrupt`` (a signal handler, or an exception sent to the thread) can land between any
    two bytecodes of the submitting thread: after the dispatcher accepted the job and before its id
    reached the caller, the job would run to its end with nobody to cancel it. So on the main thread (where a
    Ctrl-C lands) the dispatcher call runs on a helper thread, which keeps its answer here whatever the caller's
    thread is doing (other threads send it themselves), and
    :meth:`cancel` works at any moment: before the helper sends, nothing is sent; once the job exists it is
    cancelled; while the answer is on its way, the helper cancels the job as soon as it arrives. ``cancel``
    may be called again after an interrupt of its own (it asks once). After ``Busy``, :meth:`submit` may be
    called again.
    """

    def __init__(self, spec: dict, dispatcher=None, outputs: int | None = None):
        self.spec, self.outputs, self.dispatcher = with_id(spec), outputs, dispatcher
        self.job: Job | None = None  # set (by the helper) as soon as the dispatcher has answered
        self.cancelled: dict | None = None  # the dispatcher's record of the cancelled job
        self._lock = threading.Lock()
        self._answered = threading.Event()
        self._error: BaseException | None = None
        self._sending = False  # a helper has sent the spec and waits for the answer
        self._cancel_asked = self._cancel_sent = False
        self._cancel_done = threading.Event()

    def submit(self) -> Job:
        """Send the spec and wait (interruptibly) for the dispatcher's answer: the ``Job``, or its error."""
        dispatcher = self.dispatcher = self.dispatcher or get_dispatcher()  # here: it may connect first
        with self._lock:
            if self._cancel_asked:
                raise LumiError("this submission was cancelled")
            if self.job is not None:
                return self.job
            self._error = None
        self._answered.clear()
        if self._run_on_a_lane(dispatcher):
            return self.job
        if threading.current_thread() is not threading.main_thread():  # a Ctrl-C lands on the main thread only
            self._send(dispatcher)
        else:
            threading.Thread(target=self._send, args=(dispatcher,), name="lumi-submit", daemon=True).start()
        while not self._answered.wait(_POLL_S):
            check_interrupts()
        check_interrupts()
        if self._error is not None:
            raise self._error
        return self.job

    def _run_on_a_lane(self, dispatcher) -> bool:
        """Run the job on a lane of this process's, if one takes it (see :mod:`lumi.runtime.wire`), on this thread:
        a lane's jobs are short, so a Ctrl-C meanwhile leaves nothing running for long, and nothing to cancel."""
        end = wire_of(dispatcher).run_direct(self.spec)
        if end is None:
            return False
        with self._lock:
            self.job = Job(end["job"], dispatcher, self.outputs, end=end)
        self._answered.set()
        return True

    def _send(self, dispatcher) -> None:
        with self._lock:
            if self._cancel_asked:  # interrupted before this thread ran: send nothing
                self._cancel_done.set()
                self._answered.set()
                return
            self._sending = True
        try:
            wire = wire_of(dispatcher)
            job = Job(wire.submit(self.spec), dispatcher, self.outputs, keep=spec_refs(self.spec), wire=wire)
        except BaseException as e:  # Busy, a refusal: handed to the caller's thread, which raises it
            with self._lock:
                self._error, self._sending = e, False
                if self._cancel_asked:  # no job was made: nothing to cancel
                    self._cancel_done.set()
            self._answered.set()
            return
        with self._lock:
            self.job, self._sending = job, False
            cancel = self._cancel_asked and not self._cancel_sent
            self._cancel_sent = self._cancel_sent or cancel
        self._answered.set()
        if cancel:  # the caller was interrupted while this answer was on its way
            self._cancel(job)

    def cancel(self, wait: float | None = CANCEL_WAIT_S) -> dict | None:
        """Cancel the job this submission made, whenever that is (now, or when the dispatcher answers); wait up
        to ``wait`` seconds for the dispatcher's record of it (None: no job, or not confirmed yet). Errors of
        the dispatcher never come out of here; a KeyboardInterrupt in the wait does (the cancel goes on)."""
        with self._lock:
            self._cancel_asked = True
            job, sending, sent = self.job, self._sending, self._cancel_sent
        if job is not None and not sent:
            # from a thread of its own, which another Ctrl-C cannot stop; marked only once it runs, so an
            # interrupt before then makes the next call start it (two cancels of one job are harmless)
            threading.Thread(target=self._cancel, args=(job,), name="lumi-cancel", daemon=True).start()
            self._cancel_sent = True
        elif job is None and not sending:  # never sent, refused, or stopped before sending: no job
            self._cancel_done.set()
        if wait:
            self._cancel_done.wait(wait)
        return self.cancelled

    def _cancel(self, job: Job) -> None:
        try:
            self.cancelled = job.cancel()
        except Exception:  # the dispatcher is gone or restarted: nothing runs there any more
            pass
        finally:
            self._cancel_done.set()


# -- KeyboardInterrupts that get lost ------------------------------------------------------------------
# A KeyboardInterrupt raised inside a finalizer (a ``__del__``, a weakref callback, the garbage collector) is
# only printed ("Exception ignored in ...") and dropped, and the interrupted code goes on as if nothing
# happened. Ray's ``ActorHandle.__del__`` runs on the caller's thread during named-actor lookups, so a Ctrl-C
# handled there was lost: the cell ran its job to the end. A Ctrl-C is a SIGINT, whose handler runs on the main
# thread wherever it happens to be, also inside C code that checks for signals (Ray's waits turn the
# KeyboardInterrupt into a status of their own) and past code that may drop it; once in a full suite under load
# one vanished in the wait loop with no trace. So while a ``keeping_interrupts()`` block runs on the main thread,
# every Ctrl-C is also kept, whether it comes as a SIGINT (Lumi's handler raises it and keeps a copy) or is
# dropped in a finalizer (the unraisable hook keeps it). :func:`check_interrupts` (which the waits here call)
# raises a kept one again, and so does the block's end; an interrupt that propagates out of the block was seen,
# and is not raised twice. The handler and the hook are installed once and stay (undoing them on the way out
# could itself be interrupted); outside such blocks they hand everything to what they replaced.
_keeping = 0  # keeping_interrupts() blocks running on the main thread
_kept: BaseException | None = None
_previous_hook = None
_previous_sigint = None


def _unraisable(unraisable) -> None:
    global _kept
    if (_keeping and unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt)
            and threading.current_thread() is threading.main_thread()):
        _kept = unraisable.exc_value or KeyboardInterrupt()
        return
    (_previous_hook or sys.__unraisablehook__)(unraisable)


def _sigint(signum, frame) -> None:
    global _kept
    if _keeping:
        _kept = KeyboardInterrupt()  # raised again by check_interrupts should whoever gets this one drop it
        raise KeyboardInterrupt
    if callable(_previous_sigint):
        _previous_sigint(signum, frame)
    elif _previous_sigint != signal.SIG_IGN:
        raise KeyboardInterrupt


def _install() -> None:
    global _previous_hook, _previous_sigint
    if sys.unraisablehook is not _unraisable:
        _previous_hook, sys.unraisablehook = sys.unraisablehook, _unraisable
    current = signal.getsignal(signal.SIGINT)
    if current is not _sigint and current is not None:  # None: a handler not installed from Python; leave it
        _previous_sigint = current
        signal.signal(signal.SIGINT, _sigint)


class keeping_interrupts:
    """``with keeping_interrupts():`` keeps, and raises again, the KeyboardInterrupts that would otherwise get lost
    on the main thread (see above); elsewhere it does nothing."""

    def __enter__(self):
        global _keeping, _kept
        self.active = threading.current_thread() is threading.main_thread()
        if self.active:
            _install()
            _keeping, _kept = _keeping + 1, None  # one kept before this block is not this block's
        return self

    def __exit__(self, exc_type, exc, tb):
        global _keeping, _kept
        if self.active:
            _keeping = max(0, _keeping - 1)
            if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
                _kept = None  # it reached the block's end: seen, and on its way out
            elif exc_type is None:
                check_interrupts(always=True)
        return False


def check_interrupts(always: bool = False) -> None:
    """Raise a KeyboardInterrupt that was lost on the main thread during a ``keeping_interrupts()`` block, if one
    was kept."""
    global _kept
    if _kept is not None and (_keeping or always):
        kept, _kept = _kept, None
        raise kept


def submit(graph: Graph, *arrays, tier: str | None = None, tenant: str | None = None,
           gpu: str | bool | GpuRequest | None = None, label: str | None = None, dispatcher=None) -> Job:
    """Queue ``graph(*arrays)`` on the cluster; raises ``lumi.Busy`` (with ``retry_after``) when full.

    ``gpu`` takes the ``--gpu`` forms (``True`` or ``"any"``, ``"H100"``, ``"H100:2"``, ``"any:2"``; see
    :mod:`lumi.runtime.options`); ``tier`` defaults to ``api`` and ``tenant`` to ``local`` (no key is involved)."""
    spec = graph_spec(graph, arrays, tier=tier, tenant=tenant, gpu=gpu, label=label)
    return submit_spec(spec, dispatcher, outputs=len(graph.outputs))


def _wait_on(event: threading.Event, seconds: float) -> bool:
    """Where a job's end is awaited: the one blocking wait of :meth:`Job.wait`."""
    return event.wait(seconds)


class Job:
    """A job on the dispatcher: live ``state``, ``position``, ``gpu_seconds``, ``cost``; ``result()``.

    A job submitted through this process's wire (:mod:`lumi.runtime.wire`) gets its end from the wire's
    collector, and one that ran on a lane is made with its ``end``; otherwise :meth:`outputs` asks the
    dispatcher's ``wait``."""

    def __init__(self, snapshot: dict, dispatcher, outputs: int | None = None, keep: tuple = (), wire=None,
                 end: dict | None = None):
        self.id = snapshot["id"]
        self._keep = keep  # the spec's ObjectRefs, held until the result is in: a restarted dispatcher reads them
        self._dispatcher = dispatcher
        self._snapshot = snapshot
        self._outputs = outputs  # graph jobs: how many outputs (one comes back bare, more as a tuple)
        self._waiter = None
        self._value = None
        self._output: list | None = None  # a Python job's printed chunks, once it has finished
        self._shown = 0  # chunks new_output() has handed out
        self._end: dict | BaseException | None = None  # the wire's answer, once the job has ended
        self._has_ended = threading.Event() if wire is not None or end is not None else None
        if wire is not None:
            wire.expect(self)
        if end is not None:
            self._output = []
            self._ended(end)

    def _ended(self, end: dict | BaseException) -> None:
        """The wire's collector hands over the job's end (or why it cannot come)."""
        if isinstance(end, dict):
            self._snapshot = end["job"]
        self._end = end
        self._has_ended.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds (None: as long as it takes) for the job to end; whether it has."""
        if self._has_ended is None:
            ready, _ = ray.wait([self.waiter()], timeout=timeout)
            return bool(ready)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:  # in short waits, so that a Ctrl-C that something dropped is raised again soon
            left = _POLL_S if deadline is None else min(_POLL_S, deadline - time.monotonic())
            if _wait_on(self._has_ended, max(left, 0.0)):
                return True
            check_interrupts()
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def refresh(self) -> dict:
        """The job's latest record (see the dispatcher contract)."""
        if self._snapshot["state"] not in FINAL:
            self._snapshot = call(self._dispatcher.status.remote(self.id))
        return self._snapshot

    def progress(self) -> dict:
        """The record plus its worker's device and utilization and the price per second there (an ended job's
        own record, with no worker: its device and cost are in it, and nothing more can change)."""
        if self._snapshot["state"] in FINAL:
            return {"job": self._snapshot, "worker": None, "price": 0.0}
        info = call(self._dispatcher.progress.remote(self.id))
        self._snapshot = info["job"]
        return info

    state = property(lambda self: self.refresh()["state"], doc="queued | running | done | failed | cancelled")
    position = property(lambda self: self.refresh()["position"], doc="place in the overall queue (1 = next)")
    tier_position = property(lambda self: self.refresh()["tier_position"], doc="place within its tier's queue")
    gpu_seconds = property(lambda self: self.refresh()["gpu_seconds"], doc="measured execution seconds")
    cost = property(lambda self: self.refresh()["cost"], doc="execution seconds x the device's price (USD)")

    def waiter(self) -> ray.ObjectRef:
        """An ObjectRef that becomes ready when the job finishes (for ``ray.wait`` loops)."""
        if self._waiter is None:
            self._waiter = self._dispatcher.wait.remote(self.id)
        return self._waiter

    def outputs(self, timeout: float | None = None):
        """The raw result: the list of graph outputs, or a Python job's dict of outputs."""
        if self._value is None:
            if not self.wait(timeout):
                raise JobTimeout(f"job {self.id} still {self.state} after {timeout:g} s; wait longer or cancel()")
            answer = call(self.waiter()) if self._has_ended is None else self._end
            if isinstance(answer, BaseException):
                raise answer
            self._snapshot, self._output = answer["job"], answer.get("output")
            state, error = self._snapshot["state"], self._snapshot["error"]
            if state == "cancelled":
                raise LumiError(f"job {self.id} was cancelled")
            if answer["result"] is None and answer.get("value") is None:
                raise LumiError(f"job {self.id} {state}: {error or 'its result was already taken by another caller'}")
            value = answer["value"] if answer.get("value") is not None else self._fetch(answer["result"][0])
            if isinstance(value, BaseException):
                raise value
            self._value, self._keep = (value,), ()
        return self._value[0]

    def _fetch(self, result: ray.ObjectRef):
        try:
            return ray.get(result)
        except ray.exceptions.ObjectLostError:  # it lived in the object store of a dispatcher that died meanwhile
            raise LumiError(f"job {self.id} finished, but its result was lost before it was fetched (the dispatcher "
                            "that held it restarted); submit the job again") from None

    def new_output(self) -> list[tuple[str, str]]:
        """What a Python job printed since the last call, as ``(stream, text)`` pairs (``stdout``, ``stderr``):
        read from its worker while it runs, and the rest once it has finished (after :meth:`outputs`)."""
        if self._output is not None:
            chunks = self._output[self._shown:]
        else:
            chunks = call(self._dispatcher.output.remote(self.id, self._shown))
        self._shown += len(chunks)
        return chunks

    def result(self, timeout: float | None = None):
        """Wait for the outputs: one array, a tuple of arrays, or a Python job's dict of outputs."""
        value = self.outputs(timeout)
        if self._outputs is not None and len(value) == 1:
            return value[0]
        return tuple(value) if self._outputs is not None else value

    def cancel(self) -> dict:
        """Cancel the job on the cluster (queued: removed; running: stopped, its worker replaced if needed)."""
        if self._end is not None and self._snapshot["state"] in FINAL:  # it has ended: nothing to cancel
            return self._snapshot
        self._snapshot = call(self._dispatcher.cancel.remote(self.id))
        return self._snapshot

    def __repr__(self) -> str:
        s = self._snapshot
        where = f" #{s['position']}" if s.get("position") else ""
        return f"<lumi.Job {self.id} {s['state']}{where} tier={s['tier']} cost=${s['cost']:.6f}>"
