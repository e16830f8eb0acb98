"""``lumi.compile``: optimise, fuse, render for a target, and return a runnable :class:`Plan`."""

from __future__ import annotations

import functools
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ExecutionError, GraphTooLarge, IndexOutOfRange, LumiError, UnsupportedOperation
from ..graph import shapes as S
from ..graph.interpret import describe, index_context
from ..graph.ir import Graph
from ..graph.ops import OPS
from ..settings import setting
from .groups import Group, LibraryStep, MatmulStep, Step, attach_epilogues, fuse
from .passes import optimize
from .targets import backend

TARGETS = ("cpu", "cuda", "numpy")


@dataclass(frozen=True)
class Kernel:
    """One step of a plan: a generated kernel (``elementwise``/``reduce``) or a library call
    (``matmul``/``concat``); ``nodes`` are the ids it covers in ``plan.graph``."""

    name: str
    kind: str
    nodes: tuple[int, ...]
    source: str


class Plan:
    """A graph compiled for one target. Call it like the graph: ``plan(*arrays)``."""

    def __init__(self, source_graph: Graph, graph: Graph, target: str, steps: list[Step], kernels: list[Kernel]):
        self.source_graph = source_graph
        self.graph = graph
        self.target = target
        self.kernels = kernels
        self._steps = steps
        self._runners: list[Callable] | None = None
        self._lock = threading.Lock()
        self._backend = None

    def __repr__(self) -> str:
        kinds = ", ".join(k.kind for k in self.kernels)
        return f"<lumi.Plan {self.target}: {len(self.kernels)} kernels ({kinds}) for {self.graph!r}>"

    def __call__(self, *arrays, **named):
        values, bindings = self.source_graph.bind_inputs(arrays, named)
        out = self.run_bound(values, bindings)
        return out[0] if len(out) == 1 else tuple(out)

    def run_bound(self, values: Sequence[np.ndarray], bindings: Mapping[str, int]) -> list[np.ndarray]:
        """Run on inputs already checked by :meth:`Graph.bind_inputs`; outputs come back as NumPy arrays."""
        return [self._backend.to_host(v) for v in self.run_device(values, bindings)]

    def run_device(self, values: Sequence, bindings: Mapping[str, int]) -> list:
        """Like :meth:`run_bound` but outputs stay on the target's device (CuPy arrays for ``cuda``)."""
        with self._lock:
            if self._runners is None:
                self._backend = backend(self.target)
                runners = self._backend.prepare_all(self._steps, self.kernels, self.graph)
                self._runners = [_refuse_empty_max(st, self.graph, run) for st, run in zip(self._steps, runners)]
        be, g = self._backend, self.graph
        env: dict[int, object] = {i: be.constant(i, c) for i, c in g.constants.items()}
        for name, v in zip(g.inputs, values):
            env[g.inputs[name]] = be.asarray(v)

        def value(i: int):
            return _materialize(i, g, env, bindings)

        with be.session():
            for run, kernel in zip(self._runners, self.kernels):
                try:
                    run(value, env, bindings)
                except IndexOutOfRange as e:
                    if e.where:
                        raise
                    node = g.nodes[next(i for i in kernel.nodes if g.nodes[i].op == "gather")]
                    raise IndexOutOfRange(e.value, e.axis, e.size, index_context(g, node)) from None
                except LumiError:
                    raise
                except Exception as e:
                    node = g.nodes[max(kernel.nodes, key=lambda i: (g.nodes[i].loc is not None, i))]
                    raise ExecutionError(f"{describe(node)} in kernel {kernel.name} failed: "
                                         f"{type(e).__name__}: {e}") from e
        return [value(i) for i in g.outputs.values()]


def _refuse_empty_max(step: Step, graph: Graph, run: Callable) -> Callable:
    """``run``, first refusing a ``max`` over an axis of length 0 as NumPy does (it has no identity;
    a kernel would return -inf)."""
    group = step.epilogue if isinstance(step, MatmulStep) else step
    if not isinstance(group, Group) or not any(s.op == "max" for s in group.stmts):
        return run
    node = graph.nodes[next(s.node for s in group.stmts if s.op == "max")]
    reduced = [group.domain[a] for a in group.perm[len(group.domain) - group.n_reduced:]]

    def checked(value, env, bindings):
        if 0 in S.resolve(reduced, bindings):
            raise ExecutionError(f"{describe(node)}: max over a zero-size axis has no identity (NumPy refuses "
                                 "it too); check for an empty input before reducing it")
        run(value, env, bindings)

    return checked


def _materialize(i: int, g: Graph, env: dict, bindings: Mapping[str, int]):
    """The value of node ``i``, computing views and other nodes outside kernels on demand.

    A module-level function rather than a closure: a closure over ``env`` that calls itself sits in a
    reference cycle with it, which kept every intermediate array alive until the cyclic garbage
    collector ran, so each call touched fresh pages (measured: a 1M-element GELU plan took 1.1 ms
    instead of 0.35 ms).
    """
    stack = [i]
    while stack:  # an explicit stack: a chain of views can be as long as the graph
        j = stack[-1]
        if j in env:
            stack.pop()
            continue
        n = g.nodes[j]
        missing = [s for s in n.src if s not in env]
        if missing:
            stack.extend(missing)
            continue
        stack.pop()
        env[j] = OPS[n.op].ref([env[s] for s in n.src], n.attrs, S.resolve(n.shape, bindings))
    return env[i]


