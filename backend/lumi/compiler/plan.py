"""``lumi.compile``: optimise, fuse, render for a target, and return a runnable :class:`Plan`."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
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
from . import numpy_exec
from .groups import Group, LibraryStep, MatmulStep, Step, attach_epilogues, buffers, fuse, has_gather
from .passes import optimize

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
                self._backend = _backend(self.target)
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


class _NumpyBackend:
    """Host arrays; groups run through the blocked NumPy executor (target ``numpy``)."""

    def session(self):
        """Held around each call of the plan."""
        return contextlib.nullcontext()

    def constant(self, i: int, c: np.ndarray):
        return c

    def asarray(self, v):
        return host_buffer(v)

    def to_host(self, v) -> np.ndarray:
        return np.asarray(v, order="C")

    def prepare_all(self, steps: list[Step], kernels: list[Kernel], graph: Graph) -> list[Callable]:
        return [self.prepare(st, k, graph) for st, k in zip(steps, kernels)]

    def prepare(self, step: Step, kernel: Kernel, graph: Graph) -> Callable:
        if isinstance(step, LibraryStep):
            return _library_runner(step, graph)
        shapes = {st.node: graph.nodes[st.node].shape for st in step.stores}
        return lambda value, env, bindings: numpy_exec.run_group(step, value, env, bindings, shapes)


class _CBackend(_NumpyBackend):
    """Host arrays; groups run as compiled C (target ``cpu``)."""

    def prepare_all(self, steps: list[Step], kernels: list[Kernel], graph: Graph) -> list[Callable]:
        from . import cpu

        self._built = cpu.build_kernels([(k.name, k.source) for st, k in zip(steps, kernels)
                                         if not isinstance(st, LibraryStep)])
        self._calls_blas = any(isinstance(st, MatmulStep) and cpu.blas_gemm(graph.nodes[st.node].dtype)
                               for st in steps)
        return super().prepare_all(steps, kernels, graph)

    def session(self):
        # While the plan's matmul kernels call BLAS from every thread, BLAS is held at one thread, for
        # the whole call rather than per matmul: that also stops the workers OpenBLAS leaves spinning
        # after NumPy's last call before the plan's first kernel.
        from . import cpu

        return cpu.one_blas_thread() if self._calls_blas else contextlib.nullcontext()

    def prepare(self, step: Step, kernel: Kernel, graph: Graph) -> Callable:
        if isinstance(step, LibraryStep):
            return _library_runner(step, graph)
        from . import cpu

        path, symbol = self._built[kernel.name]
        if isinstance(step, MatmulStep):
            return _matmul_runner(step, graph, cpu.load(path, symbol, pointers=4))
        fn = cpu.load(path, symbol)
        args = _c_arguments(step, graph)

        def run(value, env, bindings):
            ptrs, syms, err = args(env, bindings)
            fn(ptrs, syms)
            _check_indices(err, step, graph)

        return run


def _c_arguments(group: Group, graph: Graph) -> Callable:
    """A function of (env, bindings) that allocates the group's outputs in ``env`` and returns the
    kernel's ``(buffer pointers, symbol values)`` arguments and its error slot (None without a gather),
    to hand to :func:`_check_indices` after the kernel ran."""
    reads, writes = buffers(group)
    outs = [(n, graph.nodes[n].shape, graph.nodes[n].dtype) for n in writes]
    gathers = has_gather(group)

    def args(env, bindings):
        for b in reads:  # whatever produced a buffer (an input, a library call), the kernel reads it row-major
            env[b] = host_buffer(env[b])
        for n, shape, dtype in outs:
            env[n] = np.empty(S.resolve(shape, bindings), dtype=dtype)
        err = np.zeros(3, np.int64) if gathers else None
        ptrs = (ctypes.c_void_p * (len(reads) + len(outs) + gathers))(
            *[env[b].__array_interface__["data"][0] for b in reads],
            *[env[n].__array_interface__["data"][0] for n, _, _ in outs], *([err.ctypes.data] if gathers else []))
        syms = (ctypes.c_int64 * max(1, len(group.symbols)))(*[bindings[s] for s in group.symbols])
        return ptrs, syms, err

    return args


def _check_indices(err, group: Group, graph: Graph) -> None:
    """Raise :class:`IndexOutOfRange` if the kernel's gathers met an index out of range (``err[0]``)."""
    if err is not None and err[0]:
        raise out_of_range(group, graph, int(err[1]), int(err[2]))


