"""The group IR run with NumPy in blocks on a thread pool: the CPU path where no C compiler exists.

Each block is a slab of outer rows small enough to stay in cache; every statement runs on the whole
slab with the op table's NumPy reference, so a fused group reads its inputs from cache instead of
making one pass over memory per op. NumPy releases the GIL, so blocks run on all cores.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ...graph import shapes as S
from ...graph.ir import Graph
from ...graph.ops import OPS
from ..groups import Group, LibraryStep, Step
from . import HostBackend, library_runner

BLOCK_ELEMENTS = 1 << 15
_POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="lumi-numpy")


class NumpyBackend(HostBackend):
    """Groups run through the blocked NumPy executor below (target ``numpy``)."""

    def prepare_all(self, steps: list[Step], kernels: list, graph: Graph) -> list[Callable]:
        return [self.prepare(st, graph) for st in steps]

    def prepare(self, step: Step, graph: Graph) -> Callable:
        if isinstance(step, LibraryStep):
            return library_runner(step, graph)
        shapes = {st.node: graph.nodes[st.node].shape for st in step.stores}
        return lambda value, env, bindings: run_group(step, value, env, bindings, shapes)


def describe(group: Group, listing: Callable[[int], str]) -> str:
    """A readable listing of what the group computes (the NumPy target's kernel ``source``)."""
    lines = [f"# {group.name}: {group.kind} over domain {S.fmt(group.domain)}, loop order {list(group.perm)}"]
    for s in group.stmts:
        lines.append(f"{s.level:4} {listing(s.node)}")
    lines.append("stores: " + ", ".join(f"%{st.node}" for st in group.stores))
    return "\n".join(lines)


def run_group(group: Group, value: Callable[[int], np.ndarray], env: dict, bindings: Mapping[str, int],
              shapes: Mapping[int, tuple]) -> None:
    X = S.resolve(group.domain, bindings)
    k = len(X) - group.n_reduced
    reduced = set(group.perm[k:])
    keep = tuple(1 if i in reduced else d for i, d in enumerate(X))
    leaves = []
    for ld in group.loads:
        if ld.buf is None:  # a literal, broadcast (zero-stride) so that reductions see its extent
            a = np.broadcast_to(np.asarray(ld.value, dtype=ld.dtype), keep if ld.level == "row" else X)
        else:
            a = value(ld.operand)
            if ld.level == "row":
                a = a.reshape(keep)
        leaves.append(a.transpose(group.perm))
    outs = []
    for st in group.stores:
        buf = np.empty(S.resolve(shapes[st.node], bindings), dtype=st.dtype)
        env[st.node] = buf
        outs.append((buf if st.level == "full" else buf.reshape(keep)).transpose(group.perm))
    axes = tuple(range(k, len(X)))

    def work(block) -> None:
        vals: dict[int, np.ndarray] = {}

        def get(ref):
            kind, i = ref
            if kind == "stmt":
                return vals[i]
            a = leaves[i]
            return a[block] if a.ndim else a

        with np.errstate(all="ignore"):
            for s in group.stmts:
                args = [get(r) for r in s.args]
                if s.op == "sum":
                    out = np.sum(args[0], axis=axes, keepdims=True, dtype=s.dtype)
                elif s.op == "max":
                    out = np.max(args[0], axis=axes, keepdims=True)
                else:
                    out = OPS[s.op].ref(args, s.attrs, None)
                vals[s.node] = np.asarray(out, dtype=s.dtype)
        for st, o in zip(group.stores, outs):
            o[block] = vals[st.node]

    if k == 0 or not X or X[group.perm[0]] <= 1:
        work(...)
        return
    rows = X[group.perm[0]]
    per_row = max(1, math.prod(X) // rows)
    step = max(1, BLOCK_ELEMENTS // per_row)
    list(_POOL.map(lambda lo: work(slice(lo, lo + step)), range(0, rows, step)))
