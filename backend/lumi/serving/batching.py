"""Dynamic batching: prove a graph treats rows independently, then gather requests into one run.

:func:`batch_plan` follows each node's *row axis* (where the symbolic batch dimension of the
inputs lives) through the graph. Any op that combines values of different rows (a reduction
over the batch dimension, a matmul contracting it, a reshape that folds it into another
dimension, two operands with rows on different axes) makes the graph batch-dependent and
batching is turned off, with the reason. :class:`Batcher` gathers requests until ``max_batch``
rows or ``max_wait_ms`` after the first, concatenates them along the batch dimension, runs
them once on a free replica and splits the outputs back.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import LumiError
from ..graph.interpret import describe
from ..graph.ir import Graph

_MIXED = "mixed"


@dataclass(frozen=True)
class BatchPlan:
    """Whether requests may share a run; ``output_axes[i]`` is where output ``i`` keeps its rows
    (None: the output does not depend on the rows and every request gets all of it)."""

    enabled: bool
    reason: str
    symbol: str | None = None
    output_axes: tuple[int | None, ...] = ()


def _prefix(shape, axis: int) -> tuple:
    ints = math.prod(d for d in shape[:axis] if isinstance(d, int))
    return ints, tuple(sorted(d for d in shape[:axis] if isinstance(d, str)))


def _merge(axes: list) -> int | None | str:
    rows = {a for a in axes if a is not None}
    return _MIXED if len(rows) > 1 else (rows.pop() if rows else None)


def _row_axis(graph: Graph, node, src: list, symbol: str):
    """The row axis of ``node`` given its operands' row axes (None: independent of rows)."""
    kind = node.op if node.op in ("matmul", "reshape", "permute", "gather") else _KIND.get(node.op)
    shapes = [graph.nodes[s].shape for s in node.src]
    if kind in ("elementwise", "view_same"):
        return _merge(src)
    if kind == "reduce":
        if any(shapes[0][ax] == symbol for ax in node.attrs["axes"]):
            return _MIXED
        a = src[0]
        if a is None or node.attrs["keepdims"]:
            return a
        return a - sum(ax < a for ax in node.attrs["axes"])
    if kind == "permute":
        return None if src[0] is None else list(node.attrs["axes"]).index(src[0])
    if kind == "reshape":
        a = src[0]
        if a is None:
            return None
        if symbol not in node.shape:
            return _MIXED
        b = node.shape.index(symbol)
        return b if _prefix(shapes[0], a) == _prefix(node.shape, b) else _MIXED
    if kind == "matmul":
        n = len(node.shape)
        a, b = src
        if a == n - 1 or b == n - 2:
            return _MIXED  # the contraction runs over rows
        if a is not None and b is not None:
            return a if a == b and a < n - 2 else _MIXED
        return a if a is not None else b
    if kind == "gather":  # out = data[..., index, ...] at node.attrs["axis"]
        data, index = src
        ax, k = node.attrs["axis"], len(shapes[1])
        if data is not None:  # rows of the data survive unless they are what is indexed, or the index has rows
            return _MIXED if data == ax or index is not None else (data if data < ax else data - 1 + k)
        return None if index is None else ax + index
    return _MIXED


_KIND = {
    **{op: "elementwise" for op in ("exp", "log", "sqrt", "recip", "tanh", "erf", "sin", "add", "sub", "mul",
                                    "div", "maximum", "pow", "cmplt", "cmpeq", "where", "cast")},
    "sum": "reduce", "max": "reduce", "expand": "view_same", "slice": "view_same", "concat": "view_same",
}


def batch_plan(graph: Graph) -> BatchPlan:
    """Decide whether ``graph`` may run many requests concatenated along its batch dimension."""
    specs = graph.input_specs()
    if not specs:
        return BatchPlan(False, "the graph has no inputs")
    first = specs[0][1]
    symbol = first[0] if first and isinstance(first[0], str) else None
    if symbol is None:
        return BatchPlan(False, f"input {specs[0][0]!r} has no symbolic first dimension (trace it with a shape "
                                "like x:float32[batch,784])")
    for name, shape, _ in specs:
        if not shape or shape[0] != symbol or symbol in shape[1:]:
            return BatchPlan(False, f"input {name!r} does not have the batch dimension {symbol!r} first, "
                                    "and only there")
    rows: list = []
    for node in graph.nodes:
        if node.op == "input":
            rows.append(0)
        elif node.op == "const":
            rows.append(None)
        else:
            axis = _row_axis(graph, node, [rows[s] for s in node.src], symbol)
            if axis == _MIXED:
                return BatchPlan(False, f"{describe(node)} mixes rows along the batch dimension {symbol!r}", symbol)
            rows.append(axis)
    axes = []
    for i in graph.outputs.values():
        shape, axis = graph.nodes[i].shape, rows[i]
        if axis is None and symbol in shape:
            axis = shape.index(symbol)  # the same value broadcast over every row
        axes.append(axis)
    return BatchPlan(True, "rows are independent", symbol, tuple(axes))