def out_of_range(group: Group, graph: Graph, value: int, where: int) -> IndexOutOfRange:
    """The error for the index ``value`` that statement number ``where`` of ``group`` (a gather) met."""
    node = graph.nodes[group.stmts[where].node]
    axis = node.attrs["axis"]
    return IndexOutOfRange(value, axis, graph.nodes[node.src[0]].shape[axis], index_context(graph, node))


def _matmul_runner(step: MatmulStep, graph: Graph, fn) -> Callable:
    """Runs inside the session's BLAS hold (see ``_CBackend.session``) whenever it calls BLAS."""
    from . import cpu

    n = graph.nodes[step.node]
    gemm = cpu.blas_gemm(n.dtype)
    args = _c_arguments(step.epilogue, graph) if step.epilogue else lambda env, bindings: (None, None, None)

    def run(value, env, bindings):
        a, b = (_blas_operand(value(s)) for s in n.src)
        (m, k), nn = a[0].shape, b[0].shape[1]
        c = env[n.id] = np.empty((m, nn), dtype=n.dtype)
        ptrs, syms, err = args(env, bindings)
        blas = gemm if gemm and c.size and k else None
        if blas is None:
            np.matmul(a[0], b[0], out=c)
        mm = (ctypes.c_void_p * 4)(blas and blas.address, a[0].ctypes.data, b[0].ctypes.data, c.ctypes.data)
        g = (ctypes.c_int64 * 8)(int(bool(blas and blas.ilp64)), a[1], b[1], m, nn, k, a[2], b[2])
        fn(ptrs, syms, mm, g)
        _check_indices(err, step.epilogue, graph)

    return run


def _blas_operand(x: np.ndarray) -> tuple[np.ndarray, int, int]:
    """``x`` as BLAS reads it: (array, transposed?, leading dimension), copying only strided views."""
    if not x.flags.c_contiguous and x.T.flags.c_contiguous and x.flags.aligned and x.dtype.isnative:
        return x, 1, max(1, x.shape[0])
    x = host_buffer(x)
    return x, 0, max(1, x.shape[1])


def host_buffer(a) -> np.ndarray:
    """``a`` the way generated kernels address memory: C-contiguous, aligned, in native byte order.

    Kernels take a bare pointer and compute row-major offsets, so a buffer in any other layout (a
    column-major concat of transposed views, a big-endian input) would be read as wrong numbers.
    Copies only when ``a`` is not already so.
    """
    a = np.asarray(a)
    return np.require(a, a.dtype.newbyteorder("="), ("C", "A"))


def _library_runner(step: LibraryStep, graph: Graph) -> Callable:
    n = graph.nodes[step.node]

    def run(value, env, bindings):
        env[n.id] = OPS[n.op].ref([value(s) for s in n.src], n.attrs, S.resolve(n.shape, bindings))

    return run


def _backend(target: str):
    if target == "cuda":
        from .cuda import CudaBackend

        return CudaBackend()
    return _CBackend() if target == "cpu" else _NumpyBackend()


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
        return Kernel(step.name, step.kind, step.nodes, numpy_exec.describe(step, lambda i: repr(graph.nodes[i])))
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
        from .cpu import toolchain

        if toolchain() is None:
            raise ExecutionError("target 'cpu' needs a C compiler and none works here; use target='numpy'")
    opt, steps, kernels = _generate(graph, target)
    if os.environ.get("LUMI_DEBUG", "") not in ("", "0"):
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
    from .cpu import toolchain

    return "cpu" if toolchain() is not None else "numpy"
