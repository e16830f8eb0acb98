"""Target ``cpu``: a plan's kernels as C built by the system compiler (``cc.py``), called through ctypes.

A fused matmul (``MatmulStep``) is one OpenMP region: each thread calls BLAS on its block of rows,
then runs the epilogue on those rows while they are in its cache.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Callable

import numpy as np

from ...graph import shapes as S
from ...graph.ir import Graph
from ..groups import Group, LibraryStep, MatmulStep, Step, buffers, has_gather
from . import HostBackend, cc, check_unread_indices, host_buffer, library_runner, out_of_range


class MatmulArgs(ctypes.Structure):
    """A fused matmul kernel's operands: the C struct ``lumi_matmul`` in ``render_c.PRELUDE``."""

    _fields_ = [("gemm", ctypes.c_void_p), ("a", ctypes.c_void_p), ("b", ctypes.c_void_p), ("c", ctypes.c_void_p),
                *((name, ctypes.c_int64) for name in ("ilp64", "trans_a", "trans_b", "m", "n", "k", "lda", "ldb"))]


class CBackend(HostBackend):
    """Groups run as compiled C; matmuls call NumPy's own BLAS from every thread."""

    def prepare_all(self, steps: list[Step], kernels: list, graph: Graph) -> list[Callable]:
        built = cc.build_kernels([(k.name, k.source) for st, k in zip(steps, kernels)
                                  if not isinstance(st, LibraryStep)])
        self._calls_blas = any(isinstance(st, MatmulStep) and cc.blas_gemm(graph.nodes[st.node].dtype) for st in steps)
        return [library_runner(st, graph) if isinstance(st, LibraryStep) else self._prepare(st, graph, *built[k.name])
                for st, k in zip(steps, kernels)]

    def session(self):
        # While the plan's matmul kernels call BLAS from every thread, BLAS is held at one thread, for
        # the whole call rather than per matmul: that also stops the workers OpenBLAS leaves spinning
        # after NumPy's last call before the plan's first kernel.
        return cc.one_blas_thread() if self._calls_blas else contextlib.nullcontext()

    def _prepare(self, step: Group | MatmulStep, graph: Graph, path, symbol: str) -> Callable:
        if isinstance(step, MatmulStep):
            return _matmul_runner(step, graph, cc.load(path, symbol, pointers=3))
        fn = cc.load(path, symbol)
        args = _c_arguments(step, graph)

        def run(value, env, bindings):
            ptrs, syms, err = args(env, bindings)
            fn(ptrs, syms)
            _check_indices(err, step, graph)
            if err is not None:
                check_unread_indices(step, graph, value, bindings)

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


def _matmul_runner(step: MatmulStep, graph: Graph, fn) -> Callable:
    """Runs inside the session's BLAS hold (see ``CBackend.session``) whenever it calls BLAS."""
    n = graph.nodes[step.node]
    gemm = cc.blas_gemm(n.dtype)
    args = _c_arguments(step.epilogue, graph) if step.epilogue else lambda env, bindings: (None, None, None)

    def run(value, env, bindings):
        (a, trans_a, lda), (b, trans_b, ldb) = (_blas_operand(value(s)) for s in n.src)
        (m, k), nn = a.shape, b.shape[1]
        c = env[n.id] = np.empty((m, nn), dtype=n.dtype)
        ptrs, syms, err = args(env, bindings)
        blas = gemm if gemm and c.size and k else None
        if blas is None:
            np.matmul(a, b, out=c)
        if err is not None:
            check_unread_indices(step.epilogue, graph, value, bindings)
        fn(ptrs, syms, ctypes.byref(MatmulArgs(blas and blas.address, a.ctypes.data, b.ctypes.data, c.ctypes.data,
                                               int(bool(blas and blas.ilp64)), trans_a, trans_b, m, nn, k, lda, ldb)))
        _check_indices(err, step.epilogue, graph)

    return run


def _blas_operand(x: np.ndarray) -> tuple[np.ndarray, int, int]:
    """``x`` as BLAS reads it: (array, transposed?, leading dimension), copying only strided views."""
    if not x.flags.c_contiguous and x.T.flags.c_contiguous and x.flags.aligned and x.dtype.isnative:
        return x, 1, max(1, x.shape[0])
    x = host_buffer(x)
    return x, 0, max(1, x.shape[1])