@dataclass
class _Request:
    arrays: list[np.ndarray]
    rows: int
    signature: tuple
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)


@dataclass
class Result:
    """One request's outputs, its share of the batch's execution seconds, and where it ran."""

    outputs: list[np.ndarray]
    seconds: float
    device: str
    batch_requests: int


Runner = Callable[[list[np.ndarray]], Awaitable[tuple[list[np.ndarray], float, str]]]


class Batcher:
    """Gathers requests of one endpoint version into batches.

    ``acquire()`` waits for a replica able to take a batch and returns a ``run(arrays)``
    coroutine function plus a ``done()`` callback; the batcher gathers while it waits, so
    batches grow when replicas are busy. When ``acquire()`` raises a LumiError (no replica to be
    had), the requests waiting then fail with it.
    """

    def __init__(self, plan: BatchPlan, acquire: Callable[[], Awaitable[tuple[Runner, Callable[[], None]]]],
                 max_batch: int = 32, max_wait_ms: float = 5.0):
        self.plan = plan
        self.acquire = acquire
        self.max_batch = max(1, int(max_batch)) if plan.enabled else 1
        self.max_wait = max(0.0, float(max_wait_ms)) / 1000
        self.queue: deque[_Request] = deque()
        self.in_flight = 0
        self.batches = 0
        self.batched_requests = 0
        self.batched_rows = 0
        self.batch_sizes: Counter[int] = Counter()  # requests per batch -> how many batches had that many
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    # -- what the autoscaler reads ------------------------------------------------------------
    @property
    def queued(self) -> int:
        return len(self.queue)

    def oldest_wait(self) -> float:
        return time.monotonic() - self.queue[0].arrived if self.queue else 0.0

    @property
    def mean_batch_size(self) -> float:
        return self.batched_requests / self.batches if self.batches else 0.0

    # -- requests -----------------------------------------------------------------------------
    async def submit(self, arrays: list[np.ndarray]) -> Result:
        """Queue one request (arrays already checked against the graph) and wait for its outputs."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop())
        rows = int(arrays[0].shape[0]) if self.plan.enabled else 1
        signature = tuple((a.dtype.str, a.shape[1:]) for a in arrays)
        request = _Request(arrays, rows, signature, asyncio.get_running_loop().create_future())
        self.queue.append(request)
        self._wake.set()
        return await request.future

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._fail_queued(asyncio.CancelledError())

    def _fail_queued(self, error: BaseException) -> None:
        for r in self.queue:
            if not r.future.done():
                r.future.set_exception(error)
        self.queue.clear()

    # -- the loop -----------------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            while not self.queue:
                self._wake.clear()
                await self._wake.wait()
            try:
                run, done = await self.acquire()
            except LumiError as e:  # no replica to be had (a full cluster): the waiting requests get the reason
                self._fail_queued(e)
                continue
            batch = await self._gather()
            if not batch:
                done()
                continue
            self.in_flight += len(batch)
            asyncio.get_running_loop().create_task(self._run(batch, run, done))

    async def _gather(self) -> list[_Request]:
        while self.queue:
            rows = sum(r.rows for r in self.queue if r.signature == self.queue[0].signature)
            left = self.max_wait - self.oldest_wait()
            if rows >= self.max_batch or left <= 0:
                break
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), left)
            except TimeoutError:
                break
        batch, keep, rows = [], deque(), 0
        while self.queue:
            r = self.queue.popleft()
            if r.future.done():
                continue
            if batch and (r.signature != batch[0].signature or rows + r.rows > self.max_batch):
                keep.append(r)
                continue
            batch.append(r)
            rows += r.rows
        self.queue.extendleft(reversed(keep))
        return batch

    async def _run(self, batch: list[_Request], run: Runner, done: Callable[[], None]) -> None:
        try:
            if len(batch) == 1:
                arrays = batch[0].arrays
            else:
                arrays = [np.concatenate(parts, axis=0) for parts in zip(*(r.arrays for r in batch))]
            outputs, seconds, device = await run(arrays)
            total = sum(r.rows for r in batch)
            self.batches += 1
            self.batched_requests += len(batch)
            self.batched_rows += total
            self.batch_sizes[len(batch)] += 1
            start = 0
            for r in batch:
                rows = slice(start, start + r.rows)
                share = [o if len(batch) == 1 or ax is None else o[(slice(None),) * ax + (rows,)]
                         for o, ax in zip(outputs, self.plan.output_axes or [None] * len(outputs))]
                start += r.rows
                part = r.rows / total if total else 1 / len(batch)  # zero-row requests split the time evenly
                if not r.future.done():
                    r.future.set_result(Result(share, seconds * part, device, len(batch)))
        except Exception as e:
            for r in batch:
                if not r.future.done():
                    r.future.set_exception(e)
        finally:
            self.in_flight -= len(batch)
            done()
            self._wake.set()
