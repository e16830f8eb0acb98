"""Where plans run: one module per target (``numpy``, ``cpu``, ``cuda``) and what they share.

A target's backend holds a plan's arrays on its device and turns each step of the plan into a
runner ``run(value, env, bindings)`` that computes the step's outputs into ``env``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np

from ...errors import IndexOutOfRange
from ...graph import shapes as S
from ...graph.interpret import index_context
from ...graph.ir import Graph
from ...graph.ops import OPS, index_out_of_range
from ..groups import Group, LibraryStep


class HostBackend:
    """Arrays in host memory as NumPy arrays (targets ``numpy`` and ``cpu``)."""

    def session(self):
        """Held around each call of the plan."""
        return contextlib.nullcontext()

    def constant(self, i: int, c: np.ndarray):
        return c

    def asarray(self, v):
        return host_buffer(v)

    def to_host(self, v) -> np.ndarray:
        return np.asarray(v, order="C")


def backend(target: str):
    """A fresh backend for one plan on ``target``."""
    if target == "cuda":
        from .cuda import CudaBackend

        return CudaBackend()
    if target == "cpu":
        from .cpu import CBackend

        return CBackend()
    from .numpy import NumpyBackend

    return NumpyBackend()


def host_buffer(a) -> np.ndarray:
    """``a`` the way generated kernels address memory: C-contiguous, aligned, in native byte order.

    Kernels take a bare pointer and compute row-major offsets, so a buffer in any other layout (a
    column-major concat of transposed views, a big-endian input) would be read as wrong numbers.
    Copies only when ``a`` is not already so.
    """
    a = np.asarray(a)
    return np.require(a, a.dtype.newbyteorder("="), ("C", "A"))


def library_runner(step: LibraryStep, graph: Graph) -> Callable:
    """Runs a library step (matmul, concat, an unfused gather) through the op table's reference."""
    n = graph.nodes[step.node]

    def run(value, env, bindings):
        env[n.id] = OPS[n.op].ref([value(s) for s in n.src], n.attrs, S.resolve(n.shape, bindings))

    return run


def check_unread_indices(group: Group, graph: Graph, value: Callable, bindings, to_host=np.asarray) -> None:
    """Where a kernel with gathers has nothing to compute (an empty result, such as a row of zero columns),
    its indices are never read; NumPy still refuses one out of range, and so does this, on the host."""
    if 0 not in S.resolve(group.domain, bindings):
        return
    for k, s in enumerate(group.stmts):
        kind, i = s.args[1] if s.op == "gather" else (None, None)
        if kind == "load":
            ld = group.loads[i]
            index = np.asarray(ld.value) if ld.buf is None else to_host(value(ld.operand))
            bad = index_out_of_range(index, s.attrs["size"])
            if bad is not None:
                raise out_of_range(group, graph, bad, k)


def out_of_range(group: Group, graph: Graph, value: int, where: int) -> IndexOutOfRange:
    """The error for the index ``value`` that statement number ``where`` of ``group`` (a gather) met."""
    node = graph.nodes[group.stmts[where].node]
    axis = node.attrs["axis"]
    return IndexOutOfRange(value, axis, graph.nodes[node.src[0]].shape[axis], index_context(graph, node))
