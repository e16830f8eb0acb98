"""Running a CUDA plan through CuPy: generated kernels as ``RawKernel`` s, matmul through cuBLAS.

Compiled kernels are cached per process by (source, device architecture); CuPy also keeps its
own on-disk cache keyed the same way. The matmul epilogue (bias, activation, residual) is the
elementwise kernel that follows the cuBLAS call.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

import numpy as np

from ...errors import ExecutionError
from ...graph import shapes as S
from ...graph.ir import Graph
from ..groups import Group, LibraryStep, buffers, has_gather
from ..render_cuda import BLOCK
from ..views import sprod
from . import check_unread_indices, library_runner, out_of_range

_KERNELS: dict[tuple[str, str, str], object] = {}
_LOCK = threading.Lock()
MAX_GRID = 1 << 16


def _cupy():
    try:
        import cupy
    except ImportError as e:
        raise ExecutionError("target 'cuda' needs CuPy (pip install cupy-cuda12x) and an NVIDIA GPU") from e
    if cupy.cuda.runtime.getDeviceCount() == 0:
        raise ExecutionError("target 'cuda' needs a CUDA device and CuPy sees none; use target='cpu'")
    return cupy


def raw_kernel(source: str, name: str):
    """The compiled kernel for this source on the current device (compiled once per architecture)."""
    cp = _cupy()
    arch = cp.cuda.Device().compute_capability
    key = (source, name, arch)
    with _LOCK:
        if key not in _KERNELS:
            _KERNELS[key] = cp.RawKernel(source, name, options=("--std=c++17",))
        return _KERNELS[key]


def _eval(expr, env: dict) -> int:
    return expr if isinstance(expr, int) else int(eval(expr, {"__builtins__": {}}, env))  # our own C expression


class CudaBackend:
    def __init__(self):
        self.cp = _cupy()
        self._consts: dict[int, object] = {}

    def session(self):
        return contextlib.nullcontext()

    def constant(self, i: int, c: np.ndarray):
        if i not in self._consts:
            self._consts[i] = self.cp.asarray(c)  # uploaded once per plan
        return self._consts[i]

    def asarray(self, v):
        return self.cp.asarray(v, order="C")

    def to_host(self, v) -> np.ndarray:
        return np.asarray(self.cp.asnumpy(v), order="C")

    def prepare_all(self, steps, kernels: list, graph: Graph) -> list[Callable]:
        return [self.prepare(st, k, graph) for st, k in zip(steps, kernels)]

    def prepare(self, step, kernel, graph: Graph) -> Callable:
        if isinstance(step, LibraryStep):
            return library_runner(step, graph)
        return self._group_runner(step, kernel, graph)

    def _group_runner(self, group: Group, kernel, graph: Graph) -> Callable:
        cp = self.cp
        fn = raw_kernel(kernel.source, group.name)
        reads, writes = buffers(group)
        outs = [(n, graph.nodes[n].shape, graph.nodes[n].dtype) for n in writes]
        gathers = has_gather(group)

        def run(value, env, bindings):
            syms = {f"S_{k}": v for k, v in bindings.items()}
            n_outer = _eval(sprod(group.outer), syms)
            n_inner = _eval(sprod(group.inner), syms)
            for n, shape, dtype in outs:
                env[n] = cp.empty(S.resolve(shape, bindings), dtype=dtype)
            if group.kind == "elementwise":
                grid = min(max(1, -(-n_outer * n_inner // BLOCK)), MAX_GRID)
            else:
                grid = min(max(1, n_outer), MAX_GRID)
            for b in reads:  # kernels compute row-major offsets from a bare pointer
                env[b] = cp.ascontiguousarray(env[b])
            args = [env[b] for b in reads] + [env[n] for n, _, _ in outs]
            err = cp.zeros(3, dtype=cp.int64) if gathers else None
            args += ([err] if gathers else []) + [np.int64(bindings[s]) for s in group.symbols]
            fn((grid,), (BLOCK,), tuple(args))
            if gathers:
                bad, index, where = (int(v) for v in err.get())  # waits for the kernel: an error must not pass
                if bad:
                    raise out_of_range(group, graph, index, where)
                check_unread_indices(group, graph, value, bindings, cp.asnumpy)

        return run

