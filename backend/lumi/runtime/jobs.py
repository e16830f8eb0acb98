"""The client side of the dispatcher: ``lumi.submit(...) -> lumi.Job``.

Graphs and input arrays travel by content hash: each is put into Ray's object store once per
connection and its ObjectRef reused, so an unchanged input (or graph) is not sent again.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import ray

from ..errors import Busy, LumiError
from ..graph import shapes as S
from ..graph.ir import Graph, array_digest
from ..graph.ops import OPS
from .cluster import ensure_connected
from .dispatcher import FINAL, get_dispatcher

CACHE_BYTES = 1 << 30
_cache: OrderedDict[str, tuple[ray.ObjectRef, int]] = OrderedDict()
_cache_lock = threading.Lock()


class JobTimeout(LumiError, TimeoutError):
    """``Job.result(timeout)`` ran out of time; the job itself goes on (``job.cancel()`` stops it)."""


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


def parse_gpu(gpu: str | None) -> str | None:
    """``"H100"`` or ``"H100:1"`` -> ``"H100"``; one GPU per job is what workers offer."""
    if not gpu:
        return None
    kind, _, count = gpu.partition(":")
    if count and (not count.isdigit() or int(count) != 1):
        raise LumiError(f"--gpu {gpu}: a job runs on one GPU; use {kind} or {kind}:1")
    return kind.strip().upper()


def graph_spec(graph: Graph, arrays: Sequence, **options) -> dict:
    """A dispatcher job spec for ``graph`` on ``arrays``: both by content-addressed ObjectRef."""
    arrays = [np.asarray(a) for a in arrays]
    work = graph_work(graph, arrays)
    program = _put("graph:" + graph.hash, graph, sum(c.nbytes for c in graph.constants.values()))
    args = [_put("array:" + array_digest(a), a, a.nbytes) for a in arrays]
    return _spec("graph", program, args, key=graph.hash, work=work, **options)


def python_spec(source: str, inputs: dict, outputs: list[str], **options) -> dict:
    """A dispatcher job spec running ``source`` as Python on a worker (``%%remote --python``)."""
    key = hashlib.sha256(source.encode()).hexdigest()
    ensure_connected()
    return _spec("python", ray.put((source, list(outputs))), [ray.put(inputs)], key=key, work={}, **options)


def _spec(kind, program, args, key, work, tier="api", tenant="local", gpu=None, label=None, estimate=None) -> dict:
    return {"kind": kind, "program": program, "args": args, "key": key, "work": work, "tier": tier,
            "tenant": tenant, "gpu": parse_gpu(gpu), "label": label or kind, "estimate": estimate}


def call(ref):
    """``ray.get`` a dispatcher call, re-raising Lumi's own errors (``Busy`` with its retry time) plainly."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = e.cause
        if isinstance(cause, Busy):
            raise Busy(str(cause), retry_after=cause.retry_after) from None
        if isinstance(cause, LumiError):
            raise type(cause)(str(cause)) from None
        raise


def submit_spec(spec: dict, dispatcher=None, outputs: int | None = None) -> Job:
    """Submit a spec built by :func:`graph_spec` or :func:`python_spec`; raises ``Busy`` when full."""
    dispatcher = dispatcher or get_dispatcher()
    return Job(call(dispatcher.submit.remote(spec)), dispatcher, outputs)


def submit(graph: Graph, *arrays, tier: str = "api", tenant: str = "local", gpu: str | None = None,
           label: str | None = None, dispatcher=None) -> Job:
    """Queue ``graph(*arrays)`` on the cluster; raises ``lumi.Busy`` (with ``retry_after``) when full."""
    spec = graph_spec(graph, arrays, tier=tier, tenant=tenant, gpu=gpu, label=label)
    return submit_spec(spec, dispatcher, outputs=len(graph.outputs))


class Job:
    """A job on the dispatcher: live ``state``, ``position``, ``gpu_seconds``, ``cost``; ``result()``."""

    def __init__(self, snapshot: dict, dispatcher, outputs: int | None = None):
        self.id = snapshot["id"]
        self._dispatcher = dispatcher
        self._snapshot = snapshot
        self._outputs = outputs  # graph jobs: how many outputs (one comes back bare, more as a tuple)
        self._waiter = None
        self._value = None

    def refresh(self) -> dict:
        """The job's latest record (see the dispatcher contract)."""
        if self._snapshot["state"] not in FINAL:
            self._snapshot = call(self._dispatcher.status.remote(self.id))
        return self._snapshot

    def progress(self) -> dict:
        """The record plus its worker's device and utilization and the price per second there."""
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
            ready, _ = ray.wait([self.waiter()], timeout=timeout)
            if not ready:
                raise JobTimeout(f"job {self.id} still {self.state} after {timeout:g} s; wait longer or cancel()")
            answer = call(self.waiter())
            self._snapshot = answer["job"]
            state, error = self._snapshot["state"], self._snapshot["error"]
            if state == "cancelled":
                raise LumiError(f"job {self.id} was cancelled")
            if answer["result"] is None:
                raise LumiError(f"job {self.id} {state}: {error or 'its result was already taken by another caller'}")
            value = ray.get(answer["result"][0])
            if isinstance(value, BaseException):
                raise value
            self._value = (value,)
        return self._value[0]

    def result(self, timeout: float | None = None):
        """Wait for the outputs: one array, a tuple of arrays, or a Python job's dict of outputs."""
        value = self.outputs(timeout)
        if self._outputs is not None and len(value) == 1:
            return value[0]
        return tuple(value) if self._outputs is not None else value

    def cancel(self) -> dict:
        """Cancel the job on the cluster (queued: removed; running: stopped, its worker replaced if needed)."""
        self._snapshot = call(self._dispatcher.cancel.remote(self.id))
        return self._snapshot

    def __repr__(self) -> str:
        s = self._snapshot
        where = f" #{s['position']}" if s.get("position") else ""
        return f"<lumi.Job {self.id} {s['state']}{where} tier={s['tier']} cost=${s['cost']:.6f}>"