def _library_source(step: LibraryStep, graph: Graph, target: str) -> str:
    lib = {"cuda": "cupy (cuBLAS)", "cpu": "numpy (BLAS)", "numpy": "numpy (BLAS)"}[target]
    n = graph.nodes[step.node]
    args = ", ".join(f"%{s}" for s in n.src)
    return f"# {step.name}: {lib}.{n.op}({args}) -> {n.dtype}{S.fmt(n.shape)}"


def _render(step: Step, graph: Graph, target: str) -> Kernel:
    if isinstance(step, MatmulStep):
        from .render_c import render_matmul

        return Kernel(step.name, "matmul", step.nodes, render_matmul(step, graph.nodes[step.node].dtype))
    if isinstance(step, LibraryStep):
        return Kernel(step.name, step.kind, (step.node,), _library_source(step, graph, target))
    if target == "cpu":
        from .render_c import render
    elif target == "cuda":
        from .render_cuda import render
    else:
        from .targets.numpy import describe

        return Kernel(step.name, step.kind, step.nodes, describe(step, lambda i: repr(graph.nodes[i])))
    return Kernel(step.name, step.kind, step.nodes, render(step))


def _device(target: str) -> str:
    """The cache key's device: a CUDA plan holds kernels and constants on the device it first ran on."""
    if target != "cuda":
        return target
    try:
        import cupy

        return f"cuda:{cupy.cuda.Device().id}"
    except Exception:  # no CuPy or no driver: generating source needs neither
        return target


_CACHE: OrderedDict[tuple[str, str], Plan] = OrderedDict()
_CACHE_SIZE = 128
_CACHE_LOCK = threading.Lock()


def is_compiled(graph_hash: str, target: str) -> bool:
    """Whether :func:`compile` holds the plan of the graph with this hash for ``target`` (running it compiles
    nothing)."""
    with _CACHE_LOCK:
        return (graph_hash, _device(target)) in _CACHE


def compile(graph: Graph, target: str = "cpu") -> Plan:  # noqa: A001 - the public name design.md fixes
    """Optimise ``graph``, fuse it into kernels and generate their source for ``target``.

    ``"cpu"``: C compiled by the system compiler (OpenMP, SIMD), BLAS for matmul. ``"numpy"``: the same
    groups run blockwise with NumPy (no compiler needed). ``"cuda"``: CUDA C++ launched through CuPy,
    cuBLAS for matmul; generating it needs no device, running it does. Plans are cached by graph hash
    and device.
    """
    if target not in TARGETS:
        raise UnsupportedOperation(f"unknown compile target {target!r}; use one of {', '.join(TARGETS)}")
    if not isinstance(graph, Graph):
        raise LumiError(f"lumi.compile takes a lumi.Graph (from lumi.trace or lumi.load), got {type(graph).__name__}")
    key = (graph.hash, _device(target))
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    if target == "cpu":
        from .targets.cc import toolchain

        if toolchain() is None:
            raise ExecutionError("target 'cpu' needs a C compiler and none works here; use target='numpy'")
    opt, steps, kernels = _generate(graph, target)
    if setting("LUMI_DEBUG"):
        for k in kernels:
            print(f"--- lumi kernel {k.name} ({target}, {k.kind}, nodes {list(k.nodes)}) ---\n{k.source}",
                  file=sys.stderr)
    plan = Plan(graph, opt, target, steps, kernels)
    with _CACHE_LOCK:
        _CACHE[key] = plan
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return plan



def _generate(graph: Graph, target: str) -> tuple[Graph, list[Step], list[Kernel]]:
    """The optimised graph, its steps and their kernels' source: everything but building them."""
    opt = optimize(graph)
    steps = fuse(opt, fuse_gathers=target != "numpy")
    if target == "cpu":
        steps = attach_epilogues(opt, steps)
    return opt, steps, [_render(st, opt, target) for st in steps]


def check_budget(graph: Graph, *, max_nodes: int, max_seconds: float, target: str = "cpu") -> float:
    """Refuse, with :class:`GraphTooLarge` naming the budget, a graph of more than ``max_nodes`` nodes or
    one whose kernels take more than ``max_seconds`` to generate for ``target``; return the seconds taken.

    Serving calls this at deploy, so a graph too big to compile is refused then, not at its first request.
    """
    if len(graph.nodes) > max_nodes:
        raise GraphTooLarge(f"the graph has {len(graph.nodes)} nodes, over the budget of {max_nodes} "
                            "(max_graph_nodes / LUMI_MAX_GRAPH_NODES); split the model or raise the budget")
    start = time.perf_counter()
    _generate(graph, target)
    seconds = time.perf_counter() - start
    if seconds > max_seconds:
        raise GraphTooLarge(f"generating the graph's kernels took {seconds:.1f} s, over the compile budget of "
                            f"{max_seconds:g} s (max_compile_s / LUMI_MAX_COMPILE_S); simplify the model or "
                            "raise the budget")
    return seconds


def run_compiled(graph: Graph, backend: str, values: Sequence[np.ndarray], bindings: Mapping[str, int]) -> list:
    """``Graph.run`` on a compiled backend: ``"cpu"``, ``"cuda"``, ``"numpy"`` blocked, or ``"auto"``."""
    return compile(graph, best_target() if backend == "auto" else backend).run_bound(values, bindings)


@functools.cache
def best_target() -> str:
    """The fastest target this process can run: "cuda" where CuPy sees a device, else "cpu" with a
    working C compiler, else "numpy"."""
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            return "cuda"
    except Exception:  # no CuPy, no driver: not a CUDA machine
        pass
    from .targets.cc import toolchain

    return "cpu" if toolchain() is not None else "numpy"
